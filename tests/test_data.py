"""Loaders on tiny files laid out like the real datasets, image decoding, and bad input."""

import inspect
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nbstudy import images
from nbstudy.data import COVID_CLASSES, DATASETS, NCT_CLASSES, Dataset, load_dataset
from nbstudy.errors import NbstudyError

RNG = np.random.default_rng(0)


def _rgb(size=24):
    return RNG.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(path)


@pytest.fixture
def tiny_nct_tree(tmp_path):
    """NCT-CRC-HE-100K/ (4 tiles per class) and CRC-VAL-HE-7K/ (2 per class) of 24x24 RGB .tif."""
    for folder, n in (("NCT-CRC-HE-100K", 4), ("CRC-VAL-HE-7K", 2)):
        for name in NCT_CLASSES:
            for i in range(n):
                _save(tmp_path / folder / name / f"{name}-{i:04d}.tif", _rgb())
    return tmp_path


@pytest.fixture
def tiny_covid_tree(tmp_path):
    """The Kaggle nesting: Lung Segmentation Data/Lung Segmentation Data/{Train,Val,Test}/{class}/
    {images,lung masks}/ with 20x20 grayscale PNGs; 3/2/2 images per class."""
    root = tmp_path / "Lung Segmentation Data" / "Lung Segmentation Data"
    for split, n in (("Train", 3), ("Val", 2), ("Test", 2)):
        for name in COVID_CLASSES:
            for i in range(n):
                _save(root / split / name / "images" / f"img_{i}.png", _rgb(20)[..., 0])
                _save(root / split / name / "lung masks" / f"img_{i}.png", np.zeros((20, 20), np.uint8))
    return tmp_path


