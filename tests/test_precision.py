"""The `precision` run parameter: auto keeps what runs always did (bf16 autocast on CUDA, fp32 on the CPU), fp32 and
bf16 ask for one everywhere, the runs record what they computed in, and a study sets it once for every run."""

import json
from pathlib import Path

import pytest
import torch

from nbstudy.errors import NbstudyError
from nbstudy.lnl import load_records, train_noisy
from nbstudy.pretrain import run_pretraining
from nbstudy.runtime import autocast, resolve_precision
from nbstudy.study import check_study, expand

ROOT = Path(__file__).resolve().parents[1]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")   # a torch.device needs no GPU: only the rule is tested
TINY = dict(dataset_options=dict(num_classes=4, per_class=8, test_per_class=4), resolution=16, stem="imagenet",
            batch_size=8, noise_rate=0.4, epochs=2, device="cpu", progress=False)


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """One torch thread: the fp32 and auto runs must agree bit for bit."""


@pytest.mark.parametrize("precision, device, want", [
    ("auto", CPU, "fp32"), ("auto", CUDA, "bf16"), ("fp32", CUDA, "fp32"), ("bf16", CPU, "bf16"),
    ("fp32", CPU, "fp32"), ("bf16", CUDA, "bf16")])
def test_auto_is_bf16_on_cuda_and_fp32_elsewhere_and_the_others_are_what_they_say(precision, device, want):
    assert resolve_precision(precision, device) == want


@pytest.mark.parametrize("precision, dtype", [("auto", torch.float32), ("fp32", torch.float32),
                                              ("bf16", torch.bfloat16)])
def test_autocast_on_the_cpu_runs_a_layer_in_the_precision_asked_for(precision, dtype):
    layer = torch.nn.Linear(4, 2)
    with autocast(CPU, precision):
        out = layer(torch.ones(3, 4))
    assert out.dtype == dtype and layer.weight.dtype == torch.float32


def test_an_unknown_precision_is_a_one_line_error():
    with pytest.raises(NbstudyError, match=r"^unknown precision 'fp16': use one of auto, fp32, bf16$"):
        autocast(CPU, "fp16")


def test_a_noisy_label_run_records_its_precision_and_bf16_changes_the_numbers(tmp_path):
    runs = {}
    for p in ("auto", "fp32", "bf16"):
        train_noisy(TINY, precision=p, output_dir=str(tmp_path / p))
        runs[p] = load_records(tmp_path / p)
    assert [runs[p]["precision"] for p in runs] == ["fp32", "fp32", "bf16"]
    assert {runs[p]["device"] for p in runs} == {"cpu"}
    losses = {p: [h["train_loss"] for h in r["history"]] for p, r in runs.items()}
    assert losses["auto"] == losses["fp32"]                 # auto on the CPU is fp32, bit for bit
    assert losses["bf16"] != losses["fp32"]                 # and bf16 reaches the training steps
    assert runs["bf16"]["params"]["precision"] == "bf16"


def test_a_pretraining_run_records_its_precision_and_bf16_changes_the_numbers(tmp_path):
    tiny = {"dataset_options": {"per_class": 5, "test_per_class": 3}, "resolution": 16, "stem": "imagenet",
            "method": "rotation", "batch_size": 8, "epochs": 2, "device": "cpu", "progress": False}
    meta = {}
    for p in ("fp32", "bf16"):
        run_pretraining(tiny, precision=p, output_dir=str(tmp_path / p))
        meta[p] = json.loads((tmp_path / p / "pretrain_metrics.json").read_text())
    assert meta["fp32"]["precision"] == "fp32" and meta["bf16"]["precision"] == "bf16"
    assert meta["bf16"]["loss_history"] != meta["fp32"]["loss_history"]


def _study(**top):
    return {"name": "t", **top, "dataset": {"name": "synthetic", "resolution": 16},
            "pretrain": {"methods": ["rotation"]}, "train": {"methods": ["ce"], "noise_rates": [0.4], "epochs": 1}}


def test_a_study_sets_precision_once_for_every_run_and_bf16_runs_are_new_runs(tmp_path):
    auto = expand(check_study(_study()), tmp_path, ROOT / "notebooks")
    bf16 = expand(check_study(_study(precision="bf16")), tmp_path, ROOT / "notebooks")
    assert {r.params["precision"] for r in auto} == {"auto"} and {r.params["precision"] for r in bf16} == {"bf16"}
    assert len(auto) == len(bf16) == 3
    assert not {r.name for r in auto} & {r.name for r in bf16}   # other numbers: not the finished auto runs


@pytest.mark.parametrize("study, message", [
    (_study(precision="half"), "t: precision='half' is invalid: give one of auto, fp32, bf16"),
    ({**_study(), "train": {"methods": ["ce"], "noise_rates": [0.4], "precision": "bf16"}},
     "t: train: precision is a top-level key (it applies to every run): move it to the top of the study file"),
    ({**_study(), "pretrain": {"methods": {"rotation": {"precision": "bf16"}}}},
     "t: pretrain: methods: rotation: precision is a top-level key"),
])
def test_a_wrong_precision_in_a_study_file_is_a_one_line_error(study, message):
    with pytest.raises(NbstudyError) as e:
        check_study(study, where="t")
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
