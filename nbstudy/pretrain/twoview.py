"""What the two-view methods (Barlow Twins, BYOL, MoCo v2, SimSiam, VICReg) share with SimCLR.

Each sees two random views of every image, made on the device by SimCLR's view path (options
``views`` and ``view_options``, the same profiles and checks), stacked as (2B, 3, H, W): rows
0..B-1 the first views, B..2B-1 the second. BYOL and MoCo also keep a momentum (EMA) copy of
the backbone and projector, updated by `PretextMethod.after_step`.
"""

from __future__ import annotations

import copy

import torch
from lightly.models.utils import deactivate_requires_grad

from nbstudy import augment
from nbstudy.params import Param, real
from nbstudy.pretrain.base import PretextMethod
from nbstudy.pretrain.simclr import SimCLR, contrastive_logits

VIEW_OPTIONS = {name: SimCLR.options[name] for name in ("views", "view_options")}
HEAD_LR_OPTION = {"head_lr_factor": Param(1.0, real(0, low_open=True), "learning rate of projector and predictor as a "
                                          "multiple of the base lr (1: the same; the CPU acceptance runs use 10, "
                                          "with SGD and grey views: docs/pretraining.md)")}


class TwoViewMethod(PretextMethod):
    """Backbone + heads on SimCLR's two views; subclasses define the heads, forward and loss.

    Subclasses list ``**VIEW_OPTIONS`` in their ``options`` and pass ``views``/``view_options`` on.
    """

    view_checks = SimCLR.view_checks
    check_options = classmethod(SimCLR.check_options.__func__)   # checks view_options as SimCLR does
    make_inputs = SimCLR.make_inputs
    examples = SimCLR.examples

    def __init__(self, backbone, mean, std, resolution: int, views: str = "auto", view_options: dict | None = None):
        super().__init__(backbone, mean, std, resolution)
        self.profile = augment.view_profile(views, resolution, **(view_options or {}))


def head_lr_groups(method: torch.nn.Module, heads, factor: float) -> list:
    """`PretextMethod.param_groups` with the trainable weights of the `heads` modules at `factor` x the base lr
    and the rest (backbone) at the base lr; one group when factor is 1."""
    if factor == 1:
        return PretextMethod.param_groups(method)
    trainable = [w for w in method.parameters() if w.requires_grad]
    head = {id(w) for m in heads for w in m.parameters() if w.requires_grad}
    return [{"params": [w for w in trainable if id(w) not in head]},
            {"params": [w for w in trainable if id(w) in head], "lr_factor": float(factor)}]


def pair_accuracy(z: torch.Tensor) -> torch.Tensor:
    """The logged pretext accuracy of a (2B, D) embedding of both views: the fraction of views whose most
    cosine-similar other view is their partner (SimCLR's accuracy; chance is 1 / (2B - 1))."""
    logits, partner = contrastive_logits(*z.detach().float().chunk(2), 1.0)
    return (logits.argmax(1) == partner).float().mean()


def momentum_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of `module` (no gradients), for an EMA target (lightly's update_momentum moves it)."""
    twin = copy.deepcopy(module)
    deactivate_requires_grad(twin)
    return twin

