"""The `precision` run parameter: auto keeps what runs always did (bf16 autocast on CUDA, fp32 on the CPU), fp32 and
bf16 ask for one everywhere, the runs record what they computed in, and a study sets it once for every run."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from nbstudy import runtime
from nbstudy.classroom import PRETRAIN, lesson_params, pretrain_live
from nbstudy.data import load_dataset
from nbstudy.errors import NbstudyError
from nbstudy.lnl import load_records, train_noisy
from nbstudy.lnl.label_issues import baseline_for_run
from nbstudy.plain import jsonable
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


@pytest.fixture
def asked(monkeypatch):
    """Every precision an autocast was asked for (each resolves it through `runtime.resolve_precision`): a pass
    that forgot the run's precision shows up here as 'auto'."""
    seen = []
    real = runtime.resolve_precision

    def spy(precision, device):
        seen.append(precision)
        return real(precision, device)

    monkeypatch.setattr(runtime, "resolve_precision", spy)
    return seen


def test_a_noisy_label_run_records_its_precision_and_bf16_reaches_every_pass(tmp_path, asked):
    runs = {}
    for p in ("auto", "fp32", "bf16"):
        asked.clear()
        final = train_noisy(TINY, precision=p, output_dir=str(tmp_path / p))
        runs[p] = load_records(tmp_path / p)
        assert set(asked) == {p}   # training steps, evaluation and records passes alike
        assert final == runs[p]["final"]   # what the call returns is what results.csv gets
    assert [runs[p]["final"]["computed_in"] for p in runs] == ["fp32", "fp32", "bf16"]
    assert {runs[p]["final"]["device"] for p in runs} == {"cpu"}
    losses = {p: [h["train_loss"] for h in r["history"]] for p, r in runs.items()}
    assert losses["auto"] == losses["fp32"]                 # auto on the CPU is fp32, bit for bit
    assert losses["bf16"] != losses["fp32"]                 # and bf16 changes the numbers
    assert runs["bf16"]["params"]["precision"] == "bf16"

    asked.clear()   # the suspects notebook's cleanlab baseline embeds at the run's precision too
    baseline_for_run(runs["bf16"], load_dataset("synthetic", resolution=16, **TINY["dataset_options"]))
    assert set(asked) == {"bf16"}
    with pytest.raises(NbstudyError, match=r"holds a finished run with other parameters \(precision"):
        train_noisy(TINY, precision="bf16", output_dir=str(tmp_path / "auto"))   # not a finished bf16 run


def test_dividemix_co_divides_and_co_guesses_at_the_runs_precision(tmp_path, asked):
    train_noisy(TINY, method="dividemix", method_options={"warmup_epochs": 1}, precision="bf16",
                output_dir=str(tmp_path))
    assert set(asked) == {"bf16"} and len(asked) > 20


def test_a_pretraining_run_records_its_precision_and_bf16_reaches_every_pass(tmp_path, asked):
    tiny = {"dataset_options": {"per_class": 5, "test_per_class": 3}, "resolution": 16, "stem": "imagenet",
            "method": "rotation", "batch_size": 8, "epochs": 2, "device": "cpu", "progress": False}
    meta = {}
    for p in ("auto", "fp32", "bf16"):
        asked.clear()
        run_pretraining(tiny, precision=p, output_dir=str(tmp_path / p))
        meta[p] = json.loads((tmp_path / p / "pretrain_metrics.json").read_text())
        assert set(asked) == {p}   # training steps and both k-NN probes
    assert [meta[p]["computed_in"] for p in meta] == ["fp32", "fp32", "bf16"]
    assert meta["auto"]["loss_history"] == meta["fp32"]["loss_history"]
    assert meta["auto"]["probe_acc"] == meta["fp32"]["probe_acc"]
    assert meta["bf16"]["loss_history"] != meta["fp32"]["loss_history"]


def test_the_classrooms_live_pretraining_takes_the_lessons_precision_and_keeps_its_earlier_name(tmp_path, asked):
    lesson = lesson_params(dataset_options={"num_classes": 2, "per_class": 6, "test_per_class": 3}, resolution=16)
    overrides = {"epochs": 1, "batch_size": 8}
    auto = pretrain_live("rotation", lesson, tmp_path, overrides)
    assert set(asked) == {"auto"}
    asked.clear()
    bf16 = pretrain_live("rotation", {**lesson, "precision": "bf16"}, tmp_path, overrides)
    assert set(asked) == {"bf16"} and bf16 != auto
    # a lesson at the defaults names its pretraining as before backbone and precision reached it
    pre = {k: lesson[k] for k in ("dataset", "data_path", "dataset_options", "data_seed", "resolution", "stem",
                                  "seed", "device")}
    pre = {**pre, **PRETRAIN, "method": "rotation", "method_options": {}, "progress": False, **overrides}
    assert auto.parent.name == "pretrain_rotation_" + hashlib.sha256(
        json.dumps(jsonable(pre), sort_keys=True).encode()).hexdigest()[:8]


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


def test_the_classrooms_live_pretraining_builds_the_lessons_backbone(tmp_path):
    """The kind of fault above: a lesson parameter that decides the pretrained weights but did not reach them
    (a ViT lesson pretrained a ResNet18, then failed to load it)."""
    lesson = lesson_params(dataset_options={"num_classes": 2, "per_class": 6, "test_per_class": 3}, resolution=16,
                           backbone="vit_tiny")
    path = pretrain_live("rotation", lesson, tmp_path, {"epochs": 1, "batch_size": 8})
    assert torch.load(path, weights_only=False)["arch"] == "vit_tiny"
