import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from analysis_fixtures import make_study
from matplotlib.figure import Figure

from nbstudy import noise
from nbstudy.analysis import plots, runs, tables
from nbstudy.errors import NbstudyError
from nbstudy.plain import jsonable
from nbstudy.synthetic import make_synthetic



@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("analysis"))


@pytest.fixture(scope="module")
def study(study_dir):
    return runs.load_study(study_dir)


def test_load_study_finds_every_run_and_names_inits(study, study_dir):
    assert len(study.runs) == 2 * 3 * 2 * 2
    assert study.choices("init") == ["random", "simclr"]
    assert study.choices("noise_rate") == [0.4, 0.8]
    assert study.synthetic
    row = study.runs.iloc[0]
    assert row["run"].startswith("train/") and (study_dir / row["run"] / "records.npz").is_file()
    assert {"best_acc", "last_acc", "val_pick_acc", "actual_noise_rate"} <= set(study.runs.columns)
    assert "SYNTHETIC data" in study.summary() and "24 training runs" in study.summary()


def test_load_study_skips_unfinished_runs_and_ignores_folder_names(study_dir, tmp_path):
    copy = shutil.copytree(study_dir, tmp_path / "s")
    (copy / "elsewhere" / "deep").mkdir(parents=True)
    shutil.move(copy / "train" / "simclr-ce-symmetric-0.4-s0-0123abcd", copy / "elsewhere" / "deep" / "x")
    unfinished = copy / "train" / "random-ce-symmetric-0.4-s0-0123abcd" / "metrics.json"
    metrics = json.loads(unfinished.read_text())
    del metrics["final"]
    metrics["params"]["extra_param"] = 3  # new columns must not break anything
    unfinished.write_text(json.dumps(metrics))
    s = runs.load_study(copy)
    assert len(s.runs) == 23
    assert "elsewhere/deep/x" in set(s.runs.run)


@pytest.mark.parametrize("given, message", [("", "study_dir is empty"), ("/nonexistent/study", "does not exist")])
def test_load_study_errors_name_the_fix(given, message):
    with pytest.raises(NbstudyError, match=message):
        runs.load_study(given)


def test_load_study_without_runs_is_an_error(tmp_path):
    with pytest.raises(NbstudyError, match="no finished training run"):
        runs.load_study(tmp_path)


def test_init_name_from_checkpoint_metadata_or_folder():
    assert runs.init_name({"params": {"init": "random"}}) == "random"
    path = "/o/s/pretrain/rotation-1a2b3c4d/backbone.pt"
    assert runs.init_name({"params": {"init": path}, "init": {"method": "jigmag"}}) == "jigmag"
    assert runs.init_name({"params": {"init": path}, "init": {"init": path}}) == "rotation"


def test_select_names_the_existing_values(study):
    assert len(runs.select(study, method="ce", noise_rate=0.8)) == 4
    with pytest.raises(NbstudyError, match=r"noise_rate=0.3.*0.4, 0.8"):
        runs.select(study, noise_rate=0.3)
    subset = runs.Study(study.dir, study.runs[study.runs.init == "random"].copy(), True)
    subset.runs.loc[subset.runs.method == "ce", "init"] = "simclr"
    assert runs.select(subset, init="random", method="ce").empty  # a combination not run: no error
    with pytest.raises(NbstudyError, match="no run with init='random', method='ce': that combination was not run"):
        runs.find_run(subset, init="random", method="ce")
    run = runs.find_run(study, init="simclr", method="dividemix")
    assert (run["seed"], run["noise_rate"], run["noise_kind"]) == (0, 0.4, "symmetric")


def test_samples_leave_out_held_out_and_map_epochs(study):
    records = runs.read_run(runs.find_run(study, method="ce")["run_dir"])
    s = runs.samples(records, 3)
    assert s["epoch"] == 3 and len(s["loss"]) == 200 and np.isfinite(s["loss"]).all()
    assert s["noisy"].sum() == records["noise_mask"][records["train_indices"]].sum()
    assert runs.samples(records, 99)["epoch"] == 6  # beyond the last: the last recorded
    assert runs.samples(records, 0)["epoch"] == 1
    assert runs.recorded_epochs(study) == [1, 2, 3, 4, 5, 6]
    assert runs.key_epochs(study) == [1, 3, 4, 6]


