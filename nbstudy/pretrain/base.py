"""What every pretext method shares: the interface, input normalisation, and the classification loss.

A method is an `nn.Module` that owns the backbone and its head; it is built as
``Method(backbone, mean, std, resolution, **method_options)``, its options declared in
``options`` (a table of `nbstudy.params.Param`, checked before it is built). It has three parts:
``make_inputs(x, generator)`` turns a batch of images (float in [0, 1]) into network inputs
(still in [0, 1], so they can be shown) and targets; ``forward(inputs)`` normalises and runs
backbone + head; ``loss(outputs, targets)`` returns (loss, pretext accuracy);
``after_step(step, total_steps)`` runs after each optimizer step (momentum encoders use it);
``param_groups()`` gives the optimizer's parameter groups (BYOL and SimSiam can train their heads
at a multiple of the base learning rate). Only
the backbone is kept after pretraining.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def classification_loss(logits: torch.Tensor, targets: torch.Tensor):
    """Mean cross-entropy and top-1 accuracy of a pretext classifier."""
    return F.cross_entropy(logits, targets), (logits.argmax(1) == targets).float().mean()


class PretextMethod(nn.Module):
    """Backbone + head; subclasses define make_inputs, forward and loss (see the module docstring)."""

    name = ""
    options: dict = {}    # the method's own options (method_options): {name: nbstudy.params.Param}

    def __init__(self, backbone: nn.Module, mean, std, resolution: int):
        super().__init__()
        self.backbone = backbone
        self.resolution = int(resolution)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @classmethod
    def check_options(cls, options: dict, params: dict) -> dict:
        """Checks across options and run parameters, after each option's own check; returns the options."""
        return options

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def after_step(self, step: int, total_steps: int) -> None:
        """Called after optimizer step `step` (0-based, counted over the whole run) of `total_steps`, e.g. to
        move a momentum encoder (BYOL, MoCo). Default: nothing."""

    def param_groups(self) -> list:
        """The optimizer's parameter groups: dicts of "params" (trainable weights only, so not momentum
        targets) and optionally "lr_factor", the group's multiple of the base learning rate. Default: one
        group of every trainable weight at the base rate."""
        return [{"params": [w for w in self.parameters() if w.requires_grad]}]

    def metadata(self) -> dict:
        """Extra facts to save with the backbone (e.g. the jigsaw permutation set)."""
        return {}

    def examples(self, inputs, targets, n: int) -> list:
        """Rows of (image HWC in [0, 1], caption) for the notebook's preview of n samples."""
        raise NotImplementedError


def to_hwc(x: torch.Tensor):
    """(3, H, W) tensor in [0, 1] -> HWC numpy array for matplotlib."""
    return x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
