"""The study's network: torchvision's ResNet18, random init, optional small-image stem.

The *backbone* is ResNet18 without its final layer (512-d features); pretraining
methods put their own heads on it, and the noisy-label stage puts a linear
classifier on it. Backbone state-dict keys are torchvision's (``conv1.weight``,
``layer1.0.bn1.running_mean``, ...) without ``fc.*``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18

FEATURE_DIM = 512
STEMS = ("auto", "imagenet", "small")


def use_small_stem(stem: str, resolution: int) -> bool:
    """'auto' picks the 3x3 stride-1 stem (no max-pool) for images of 64 px or less."""
    from nbstudy.errors import NbstudyError

    if stem not in STEMS:
        raise NbstudyError(f"unknown stem {stem!r}: use one of {', '.join(STEMS)}")
    if stem == "auto":
        return int(resolution) <= 64
    return stem == "small"


def build_backbone(small_stem: bool = False) -> nn.Module:
    """ResNet18 trunk, random init (never downloads weights), returning 512-d features."""
    net = resnet18(weights=None)
    if small_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    net.small_stem = bool(small_stem)
    return net


class Classifier(nn.Module):
    """Backbone + linear layer; `features` exposes the 512-d representation."""

    def __init__(self, num_classes: int, small_stem: bool = False, backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else build_backbone(small_stem)
        self.fc = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x))


def first_layer_filters(backbone: nn.Module) -> torch.Tensor:
    """The first convolution's weights (64, 3, k, k), detached on the CPU, for the filter plots."""
    return backbone.conv1.weight.detach().float().cpu().clone()
