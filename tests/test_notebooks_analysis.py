"""Each analysis notebook executed in batch (papermill) on a fake study: it must run and draw its figures.

The five notebooks run at the same time (one kernel each): most of a run is
the kernel starting and importing, which overlaps well.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import papermill
import pytest
from analysis_fixtures import make_study

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ANALYSIS = ["10_filters", "11_loss_distributions", "12_separation", "13_results", "14_data_noise"]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("nb"), seeds=(0,), epochs=4)


@pytest.mark.parametrize("name", ANALYSIS)
def test_notebook_is_a_clean_parameterized_handout(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    params = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert params["study_dir"]["default"] == '""' and params["interactive"]["default"] == "False"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"


def _outputs(nb, mime):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if mime in o.get("data", {})]


@pytest.fixture(scope="module")
def executed(study_dir, tmp_path_factory):
    """{notebook name: the executed notebook, or the exception its execution raised}."""
    out = tmp_path_factory.mktemp("executed")

    def run(name):
        try:
            papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                                       parameters={"study_dir": str(study_dir)}, kernel_name="python3",
                                       progress_bar=False, cwd=str(out), execution_timeout=120)
            return nbformat.read(out / f"{name}.ipynb", as_version=4)
        except Exception as e:  # reported by that notebook's test
            return e

    with ThreadPoolExecutor(len(ANALYSIS)) as pool:
        return dict(zip(ANALYSIS, pool.map(run, ANALYSIS)))


@pytest.mark.parametrize("name", ANALYSIS)
def test_notebook_runs_in_batch(name, executed):
    nb = executed[name]
    if isinstance(nb, Exception):
        raise nb
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "12 training runs" in text and "SYNTHETIC data" in text
    assert not _outputs(nb, "application/vnd.jupyter.widget-view+json"), "batch runs must draw static figures"
    figures = {"10_filters": 2, "11_loss_distributions": 2 * 3, "12_separation": 2 * 2 + 3, "13_results": 1,
               "14_data_noise": 2 + 2}[name]
    assert len(_outputs(nb, "image/png")) == figures
    if name == "13_results":
        tables = [o["data"]["text/html"] for o in _outputs(nb, "text/html")]
        assert len(tables) == 3 and all("SYNTHETIC data" in t for t in tables)
        assert "font-weight: bold" in tables[0]
