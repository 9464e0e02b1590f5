"""Jigsaw puzzle (Noroozi & Favaro 2016): put 9 shuffled tiles back in order, as one of P permutations.

The image is cut into a 3x3 grid of square cells (side = resolution // 3, the grid centred);
from each cell a random crop smaller than the cell is taken (the gap stops the network from
matching edges), each tile is normalised on its own (per channel), the tiles are shuffled by
a permutation from a fixed set, and one backbone (shared weights) embeds each tile; the 9
embeddings, concatenated in position order, go through an MLP that names the permutation.

Small images: the crop side is round(0.85 * cell) but at most cell - 2, so every tile can
shift by at least 2 px (32 px -> cells of 10, tiles of 8; 28 px -> 9 and 7; 224 px -> 74 and
63). Tiles keep their native pixel scale with the small stem; with the ImageNet stem (total
stride 32) they are upsampled to at least 32 px, so that the last stage still sees a pixel.
A ViT gets tiles of the crop side rounded up to whole patches, at least 2 x 2 patches (32 px,
patch 4: tiles of 8 px, 2 x 2 patches where the full image has 8 x 8; 224 px, patch 16: 64 px,
4 x 4 where it has 14 x 14), with its position embeddings resized to that grid
(`nbstudy.models.ViT`): few tokens, so at small sizes the puzzle leans on the patch embedding.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nbstudy.augment import box_grid, random_hflip
from nbstudy.errors import NbstudyError
from nbstudy.models import RESNETS, vit_patch
from nbstudy.params import Param, optional, real, whole
from nbstudy.pretrain.base import PretextMethod, classification_loss, to_hwc

TILE_EPS = 0.01   # floor on a tile's std (in [0, 1] units, ~2.5 grey levels): flat tiles are not blown up


@functools.lru_cache(maxsize=1)
def _all_permutations() -> np.ndarray:
    return np.array(list(itertools.permutations(range(9))), dtype=np.int8)   # lexicographic; row 0 = identity


@functools.lru_cache(maxsize=8)
def permutation_set(size: int = 100) -> np.ndarray:
    """P permutations of 9 tiles, far apart in Hamming distance; deterministic (same P, same set).

    Greedy farthest-point selection: start from the identity, then repeatedly add the
    permutation whose minimum Hamming distance to those already chosen is largest (ties: the
    larger summed distance, then the lexicographically first). Returns int64 (P, 9).
    """
    perms = _all_permutations()
    if not 2 <= size <= len(perms):
        raise NbstudyError(f"permutations={size} is out of range: use 2 to {len(perms)} (100 or 1000 are usual)")
    chosen = [0]
    dist = (perms != perms[0]).sum(1)
    dmin, dsum = dist.copy(), dist.astype(np.int64)
    for _ in range(size - 1):
        j = int(np.argmax(dmin.astype(np.int64) * (9 * size + 1) + dsum))
        chosen.append(j)
        dist = (perms != perms[j]).sum(1)
        np.minimum(dmin, dist, out=dmin)
        dsum += dist
    return perms[chosen].astype(np.int64)


def min_hamming(perms: np.ndarray) -> int:
    """Smallest Hamming distance between two different rows."""
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    return int(d[~np.eye(len(perms), dtype=bool)].min())


def tile_geometry(resolution: int, crop: float = 0.85, small_stem: bool = True, tile: int | None = None,
                  patch: int | None = None):
    """(cell, crop side, tile side) in pixels for a square image of `resolution` px (see the module docstring);
    patch: a ViT's patch side (None for a ResNet)."""
    cell = int(resolution) // 3
    if not 0 < crop <= 1:
        raise NbstudyError(f"crop={crop} must be a fraction of the cell in (0, 1], e.g. 0.85")
    side = max(1, min(int(crop * cell + 0.5), cell - 2))
    if side < 2:   # a 1-px tile has no spatial content and no per-tile std (NaN): the puzzle cannot be learned
        raise NbstudyError(f"jigsaw at {resolution} px cuts cells of {cell} px into tiles of {side} px: use a "
                           "resolution of at least 12 px (tiles of 2 px or more)")
    if tile is None and patch:
        tile = max(2, -(-side // patch)) * patch
    elif tile is None:
        tile = side if small_stem else max(side, 32)
    if tile < 2:
        raise NbstudyError(f"tile={tile} is invalid: give a tile side of at least 2 px (or None)")
    if patch and tile < patch:
        raise NbstudyError(f"tile={tile} is smaller than the ViT's {patch} px patch: give at least {patch} px (or None)")
    return cell, side, int(tile)


def make_puzzle(x: torch.Tensor, perms: torch.Tensor, labels: torch.Tensor, cell: int, crop: int, tile: int,
                generator=None) -> torch.Tensor:
    """Tiles (B, 9, C, tile, tile): tile at position i is a random crop of cell perms[label][i] (cells row-major)."""
    b, c, h, w = x.shape
    dev = x.device
    offset = torch.randint(0, cell - crop + 1, (b, 9, 2), generator=generator, device=dev)
    k = torch.arange(9, device=dev)
    y_margin, x_margin = (h - 3 * cell) // 2, (w - 3 * cell) // 2
    x0 = x_margin + (k % 3) * cell + offset[..., 0]
    y0 = y_margin + (k // 3) * cell + offset[..., 1]
    boxes = torch.stack([x0, y0, torch.full_like(x0, crop), torch.full_like(x0, crop)], -1).to(x.dtype)
    order = perms[labels]                                            # (B, 9): which cell goes where
    boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
    grid = box_grid(boxes, (h, w), (tile, tile)).reshape(b, 9 * tile, tile, 2)
    tiles = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return tiles.view(b, c, 9, tile, tile).transpose(1, 2)


def normalize_tiles(tiles: torch.Tensor) -> torch.Tensor:
    """Each tile and channel to zero mean, unit std (std floored at TILE_EPS)."""
    mean = tiles.mean((-2, -1), keepdim=True)
    std = tiles.std((-2, -1), keepdim=True).clamp_min(TILE_EPS)
    return (tiles - mean) / std


class Jigsaw(PretextMethod):
    name = "jigsaw"
    options = {
        "permutations": Param(100, whole(2, 362880), "size P of the permutation set (100 or 1000 in the literature)"),
        "crop": Param(0.85, real(0, 1, low_open=True), "tile crop side as a fraction of the cell (at most cell - 2 px)"),
        "tile": Param(None, optional(whole(1), "auto"), "tile side in px; auto: the crop side, at least 32 px "
                      "with the imagenet stem, whole patches (at least 2 x 2) with a ViT"),
    }

    @classmethod
    def check_options(cls, options, params):
        if params.get("resolution") is not None:   # a ViT's tile must hold a patch: checked before the run
            vit = params.get("backbone", "resnet18") not in RESNETS
            tile_geometry(params["resolution"], options["crop"], True, options["tile"],
                          vit_patch(params["resolution"]) if vit else None)
        return options

    def __init__(self, backbone, mean, std, resolution: int, permutations: int = 100, crop: float = 0.85,
                 tile: int | None = None):
        super().__init__(backbone, mean, std, resolution)
        self.cell, self.crop, self.tile = tile_geometry(resolution, crop, backbone.small_stem, tile,
                                                        getattr(backbone, "patch_size", None))
        self.register_buffer("permutations", torch.from_numpy(permutation_set(int(permutations))))
        self.head = nn.Sequential(nn.Linear(9 * backbone.feature_dim, 1024), nn.ReLU(inplace=True),
                                  nn.Linear(1024, len(self.permutations)))

    def make_inputs(self, x, generator=None):
        x = random_hflip(x, 0.5, generator)
        labels = torch.randint(0, len(self.permutations), (x.shape[0],), generator=generator, device=x.device)
        return make_puzzle(x, self.permutations, labels, self.cell, self.crop, self.tile, generator), labels

    def forward(self, tiles):
        b = tiles.shape[0]
        features = self.backbone(normalize_tiles(tiles.flatten(0, 1)))   # one shared trunk for all 9B tiles
        return self.head(features.reshape(b, -1))

    def loss(self, outputs, targets):
        return classification_loss(outputs.float(), targets)

    def metadata(self):
        return {"jigsaw": {"permutations": self.permutations.cpu().tolist(), "cell": self.cell,
                           "crop": self.crop, "tile": self.tile}}

    def examples(self, inputs, targets, n):
        rows = []
        for i in range(min(n, inputs.shape[0])):
            t = inputs[i]                                             # (9, C, s, s)
            s = t.shape[-1]
            canvas = t.new_ones(t.shape[1], 3 * s + 2, 3 * s + 2)     # 1-px white gaps between tiles
            for p in range(9):
                r, c = divmod(p, 3)
                canvas[:, r * (s + 1):r * (s + 1) + s, c * (s + 1):c * (s + 1) + s] = t[p]
            order = self.permutations[targets[i]].tolist()
            rows.append([(to_hwc(canvas), f"permutation {int(targets[i])}: {''.join(map(str, order))}")])
        return rows