@pytest.fixture
def tiny_mixed_folder(tmp_path):
    """Three class folders mixing formats, pixel modes and sizes, plus files to skip."""
    root = tmp_path / "mixed"
    a, b, c = root / "alpha", root / "beta", root / "gamma"
    for i in range(4):
        _save(a / f"rgb{i}.png", _rgb(24))
        _save(b / f"gray{i}.jpg", _rgb(30)[..., 0])
        _save(c / f"rgba{i}.tif", _rgb(16), mode="RGBA")
    _save(a / "pal.bmp", _rgb(24), mode="P")
    Image.fromarray(RNG.integers(0, 4096, (20, 20)).astype(np.uint16)).save(b / "deep.png")
    (a / ".DS_Store").write_bytes(b"junk")
    (b / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


def _npz(path, with_val=True, with_test=True, labels_2d=True, gray=False, n=(12, 6, 6), classes=3, size=8):
    arrays = {}
    for split, count in zip(("train", "val", "test"), n):
        if (split == "val" and not with_val) or (split == "test" and not with_test):
            continue
        shape = (count, size, size) if gray else (count, size, size, 3)
        arrays[f"{split}_images"] = RNG.integers(0, 256, shape, dtype=np.uint8)
        labels = np.arange(count) % classes
        arrays[f"{split}_labels"] = labels[:, None] if labels_2d else labels
    np.savez_compressed(path, **arrays)
    return arrays


# ---------------------------------------------------------------------------- registry and options

def test_registry_names():
    assert set(DATASETS) == {"synthetic", "nct_crc_he", "covid_qu_ex", "medmnist", "image_folder"}


def test_unknown_dataset_lists_known_names():
    with pytest.raises(NbstudyError, match="unknown dataset 'cifar'.*nct_crc_he"):
        load_dataset("cifar")


def test_unknown_option_names_it_and_the_accepted_ones(tiny_nct_tree):
    with pytest.raises(NbstudyError, match="unknown option 'subsampel'.*subsample"):
        load_dataset("nct_crc_he", tiny_nct_tree, subsampel=0.5)


@pytest.mark.parametrize("name", ["nct_crc_he", "covid_qu_ex", "image_folder"])
def test_missing_path_is_a_one_line_error(name, tmp_path):
    with pytest.raises(NbstudyError, match="does not exist") as err:
        load_dataset(name, tmp_path / "nope")
    assert "\n" not in str(err.value)
    with pytest.raises(NbstudyError, match="needs data_path"):
        load_dataset(name)


def test_bad_resolution(tiny_nct_tree):
    with pytest.raises(NbstudyError, match="resolution"):
        load_dataset("nct_crc_he", tiny_nct_tree, resolution=0)


# ---------------------------------------------------------------------------- NCT-CRC-HE

def test_nct_loads_both_splits_in_class_order(tiny_nct_tree):
    ds = load_dataset("nct_crc_he", tiny_nct_tree)
    assert ds.class_names == NCT_CLASSES and not ds.synthetic and ds.val_images is None
    assert ds.train_images.shape == (36, 24, 24, 3) and ds.test_images.shape == (18, 24, 24, 3)
    assert np.bincount(ds.train_labels).tolist() == [4] * 9
    first_tum = np.asarray(Image.open(tiny_nct_tree / "NCT-CRC-HE-100K" / "TUM" / "TUM-0000.tif"))
    assert np.array_equal(ds.train_images[np.flatnonzero(ds.train_labels == 8)[0]], first_tum)
    assert load_dataset("nct_crc_he", tiny_nct_tree, resolution=16).resolution == 16


def test_nct_subsample_is_stratified_and_seeded(tiny_nct_tree):
    half = load_dataset("nct_crc_he", tiny_nct_tree, subsample=0.5, seed=1)
    assert np.bincount(half.train_labels).tolist() == [2] * 9 and len(half.test_labels) == 18
    assert np.array_equal(half.train_images, load_dataset("nct_crc_he", tiny_nct_tree, subsample=0.5,
                                                          seed=1).train_images)
    one = load_dataset("nct_crc_he", tiny_nct_tree, subsample=1)
    assert np.bincount(one.train_labels).tolist() == [1] * 9
    with pytest.raises(NbstudyError, match="subsample"):
        load_dataset("nct_crc_he", tiny_nct_tree, subsample=1.5)


def test_nct_wrong_layout_names_found_folders(tmp_path):
    (tmp_path / "NCT-CRC-HE-100K-NONORM").mkdir()
    (tmp_path / "CRC-VAL-HE-7K").mkdir()
    with pytest.raises(NbstudyError, match=r"missing NCT-CRC-HE-100K/.*found: .*NCT-CRC-HE-100K-NONORM/"):
        load_dataset("nct_crc_he", tmp_path)


def test_nct_missing_class_folder(tiny_nct_tree):
    (tiny_nct_tree / "CRC-VAL-HE-7K" / "MUS").rename(tiny_nct_tree / "CRC-VAL-HE-7K" / "MUSCLE")
    with pytest.raises(NbstudyError, match=r"no MUS/ class folder.*MUSCLE/"):
        load_dataset("nct_crc_he", tiny_nct_tree)


# ---------------------------------------------------------------------------- COVID-QU-Ex

def test_covid_from_parent_folder_with_val_split_and_masks_ignored(tiny_covid_tree):
    ds = load_dataset("covid_qu_ex", tiny_covid_tree)
    assert ds.class_names == COVID_CLASSES and ds.resolution == 20
    assert (len(ds.train_labels), len(ds.val_labels), len(ds.test_labels)) == (9, 6, 6)
    assert ds.val_images.shape == (6, 20, 20, 3)
    assert np.array_equal(ds.train_images[..., 0], ds.train_images[..., 2])   # gray copied to 3 channels
    assert ds.train_images.max() > 0                                          # not the all-zero masks
    inner = tiny_covid_tree / "Lung Segmentation Data" / "Lung Segmentation Data"
    assert np.array_equal(load_dataset("covid_qu_ex", inner).train_images, ds.train_images)


def test_covid_wrong_layout(tmp_path):
    (tmp_path / "Train").mkdir()
    (tmp_path / "Test").mkdir()
    with pytest.raises(NbstudyError, match=r"found: Test/, Train/.*Lung Segmentation Data"):
        load_dataset("covid_qu_ex", tmp_path)


def test_covid_infection_variant_warns(tiny_covid_tree):
    root = tiny_covid_tree / "Lung Segmentation Data" / "Lung Segmentation Data"
    (root / "Train" / "Normal" / "infection masks").mkdir()
    with pytest.warns(UserWarning, match="Infection Segmentation Data"):
        load_dataset("covid_qu_ex", root)


# ---------------------------------------------------------------------------- MedMNIST

def test_medmnist_npz_with_2d_labels(tmp_path):
    arrays = _npz(tmp_path / "tiny_8.npz")
    ds = load_dataset("medmnist", npz_path=tmp_path / "tiny_8.npz")
    assert ds.train_labels.shape == (12,) and ds.train_labels.dtype == np.int64
    assert np.array_equal(ds.val_images, arrays["val_images"]) and np.array_equal(ds.test_images, arrays["test_images"])
    assert ds.class_names == ["0", "1", "2"]


def test_medmnist_gray_1d_labels_no_val_and_resize(tmp_path):
    arrays = _npz(tmp_path / "x.npz", with_val=False, labels_2d=False, gray=True)
    with pytest.warns(UserWarning, match="no val split"):
        ds = load_dataset("medmnist", tmp_path / "x.npz")
    assert ds.val_images is None and ds.class_names == ["0", "1", "2"]
    assert np.array_equal(ds.train_images[..., 1], arrays["train_images"])
    with pytest.warns(UserWarning):
        assert load_dataset("medmnist", tmp_path / "x.npz", resolution=12).train_images.shape == (12, 12, 12, 3)


def test_medmnist_channels_first_is_transposed(tmp_path):
    images_chw = RNG.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1])
    np.savez(tmp_path / "chw.npz", train_images=images_chw, train_labels=labels,
             test_images=images_chw, test_labels=labels, val_images=images_chw, val_labels=labels)
    with pytest.warns(UserWarning, match="channels-first"):
        ds = load_dataset("medmnist", tmp_path / "chw.npz")
    assert np.array_equal(ds.train_images, images_chw.transpose(0, 2, 3, 1))


