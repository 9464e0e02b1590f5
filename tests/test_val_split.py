"""The noisy validation set: the data set's own validation split when it has one (MedMNIST ships one), its labels
corrupted like the training labels; held-out training images otherwise (val_split, docs/records.md)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nbstudy import lnl
from nbstudy.errors import NbstudyError

MINI = Path(__file__).resolve().parent / "data" / "retinamnist_mini.npz"   # 20 train, 10 val, 10 test, 5 classes


@pytest.fixture
def medmnist_file(tmp_path):
    """A MedMNIST-layout file with 300 training and 200 validation images of 4 classes (made-up pixels)."""
    rng = np.random.default_rng(0)
    sizes = {"train": 300, "val": 200, "test": 40}
    path = tmp_path / "made_8.npz"
    np.savez(path, **{f"{s}_images": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8) for s, n in sizes.items()},
             **{f"{s}_labels": (np.arange(n) % 4).reshape(-1, 1) for s, n in sizes.items()})
    return path


def _prepare(path, **kwargs):
    return lnl.prepare(dataset="medmnist", data_path=str(path), progress=False, **kwargs)


def test_auto_takes_the_data_sets_own_split_and_corrupts_its_labels_alike(medmnist_file):
    setup = _prepare(medmnist_file, noise_rate=0.6, seed=3)
    assert setup.val_split == "dataset" and setup.n_val == 200 and len(setup.val_idx) == 0
    assert len(setup.train_idx) == 300                   # no training image is held out
    clean = np.arange(200) % 4
    wrong = (setup.val_labels != clean).mean()
    assert 0.35 < wrong < 0.55                           # symmetric 0.6 over 4 classes: 0.45 expected
    again = _prepare(medmnist_file, noise_rate=0.6, seed=3)
    np.testing.assert_array_equal(again.val_labels, setup.val_labels)          # same seed, same noisy labels
    assert (_prepare(medmnist_file, noise_rate=0.6, seed=4).val_labels != setup.val_labels).any()
    # the validation labels have a stream of their own: the training labels are those of a run without it
    np.testing.assert_array_equal(_prepare(medmnist_file, noise_rate=0.6, seed=3, val_split="train").noisy_labels,
                                  setup.noisy_labels)
    np.testing.assert_array_equal(_prepare(medmnist_file, noise_rate=0.0).val_labels, clean)


def test_train_holds_out_val_fraction_of_the_training_images(medmnist_file):
    setup = _prepare(medmnist_file, val_split="train", val_fraction=0.1)
    assert setup.val_split == "train" and setup.n_val == 30 and len(setup.train_idx) == 270
    assert setup.val_images is None


def test_without_an_own_split_auto_holds_out_training_images_and_dataset_is_an_error():
    setup = lnl.prepare(dataset="synthetic", resolution=8, dataset_options={"per_class": 10, "test_per_class": 2},
                        val_fraction=0.25, batch_size=4, progress=False)
    assert setup.val_split == "train" and setup.n_val == 10
    with pytest.raises(NbstudyError, match="^val_split='dataset' but the synthetic data set has no validation "
                                           "split: use val_split 'train'"):
        lnl.prepare(dataset="synthetic", resolution=8, dataset_options={"per_class": 10, "test_per_class": 2},
                    val_split="dataset", batch_size=4, progress=False)
    with pytest.raises(NbstudyError, match="val_split='heldout' is invalid"):
        lnl.resolve(val_split="heldout")


def test_a_run_picks_its_epoch_on_the_own_split_and_records_where_it_came_from(tmp_path):
    out, data = tmp_path / "run", tmp_path / MINI.name
    shutil.copy(MINI, data)   # its image cache goes beside it: not into tests/data
    final = lnl.train_noisy(dataset="medmnist", data_path=str(data), noise_rate=0.4, epochs=2, batch_size=4,
                             device="cpu", output_dir=str(out), progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["val_split"] == "dataset" and metrics["dataset"]["n_val"] == 10
    assert metrics["dataset"]["n_train"] == 20
    assert all(row["val_acc"] is not None for row in metrics["history"])
    assert final["val_pick_epoch"] in (1, 2)
    records = np.load(out / "records.npz")
    assert records["val_noisy_labels"].shape == (10,) and records["val_indices"].size == 0
