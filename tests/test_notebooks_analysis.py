"""Each analysis notebook executed in batch (papermill) on a fake study: it runs, and the figures it shows are
saved with their data, which must be the fake study's own numbers.

The notebooks run two at a time in two kept kernels (nbstudy.kernels, as the study runner runs them), so
the kernels start and import torch twice, not six times.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
from analysis_fixtures import make_study

from nbstudy import figures, noise
from nbstudy.kernels import KERNEL, KernelPool
from nbstudy.analysis import filter_measures, findings, runs, stats


NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ANALYSIS = {"10_filters": "filters", "11_loss_distributions": "loss_distributions", "12_separation": "separation",
            "13_results": "results", "14_data_noise": "data_noise", "15_suspects": "suspects"}  # notebook: entry
INITS, METHODS, RATES = ["random", "simclr"], ["ce", "coteaching", "dividemix"], [0.8, 0.4]  # highest rate first
SAVED = {
    "10_filters": [f"filters_symmetric_{r}" for r in RATES] + ["filter_measures"],
    "11_loss_distributions": [f"loss_symmetric_{r}_{m}" for r in RATES for m in METHODS],
    "12_separation": [f"{v}_symmetric_{r}" for r in RATES for v in ("selection", "loss_auc")]
    + [f"threshold_{m}" for m in METHODS],
    "13_results": ["accuracy_symmetric"],
    "14_data_noise": ["samples", "measured_noise", "noise_symmetric_0.4", "noise_symmetric_0.8"],
    "15_suspects": ["precision_at_k"] + [f"suspects_{m}_{i}" for m in METHODS for i in INITS],
}
# the fake study has no backbone.pt to embed with: cleanlab's baseline is tested on real runs (test_label_issues)
EXTRA = {"15_suspects": {"baseline": False}}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("nb"), seeds=(0,), epochs=4)


@pytest.fixture(scope="module")
def study(study_dir):
    return runs.load_study(study_dir)


@pytest.mark.parametrize("name", ANALYSIS)
def test_notebook_is_a_clean_parameterized_handout(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    params = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert params["study_dir"]["default"] == '""' and params["interactive"]["default"] == "False"
    assert params["output_dir"]["default"] == '""'
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"


def _outputs(nb, mime):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if mime in o.get("data", {})]


@pytest.fixture(scope="module")
def executed(study_dir, tmp_path_factory):
    """{notebook name: the executed notebook, or the exception its execution raised}.

    Run as the study runner runs them: only `study_dir` given, so each saves
    its figures in its own folder of the study, <study_dir>/analysis/<entry>/.
    """
    out = tmp_path_factory.mktemp("executed")
    kernels = KernelPool(cwd=str(out))

    def run(name):
        try:
            with kernels.kernel(NOTEBOOKS / f"{name}.ipynb") as kernel:
                papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                                           parameters={"study_dir": str(study_dir), **EXTRA.get(name, {})},
                                           km=kernel.manager, kernel_name=KERNEL, progress_bar=False,
                                           execution_timeout=120)
            return nbformat.read(out / f"{name}.ipynb", as_version=4)
        except Exception as e:  # reported by that notebook's test
            return e

    try:
        with ThreadPoolExecutor(2) as pool:
            notebooks = dict(zip(ANALYSIS, pool.map(run, ANALYSIS)))
    finally:
        kernels.close()
    assert not (out / figures.FOLDER).exists(), "figures belong in the notebook's folder of the study, not the cwd"
    return notebooks


@pytest.fixture
def saved(name, executed, study_dir):
    """{figure name: its saved data} of notebook `name`, after checking that it ran and saved what it showed."""
    nb = executed[name]
    if isinstance(nb, Exception):
        raise nb
    assert not _outputs(nb, "application/vnd.jupyter.widget-view+json"), "batch runs must draw static figures"
    folder = study_dir / "analysis" / ANALYSIS[name]
    files = sorted(p.name for p in (folder / figures.FOLDER).iterdir())
    assert files == sorted(f"{f}.{ext}" for f in SAVED[name] for ext in ("json", "png"))
    assert len(_outputs(nb, "image/png")) == len(SAVED[name]), "every figure shown is saved, and shown once"
    return {f: figures.load(folder, f) for f in SAVED[name]}


def _records(study, **where) -> dict:
    return runs.read_run(runs.find_run(study, **where)["run_dir"])


def _samples(study, init, method, rate, epoch) -> dict:
    return runs.samples(_records(study, init=init, method=method, noise_rate=rate), epoch)


@pytest.mark.parametrize("name", ["10_filters"])
def test_filters_are_the_runs_first_layer_weights(name, saved, study):
    for rate in RATES:
        data = saved[f"filters_symmetric_{rate}"]
        assert (data["noise_rate"], data["seed"], data["synthetic"]) == (rate, 0, True)
        for init in INITS:
            assert np.shape(data["initial"][init]) == (64, 3, 3, 3)
            for method in METHODS:
                records = _records(study, init=init, method=method, noise_rate=rate)
                assert np.array_equal(data["initial"][init], records["filters_initial"])  # the same for every method
                assert np.array_equal(data["final"][init][method], records["filters_final"])
    measures = saved["filter_measures"]   # at the highest rate: each run's banks in numbers, and said in words
    runs_ = measures["runs"]
    assert measures["noise_rate"] == 0.8 and measures["random_share"] == 5 / 9
    for init, method, share, change in zip(runs_["init"], runs_["method"], runs_["end_low_share"], runs_["change"]):
        records = _records(study, init=init, method=method, noise_rate=0.8)
        assert share == pytest.approx(filter_measures.low_frequency_share(records["filters_final"]))
        assert change == pytest.approx(filter_measures.relative_change(records["filters_initial"],
                                                                        records["filters_final"]))


def test_filter_measures_know_smooth_from_random_and_a_moved_bank():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(64, 3, 7, 7))
    assert filter_measures.low_frequency_share(noise) == pytest.approx(filter_measures.random_share(7), abs=0.02)
    wave = np.cos(2 * np.pi * np.arange(7) / 7)   # one cycle per filter: all its energy is "low"
    smooth = np.broadcast_to(wave[None, None, :, None] * rng.normal(size=(64, 3, 1, 1)), (64, 3, 7, 7))
    assert filter_measures.low_frequency_share(smooth) == pytest.approx(1.0)
    ramp = np.broadcast_to(np.linspace(-1, 1, 7)[None, None, None, :], (64, 3, 7, 7))   # an edge-like gradient
    assert filter_measures.low_frequency_share(ramp) > 0.5 > 5 * filter_measures.random_share(7) / 4
    assert filter_measures.relative_change(noise, noise) == 0
    assert filter_measures.relative_change(noise, 1.1 * noise) == pytest.approx(0.1)


@pytest.mark.parametrize("name", ["11_loss_distributions"])
def test_loss_histograms_are_the_runs_losses_split_by_label(name, saved, study):
    for rate in RATES:
        for method in METHODS:
            data = saved[f"loss_symmetric_{rate}_{method}"]
            assert data["epochs"] == [1, 2, 3, 4] and data["methods"] == [method] and data["inits"] == INITS
            for init, row in zip(INITS, data["panels"]):
                for epoch, panel in zip(data["epochs"], row):
                    s = _samples(study, init, method, rate, epoch)
                    assert (panel["init"], panel["method"], panel["epoch"]) == (init, method, epoch)
                    assert panel["loss_auc"] == pytest.approx(runs.loss_auc(s), abs=1e-12)
                    assert (panel["n_right"], panel["n_wrong"]) == ((~s["noisy"]).sum(), s["noisy"].sum())
                    widths = np.diff(panel["edges"])
                    assert np.dot(panel["right"], widths) == pytest.approx(1)
                    assert np.dot(panel["wrong"], widths) == pytest.approx(1)


@pytest.mark.parametrize("name", ["12_separation"])
def test_separation_figures_hold_the_runs_selection_and_loss_auc(name, saved, study_dir, study):
    for rate in RATES:
        curves = saved[f"loss_auc_symmetric_{rate}"]["curves"]
        assert len(curves["run"]) == len(INITS) * len(METHODS) * 4 and set(curves["noise_rate"]) == {rate}
        for run, epoch, auc in zip(curves["run"], curves["epoch"], curves["loss_auc"]):
            assert auc == pytest.approx(runs.loss_auc(runs.samples(runs.read_run(str(study_dir / run)), epoch)),
                                        abs=1e-12)
        curves = saved[f"selection_symmetric_{rate}"]["curves"]
        assert set(curves["method"]) == {"coteaching", "dividemix"} and set(curves["noise_rate"]) == {rate}
        assert len(curves["run"]) == len(INITS) * 2 * 4 * 3
        for run, epoch, metric, value in zip(curves["run"], curves["epoch"], curves["metric"], curves["value"]):
            history = json.loads((study_dir / run / "metrics.json").read_text())["history"]
            assert value == history[epoch - 1][f"selection_{metric}"]
    for method in METHODS:
        data = saved[f"threshold_{method}"]
        assert (data["threshold"], data["noise_rate"]) == (0.5, 0.8)
        for init, row in zip(INITS, data["rows"]):
            s = _samples(study, init, method, 0.8, 4)
            assert row["epoch"] == 4 and row["at"] == pytest.approx(runs.threshold_metrics(s, 0.5))
            assert sum(row["right"]) == (~s["noisy"]).sum() and sum(row["wrong"]) == s["noisy"].sum()


@pytest.mark.parametrize("name", ["13_results"])
def test_results_figure_holds_each_runs_best_and_last(name, saved, executed, study_dir):
    assert len(_outputs(executed[name], "text/html")) == 5  # results, SSL minus random, probes, other metrics, noise
    table = saved["accuracy_symmetric"]["runs"]
    cells = set(zip(table["init"], table["method"], table["noise_rate"], table["metric"]))
    assert cells == {(i, m, r, c) for i in INITS for m in METHODS for r in RATES for c in ("best_acc", "last_acc")}
    assert len(table["run"]) == len(cells)  # one seed
    for run, metric, percent in zip(table["run"], table["metric"], table["percent"]):
        final = json.loads((study_dir / run / "metrics.json").read_text())["final"]
        assert percent == pytest.approx(100 * final[metric])


@pytest.mark.parametrize("name", ["14_data_noise"])
def test_noise_figures_hold_the_measured_and_modelled_transitions(name, saved, study_dir, study):
    for panel in saved["measured_noise"]["panels"]:
        records = runs.read_run(str(study_dir / panel["run"]))
        assert panel["noise_rate"] == records["params"]["noise_rate"]
        clean, noisy = records["clean_labels"], records["noisy_labels"]
        assert np.allclose(panel["matrix"], noise.empirical_transition(clean, noisy, 4), rtol=0, atol=1e-12)
        assert panel["actual_rate"] == pytest.approx(noise.actual_noise_rate(clean, noisy))
    assert [p["noise_rate"] for p in saved["measured_noise"]["panels"]] == sorted(RATES)
    dataset = runs.study_dataset(study)
    shown = saved["samples"]["indices"]
    assert [dataset.train_labels[i].tolist() for i in shown] == [[c] * 8 for c in range(dataset.num_classes)]
    for rate in RATES:
        data = saved[f"noise_symmetric_{rate}"]
        expected = noise.corrupt_labels(dataset.train_labels, dataset.num_classes, rate, "symmetric", seed=0)
        assert np.array_equal(data["noisy_labels"], expected)
        assert np.allclose(data["model"], noise.transition_matrix(dataset.num_classes, rate, "symmetric"))
        assert np.allclose(data["measured"], noise.empirical_transition(dataset.train_labels, expected,
                                                                        dataset.num_classes), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["15_suspects"])
def test_suspects_figures_hold_each_runs_ranking_scored_on_its_planted_noise(name, saved, executed, study):
    from nbstudy.lnl import suspects

    table = saved["precision_at_k"]["summary"]   # a DataFrame saved as {column: values}
    summary = {(r, i): {"precision_at_k": p} for r, i, p in zip(table["ranker"], table["init"], table["precision_at_k"])}
    assert saved["precision_at_k"]["noise_rate"] == 0.8 and set(summary) == {(m, i) for m in METHODS for i in INITS}
    for (method, init), row in summary.items():
        run = runs.find_run(study, method=method, init=init, noise_rate=0.8)
        table = suspects.read(run["run_dir"])
        scored = suspects.scores(table["suspicion"].to_numpy(), table["wrong_label"].to_numpy(bool))
        assert row["precision_at_k"] == scored["suspects_precision_at_k"]
        page = saved[f"suspects_{method}_{init}"]["rows"]
        assert page["index"] == table["index"][:16].tolist() and page["rank"] == list(range(1, 17))
    text = "".join(o.get("text", "") for c in executed[name].cells if c.cell_type == "code" for o in c.outputs)
    assert "of the training labels are wrong. Among the 20 most suspect labels" in text


@pytest.mark.parametrize("name", ["13_results"])
def test_results_notebook_answers_from_the_intervals(name, executed, study):
    nb = executed[name]
    if isinstance(nb, Exception):
        raise nb
    html = "".join(o["data"]["text/html"] for o in _outputs(nb, "text/html"))
    assert "SSL init minus random init" in html and "test-set sampling only" in html and "% wrong" in html
    shown = _outputs(nb, "text/markdown")[-1]["data"]["text/markdown"]
    assert shown == "\n".join(f"- {line}" for line in stats.answer(study))
    assert "simclr init beats random init for ce by" in shown and "95% CI [" in shown


@pytest.mark.parametrize("name", ANALYSIS)
def test_no_warning_reaches_a_notebooks_output(name, executed):
    nb = executed[name]
    if isinstance(nb, Exception):
        raise nb
    assert not [o["text"] for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("name") == "stderr"]


LESSON_FINDINGS = {"11_loss_distributions": findings.loss_finding, "12_separation": findings.separation_finding,
                   "14_data_noise": lambda study: findings.noise_finding(runs.measured_noise(study))}


@pytest.mark.parametrize("name", LESSON_FINDINGS)
def test_lesson_notebooks_close_with_the_studys_finding(name, executed, study):
    nb = executed[name]
    if isinstance(nb, Exception):
        raise nb
    assert nb.cells[-2].cell_type == "markdown" and nb.cells[-2].source.startswith("## What the numbers say")
    assert nb.cells[-1].outputs[0]["text"].strip() == LESSON_FINDINGS[name](study)
