"""Augmentations on batches already on the device, each sample with its own random draw.

Everything takes and returns float tensors (B, 3, H, W) with values in [0, 1]
(after `to_float`), and a `torch.Generator` on the same device for the random
parameters, so augmentation runs on the GPU and the same code runs on the CPU.
`normalize` is the last step before the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1]."""
    return x.float().div_(255.0)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Standardise with per-channel statistics (the dataset's, from `Dataset.mean/std`)."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def _uniform(n: int, generator, device, low=0.0, high=1.0) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def random_hflip(x: torch.Tensor, p: float = 0.5, generator=None) -> torch.Tensor:
    """Mirror each sample left-right with probability p."""
    flip = _uniform(x.shape[0], generator, x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_crop(x: torch.Tensor, padding: int, generator=None) -> torch.Tensor:
    """Pad by reflection, then cut a random HxW window per sample (the CIFAR-style 'weak' crop)."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    xp = F.pad(x, (padding,) * 4, mode="reflect")
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1).expand(b, x.shape[1], h, w + 2 * padding)
    xp = xp.gather(2, rows)
    cols = (ox[:, None] + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(b, x.shape[1], h, w)
    return xp.gather(3, cols)


def weak(x: torch.Tensor, generator=None, padding: int | None = None) -> torch.Tensor:
    """Random crop (padding ~ 1/8 of the side) and horizontal flip: the LNL methods' training view."""
    pad = max(1, x.shape[-1] // 8) if padding is None else padding
    return random_hflip(random_crop(x, pad, generator), 0.5, generator)
