"""Instance-dependent noise (Xia et al. 2020): the planted rate, the same labels for the same seed, and a
wrong label that depends on the image."""

import numpy as np
import pytest

from nbstudy import noise
from nbstudy.data import load_dataset
from nbstudy.errors import NbstudyError


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", resolution=16, num_classes=4, per_class=500, test_per_class=1)


@pytest.mark.parametrize("rate", [0.2, 0.4])
def test_the_planted_rate_within_sampling_error_and_the_same_labels_for_the_same_seed(data, rate):
    noisy = noise.corrupt_labels(data.train_labels, 4, rate, "instance", seed=3, images=data.train_images)
    wrong = noise.actual_noise_rate(data.train_labels, noisy)
    assert abs(wrong - rate) < 4 * np.sqrt(rate * (1 - rate) / len(noisy)) + 0.01, wrong   # 2000 labels
    again = noise.corrupt_labels(data.train_labels, 4, rate, "instance", seed=3, images=data.train_images)
    other = noise.corrupt_labels(data.train_labels, 4, rate, "instance", seed=4, images=data.train_images)
    assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)
    assert noise.expected_noise_rate(data.train_labels, 4, rate, "instance") == rate


def test_each_image_has_its_own_row_and_the_wrong_label_depends_on_the_image(data):
    rows = noise.instance_transitions(data.train_images, data.train_labels, 4, 0.4, seed=0)
    y = data.train_labels
    assert np.allclose(rows.sum(1), 1) and (rows >= 0).all()
    q = 1 - rows[np.arange(len(y)), y]
    assert q.std() > 0.05 and abs(q.mean() - 0.4) < 0.02     # flip rates spread around the rate
    direction = rows / q[:, None]
    direction[np.arange(len(y)), y] = 0
    stripes = direction[y == 0]                              # one true class: which wrong class varies by image
    assert stripes.std(axis=0).max() > 0.1, stripes.std(axis=0)
    # the same image with the same label gets the same share of wrong classes (only q_i is drawn per sample)
    twice = np.concatenate([data.train_images[:1], data.train_images[:1]])
    pair = noise.instance_transitions(twice, y[:2] * 0 + y[0], 4, 0.4, seed=0)
    share = pair / (1 - pair[:, [y[0]]])
    share[:, y[0]] = 0
    assert np.allclose(share[0], share[1])
    # unlike symmetric noise, where every image of a class shares one row
    assert np.ptp(noise.transition_matrix(4, 0.4, "symmetric")[y[y == 0]], axis=0).max() == 0


def test_instance_noise_needs_the_images_and_has_no_single_matrix():
    with pytest.raises(NbstudyError, match="needs the images: pass images="):
        noise.corrupt_labels(np.zeros(4, int), 2, 0.2, "instance")
    with pytest.raises(NbstudyError, match="instance noise has no single transition matrix"):
        noise.transition_matrix(2, 0.2, "instance")


def test_a_run_with_instance_noise_records_its_actual_rate(tmp_path, one_torch_thread):
    from nbstudy.lnl import load_records, train_noisy

    final = train_noisy(dataset_options={"num_classes": 2, "per_class": 30, "test_per_class": 5}, resolution=16,
                        stem="imagenet", method="coteaching", noise_kind="instance", noise_rate=0.3, epochs=1,
                        batch_size=16, output_dir=str(tmp_path), progress=False)
    rec = load_records(tmp_path)
    assert rec["noise"]["kind"] == "instance" and final["actual_noise_rate"] == pytest.approx(rec["noise_mask"].mean())
    assert rec["params"]["method_options"]["forget_rate"] == 0.3   # Co-teaching told the rate the noise plants
