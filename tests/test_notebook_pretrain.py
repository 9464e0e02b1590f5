"""notebooks/01_pretrain.ipynb runs under papermill with tiny parameters and writes its outputs and figures.

The parameters cell itself is checked against the stage's PARAMS in test_contract.py."""

import json
from pathlib import Path

import nbformat
import papermill as pm
import yaml

from nbstudy import figures
from nbstudy.checkpoint import load_backbone
from nbstudy.models import build_backbone

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_pretrain.ipynb"


def test_notebook_is_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.cells[0].cell_type == "markdown"
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_notebook_pretrains_and_writes_the_backbone_and_its_figures(tmp_path):
    out = tmp_path / "pretrain"
    pm.execute_notebook(
        str(NOTEBOOK), str(tmp_path / "executed.ipynb"), kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
        parameters={"dataset_options": {"per_class": 6, "test_per_class": 3}, "resolution": 16, "stem": "imagenet",
                    "method": "jigsaw", "method_options": {"permutations": 12}, "epochs": 1, "batch_size": 12,
                    "device": "cpu", "output_dir": str(out)})
    meta = load_backbone(build_backbone(small_stem=False), out / "backbone.pt", resolution=16)
    assert meta["method"] == "jigsaw" and meta["epochs_done"] == 1 and len(meta["jigsaw"]["permutations"]) == 12
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    assert metrics["params"]["output_dir"] == str(out) and metrics["params"]["method_options"]["permutations"] == 12
    assert yaml.safe_load((out / "params.yaml").read_text()) == metrics["params"]
    history = figures.load(out, "history")
    assert history["history"] == metrics["history"] and history["epochs_done"] == 1
    assert history["random_init_probe_acc"] == metrics["random_init_probe_acc"]
    captions = figures.load(out, "examples")["captions"]
    assert len(captions) == 4 and all(row[0] == "image" and row[1].startswith("permutation ") for row in captions)
    assert {int(row[1].split()[1].rstrip(":")) for row in captions} <= set(range(12))   # labels from the set of 12
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["examples.json", "examples.png", "history.json",
                                                                   "history.png"]