def test_medmnist_missing_test_and_multilabel_are_errors(tmp_path):
    _npz(tmp_path / "notest.npz", with_test=False)
    with pytest.raises(NbstudyError, match="no test_images"):
        load_dataset("medmnist", tmp_path / "notest.npz")
    labels = RNG.integers(0, 2, (4, 14))
    np.savez(tmp_path / "chestmnist.npz", train_images=np.zeros((4, 8, 8), np.uint8), train_labels=labels,
             test_images=np.zeros((4, 8, 8), np.uint8), test_labels=labels)
    with pytest.raises(NbstudyError, match=r"chestmnist.npz is multi-label"):
        load_dataset("medmnist", tmp_path / "chestmnist.npz")
    floats = {f"{split}_{kind}": np.zeros((2, 8, 8) if kind == "images" else 2, np.float32)
              for split in ("train", "val", "test") for kind in ("images", "labels")}
    np.savez(tmp_path / "float.npz", **floats)
    with pytest.raises(NbstudyError, match="has dtype float32, not uint8"):
        load_dataset("medmnist", tmp_path / "float.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(NbstudyError, match="broken.npz"):
        load_dataset("medmnist", tmp_path / "broken.npz")


def test_medmnist_flag_finds_file_in_data_path(tmp_path):
    _npz(tmp_path / "bloodmnist_64.npz")
    assert load_dataset("medmnist", tmp_path, flag="bloodmnist", size=64).num_classes == 3


def test_medmnist_flag_that_names_another_set_than_the_file_is_refused(tmp_path):
    """Else a BreastMNIST file trains under RetinaMNIST's class names (with the medmnist package installed)."""
    _npz(tmp_path / "breastmnist_28.npz")
    with pytest.raises(NbstudyError, match="flag retinamnist but the file is breastmnist_28.npz, a breastmnist file: "
                                           "give the retinamnist file, or drop flag"):
        load_dataset("medmnist", tmp_path / "breastmnist_28.npz", flag="retinamnist")
    assert load_dataset("medmnist", tmp_path / "breastmnist_28.npz", flag="BreastMNIST").num_classes == 3


def test_medmnist_offline_without_package_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "medmnist", None)   # import medmnist -> ImportError
    with pytest.raises(NbstudyError, match=r"put it at .*pathmnist_64\.npz") as err:
        load_dataset("medmnist", tmp_path, flag="pathmnist", size=64)
    assert "\n" not in str(err.value)


