"""The analysis notebooks' closing findings (nbstudy.analysis.findings): numbers from the runs, right at the
edges (noise 0, given labels), and no warning on the way."""

import warnings

import numpy as np
import pytest
from analysis_fixtures import forget_wrong_labels, make_study

from nbstudy import widgets
from nbstudy.analysis import findings, plots, runs


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    # rates 0 and 0.8: the fake CE memorises in its second half, the selecting methods keep their gap
    return runs.load_study(make_study(tmp_path_factory.mktemp("f"), rates=(0.0, 0.8), seeds=(0, 1), epochs=6))


def test_loss_finding_states_the_first_epoch_gap_and_which_method_memorised(study):
    text = findings.loss_finding(study)
    assert text.startswith("At symmetric noise 0.8, epoch 1:")
    curves = runs.loss_auc_curves(study)
    first = curves[(curves.noise_rate == 0.8) & (curves.epoch == 1)]
    per_init = first.groupby(["method", "init"]).loss_auc.mean().groupby("init").mean()
    assert f"{per_init['random']:.2f} from random init, {per_init['simclr']:.2f} from simclr init" in text
    sentence = {s.split(":")[0]: s for s in text.split(". ")}
    ce, coteaching = sentence["ce"], sentence["coteaching"]
    assert "fell to" in ce and "memorisation" in ce          # the planted memorisation is found
    assert "fell" not in coteaching and "held at" in coteaching  # and not where none was planted


def test_separation_finding_is_the_last_epochs_precision_and_recall_by_init(study):
    text = findings.separation_finding(study)
    curves = runs.selection_curves(study)
    last = curves[(curves.noise_rate == 0.8) & (curves.epoch == 6)]
    mean = last.groupby(["method", "init", "metric"]).value.mean()
    for method in ("coteaching", "dividemix"):
        for init in ("random", "simclr"):
            p, r = mean[(method, init, "precision")], mean[(method, init, "recall")]
            assert f"{p:.0%} from {init} init (keeping {r:.0%} of the right labels)" in text
    wrong = runs.select(study, noise_rate=0.8).actual_noise_rate.mean()
    assert f"({wrong:.0%} of the training labels wrong; keeping samples at random, {1 - wrong:.0%}" in text
    assert "ce:" not in text   # CE selects nothing


def test_noise_finding_names_the_actual_rate_the_commonest_flip_and_an_unlearnable_class():
    names = ["a", "b", "c"]
    swamped = np.array([[0.3, 0.7, 0.0], [0.0, 0.9, 0.1], [0.05, 0.0, 0.95]])
    measured = {"panels": [
        {"noise_kind": "symmetric", "noise_rate": 0.0, "class_names": names, "matrix": np.eye(3), "actual_rate": 0.0},
        {"noise_kind": "pairflip", "noise_rate": 0.7, "class_names": names, "matrix": swamped, "actual_rate": 0.3}]}
    text = findings.noise_finding(measured)
    assert text.index("pairflip noise 0.7") < text.index("symmetric noise 0 ")   # highest rate first
    assert "30% of the training labels are wrong (below the nominal rate" in text
    assert "the most common wrong label is 'b' on 'a' images (70% of them)" in text
    assert "'a' images carry a wrong label more often than their own" in text and "'b'" not in text.split("own")[0][-8:]
    assert "At symmetric noise 0 no label was changed" in text


def test_at_noise_zero_everything_draws_and_says_so_without_a_warning(study):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = runs.loss_distributions(study, [1, 6], noise_rate=0.0)
        fig = plots.loss_histograms(data)
        assert findings.loss_finding(study, noise_rate=0.0) == ("At symmetric noise 0 no label is wrong, so there is "
                                                               "no right / wrong split to measure.")
        assert "nothing for a selection to leave out" in findings.separation_finding(study, noise_rate=0.0)
        widgets.selection_explorer(study)   # draws every rate, noise 0 included
        widgets.loss_explorer(study)
        findings.noise_finding(runs.measured_noise(study))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("no wrong labels") == len([p for row in data["panels"] for p in row if p])
    assert all(p["n_wrong"] == 0 and not p["wrong"].any() for row in data["panels"] for p in row if p)


def test_without_known_wrong_labels_the_findings_say_why(tmp_path):
    given = make_study(tmp_path, inits=("random",), methods=("ce", "coteaching"), rates=(0.4,), seeds=(0,), epochs=2)
    for run in runs.load_study(given).runs.run_dir:
        forget_wrong_labels(run)   # as a run on the user's own labels with no planted noise records it
    runs.read_run.cache_clear()
    study = runs.load_study(given)
    for finding in (findings.loss_finding, findings.separation_finding):
        assert finding(study) == f"These runs {runs.UNKNOWN_WRONG}."

