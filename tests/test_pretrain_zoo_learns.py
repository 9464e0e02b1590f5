"""Acceptance of the follow-up's two-view methods at CPU scale: VICReg's pretext loss falls and its k-NN probe
beats random init on the synthetic set.

Setting (measured on this project's 2-core CPU, one torch thread; docs/pretraining.md has the tables): 600
synthetic training images at 32 px, ImageNet stem, batch 32, 8 epochs (152 steps), seed 0, projector 512 wide
instead of 2048 (cheaper: 2048 wide it has 9.4 M weights, nearly the backbone's 11 M), and views with
full colour jitter (hue up to 0.5, grayscale half the time) instead of the small profile's strength 0.5. The
synthetic images have two random colours each, shared by both views of an image and unrelated to the class:
under the small profile's jitter, matching views by colour is the shortcut the methods learn first, and the
probe falls below random init (VICReg, same run with the small profile: 0.295 against 0.427); with the colour
randomised it rises well above: 0.555 against 0.427 at seed 0, and 0.650 against 0.427 and 0.575 against
0.365 at seeds 1 and 2 (the test asks for 0.05 more than random init). The run takes about 60 s of CPU time.

BYOL, SimSiam, Barlow Twins and MoCo do not beat random init by this margin at seeds 0, 1 and 2 in a run this
short, in any setting tried within this budget (either view profile; Adam at 3e-4 to 1e-2, AdamW with weight
decay 0.1, SGD; with or without weight decay; BatchNorm over both views or per view; heads 512 wide; batch 32
or 64, 4 to 20 epochs; BYOL's tau_0; Barlow Twins' lambda; MoCo's temperature, momentum, queue and several
patched variants; docs/pretraining.md, "Measured" and "Second search"): they have no acceptance run here. The
closest, Barlow Twins with projector 512, Adam at 3e-3, batch 64, 12 epochs (about 70 CPU-s), reached 0.533
against 0.427 at seed 0 but 0.370 against 0.427 at seed 1 and 0.410 against 0.365 at seed 2: a test at seed 0
alone would pass on a lucky seed, so none was added. SimSiam and BYOL stay at or below 0.39 and 0.37 (below
random init, 30-epoch runs included), and MoCo's loss rises to its chance level with the colour randomised
whenever it has a queue.
"""

import json

import pytest

from nbstudy.data import load_dataset
from nbstudy.pretrain import run_pretraining

SETTING = {"dataset": "synthetic", "resolution": 32, "stem": "imagenet", "batch_size": 32, "epochs": 8, "seed": 0,
           "device": "cpu", "progress": False}
COLOUR = {"jitter": [0.8, 0.8, 0.8, 0.5], "gray_p": 0.5}   # full colour jitter: colour is no cue here


@pytest.fixture(autouse=True)
def one_thread(one_torch_thread):
    """One torch thread: the probe repeats bit for bit only at a fixed thread count (conftest.one_torch_thread)."""


@pytest.mark.slow
def test_vicreg_loss_falls_and_probe_beats_random_init(tmp_path):
    data = load_dataset("synthetic", resolution=32)
    run_pretraining(SETTING, data=data, method="vicreg", output_dir=str(tmp_path),
                    method_options={"projector_dim": 512, "view_options": COLOUR})
    metrics = json.loads((tmp_path / "pretrain_metrics.json").read_text())
    losses = metrics["loss_history"]
    assert losses[-1] < losses[0], losses
    assert metrics["probe_acc"] > metrics["random_init_probe_acc"] + 0.05, metrics
