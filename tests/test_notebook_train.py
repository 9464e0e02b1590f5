"""notebooks/02_train_noisy.ipynb runs under papermill with tiny parameters and writes its records and figures.

The parameters cell itself is checked against the stage's PARAMS in test_contract.py."""

from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
import yaml

from nbstudy import figures, noise
from nbstudy.lnl import load_records

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_train_noisy.ipynb"


def test_notebook_is_committed_without_outputs_and_has_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])


@pytest.mark.slow
def test_notebook_runs_under_papermill_and_its_figures_hold_the_records(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: one thread is fastest on a shared CPU
    out = tmp_path / "run"
    params = dict(dataset_options=dict(num_classes=3, per_class=12, test_per_class=4), resolution=16,
                  stem="imagenet", method="coteaching", method_options={"num_gradual": 2}, noise_rate=0.6,
                  epochs=2, batch_size=8, lr=1e-3, device="cpu", output_dir=str(out), progress=False)
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), parameters=params,
                               kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    rec = load_records(out)
    assert rec["params"]["method"] == "coteaching" and len(rec["history"]) == 2
    ran = yaml.safe_load((out / "params.yaml").read_text())
    assert ran["method_options"] == rec["method_options"] and ran["method_options"]["num_gradual"] == 2
    shown = figures.load(out, "noise")
    np.testing.assert_allclose(shown["transition_matrix"], noise.empirical_transition(
        rec["clean_labels"], rec["noisy_labels"], 3))
    assert shown["actual_noise_rate"] == pytest.approx(rec["final"]["actual_noise_rate"])
    curves = figures.load(out, "learning_curves")
    assert curves["final"] == rec["final"] and curves["final"]["reported_network"] == "A"
    assert curves["history"]["epoch"] == [1, 2]
    assert curves["history"]["test_acc"] == [h["test_acc"] for h in rec["history"]]
    assert curves["history"]["test_acc_B"] == [h["test_acc_B"] for h in rec["history"]]
    selection = figures.load(out, "selection")
    assert selection["selection_precision"] == [h["selection_precision"] for h in rec["history"]]
