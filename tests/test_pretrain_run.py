"""The pretraining driver: parameter checks, checkpoint round trip, resume, reuse, errors."""

import json
from pathlib import Path

import pytest
import torch

from nbstudy.checkpoint import load_backbone
from nbstudy.data import load_dataset
from nbstudy.errors import NbstudyError
from nbstudy.models import build_backbone
from nbstudy.pretrain import resolve, run_pretraining
from nbstudy.pretrain import run as run_module
from conftest import interrupt_pretraining

DATA = Path(__file__).parent / "data"

TINY = {"dataset_options": {"per_class": 5, "test_per_class": 3}, "resolution": 16, "stem": "imagenet",
        "method": "jigmag", "batch_size": 8, "epochs": 2, "device": "cpu", "progress": False}


@pytest.fixture(scope="module")
def tiny_data():
    return load_dataset("synthetic", resolution=16, **TINY["dataset_options"])


def test_parameters_are_checked_with_one_line_errors():
    with pytest.raises(NbstudyError, match="unknown parameter 'epoch' .did you mean 'epochs'.*valid ones"):
        resolve({"epoch": 3})
    for bad, pattern in [({"method": "dino"}, "one of simclr"), ({"epochs": 0}, "epochs=0"),
                         ({"epochs": 2.5}, "whole number"), ({"lr": -1}, "lr=-1"),
                         ({"optimizer": "lamb"}, "adam, adamw, sgd"),
                         ({"method_options": {"temperature": 0}}, "method_options.temperature=0 is invalid"),
                         ({"method_options": {"temprature": 1}}, "did you mean 'temperature'"),
                         ({"method": "jigsaw", "method_options": {"permutations": 1}}, "permutations=1"),
                         ({"warmup_epochs": 5, "epochs": 5}, "fewer than epochs"), ({"batch_size": 1}, ">= 2"),
                         ({"data_seed": -1}, "data_seed=-1")]:
        with pytest.raises(NbstudyError, match=pattern):
            resolve(bad)
    assert resolve({})["method"] == "simclr"


def test_the_data_is_drawn_with_data_seed_not_the_run_seed(tiny_data):
    """Every seed of a study sees the same images, so no test image was pretrained on."""
    drawn = run_module.load_data(resolve({**TINY, "seed": 5}))
    assert (drawn.train_images == tiny_data.train_images).all() and (drawn.test_images == tiny_data.test_images).all()
    other = run_module.load_data(resolve({**TINY, "data_seed": 1}))
    assert not (other.train_images == tiny_data.train_images).all()


def test_checkpoint_round_trip_and_metrics(tmp_path, tiny_data):
    ckpt = run_pretraining(TINY, data=tiny_data, output_dir=str(tmp_path))
    assert ckpt == tmp_path / "backbone.pt" and not (tmp_path / "pretrain_state.pt").exists()
    fresh = build_backbone(small_stem=False)
    meta = load_backbone(fresh, ckpt, resolution=16)                  # strict key check inside
    assert meta["method"] == "jigmag" and meta["dataset"] == "synthetic" and meta["synthetic"] is True
    assert meta["epochs_done"] == 2 and len(meta["loss_history"]) == 2 and meta["resolution"] == 16
    assert meta["hparams"]["lr"] == 1e-3 and "device" not in meta["hparams"]
    assert 0 <= meta["probe_acc"] <= 1 and 0 <= meta["random_init_probe_acc"] <= 1
    metrics = json.loads((tmp_path / "pretrain_metrics.json").read_text())
    assert metrics["method"] == "jigmag" and metrics["params"]["epochs"] == 2
    assert [h["epoch"] for h in metrics["history"]] == [1, 2] and metrics["checkpoint"] == str(ckpt)
    assert metrics["history"][-1]["lr"] == 0.0                        # the cosine ends at 0 on the last iteration