def test_medmnist_downloads_with_the_package_and_names_classes(tmp_path, monkeypatch):
    fake = types.ModuleType("medmnist")
    fake.INFO = {"pathmnist": {"python_class": "PathMNIST", "label": {"0": "adipose", "1": "back", "2": "debris"}}}

    class PathMNIST:
        def __init__(self, split, download, root, size):
            _npz(f"{root}/pathmnist.npz")
    fake.PathMNIST = PathMNIST
    monkeypatch.setitem(sys.modules, "medmnist", fake)
    ds = load_dataset("medmnist", tmp_path, flag="pathmnist")
    assert ds.class_names == ["adipose", "back", "debris"] and (tmp_path / "pathmnist.npz").is_file()


# ---------------------------------------------------------------------------- image_folder

def test_image_folder_mixed_files_split_and_skips(tiny_mixed_folder):
    with pytest.warns(UserWarning, match="skipped 2 hidden or non-image files"):
        ds = load_dataset("image_folder", tiny_mixed_folder, resolution=16, seed=5)
    assert ds.class_names == ["alpha", "beta", "gamma"] and ds.resolution == 16
    assert np.bincount(ds.train_labels).tolist() == [4, 4, 3] and np.bincount(ds.test_labels).tolist() == [1, 1, 1]
    with pytest.warns(UserWarning):
        again = load_dataset("image_folder", tiny_mixed_folder, resolution=16, seed=5)
        other = load_dataset("image_folder", tiny_mixed_folder, resolution=16, seed=6, test_fraction=0.5)
    assert np.array_equal(again.test_images, ds.test_images)
    assert np.bincount(other.test_labels).tolist() == [2, 2, 2]


def test_image_folder_mixed_sizes_need_a_resolution(tiny_mixed_folder):
    with pytest.warns(UserWarning), pytest.raises(NbstudyError, match="pass resolution="):
        load_dataset("image_folder", tiny_mixed_folder)


def test_image_folder_with_train_test_and_val(tmp_path):
    for split, n in (("train", 3), ("val", 1), ("test", 2)):
        for name in ("cat", "dog"):
            for i in range(n):
                _save(tmp_path / split / name / f"{i}.png", _rgb(10))
    ds = load_dataset("image_folder", tmp_path)
    assert ds.class_names == ["cat", "dog"]
    assert (len(ds.train_labels), len(ds.val_labels), len(ds.test_labels)) == (6, 2, 4)
    with pytest.raises(NbstudyError, match="test_fraction does not apply"):
        load_dataset("image_folder", tmp_path, test_fraction=0.3)


