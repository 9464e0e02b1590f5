"""Given labels (the `labels` data set option): a CSV overrides the training labels; each mismatch is one line."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from nbstudy.analysis import runs
from nbstudy.data import load_dataset
from nbstudy.errors import NbstudyError
from nbstudy.lnl import load_records, suspects, train_noisy


@pytest.fixture
def folder(tmp_path):
    """train/ and test/ with classes benign and malignant, 4 + 2 PNGs each."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for c in ("benign", "malignant"):
            (tmp_path / "set" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(tmp_path / "set" / split / c / f"{i}.png")
    return tmp_path / "set"


def _csv(path, text):
    path.write_text(text)
    return str(path)


def test_a_labels_file_by_path_overrides_the_training_labels_only(folder, tmp_path):
    own = load_dataset("image_folder", str(folder), cache_dir=str(tmp_path / "c"))
    assert own.train_files[0] == "train/benign/0.png" and own.train_labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    rows = [f"{name},{'malignant' if name.endswith('0.png') else 'benign' if 'benign' in name else 1}"
            for name in own.train_files]
    ds = load_dataset("image_folder", str(folder), cache_dir=str(tmp_path / "c"),
                      labels=_csv(tmp_path / "labels.csv", "path,label\n" + "\n".join(reversed(rows)) + "\n"))
    assert ds.train_labels.tolist() == [1, 0, 0, 0, 1, 1, 1, 1]
    assert np.array_equal(ds.test_labels, own.test_labels) and ds.labels_file == str(tmp_path / "labels.csv")



def test_rows_for_images_left_out_as_unreadable_are_not_used(folder, tmp_path):
    """skip_unreadable leaves a damaged image out, and its row in a labels file that lists every file goes with it
    (it said "is not a training image of the data set", which misleads: the path is right)."""
    (folder / "train" / "benign" / "9.png").write_bytes(b"not a png")
    rows = [f"train/{c}/{i}.png,{c}" for c in ("benign", "malignant") for i in range(4)] + ["train/benign/9.png,malignant"]
    labels = _csv(tmp_path / "labels.csv", "path,label\n" + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match="labels.csv: 1 row.s. are for images left out as unreadable .skip_unreadable."):
        ds = load_dataset("image_folder", str(folder), cache_dir=str(tmp_path / "c"), skip_unreadable=True, labels=labels)
    assert ds.train_labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and len(ds.unreadable_skipped) == 1
    with pytest.raises(NbstudyError, match="train/benign/8.png is not a training image"):
        load_dataset("image_folder", str(folder), cache_dir=str(tmp_path / "c"), skip_unreadable=True,
                     labels=_csv(tmp_path / "more.csv", "path,label\n" + "\n".join(rows) + "\ntrain/benign/8.png,1\n"))

def test_a_labels_file_by_index_for_a_set_without_files(tmp_path):
    own = load_dataset("synthetic", per_class=3, test_per_class=2, num_classes=2)
    flipped = 1 - own.train_labels
    text = "index,label\n" + "".join(f"{i},{y}\n" for i, y in enumerate(flipped))
    ds = load_dataset("synthetic", per_class=3, test_per_class=2, num_classes=2,
                      labels=_csv(tmp_path / "l.csv", text))
    assert np.array_equal(ds.train_labels, flipped)


@pytest.mark.parametrize("text, message", [
    (None, "does not exist: fix the dataset option labels"),
    ("file,label\n", "the first line must be the header path,label or index,label, got 'file,label'"),
    ("", "the first line must be the header path,label or index,label, but the file is empty"),
    ("path,label\ntrain/benign/9.png,benign\n", "line 2: train/benign/9.png is not a training image of the data set"),
    ("path,label\ntrain/benign/0.png,tumour\n", "line 2: unknown class 'tumour': use one of benign, malignant or an "
                                               "index 0..1"),
    ("path,label\ntrain/benign/0.png,benign\ntrain/benign/0.png,1\n", "line 3: path train/benign/0.png has a label "
                                                                      "already"),
    ("path,label\ntrain/benign/0.png,benign\n", "has no label for 7 of the 8 training images (first: path "
                                               "train/benign/1.png): give every training image a row"),
    ("index,label\n8,0\n", "line 2: index 8 is outside the training split (0..7)"),
    ("index,label\nx,0\n", "line 2: index 'x' is not a whole number"),
    ("index,label\n0,0,extra\n", "line 2: expected 2 columns (index,label), got 3"),
])
def test_each_mismatch_is_one_line(folder, tmp_path, text, message):
    path = tmp_path / "labels.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(NbstudyError) as e:
        load_dataset("image_folder", str(folder), cache_dir=str(tmp_path / "c"), labels=str(path))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_paths_for_a_set_without_files_and_a_class_the_labels_leave_out(tmp_path):
    with pytest.raises(NbstudyError, match="has no image files: name them by index"):
        load_dataset("synthetic", labels=_csv(tmp_path / "l.csv", "path,label\na.png,0\n"))
    text = "index,label\n" + "".join(f"{i},0\n" for i in range(6))
    with pytest.raises(NbstudyError, match="1 of 2 classes never appear in the training labels"):
        load_dataset("synthetic", per_class=3, test_per_class=2, num_classes=2, labels=_csv(tmp_path / "l.csv", text))


def test_given_labels_without_planted_noise_record_no_wrong_label_mask(tmp_path, one_torch_thread):
    own = load_dataset("synthetic", per_class=20, test_per_class=5, num_classes=2, resolution=16)
    text = "index,label\n" + "".join(f"{i},{y}\n" for i, y in enumerate(own.train_labels))
    given = dict(dataset_options={"per_class": 20, "test_per_class": 5, "num_classes": 2,
                                  "labels": _csv(tmp_path / "l.csv", text)},
                 resolution=16, stem="imagenet", method="coteaching", noise_rate=0.0, epochs=2, batch_size=8,
                 output_dir=str(tmp_path / "run"), progress=False)
    with pytest.warns(UserWarning, match="4 of the 40 given labels are held out as the noisy validation set and not "
                                         "ranked in suspects.csv: val_fraction 0 ranks them all"):
        final = train_noisy(given)
    rec = load_records(tmp_path / "run")
    assert "noise_mask" not in rec and rec["noise"]["mask_known"] is False
    assert rec["dataset"]["labels_file"] == str(tmp_path / "l.csv")
    assert final["suspects_precision_at_k"] is None and final["selection_precision"] is None
    table = suspects.read(tmp_path / "run")
    assert table["wrong_label"].isna().all() and len(table) == len(rec["train_indices"])
    with pytest.raises(NbstudyError, match="trained on given labels with no planted noise: which labels are wrong is "
                                           "unknown"):
        runs.samples(rec, 2)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]["suspects_auc"] is None
    with warnings.catch_warnings():   # val_fraction 0: every given label is ranked, and nothing is said
        warnings.simplefilter("error")
        train_noisy(given, val_fraction=0.0, epochs=1, output_dir=str(tmp_path / "all"))
    assert len(suspects.read(tmp_path / "all")) == 40


def test_a_study_takes_a_labels_file_relative_to_where_it_runs(folder, tmp_path, monkeypatch):
    import yaml

    from nbstudy import study

    monkeypatch.chdir(tmp_path)
    (tmp_path / "labels.csv").write_text("index,label\n" + "".join(f"{i},{i % 2}\n" for i in range(8)))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "name": "s", "dataset": {"name": "image_folder", "data_path": "set", "options": {"labels": "labels.csv"}},
        "train": {"methods": ["ce"], "noise_rates": [0.0]}}))
    run, = study.expand(study.load_study(tmp_path / "s.yaml"), tmp_path / "out", tmp_path)
    assert run.params["dataset_options"] == {"labels": str(tmp_path / "labels.csv")}
    assert run.grid["dataset_options"] == {"labels": "labels.csv"}   # the run's name does not depend on the folder
    (tmp_path / "labels.csv").write_text("index,label\n" + "".join(f"{i},{1 - i % 2}\n" for i in range(8)))
    edited, = study.expand(study.load_study(tmp_path / "s.yaml"), tmp_path / "out", tmp_path)
    assert edited.name != run.name    # edited labels are another run, never a finished one reused
