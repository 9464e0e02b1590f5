"""The prepare step: decode once, memory-map later, rebuild when the inputs change."""

import os

import numpy as np
import pytest
from PIL import Image

from nbstudy import cache, images
from nbstudy.data import load_dataset
from nbstudy.errors import NbstudyError


@pytest.fixture
def tiny_class_tree(tmp_path):
    """image_folder tree with train/ and test/: 2 classes, 3 + 2 PNGs of 12x12 each."""
    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("test", 2)):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                    tmp_path / split / name / f"{i}.png")
    return tmp_path


@pytest.fixture
def decode_counter(monkeypatch):
    """Counts calls of nbstudy.images.decode_image (the cache calls it through the module)."""
    calls = []
    real = images.decode_image

    def counting(path, resolution=None):
        calls.append(path)
        return real(path, resolution)
    monkeypatch.setattr(images, "decode_image", counting)
    return calls


def test_second_load_does_not_decode_and_is_memory_mapped(tiny_class_tree, decode_counter):
    first = load_dataset("image_folder", tiny_class_tree)
    assert len(decode_counter) == 10
    second = load_dataset("image_folder", tiny_class_tree)
    assert len(decode_counter) == 10
    assert isinstance(second.train_images, np.memmap) and second.train_images.mode == "r"
    assert np.array_equal(first.train_images, second.train_images)
    names = [p.name for p in (tiny_class_tree / ".nbstudy_cache").iterdir()]
    assert len(names) == 2 and all(n.endswith(".npy") and ".tmp" not in n for n in names)


def test_changing_resolution_or_files_rebuilds(tiny_class_tree, decode_counter):
    load_dataset("image_folder", tiny_class_tree)
    decode_counter.clear()
    assert load_dataset("image_folder", tiny_class_tree, resolution=8).resolution == 8
    assert len(decode_counter) == 10

    decode_counter.clear()
    new = tiny_class_tree / "train" / "a" / "new.png"
    Image.fromarray(np.full((12, 12, 3), 7, np.uint8)).save(new)
    ds = load_dataset("image_folder", tiny_class_tree)
    assert len(decode_counter) == 7                  # train rebuilt (7 files), test reused
    assert len(ds.train_labels) == 7

    decode_counter.clear()
    Image.fromarray(np.full((12, 12, 3), 9, np.uint8)).save(new)          # same name, new content
    os.utime(new, ns=(10**18, 10**18))
    ds = load_dataset("image_folder", tiny_class_tree)
    assert len(decode_counter) == 7 and 9 in ds.train_images


def test_subsample_option_gets_its_own_cache(tiny_class_tree, decode_counter):
    load_dataset("image_folder", tiny_class_tree)
    decode_counter.clear()
    assert len(load_dataset("image_folder", tiny_class_tree, subsample=1).train_labels) == 2
    assert len(decode_counter) == 2


def test_cache_dir_override_and_failed_build_leaves_nothing(tiny_class_tree, tmp_path):
    where = tmp_path / "elsewhere"
    load_dataset("image_folder", tiny_class_tree, cache_dir=where)
    assert len(list(where.glob("*.npy"))) == 2 and not (tiny_class_tree / ".nbstudy_cache").exists()

    (tiny_class_tree / "train" / "b" / "9.png").write_bytes(b"broken")
    fresh = tmp_path / "fresh"
    with pytest.raises(NbstudyError, match="9.png"):
        load_dataset("image_folder", tiny_class_tree, cache_dir=fresh)
    # train failed first: no cache file, no temporary; only the list of unreadable files
    assert [p.name for p in fresh.iterdir()] == ["image_folder-train-unreadable.txt"]


def test_unreadable_cache_file_is_rebuilt(tiny_class_tree, decode_counter):
    load_dataset("image_folder", tiny_class_tree)
    for path in (tiny_class_tree / ".nbstudy_cache").glob("*train*.npy"):
        path.write_bytes(b"truncated")
    decode_counter.clear()
    assert load_dataset("image_folder", tiny_class_tree).train_images.shape == (6, 12, 12, 3)
    assert len(decode_counter) == 6


def test_default_cache_dir_falls_back_to_home(tmp_path, monkeypatch):
    assert cache.default_cache_dir(tmp_path) == tmp_path / ".nbstudy_cache"
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.default_cache_dir(tmp_path) == tmp_path / "home" / ".cache" / "nbstudy"


def test_npz_split_is_cached_once(tmp_path, monkeypatch):
    labels = np.array([0, 1, 0, 1])
    imgs = np.random.default_rng(2).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "m.npz", train_images=imgs, train_labels=labels, val_images=imgs, val_labels=labels,
             test_images=imgs, test_labels=labels)
    copies = []
    real = cache._copy_npz_member
    monkeypatch.setattr(cache, "_copy_npz_member", lambda *a: copies.append(a) or real(*a))
    first = load_dataset("medmnist", tmp_path / "m.npz")
    second = load_dataset("medmnist", tmp_path / "m.npz")
    assert len(copies) == 3 and isinstance(second.test_images, np.memmap)
    assert np.array_equal(first.train_images, imgs)