def test_killed_run_resumes_and_matches_an_uninterrupted_one(tmp_path, tiny_data, monkeypatch):
    straight = run_pretraining(TINY, data=tiny_data, method="rotation", output_dir=str(tmp_path / "a"))
    real_epoch = interrupt_pretraining(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_pretraining(TINY, data=tiny_data, method="rotation", output_dir=str(tmp_path / "b"))
    state = torch.load(tmp_path / "b" / "pretrain_state.pt", weights_only=False)
    assert state["epoch"] == 1 and not (tmp_path / "b" / "backbone.pt").exists()
    monkeypatch.setattr(run_module, "train_epoch", real_epoch)
    resumed = run_pretraining(TINY, data=tiny_data, method="rotation", output_dir=str(tmp_path / "b"))
    a, b = torch.load(straight, weights_only=False), torch.load(resumed, weights_only=False)
    for key, value in a["backbone"].items():
        torch.testing.assert_close(b["backbone"][key], value, rtol=1e-5, atol=1e-6)
    assert b["loss_history"] == pytest.approx(a["loss_history"], rel=1e-5)


@pytest.mark.parametrize("every, saved", [(2, 2), (0, None)])
def test_checkpoint_every_n_epochs(tmp_path, tiny_data, monkeypatch, every, saved):
    """A run killed in epoch 4 left the state of the last epoch that is a multiple of checkpoint_every (none for 0)."""
    interrupt_pretraining(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run_pretraining(TINY, data=tiny_data, method="rotation", epochs=4, checkpoint_every=every,
                        output_dir=str(tmp_path))
    state = tmp_path / "pretrain_state.pt"
    assert (torch.load(state, weights_only=False)["epoch"] if state.exists() else None) == saved


def test_finished_run_is_reused_and_other_parameters_are_refused(tmp_path, tiny_data, monkeypatch):
    run_pretraining(TINY, data=tiny_data, output_dir=str(tmp_path))
    monkeypatch.setattr(run_module, "train_epoch", lambda *a, **k: pytest.fail("a finished run was retrained"))
    (tmp_path / "pretrain_metrics.json").unlink()
    assert run_pretraining(TINY, data=tiny_data, output_dir=str(tmp_path), device="cpu") == tmp_path / "backbone.pt"
    assert (tmp_path / "pretrain_metrics.json").exists()
    with pytest.raises(NbstudyError, match=r"other parameters \(lr: 0.001 there, 0.01 now\).*resume=False"):
        run_pretraining(TINY, data=tiny_data, output_dir=str(tmp_path), lr=0.01)


def test_short_last_batches_and_every_method_run(tmp_path, tiny_data):
    # 20 images in batches of 6: 6, 6, 6 and a last batch of 2 (SimCLR's labels must follow it).
    for method in ("simclr", "jigsaw"):
        run_pretraining(TINY, data=tiny_data, method=method, batch_size=6, epochs=1,
                        output_dir=str(tmp_path / method))
    meta = torch.load(tmp_path / "jigsaw" / "backbone.pt", weights_only=False)
    assert len(meta["jigsaw"]["permutations"]) == 100 and meta["jigsaw"]["tile"] == 32


def test_data_must_match_the_parameters(tmp_path, tiny_data):
    with pytest.raises(NbstudyError, match="data= holds 'synthetic' at 16 px"):
        run_pretraining(TINY, data=tiny_data, resolution=32, output_dir=str(tmp_path))


@pytest.mark.parametrize("other, named", [
    ({"data_seed": 1}, "data_seed=0 but the parameters say data_seed=1"),
    ({"dataset_options": {"per_class": 6, "test_per_class": 3}}, "per_class=5 but the parameters say per_class=6"),
    ({"dataset_options": {**TINY["dataset_options"], "perspective": 1.0}}, "perspective=0.0 .* say perspective=1.0"),
    ({"data_path": "elsewhere"}, "data_path=None but the parameters say data_path='/"),
])
def test_data_loaded_with_other_arguments_is_refused_before_training(tmp_path, tiny_data, monkeypatch, other, named):
    """Else the run trains on one data set and records another's parameters (a newcomer's data= of RetinaMNIST
    with data_path naming BreastMNIST)."""
    monkeypatch.setattr(run_module, "train_epoch", lambda *a, **k: pytest.fail("trained on the wrong data"))
    with pytest.raises(NbstudyError, match=f"data= was loaded with {named}"):
        run_pretraining(TINY, data=tiny_data, output_dir=str(tmp_path), **other)
    assert not (tmp_path / "params.yaml").exists()


def test_data_loaded_alike_is_accepted_with_paths_and_defaults_written_either_way(tmp_path, monkeypatch):
    """The same request written otherwise (a relative path, a default option spelled out) is the same data."""
    monkeypatch.chdir(DATA)
    data = load_dataset("medmnist", data_path=str(DATA / "breastmnist_mini.npz"), resolution=28, flag=None,
                        cache_dir=str(tmp_path))   # not beside the shipped file
    params = resolve({**TINY, "dataset": "medmnist", "data_path": "breastmnist_mini.npz", "resolution": 28,
                      "dataset_options": {}})
    assert run_module._check_data(data, params) is data