def _samples(loss, selection, noisy):
    return {"epoch": 1, "loss": np.asarray(loss, float), "selection": np.asarray(selection, float),
            "noisy": np.asarray(noisy, bool)}


def test_clean_score_uses_probabilities_else_the_small_loss_criterion():
    s = _samples([0.1, 0.2, 2.0, 3.0], [0.9, 0.8, 0.3, 0.1], [0, 0, 1, 1])
    score, name = runs.clean_score(s)
    assert name == "clean probability" and np.allclose(score, [0.9, 0.8, 0.3, 0.1])
    kept = _samples([0.0, 1.0, 2.0, 4.0], [1, 1, 0, np.nan], [0, 0, 1, 1])
    score, name = runs.clean_score(kept)
    assert name == "1 - normalised loss" and np.allclose(score, [1, 0.75, 0.5, 0])


def test_threshold_metrics_count_right_labels_kept():
    s = _samples([0] * 5, [0.9, 0.8, 0.6, 0.4, 0.2], [0, 0, 1, 0, 1])
    at = runs.threshold_metrics(s, 0.5)  # keeps 0.9, 0.8 (right) and 0.6 (wrong)
    assert at["precision"] == pytest.approx(2 / 3) and at["recall"] == pytest.approx(2 / 3)
    assert at["auc"] == pytest.approx(5 / 6)
    assert runs.threshold_metrics(s, 0.95)["precision"] is None  # nothing kept
    precision, recall = runs.threshold_curve(s, [0.5, 0.95, 0.0])
    assert np.allclose(precision, [2 / 3, np.nan, 3 / 5], equal_nan=True) and np.allclose(recall, [2 / 3, 0, 1])


def test_loss_auc_shows_the_pretraining_story(study):
    curves = runs.loss_auc_curves(study)
    early = curves[(curves.epoch == 1) & (curves.noise_rate == 0.8)].groupby("init").loss_auc.mean()
    assert early["simclr"] > early["random"] > 0.5
    assert len(curves) == 24 * 6


def test_selection_curves_come_from_the_runs_history(study):
    curves = runs.selection_curves(study)
    assert set(curves.method) == {"coteaching", "dividemix"}  # CE selects nothing
    run = runs.find_run(study, init="random", method="dividemix", noise_rate=0.8, seed=1)
    history = runs.read_run(run["run_dir"])["history"]
    mine = curves[(curves.run == run["run"]) & (curves.metric == "precision")].value.tolist()
    assert mine == [h["selection_precision"] for h in history]


def test_results_table_mean_std_and_best_marked(study):
    t = tables.results_table(study)
    assert list(t.mean.columns) == [(0.4, "BEST"), (0.4, "LAST"), (0.8, "BEST"), (0.8, "LAST")]
    assert list(t.mean.index)[:2] == [("ce", "random"), ("ce", "simclr")]
    ce = runs.select(study, method="ce", init="random", noise_rate=0.8).last_acc * 100
    assert t.mean.loc[("ce", "random"), (0.8, "LAST")] == pytest.approx(ce.mean())
    assert t.cells().loc[("ce", "random"), (0.8, "LAST")] == f"{ce.mean():.1f} ± {ce.std():.1f}"
    # the fake study's story: CE memorises at the high rate, and pretraining wins in every column
    assert t.mean.loc[("ce", "random"), (0.8, "LAST")] < t.mean.loc[("ce", "random"), (0.8, "BEST")]
    assert t.best.xs("simclr", level="init").all().all() and not t.best.xs("random", level="init").any().any()
    html = t.style().to_html()
    assert "font-weight: bold" in html and "SYNTHETIC data" in html
    assert ">0.8<" in html and "0.800000" not in html   # noise rates as written, not float dumps


def test_results_table_marks_best_within_each_method(study):
    rows = study.runs.copy()
    rows.loc[(rows.method == "dividemix") & (rows.init == "random"), "best_acc"] = 0.99
    t = tables.results_table(runs.Study(study.dir, rows, synthetic=False))
    assert t.best.loc[("dividemix", "random"), (0.4, "BEST")]
    assert t.best.loc[("ce", "simclr"), (0.4, "BEST")]  # other methods' blocks unaffected
    assert "SYNTHETIC" not in t.title


