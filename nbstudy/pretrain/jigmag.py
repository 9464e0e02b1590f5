"""Jigmag puzzle (Self-Path, Koohbanani et al. 2021): order four magnifications of the same centre.

From each image, centre crops of side S, S/2, S/4, S/8 (S = the image side; magnification 0
is the whole image) are resampled to one tile side (S // 2) and placed in a 2x2 grid
(row-major quadrants) in one of the 4! = 24 orders; the backbone sees the grid as one
S x S image and a linear head predicts the order. All 24 orders are drawn (the original
code drew from 23). Images get a random horizontal flip first, which keeps the centre.
The grid is the image's own size (one pixel less when the side is odd), so every backbone sees
it as it sees a training image; a ViT's position embeddings need no resizing.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from nbstudy.augment import box_grid, random_hflip
from nbstudy.pretrain.base import PretextMethod, classification_loss, to_hwc

ORDERS = torch.tensor(list(itertools.permutations(range(4))))   # (24, 4): quadrant q shows magnification ORDERS[label, q]


def make_jigmag(x: torch.Tensor, labels: torch.Tensor, tile: int, orders: torch.Tensor = ORDERS) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 2 tile, 2 tile) grids; quadrant q holds the centre crop of side S / 2**orders[label, q].

    orders: ORDERS, best already on x's device (the Jigmag module keeps a copy there)."""
    b, c, h, w = x.shape
    side = min(h, w) / 2.0 ** torch.arange(4, device=x.device, dtype=x.dtype)
    boxes = torch.stack([(w - side) / 2, (h - side) / 2, side, side], -1)      # (4 magnifications, 4)
    boxes = boxes[orders.to(x.device)[labels]]                                    # (B, 4 quadrants, 4)
    grid = box_grid(boxes, (h, w), (tile, tile))                                  # (B, 4, t, t, 2)
    grid = grid.view(b, 2, 2, tile, tile, 2).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * tile, 2 * tile, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Jigmag(PretextMethod):
    name = "jigmag"
    def __init__(self, backbone, mean, std, resolution: int):
        super().__init__(backbone, mean, std, resolution)
        self.tile = int(resolution) // 2
        self.head = nn.Linear(backbone.feature_dim, len(ORDERS))
        self.register_buffer("orders", ORDERS.clone(), persistent=False)

    def make_inputs(self, x, generator=None):
        labels = torch.randint(0, len(ORDERS), (x.shape[0],), generator=generator, device=x.device)
        return make_jigmag(random_hflip(x, 0.5, generator), labels, self.tile, self.orders), labels

    def forward(self, inputs):
        return self.head(self.backbone(self.normalize(inputs)))

    def loss(self, outputs, targets):
        return classification_loss(outputs.float(), targets)

    def examples(self, inputs, targets, n):
        return [[(to_hwc(inputs[i]), f"order {''.join(map(str, ORDERS[int(targets[i])].tolist()))}")]
                for i in range(min(n, inputs.shape[0]))]
