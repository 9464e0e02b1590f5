"""The cleanlab baseline: out-of-sample probabilities, cleanlab's ranking, scored as a run's suspects are."""

from pathlib import Path

import numpy as np
import pytest

from nbstudy.data import load_dataset
from nbstudy.lnl import label_issues, suspects


def test_cleanlab_puts_the_labels_its_probabilities_contradict_first():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    probs = np.full((60, 3), 0.05)
    probs[np.arange(60), labels] = 0.9                 # every label agrees with the probabilities ...
    wrong = np.zeros(60, bool)
    wrong[rng.choice(60, 6, replace=False)] = True       # ... except 6, whose true class has the mass
    given = labels.copy()
    given[wrong] = (labels[wrong] + 1) % 3
    found = label_issues.find_suspects(probs, given, wrong)
    assert found["suspects_k"] == 6 and found["suspects_precision_at_k"] == 1.0 and found["suspects_auc"] == 1.0
    assert np.array_equal(found["issues"], wrong) and found["n_issues"] == 6
    assert np.allclose(found["suspicion"][wrong], 0.95) and np.allclose(found["suspicion"][~wrong], 0.1)
    assert found["suspects_auc"] == suspects.scores(found["suspicion"], wrong)["suspects_auc"]


def test_probabilities_are_out_of_sample():
    """Labels that have nothing to do with the features: fitted in sample, 512 features would explain 90
    labels perfectly; predicted out of sample, the given label gets about its prior."""
    rng = np.random.default_rng(1)
    feats, labels = rng.normal(size=(90, 512)), np.repeat([0, 1, 2], 30)
    probs = label_issues.out_of_sample_probabilities(feats, labels, 3)
    assert probs.shape == (90, 3) and np.allclose(probs.sum(1), 1)
    assert probs[np.arange(90), labels].mean() < 0.5


def test_the_baseline_on_real_images_finds_planted_noise_better_than_chance(one_torch_thread, tmp_path):
    """BreastMNIST (the shipped 110-image cut, tests/data/README.md), symmetric 0.4 (13% wrong: 2 classes),
    random-init features: measured AUC 0.72 on this machine."""
    from nbstudy import noise

    ds = load_dataset("medmnist", data_path=str(Path(__file__).parent / "data" / "breastmnist_mini.npz"),
                      resolution=28, cache_dir=str(tmp_path))
    noisy = noise.corrupt_labels(ds.train_labels, 2, 0.4, "symmetric", seed=0)
    wrong = noisy != ds.train_labels
    found = label_issues.find_suspects(label_issues.out_of_sample_probabilities(label_issues.features(ds), noisy, 2),
                                       noisy, wrong)
    assert found["suspects_auc"] > 0.6, found["suspects_auc"]


def test_a_class_with_one_label_is_one_line():
    from nbstudy.errors import NbstudyError

    with pytest.raises(NbstudyError, match="a class has 1 training label"):
        label_issues.out_of_sample_probabilities(np.zeros((5, 2)), np.array([0, 0, 0, 0, 1]), 2)
