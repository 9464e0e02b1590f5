"""What a medical reader needs beside accuracy: class priors train against test, the accuracy reached without
learning (majority class, chance), per-class recall and a confusion matrix per run, and the pretraining probes
in results.csv. Planted records with known answers."""

import csv
import json

import numpy as np
import pytest
from analysis_fixtures import CLASSES, make_study

from nbstudy.analysis import plots, runs, tables
from nbstudy.errors import NbstudyError
from nbstudy.evaluate import confusion, predict
from nbstudy.lnl import base, train_noisy
from nbstudy.study import check_study, expand, write_results

TEST_COUNTS = [100, 60, 30, 10]   # planted test set: class 0 is half of it; the fake training labels are uniform


def planted_confusion(recall_0: float) -> list:
    """A confusion matrix over TEST_COUNTS: class 0 recalled at `recall_0` (the rest called class 1), the other
    classes all right."""
    m = np.diag(TEST_COUNTS)
    m[0, 0] = round(recall_0 * TEST_COUNTS[0])
    m[0, 1] = TEST_COUNTS[0] - m[0, 0]
    return m.tolist()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The fake study with a planted confusion matrix in every run: class 0's recall is 0.9 for seed 0 and
    0.5 for seed 1, whatever the init, method and rate."""
    root = make_study(tmp_path_factory.mktemp("classes"), seeds=(0, 1), epochs=3)
    for path in root.rglob("metrics.json"):
        metrics = json.loads(path.read_text())
        c = planted_confusion(0.9 if metrics["params"]["seed"] == 0 else 0.5)
        metrics["final"].update(confusion=c, recall=(np.diag(c) / np.sum(c, 1)).tolist())
        path.write_text(json.dumps(metrics))
    runs.read_run.cache_clear()
    return runs.load_study(root)


def test_confusion_counts_true_by_predicted_and_recall_per_class():
    got = confusion([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 1, 1], 4)
    assert got["confusion"] == [[2, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert got["recall"] == [pytest.approx(2 / 3), 1.0, 0.0, None]   # class 3 has no test image


def test_class_levels_are_the_priors_the_majority_class_and_chance(study):
    levels = runs.class_levels(study)
    assert levels["class_names"] == CLASSES
    assert np.allclose(levels["train_prior"], 0.25) and np.allclose(levels["test_prior"], [0.5, 0.3, 0.15, 0.05])
    assert levels["chance"] == 0.25
    # uniform training labels: the first class is the majority one; it is half of the test set
    assert levels["majority_class"] == "stripes" and levels["majority"] == 0.5


def test_priors_table_puts_train_and_test_side_by_side(study):
    html = tables.class_priors(study).to_html()
    assert ">25.0<" in html and ">50.0<" in html and ">5.0<" in html and ">-20.0<" in html   # rings: 25 -> 5


def test_results_caption_states_the_majority_class_and_chance_levels(study):
    title = tables.results_table(study).title
    assert "majority class (stripes) scores 50.0% accuracy" in title and "chance (1/4) 25.0%" in title
    assert "k-NN probe after pretraining: simclr 71.0% (random init 52.0%)" in title


def test_results_caption_keeps_an_init_below_random_apart(tmp_path):
    below = runs.load_study(make_study(tmp_path, inits=("random", "rotation"), seeds=(0,), epochs=2,
                                       probes={"rotation": (0.60, 0.75)}))
    assert "rotation 60.0% (random init 75.0%; below it: kept apart from the answer)" in \
        tables.results_table(below).title


def test_class_recall_is_the_mean_over_seeds_per_class(study):
    html = tables.class_recall(study).to_html()
    assert ">70.0<" in html and ">100.0<" in html          # class 0: (90 + 50) / 2; the others all right
    assert "stripes" in html and "spots" in html


def test_confusion_data_is_the_chosen_runs_and_is_drawn(study):
    data = runs.confusion_data(study, init="simclr", method="ce", noise_rate=0.8, seed=1)
    assert data["run"].startswith("train/simclr-ce-symmetric-0.8-s1")
    assert data["confusion"].tolist() == planted_confusion(0.5) and data["recall"][0] == 0.5
    fig = plots.confusion_figure(data)
    assert fig.axes[0].get_xlabel() == "predicted class" and len(fig.axes[1].patches) == len(CLASSES)


def test_accuracy_plot_draws_the_majority_and_chance_levels(study):
    fig = plots.accuracy_vs_noise(runs.accuracy_data(study))
    for ax in fig.axes:
        flat = {round(line.get_ydata()[0], 6) for line in ax.get_lines() if len(set(line.get_ydata())) == 1
                and line.get_linestyle() in ("-.", ":")}
        assert {50.0, 25.0} <= flat


def test_runs_without_a_confusion_matrix_have_no_levels_and_say_how_to_get_them(tmp_path):
    old = runs.load_study(make_study(tmp_path, seeds=(0,), epochs=2))
    assert runs.class_levels(old) is None and runs.accuracy_data(old)["levels"] is None
    assert "Without learning" not in tables.results_table(old).title
    with pytest.raises(NbstudyError, match="recorded its test confusion matrix .*run the study again"):
        tables.class_priors(old)
    with pytest.raises(NbstudyError, match="recorded no confusion matrix"):
        runs.confusion_data(old)


def test_a_run_records_its_test_predictions_confusion_and_recall(tmp_path, monkeypatch):
    options = {"num_classes": 3, "per_class": 12, "test_per_class": 6}
    test_passes = []
    monkeypatch.setattr(base, "predict", lambda net, images, *a, **k: (
        test_passes.append(len(images)) if k.get("indices") is None else None, predict(net, images, *a, **k))[1])
    final = train_noisy(dataset="synthetic", dataset_options=options, resolution=16, stem="imagenet", epochs=2,
                        batch_size=8, noise_rate=0.2, output_dir=str(tmp_path / "run"), progress=False,
                        checkpoint_every=0)
    assert test_passes == [18, 18]   # one pass over the test images per epoch: the records reuse the last one
    records = runs.read_run(str(tmp_path / "run"))
    c = np.asarray(records["final"]["confusion"])
    assert c.shape == (3, 3) and c.sum(1).tolist() == [6, 6, 6]
    assert np.trace(c) / c.sum() == pytest.approx(final["last_acc"])   # the LAST epoch's predictions
    assert np.bincount(records["test_predictions"], minlength=3).tolist() == c.sum(0).tolist()
    assert records["final"]["recall"] == pytest.approx((np.diag(c) / 6).tolist())


def test_results_csv_has_each_runs_init_probe_beside_random_inits(tmp_path):
    study = {"name": "t", "dataset": {"name": "synthetic", "resolution": 32},
             "pretrain": {"methods": ["simclr"], "epochs": 1}, "train": {"methods": ["ce"], "noise_rates": [0.4]}}
    train = [r for r in expand(check_study(study), tmp_path / "t", tmp_path) if r.stage == "train"]
    for run in train:
        run.folder.mkdir(parents=True)
        init = run.params["init"]
        meta = {} if init == "random" else {"method": "simclr", "probe_acc": 0.61, "random_init_probe_acc": 0.7}
        (run.folder / "metrics.json").write_text(json.dumps({"params": {"init": init}, "init": meta,
                                                             "final": {"last_acc": 0.8}}))
    rows = list(csv.DictReader(write_results(tmp_path / "t", train, {r.name: "finished" for r in train}).open()))
    by_init = {r["init"]: r for r in rows}
    assert by_init["random"]["init_probe_acc"] == "" and by_init["random"]["random_probe_acc"] == ""
    assert by_init["simclr"]["init_probe_acc"] == "0.61" and by_init["simclr"]["random_probe_acc"] == "0.7"


def test_differences_of_a_study_without_ssl_init_runs_is_an_empty_table_that_says_why(tmp_path):
    only_random = runs.load_study(make_study(tmp_path, inits=("random",), seeds=(0,), epochs=2))
    t = tables.differences(only_random)
    assert t.diff.empty and "no SSL-init run has a random-init run of the same seed" in t.title
    assert "<table" in t.style().to_html()
