"""notebooks/01_pretrain.ipynb runs under papermill with tiny parameters and writes its outputs."""

import json
from pathlib import Path

import nbformat
import papermill as pm

from nbstudy.checkpoint import load_backbone
from nbstudy.models import build_backbone

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_pretrain.ipynb"
CONTRACT = {"dataset": "synthetic", "data_path": None, "dataset_options": {}, "data_seed": 0, "resolution": 32,
            "stem": "auto", "method": "simclr", "optimizer": "adam", "probe_every": 0, "seed": 0, "device": "auto",
            "output_dir": "outputs/pretrain"}


def test_notebook_is_committed_clean_with_the_parameter_contract():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.cells[0].cell_type == "markdown"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is nb.cells[1]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    defaults = {}
    exec(tagged[0].source, {}, defaults)                              # literals only: runs with no imports
    assert {k: defaults[k] for k in CONTRACT} == CONTRACT
    assert {"epochs", "batch_size", "lr", "weight_decay", "temperature"} <= set(defaults)


def test_notebook_pretrains_and_writes_the_backbone(tmp_path):
    out = tmp_path / "pretrain"
    pm.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        parameters={"dataset_options": {"per_class": 6, "test_per_class": 3}, "resolution": 16, "stem": "imagenet",
                    "method": "jigsaw", "epochs": 1, "batch_size": 12, "device": "cpu", "output_dir": str(out)})
    meta = load_backbone(build_backbone(small_stem=False), out / "backbone.pt", resolution=16)
    assert meta["method"] == "jigsaw" and meta["epochs_done"] == 1
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    assert metrics["params"]["output_dir"] == str(out) and "random_init_probe_acc" in metrics
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert "SYNTHETIC" in text and str(out / "backbone.pt") in text and len(images) == 2
