"""Rotation prediction (RotNet, Gidaris et al. 2018): every image in all four exact rotations, 4-way head.

Each image first gets the weak view (random crop + flip, as RotNet's training did), then
appears four times in the batch, turned by 0, 90, 180 and 270 degrees with torch.rot90
(exact, no interpolation); the label is the number of quarter turns.
"""

from __future__ import annotations

import torch
from torch import nn

from nbstudy import augment
from nbstudy.pretrain.base import PretextMethod, classification_loss, to_hwc


def rotate_all(x: torch.Tensor):
    """(B, C, H, W) square images -> (4B, C, H, W) rotations, and labels k = quarter turns counter-clockwise."""
    turned = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
    return turned, labels


class Rotation(PretextMethod):
    name = "rotation"

    def __init__(self, backbone, mean, std, resolution: int):
        super().__init__(backbone, mean, std, resolution)
        self.head = nn.Linear(backbone.feature_dim, 4)

    def make_inputs(self, x, generator=None):
        return rotate_all(augment.weak(x, generator))

    def forward(self, inputs):
        return self.head(self.backbone(self.normalize(inputs)))

    def loss(self, outputs, targets):
        return classification_loss(outputs.float(), targets)

    def examples(self, inputs, targets, n):
        b = inputs.shape[0] // 4
        return [[(to_hwc(inputs[k * b + i]), f"{90 * k} deg") for k in range(4)] for i in range(min(n, b))]