def test_a_class_folder_with_no_test_images_is_named_in_a_warning(tmp_path):
    """A stray copy of a class folder in train/ becomes a class of its own that no test image scores."""
    for split, n in (("train", 3), ("test", 2)):
        for name in ("cat", "dog"):
            for i in range(n):
                _save(tmp_path / split / name / f"{i}.png", _rgb(10))
    _save(tmp_path / "train" / "dog_copy" / "0.png", _rgb(10))
    with pytest.warns(UserWarning, match=r"1 of 3 classes have no test images, so no test scores them: dog_copy "
                                         r"\(1 training images\); a stray or misnamed folder\? fix or remove it"):
        assert load_dataset("image_folder", tmp_path).class_names == ["cat", "dog", "dog_copy"]

def test_image_folder_errors(tmp_path):
    _save(tmp_path / "a" / "x.png", _rgb(8))
    _save(tmp_path / "a" / "y.png", _rgb(8))
    (tmp_path / "b").mkdir()
    with pytest.raises(NbstudyError, match=r"class folder .*b holds no images"):
        load_dataset("image_folder", tmp_path)
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _save(tmp_path / "b" / "ok.png", _rgb(8))
    with pytest.raises(NbstudyError, match=r"1 of 2 images .* cannot be decoded \(first: .*broken\.png"):
        load_dataset("image_folder", tmp_path, test_fraction=0.5)
    with pytest.raises(NbstudyError, match="no class folders"):
        load_dataset("image_folder", tmp_path / "a")


# ---------------------------------------------------------------------------- decoding rules