def test_results_table_one_seed_shows_the_mean_only(study):
    t = tables.results_table(runs.Study(study.dir, runs.select(study, seed=0), study.synthetic))
    assert "±" not in t.cells().iloc[0, 0] and "1 seed(s)" in t.title


def test_results_table_unknown_metric_is_an_error(study):
    with pytest.raises(NbstudyError, match="no top5_acc column"):
        tables.results_table(study, {"top-5": "top5_acc"})


def test_actual_noise_table(study):
    styled = tables.actual_noise(study)
    assert "SYNTHETIC data" in styled.to_html() and ">0.8<" in styled.to_html() and "0.800000" not in styled.to_html()
    t = styled.data
    assert t.loc[("symmetric", 0.8), "actual, mean"] == pytest.approx(study.runs[study.runs.noise_rate == 0.8]
                                                                      .actual_noise_rate.mean())


def test_filter_mosaic_scales_each_filter_around_grey():
    f = np.zeros((64, 3, 3, 3))
    f[0, 0, 0, 0], f[1, 2, 1, 1] = -2.0, 0.5
    img = plots.filter_mosaic(f)
    assert img.shape == (8 * 4 + 1, 8 * 4 + 1, 3)
    assert img[1, 1, 0] == 0.0 and img[1, 2, 0] == 0.5  # filter 0: min -> black, zero -> grey
    assert img[1 + 1, 4 + 1 + 1, 2] == 1.0  # filter 1's max -> white
    assert img[0, 0, 0] == 1.0  # the gap


def test_filters_data_holds_each_runs_initial_and_final_filters(study):
    rows = study.runs[~((study.runs.init == "simclr") & (study.runs.method == "ce"))]  # one cell not run
    data = runs.filters_data(runs.Study(study.dir, rows, True), noise_rate=0.4, seed=1)
    assert (data["noise_rate"], data["noise_kind"], data["seed"]) == (0.4, "symmetric", 1)
    assert data["inits"] == ["random", "simclr"] and data["methods"] == ["ce", "coteaching", "dividemix"]
    assert set(data["final"]["simclr"]) == {"coteaching", "dividemix"} and len(data["final"]["random"]) == 3
    records = runs.read_run(runs.find_run(study, init="simclr", method="coteaching", noise_rate=0.4, seed=1)["run_dir"])
    assert data["initial"]["simclr"].shape == (64, 3, 3, 3)
    assert np.array_equal(data["initial"]["simclr"], records["filters_initial"])
    assert np.array_equal(data["final"]["simclr"]["coteaching"], records["filters_final"])


def test_filters_figure_rows_show_the_initial_and_final_filters(study):
    rows = study.runs[~((study.runs.init == "simclr") & (study.runs.method == "ce"))]  # one cell not run
    data = runs.filters_data(runs.Study(study.dir, rows, True))
    axes = np.array(plots.filters_figure(data).axes).reshape(2, 4)
    assert axes[1, 0].images and not axes[1, 1].images and axes[1, 2].images
    assert np.allclose(axes[1, 0].images[0].get_array(), plots.filter_mosaic(data["initial"]["simclr"]))
    assert np.allclose(axes[1, 2].images[0].get_array(), plots.filter_mosaic(data["final"]["simclr"]["coteaching"]))


def _title(fig: Figure) -> str:
    return fig._suptitle.get_text()


