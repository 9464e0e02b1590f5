"""The real-data study files (BreastMNIST, RetinaMNIST, PathMNIST; CPU- and GPU-sized) pass `--dry-run`, run from
a folder whose data/ holds a small cut of each set (tests/data/README.md; PathMNIST: made-up pixels in its
layout, which is all a dry run reads), and are the size they say."""

from pathlib import Path

import numpy as np
import pytest

from nbstudy.cli import main
from nbstudy.study import expand, load_study

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
CPU, GPU = ["breastmnist", "retinamnist"], ["breastmnist_gpu", "retinamnist_gpu", "pathmnist"]


TRAIN_IMAGES = 260   # two batches of the largest training batch_size the study files use (128), and some


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    """A working folder whose data/ holds what the study files name, as a user would put it there. A dry run
    checks each run's batch size against the training images, so each cut's training split is repeated to
    TRAIN_IMAGES (a dry run reads the layout, classes and counts, never what the images show)."""
    (tmp_path / "data").mkdir()
    for mini, name in (("breastmnist_mini", "breastmnist_28"), ("retinamnist_mini", "retinamnist_28")):
        with np.load(DATA / f"{mini}.npz") as cut:
            arrays = dict(cut)
        repeat = -(-TRAIN_IMAGES // len(arrays["train_labels"]))
        for key in ("train_images", "train_labels"):
            arrays[key] = np.concatenate([arrays[key]] * repeat)
        np.savez(tmp_path / "data" / f"{name}.npz", **arrays)
    rng = np.random.default_rng(0)
    sizes = {"train": TRAIN_IMAGES, "val": 18, "test": 18}
    np.savez(tmp_path / "data" / "pathmnist_64.npz",
             **{f"{s}_images": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8) for s, n in sizes.items()},
             **{f"{s}_labels": np.arange(n).reshape(-1, 1) % 9 for s, n in sizes.items()})
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", CPU + GPU)
def test_real_data_study_file_passes_a_dry_run(name, data_folder, capsys):
    assert main(["study", str(ROOT / "parameters" / f"{name}.yaml"), "--dry-run", "--out", "out"]) == 0
    out = capsys.readouterr().out
    assert f"study {name}:" in out and "todo  train/random-ce-" in out and "analysis/results" in out


@pytest.mark.parametrize("name", CPU + GPU)
def test_real_data_study_file_is_the_size_it_says(name):
    study = load_study(ROOT / "parameters" / f"{name}.yaml")
    train = study["train"]
    assert {"random", "simclr", "rotation"} <= set(train["inits"])
    assert set(train["methods"]) == {"ce", "coteaching", "dividemix"} and len(train["noise_rates"]) >= 2
    pretrain = [m["epochs"] for m in study["pretrain"]["methods"].values()]
    epochs = [m["epochs"] for m in train["methods"].values()]
    if name in CPU:   # a new user's 2-core CPU, under ~30 minutes: the imagenet stem, short runs, one seed
        assert study["dataset"]["stem"] == "imagenet" and max(pretrain) <= 30 and max(epochs) <= 15
        assert len(expand(study, "/tmp/o/x", "/tmp/nb")) <= 20
    else:             # the study's kind of schedule: hundreds of pretraining epochs, ~100 noisy-label epochs
        assert study["dataset"]["stem"] in ("small", "auto") and min(pretrain) >= 200 and min(epochs) >= 100
        assert len(train["seeds"]) >= 3 and 0.0 in train["noise_rates"]


def test_small_real_images_on_the_imagenet_stem_are_warned_of_once(data_folder, capsys, monkeypatch):
    from nbstudy import execute

    monkeypatch.setattr(execute, "WARNED", set())   # the dry runs above already gave it in this process
    assert main(["study", str(ROOT / "parameters" / "breastmnist.yaml"), "--dry-run", "--out", "out"]) == 0
    err = capsys.readouterr().err
    assert err.count("nbstudy: warning: breastmnist: stem imagenet at 28 px shrinks each image to 7x7") == 1
    assert "stem auto picks the small stem" in err


def test_no_stem_warning_for_the_small_stem_or_the_synthetic_set():
    from nbstudy.study import check_study, stem_warning

    study = load_study(ROOT / "parameters" / "breastmnist_gpu.yaml")   # stem small
    assert stem_warning(study, 28, synthetic=False) is None
    demo = load_study(ROOT / "parameters" / "demo.yaml")              # imagenet stem on purpose, synthetic
    assert demo["dataset"]["stem"] == "imagenet" and stem_warning(demo, 32, synthetic=True) is None
    real = load_study(ROOT / "parameters" / "breastmnist.yaml")
    assert stem_warning(real, 128, synthetic=False) is None             # large images: the stem's own size
    vit = check_study({**real, "backbones": ["vit_tiny"]})
    assert stem_warning(vit, 28, synthetic=False) is None               # a ViT has no stem
