import numpy as np
import pytest

from nbstudy.errors import NbstudyError
from nbstudy.noise import (actual_noise_rate, corrupt_labels, empirical_transition, noise_mask,
                           transition_matrix)

K = 5
N = 40_000
CLEAN = np.repeat(np.arange(K), N // K)
TOL = 0.015  # a few standard errors of a proportion estimated from 8000 samples per class


def test_symmetric_draws_from_all_classes():
    noisy = corrupt_labels(CLEAN, K, 0.6, "symmetric", seed=1)
    # the true class can come back: wrong fraction is r (K-1)/K, not r
    assert actual_noise_rate(CLEAN, noisy) == pytest.approx(0.6 * (K - 1) / K, abs=TOL)
    emp = empirical_transition(CLEAN, noisy, K)
    assert np.allclose(emp, transition_matrix(K, 0.6, "symmetric"), atol=TOL)
    assert np.allclose(np.diag(emp), 0.4 + 0.6 / K, atol=TOL)


def test_symmetric_exclusive_never_keeps_a_flipped_label():
    noisy = corrupt_labels(CLEAN, K, 0.5, "symmetric_exclusive", seed=2)
    assert actual_noise_rate(CLEAN, noisy) == pytest.approx(0.5, abs=TOL)
    emp = empirical_transition(CLEAN, noisy, K)
    off = emp[~np.eye(K, dtype=bool)]
    assert np.allclose(off, 0.5 / (K - 1), atol=TOL)


def test_pairflip_goes_to_next_class_only():
    noisy = corrupt_labels(CLEAN, K, 0.3, "pairflip", seed=3)
    wrong = noise_mask(CLEAN, noisy)
    assert np.all(noisy[wrong] == (CLEAN[wrong] + 1) % K)
    assert wrong.mean() == pytest.approx(0.3, abs=TOL)


def test_asymmetric_mapping_and_user_matrix():
    noisy = corrupt_labels(CLEAN, K, 0.4, "asymmetric", seed=4, mapping={0: 3, 1: 2})
    emp = empirical_transition(CLEAN, noisy, K)
    assert emp[0, 3] == pytest.approx(0.4, abs=TOL) and emp[1, 2] == pytest.approx(0.4, abs=TOL)
    assert np.allclose(np.diag(emp)[2:], 1.0)  # unmapped classes stay clean
    t = np.full((K, K), 0.05) + np.eye(K) * 0.75
    noisy = corrupt_labels(CLEAN, K, 0.0, "matrix", seed=5, matrix=t)
    assert np.allclose(empirical_transition(CLEAN, noisy, K), t, atol=TOL)


def test_same_seed_same_labels_other_seed_other_labels():
    a = corrupt_labels(CLEAN, K, 0.5, seed=7)
    b = corrupt_labels(CLEAN, K, 0.5, seed=7)
    c = corrupt_labels(CLEAN, K, 0.5, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.int64
    # pinned values: the generator (PCG64) is machine-independent, so these never change
    assert corrupt_labels(np.arange(K).repeat(2), K, 0.8, seed=0).tolist() == [2, 0, 0, 0, 3, 4, 3, 3, 3, 4]


def test_labels_not_modified_and_rate_zero_is_identity():
    labels = CLEAN.copy()
    assert np.array_equal(corrupt_labels(labels, K, 0.0, seed=0), CLEAN)
    corrupt_labels(labels, K, 0.9, seed=0)
    assert np.array_equal(labels, CLEAN)


@pytest.mark.parametrize("rate", [-0.1, 1.2])
def test_rate_out_of_range_is_a_clear_error(rate):
    with pytest.raises(NbstudyError, match=r"outside \[0, 1\]"):
        corrupt_labels(CLEAN, K, rate)


def test_bad_matrix_and_kind_errors():
    with pytest.raises(NbstudyError, match="sums to"):
        corrupt_labels(CLEAN, K, 0, "matrix", matrix=np.full((K, K), 0.3))
    with pytest.raises(NbstudyError, match="shape"):
        corrupt_labels(CLEAN, K, 0, "matrix", matrix=np.eye(3))
    with pytest.raises(NbstudyError, match="unknown noise kind"):
        corrupt_labels(CLEAN, K, 0.2, "gaussian")
    with pytest.raises(NbstudyError, match="labels must lie"):
        corrupt_labels(CLEAN, 3, 0.2)


def test_exclusive_noise_warns_at_the_unlearnable_limit():
    with pytest.warns(UserWarning, match=r"\(K-1\)/K"):
        corrupt_labels(np.array([0, 1, 2]), 3, 0.7, "symmetric_exclusive")


def test_expected_noise_rate_counts_only_labels_made_wrong():
    from nbstudy.noise import expected_noise_rate

    clean = np.repeat(np.arange(4), 25)
    assert expected_noise_rate(clean, 4, 0.6, "symmetric") == pytest.approx(0.6 * 3 / 4)
    assert expected_noise_rate(clean, 4, 0.6, "symmetric_exclusive") == pytest.approx(0.6)
    assert expected_noise_rate(clean, 4, 0.3, "pairflip") == pytest.approx(0.3)
    skewed = np.array([0] * 90 + [1] * 10)     # the class mix matters when rows differ
    m = np.array([[0.5, 0.5], [0.0, 1.0]])
    assert expected_noise_rate(skewed, 2, 0.0, "matrix", matrix=m) == pytest.approx(0.45)
    labels = corrupt_labels(np.repeat(np.arange(4), 2500), 4, 0.6, "symmetric", seed=0)
    assert actual_noise_rate(np.repeat(np.arange(4), 2500), labels) == pytest.approx(0.45, abs=0.015)