@pytest.mark.parametrize("gather, draw", [
    (lambda s: runs.filters_data(s), plots.filters_figure),
    (lambda s: runs.loss_distributions(s, [1, 6], methods=["ce"]), plots.loss_histograms),
    (lambda s: runs.curves_at(s, runs.selection_curves(s)), plots.selection_figure),
    (lambda s: runs.curves_at(s, runs.loss_auc_curves(s), noise_rate=0.4), plots.loss_auc_figure),
    (lambda s: runs.threshold_data(s, "coteaching", 2, 0.3), plots.threshold_figure),
    (lambda s: runs.accuracy_data(s), plots.accuracy_vs_noise),
    (lambda s: runs.measured_noise(s), plots.measured_noise_figure),
], ids=["filters", "loss", "selection", "loss_auc", "threshold", "accuracy", "measured_noise"])
def test_every_study_figure_draws_from_its_data_alone_and_says_synthetic(study, study_dir, tmp_path, gather, draw):
    copy = runs.load_study(shutil.copytree(study_dir, tmp_path / "s"))
    data = gather(copy)
    plain = gather(runs.Study(copy.dir, copy.runs, synthetic=False))
    shutil.rmtree(copy.dir)  # drawing reads nothing from the study folder
    fig = draw(data)
    assert isinstance(fig, Figure) and "SYNTHETIC data" in _title(fig)
    assert "SYNTHETIC" not in _title(draw(plain))
    json.dumps(jsonable(data), allow_nan=False)  # what a notebook saves with the figure


def test_loss_distributions_hold_each_panels_histograms_and_auc(study):
    data = runs.loss_distributions(study, [2, 99], methods=["ce", "dividemix"], inits=["simclr"], seed=1)
    assert (data["noise_rate"], data["seed"], data["epochs"]) == (0.8, 1, [2, 99])
    assert [(p["method"], p["epoch"]) for p in data["panels"][0]] == [("ce", 2), ("ce", 6), ("dividemix", 2),
                                                                      ("dividemix", 6)]
    panel = data["panels"][0][1]
    run = runs.find_run(study, init="simclr", method="ce", noise_rate=0.8, seed=1)
    s = runs.samples(runs.read_run(run["run_dir"]), 6)
    assert panel["loss_auc"] == runs.loss_auc(s)
    assert (panel["n_right"], panel["n_wrong"]) == ((~s["noisy"]).sum(), s["noisy"].sum())
    widths = np.diff(panel["edges"])
    assert len(panel["edges"]) == 40 and panel["edges"][-1] == pytest.approx(np.quantile(s["loss"], 0.99))
    assert (panel["right"] * widths).sum() == pytest.approx(1) and (panel["wrong"] * widths).sum() == pytest.approx(1)
    right, _ = np.histogram(np.clip(s["loss"][~s["noisy"]], 0, panel["edges"][-1]), panel["edges"], density=True)
    assert np.allclose(panel["right"], right)


def test_loss_distributions_leave_combinations_not_run_empty(study):
    rows = study.runs[~((study.runs.init == "simclr") & (study.runs.method == "ce"))]
    data = runs.loss_distributions(runs.Study(study.dir, rows, True), [1], methods=["ce"])
    assert data["panels"][0][0]["init"] == "random" and data["panels"][1] == [None]
    fig = plots.loss_histograms(data)
    assert fig.axes[0].axison and not fig.axes[1].axison


def test_loss_histograms_split_right_from_wrong_labels(study):
    data = runs.loss_distributions(study, [6], methods=["ce"], inits=["random"])
    ax = plots.loss_histograms(data).axes[0]
    panel = data["panels"][0][0]
    assert ax.get_title() == f"random · ce · ep 6\nloss AUC {panel['loss_auc']:.2f}"
    assert ax.get_legend_handles_labels()[1] == [f"right label ({panel['n_right']})",
                                                 f"wrong label ({panel['n_wrong']})"]
    heights = [p.get_height() for p in ax.patches]
    assert np.allclose(heights, np.concatenate([panel["right"], panel["wrong"]]))


def test_threshold_figure_reports_the_metrics_at_the_threshold(study):
    data = runs.threshold_data(study, "dividemix", 6, 0.7, inits=["random"])
    fig = plots.threshold_figure(data)
    s = runs.samples(runs.read_run(runs.find_run(study, init="random", method="dividemix", noise_rate=0.8)
                                   ["run_dir"]), 6)
    row = data["rows"][0]
    at = runs.threshold_metrics(s, 0.7)
    assert row["at"] == at and row["score_name"] == "clean probability"
    assert f"precision {at['precision']:.2f}, recall {at['recall']:.2f}" in fig.axes[0].get_title()
    assert row["right"].sum() == (~s["noisy"]).sum() and row["wrong"].sum() == s["noisy"].sum()
    precision, recall = runs.threshold_curve(s, row["thresholds"])
    assert np.array_equal(row["precision"], precision, equal_nan=True) and np.array_equal(row["recall"], recall)
    assert np.allclose(fig.axes[1].lines[0].get_ydata(), precision, equal_nan=True)