def test_decode_modes(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, 0, 3] = 255                       # one opaque red pixel, the rest transparent
    _save(tmp_path / "a.png", rgba)
    out = images.decode_image(tmp_path / "a.png")
    assert out[0, 0].tolist() == [200, 0, 0] and out[1, 1].tolist() == [255, 255, 255]   # on white

    deep = np.array([[1000, 2000], [3000, 1000]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    assert images.decode_image(tmp_path / "d.png")[..., 0].tolist() == [[0, 128], [255, 0]]   # own range

    _save(tmp_path / "g.jpg", _rgb(12)[..., 0])
    gray = images.decode_image(tmp_path / "g.jpg", resolution=6)
    assert gray.shape == (6, 6, 3) and gray.dtype == np.uint8 and gray.flags.c_contiguous


# ---------------------------------------------------------------------------- Dataset

def test_dataset_stats_and_describe():
    x = np.zeros((4, 2, 2, 3), np.uint8)
    x[:2, ..., 0] = 255
    ds = Dataset("toy", ["a", "b"], x, np.array([0, 0, 1, 1]), x[:2], np.array([0, 1]))
    assert ds.mean == pytest.approx((0.5, 0.0, 0.0)) and ds.std == pytest.approx((0.5, 0.0, 0.0))
    text = ds.describe()
    assert "train 4, test 2, no validation split" in text and "SYNTHETIC" not in text
    with pytest.raises(ValueError):
        Dataset("bad", ["a"], x.astype(np.float32), np.zeros(4, np.int64), x, np.zeros(4, np.int64))


# ---- real files as users get them (BreastMNIST, tests/data/README.md) ----------------------------------------

MINI = Path(__file__).resolve().parent / "data" / "breastmnist_mini.npz"


def _variant(tmp_path, name, **changes):
    arrays = dict(np.load(MINI))
    arrays.update(changes)
    path = tmp_path / name
    np.savez_compressed(path, **arrays)
    return path


def test_the_real_mini_file_loads(tmp_path):
    ds = load_dataset("medmnist", data_path=str(MINI), resolution=28, cache_dir=str(tmp_path / "cache"))
    assert ds.num_classes == 2 and len(ds.train_labels) == 60 and np.bincount(ds.train_labels).tolist() == [30, 30]


@pytest.mark.parametrize("make, message", [
    (lambda t: t.joinpath("cut.npz").write_bytes(MINI.read_bytes()[:MINI.stat().st_size // 2]) and t / "cut.npz",
     "cut.npz as an .npz (File is not a zip file): it is damaged or partly downloaded: download it again"),
    (lambda t: _garbled(t), "it is damaged or partly downloaded: download it again"),
    (lambda t: _variant(t, "text.npz", train_labels=np.load(MINI)["train_labels"].astype(str)),
     "train_labels are stored as <U3 (e.g. ['0']), not numbers: store the class indices"),
    (lambda t: _variant(t, "stray.npz", train_labels=_with(np.load(MINI)["train_labels"], 5, 1000)),
     "998 of 1001 classes never appear in the training labels: 2 (2), 3 (3), 4 (4), 5 (5), 6 (6) ...; label(s) "
     "1000 appear at most twice: stray labels?"),
    (lambda t: _variant(t, "test_only.npz", test_labels=_with(np.load(MINI)["test_labels"], 3, 2)),
     "1 of 3 classes never appear in the training labels: 2 (2); class(es) 2 only in the test split"),
])
def test_damaged_or_odd_files_are_one_line_never_a_traceback_or_a_silent_wrong_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(NbstudyError) as e:
        load_dataset("medmnist", data_path=str(path), resolution=28, cache_dir=str(tmp_path / "cache"))
    assert message in str(e.value) and "\n" not in str(e.value)


def _with(labels, index, value):
    labels = labels.astype(np.int64)
    labels[index] = value
    return labels


def _garbled(tmp_path):
    """The archive's directory whole, the bytes of its first member (train_images, compressed) overwritten."""
    data = bytearray(MINI.read_bytes())
    data[2000:2100] = bytes(100)
    path = tmp_path / "garbled.npz"
    path.write_bytes(bytes(data))
    return path


# ---- broken image files, reported all at once; options every source takes ----------------------------------

def _folder_with_unreadable_files(root):
    """train/ and test/ with two classes of PNGs; three training files unreadable in three ways (empty, cut
    off, text)."""
    for split, n in (("train", 6), ("test", 2)):
        for c in ("benign", "malignant"):
            for i in range(n):
                _save(root / split / c / f"{i}.png", _rgb(16))
    (root / "train" / "benign" / "0.png").write_bytes(b"")
    (root / "train" / "benign" / "4.png").write_bytes((root / "train" / "benign" / "4.png").read_bytes()[:40])
    (root / "train" / "malignant" / "2.png").write_text("not an image")
    return root


def test_unreadable_images_are_reported_together_and_skip_unreadable_leaves_them_out(tmp_path):
    root = _folder_with_unreadable_files(tmp_path / "set")
    cache = tmp_path / "cache"
    with pytest.raises(NbstudyError) as e:
        load_dataset("image_folder", str(root), cache_dir=str(cache))
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"3 of 12 images in the train split of {root} cannot be decoded")
    assert "skip_unreadable: true" in message
    listed = (cache / "image_folder-train-unreadable.txt").read_text().splitlines()
    assert [Path(line.split("\t")[0]).relative_to(root).as_posix() for line in listed] == \
        ["train/benign/0.png", "train/benign/4.png", "train/malignant/2.png"]
    assert all(line.split("\t")[1] for line in listed)   # each with the decoder's reason

    with pytest.warns(UserWarning, match=r"left out 3 unreadable image\(s\)"):
        ds = load_dataset("image_folder", str(root), cache_dir=str(cache), skip_unreadable=True)
    assert len(ds.unreadable_skipped) == 3 and np.bincount(ds.train_labels).tolist() == [4, 5]
    assert len(ds.test_labels) == 4 and "left out: 3 unreadable image file(s)" in ds.describe()
    readable = [_decoded(root / "train" / c / f"{i}.png") for c, i in
                [("benign", 1), ("benign", 2), ("benign", 3), ("benign", 5)]]
    assert np.array_equal(ds.train_images[:4], np.stack(readable))   # rows and labels stay paired
    with pytest.warns(UserWarning, match="left out 3"):
        again = load_dataset("image_folder", str(root), cache_dir=str(cache), skip_unreadable=True)
    assert np.array_equal(again.train_images, ds.train_images) and again.unreadable_skipped == ds.unreadable_skipped
    assert not list(cache.glob("*-unreadable.txt"))   # a load that worked leaves no stale list behind


def _decoded(path):
    return images.decode_image(path)


def test_a_run_records_how_many_unreadable_images_it_left_out(tmp_path, one_torch_thread):
    from nbstudy.lnl import train_noisy

    root = _folder_with_unreadable_files(tmp_path / "set")
    with pytest.warns(UserWarning, match="left out 3"):
        train_noisy(dataset="image_folder", data_path=str(root), dataset_options={"skip_unreadable": True},
                    epochs=1, batch_size=4, val_fraction=0.0, output_dir=str(tmp_path / "run"), progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dataset"]["unreadable_skipped"] == 3
    from nbstudy.lnl import suspects   # each ranked image named by its file, relative to the data folder

    files = suspects.read(tmp_path / "run")["file"].tolist()
    assert set(files) <= {f"train/{c}/{i}.png" for c in ("benign", "malignant") for i in range(6)} - \
        {"train/benign/0.png", "train/benign/4.png", "train/malignant/2.png"} and len(files) >= 7


@pytest.mark.filterwarnings("ignore:.*has no val split")
def test_a_medmnist_file_with_one_split_names_test_fraction_and_splits_with_it(tmp_path):
    path = _variant(tmp_path, "test_only.npz")
    arrays = {k: v for k, v in np.load(path).items() if k.startswith("test")}
    np.savez(path, **arrays)
    with pytest.raises(NbstudyError, match="add the dataset option test_fraction: 0.2 to split its test images"):
        load_dataset("medmnist", str(path), cache_dir=str(tmp_path / "c"))
    ds = load_dataset("medmnist", str(path), cache_dir=str(tmp_path / "c"), test_fraction=0.25, seed=3)
    n = len(arrays["test_labels"])
    assert len(ds.train_labels) + len(ds.test_labels) == n and ds.val_images is None
    per_class = np.bincount(arrays["test_labels"].reshape(-1))
    assert np.bincount(ds.test_labels).tolist() == [round(0.25 * c) for c in per_class]
    same = load_dataset("medmnist", str(path), cache_dir=str(tmp_path / "c"), test_fraction=0.25, seed=3)
    other = load_dataset("medmnist", str(path), cache_dir=str(tmp_path / "c"), test_fraction=0.25, seed=4)
    assert np.array_equal(same.test_images, ds.test_images) and not np.array_equal(other.test_images, ds.test_images)


def test_subsample_works_for_every_source_and_test_fraction_where_a_source_has_one_split(tmp_path, tiny_nct_tree,
                                                                                          tiny_covid_tree):
    mini = load_dataset("medmnist", str(MINI), cache_dir=str(tmp_path / "c"), subsample=5)
    assert np.bincount(mini.train_labels).tolist() == [5, 5] and len(mini.test_labels) == 30
    assert np.bincount(load_dataset("synthetic", subsample=0.1).train_labels).tolist() == [15] * 4
    refused = [("synthetic", None, "the synthetic set makes its own test split"),
               ("medmnist", str(MINI), "already has train and test splits"),
               ("nct_crc_he", str(tiny_nct_tree), "official test set, CRC-VAL-HE-7K"),
               ("covid_qu_ex", str(tiny_covid_tree), "official Test split")]
    for name, data_path, why in refused:
        with pytest.raises(NbstudyError, match=f"test_fraction does not apply: .*{why}.*; drop the option"):
            load_dataset(name, data_path, test_fraction=0.2, cache_dir=str(tmp_path / "c"))
    assert not (MINI.parent / ".nbstudy_cache").exists()
    for name in DATASETS:
        options = inspect.signature(DATASETS[name]).parameters
        assert "subsample" in options and "test_fraction" in options, name
