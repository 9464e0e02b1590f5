"""A run killed with SIGKILL and started again ends exactly as an uninterrupted run; a diverging run stops."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from nbstudy.errors import NbstudyError
from nbstudy.lnl import load_records, train_noisy

TINY = dict(dataset_options=dict(num_classes=4, per_class=12, test_per_class=4), resolution=16, stem="imagenet",
            batch_size=8, lr=1e-3, noise_rate=0.6, record_every=1, progress=False)
CHILD = "import json, sys; from nbstudy.lnl import train_noisy; train_noisy(json.loads(sys.argv[1]))"


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """Every test here at one torch thread (see conftest.one_torch_thread)."""


def without_times(records):
    final = {k: v for k, v in records["final"].items() if k != "train_time_s"}
    history = [{k: v for k, v in h.items() if k != "time_s"} for h in records["history"]]
    return final, history


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    """DivideMix holds the most state: two networks and optimisers, the GMM's loss history, MixMatch's draws."""
    params = {**TINY, "method": "dividemix", "method_options": {"warmup_epochs": 1}, "epochs": 4}
    train_noisy(params, output_dir=str(tmp_path / "whole"), checkpoint_every=0)

    killed = tmp_path / "killed"
    ckpt = killed / "checkpoint.pt"
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps({**params, "output_dir": str(killed)})],
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not ckpt.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(float(np.random.default_rng().uniform(0, 0.3)))  # anywhere in the next epoch
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    done = torch.load(ckpt, weights_only=False)["run"]["epoch"]
    assert 1 <= done < 4

    with pytest.raises(NbstudyError, match=r"other parameters \(lr: 0.001 there, 0.002 now\)"):
        train_noisy({**params, "lr": 2e-3}, output_dir=str(killed))
    train_noisy(params, output_dir=str(killed))
    assert not ckpt.exists() and not list(killed.glob(".*.tmp"))

    whole, resumed = load_records(tmp_path / "whole"), load_records(killed)
    assert without_times(resumed) == without_times(whole)
    for key in ("noisy_labels", "losses", "selection", "filters_final"):
        np.testing.assert_array_equal(resumed[key], whole[key])


@pytest.mark.slow
def test_a_diverging_run_stops_with_a_clear_message(tmp_path):
    with pytest.raises(NbstudyError, match=r"training loss became (nan|inf) at epoch 1 \(ce, lr 1e\+30\): lower lr"):
        train_noisy(TINY, method="ce", epochs=2, lr=1e30, output_dir=str(tmp_path))
    assert not (tmp_path / "metrics.json").exists()


def test_a_finished_run_of_other_parameters_is_never_overwritten(tmp_path):
    params = {**TINY, "method": "ce", "epochs": 1, "output_dir": str(tmp_path)}
    train_noisy(params, seed=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(NbstudyError, match=r"holds a finished run with other parameters \(seed: 1 there, 2 now\)"):
        train_noisy(params, seed=2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before   # params.yaml included
    train_noisy(params, seed=1, device="cpu")                                # the same run may be redone there


def test_a_vit_run_is_the_same_run_whatever_the_stem(tmp_path):
    """A ViT ignores the stem, so its resume key leaves it out (`params.named`): another stem finds the same run,
    where a ResNet's is another run and is refused."""
    params = {**TINY, "method": "ce", "epochs": 1}
    train_noisy({**params, "backbone": "vit_tiny"}, output_dir=str(tmp_path / "vit"))
    first = load_records(tmp_path / "vit")
    train_noisy({**params, "backbone": "vit_tiny", "stem": "small"}, output_dir=str(tmp_path / "vit"))
    assert without_times(load_records(tmp_path / "vit")) == without_times(first)
    train_noisy(params, output_dir=str(tmp_path / "resnet"))
    with pytest.raises(NbstudyError, match=r"finished run with other parameters \(stem: 'imagenet' there, 'small' now\)"):
        train_noisy({**params, "stem": "small"}, output_dir=str(tmp_path / "resnet"))


def test_a_finished_run_is_reused_unless_resume_is_off_or_its_labels_changed(tmp_path, monkeypatch):
    """As a pretraining run is: started again with the same parameters, a finished run is returned as it is
    (a newcomer's script retrained it in full each time); resume=False trains it again; so does a labels file
    edited in place, whose path, and so whose parameters, stay the same."""
    import dataclasses

    from nbstudy.lnl import registry

    ce, epochs = registry.METHODS["ce"], []

    def counted(ctx, epoch, state):
        epochs.append(epoch)
        return ce.train_epoch(ctx, epoch, state)

    monkeypatch.setitem(registry.METHODS, "ce", dataclasses.replace(ce, train_epoch=counted))
    labels = tmp_path / "labels.csv"
    labels.write_text("index,label\n" + "".join(f"{i},{i % 4}\n" for i in range(48)))
    params = {**TINY, "method": "ce", "epochs": 1, "noise_rate": 0.0, "output_dir": str(tmp_path / "run"),
              "dataset_options": {**TINY["dataset_options"], "labels": str(labels)}}
    first = train_noisy(params)
    written = (tmp_path / "run" / "metrics.json").stat().st_mtime_ns
    assert train_noisy(params) == first and epochs == [0]
    assert (tmp_path / "run" / "metrics.json").stat().st_mtime_ns == written
    train_noisy(params, resume=False)
    assert epochs == [0, 0]
    labels.write_text("index,label\n" + "".join(f"{i},{(i + (i == 0)) % 4}\n" for i in range(48)))
    train_noisy(params)
    assert epochs == [0, 0, 0] and load_records(tmp_path / "run")["noisy_labels"][0] == 1
