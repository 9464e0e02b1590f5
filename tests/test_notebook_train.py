"""notebooks/02_train_noisy.ipynb runs under papermill with tiny parameters and writes its records."""

from pathlib import Path

import nbformat
import papermill
import pytest

from nbstudy.lnl import load_records

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_train_noisy.ipynb"


def test_notebook_is_committed_without_outputs_and_has_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    names = [line.split("=")[0].strip() for line in code[0].source.splitlines() if "=" in line]
    for required in ("dataset", "data_path", "dataset_options", "data_seed", "resolution", "stem", "method",
                     "method_options", "noise_kind", "noise_rate", "init", "epochs", "batch_size", "lr", "seed",
                     "val_fraction", "record_every", "checkpoint_every", "device", "output_dir"):
        assert required in names


@pytest.mark.slow
def test_notebook_runs_under_papermill(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: one thread is fastest on a shared CPU
    out = tmp_path / "run"
    params = dict(dataset_options=dict(num_classes=3, per_class=12, test_per_class=4), resolution=16,
                  stem="imagenet", method="coteaching", method_options={"num_gradual": 2}, noise_rate=0.6,
                  epochs=2, batch_size=8, lr=1e-3, device="cpu", output_dir=str(out), progress=False)
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(executed), parameters=params, kernel_name="python3",
                               cwd=str(tmp_path), progress_bar=False)
    text = "\n".join(str(o) for c in nbformat.read(executed, as_version=4).cells for o in c.get("outputs", []))
    assert "SYNTHETIC" in text and "BEST" in text and "LAST" in text and "image/png" in text
    rec = load_records(out)
    assert rec["params"]["method"] == "coteaching" and len(rec["history"]) == 2
    assert rec["final"]["reported_network"] == "A"