def test_accuracy_data_is_each_runs_final_metrics_in_percent(study, study_dir):
    data = runs.accuracy_data(study, metrics=("best_acc", "val_pick_acc"))
    assert len(data["runs"]) == 2 * len(study.runs) and set(data["runs"].metric) == {"best_acc", "val_pick_acc"}
    for row in data["runs"].itertuples():
        final = json.loads((study_dir / row.run / "metrics.json").read_text())["final"]
        assert row.percent == pytest.approx(final[row.metric] * 100)
    fig = plots.accuracy_vs_noise(data)
    assert [t.get_text() for t in fig.axes[-1].get_legend().get_texts()][-2:] == ["BEST", "noisy-val pick"]


def test_measured_noise_is_the_transition_of_each_runs_labels(study):
    data = runs.measured_noise(study)
    assert [(p["noise_kind"], p["noise_rate"]) for p in data["panels"]] == [("symmetric", 0.4), ("symmetric", 0.8)]
    for p in data["panels"]:
        records = runs.read_run(str(study.dir / p["run"]))
        clean, noisy = records["clean_labels"], records["noisy_labels"]
        assert np.array_equal(p["matrix"], noise.empirical_transition(clean, noisy, 4))
        assert p["actual_rate"] == noise.actual_noise_rate(clean, noisy)


def _dataset():
    images, labels, _, _, names = make_synthetic(num_classes=3, per_class=20, test_per_class=1, image_size=16)
    return SimpleNamespace(train_images=images, train_labels=labels, class_names=names, num_classes=3,
                           synthetic=True)


def test_noise_example_corrupts_the_training_labels():
    dataset = _dataset()
    example = runs.noise_example(dataset, 0.6, "symmetric", seed=1)
    noisy = noise.corrupt_labels(dataset.train_labels, 3, 0.6, "symmetric", seed=1)
    assert np.array_equal(example["noisy_labels"], noisy) and example["warning"] is None
    assert np.array_equal(example["model"], noise.transition_matrix(3, 0.6, "symmetric"))
    assert np.array_equal(example["measured"], noise.empirical_transition(dataset.train_labels, noisy, 3))
    assert example["actual_rate"] == noise.actual_noise_rate(dataset.train_labels, noisy)


def test_noise_figure_shows_model_and_measured_matrices():
    dataset = _dataset()
    example = runs.noise_example(dataset, 0.6, "symmetric", seed=1)
    fig = plots.noise_figure(dataset, example, per_class=4)
    assert "SYNTHETIC data" in _title(fig)
    titles = [ax.get_title() for ax in fig.axes]
    assert "noise model: symmetric, rate 0.6" in titles
    assert f"measured: {example['actual_rate']:.1%} of labels wrong" in titles
    captions = [ax.get_title() for ax in fig.axes if ax.images]
    shown = np.concatenate(plots.class_examples(dataset.train_labels, 3, 4))
    assert captions == [dataset.class_names[example["noisy_labels"][i]] for i in shown]


def test_noise_figure_warns_in_its_title_when_unlearnable():
    dataset = _dataset()
    example = runs.noise_example(dataset, 0.7, "symmetric_exclusive")
    assert "unlearnable" in example["warning"]
    assert "unlearnable" in _title(plots.noise_figure(dataset, example, per_class=2))


def test_samples_figure_shows_each_class():
    fig = plots.samples_figure(_dataset(), per_class=3)
    assert [ax.get_ylabel() for ax in fig.axes[::3]] == ["stripes", "checks", "rings"]
    assert all(ax.images for ax in fig.axes)


def test_load_study_counts_only_the_runs_results_csv_lists(study_dir, tmp_path):
    """Run folders left from an earlier version of the study file are not counted with the current ones."""
    copy = shutil.copytree(study_dir, tmp_path / "s")
    listed = sorted(str(p.parent.relative_to(copy)) for p in copy.rglob("metrics.json"))[:5]
    (copy / "results.csv").write_text("run,status\n" + "".join(f"{r},finished\n" for r in listed))
    assert sorted(runs.load_study(copy).runs.run) == listed
