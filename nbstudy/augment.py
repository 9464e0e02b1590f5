"""Augmentations on batches already on the device, each sample with its own random draw.

Everything takes and returns float tensors (B, 3, H, W) with values in [0, 1]
(after `to_float`), and a `torch.Generator` on the same device for the random
parameters, so augmentation runs on the GPU and the same code runs on the CPU.
`normalize` is the last step before the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from nbstudy.errors import NbstudyError


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1]."""
    return x.float().div_(255.0)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Standardise with per-channel statistics (the dataset's, from `Dataset.mean/std`).

    In a training loop pass them as tensors already on the device (`channel_stats`): a tuple
    means a small host-to-GPU copy per call, which waits for the GPU to finish its queue.
    """
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def channel_stats(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std as float32 tensors on `device`, for `normalize`."""
    return (torch.as_tensor(mean, dtype=torch.float32).to(device), torch.as_tensor(std, dtype=torch.float32).to(device))


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


# --- SimCLR views: crops, colour, grayscale, blur, batched per-sample -----------------------

def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma (torchvision's weights), shape (B, 1, H, W)."""
    r, g, b = x.split(1, 1)   # no constant tensor: a small host-to-GPU copy would wait for the GPU
    return 0.2989 * r + 0.587 * g + 0.114 * b


def box_grid(boxes: torch.Tensor, in_hw, out_hw) -> torch.Tensor:
    """A `grid_sample` grid that spreads out_hw pixel centres evenly over each box.

    boxes: (..., 4) as (x0, y0, width, height) in input pixels, edges at whole numbers; the
    grid is (..., out_h, out_w, 2). A box on whole pixels sampled at its own size copies
    those pixels exactly; a box twice the output side averages 2x2 blocks.
    """
    (h, w), (oh, ow) = in_hw, out_hw
    ty = (torch.arange(oh, device=boxes.device, dtype=boxes.dtype) + 0.5) / oh
    tx = (torch.arange(ow, device=boxes.device, dtype=boxes.dtype) + 0.5) / ow
    x0, y0, bw, bh = boxes.unbind(-1)
    gx = (x0[..., None] + tx * bw[..., None]) * (2.0 / w) - 1.0   # (..., ow)
    gy = (y0[..., None] + ty * bh[..., None]) * (2.0 / h) - 1.0   # (..., oh)
    gx, gy = torch.broadcast_tensors(gx[..., None, :], gy[..., :, None])
    return torch.stack([gx, gy], -1)


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, out_hw) -> torch.Tensor:
    """Cut box i out of image i and resample it (bilinear) to out_hw: (B, 4) boxes -> (B, C, oh, ow)."""
    grid = box_grid(boxes.to(x.dtype), x.shape[-2:], out_hw)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_resized_crop(x: torch.Tensor, size=None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        generator=None, tries: int = 10) -> torch.Tensor:
    """torchvision's RandomResizedCrop, per sample: area fraction ~ U(scale), log aspect ratio ~ U(log ratio).

    Like torchvision, it draws up to `tries` boxes per sample and keeps the first that fits,
    else falls back to the largest centred box within the ratio range; unlike it, box
    corners are not rounded to whole pixels. Output side `size` defaults to the input's.
    """
    b, _, h, w = x.shape
    oh, ow = (h, w) if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    dev = x.device
    area = torch.empty(b, tries, device=dev).uniform_(scale[0], scale[1], generator=generator) * (h * w)
    logr = torch.empty(b, tries, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    bw, bh = torch.sqrt(area * logr.exp()), torch.sqrt(area / logr.exp())
    fits = (bw <= w) & (bh <= h)
    first = fits.to(torch.int8).argmax(1, keepdim=True)
    bw, bh = bw.gather(1, first)[:, 0], bh.gather(1, first)[:, 0]
    in_ratio = min(max(w / h, ratio[0]), ratio[1])
    fw, fh = min(w, h * in_ratio), min(h, w / in_ratio)
    ok = fits.any(1)
    bw, bh = torch.where(ok, bw, fw), torch.where(ok, bh, fh)
    u = torch.rand(b, 2, device=dev, generator=generator)
    x0 = torch.where(ok, u[:, 0] * (w - bw), (w - bw) / 2)
    y0 = torch.where(ok, u[:, 1] * (h - bh), (h - bh) / 2)
    return crop_resize(x, torch.stack([x0, y0, bw, bh], 1), (oh, ow))


def adjust_brightness(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Scale intensities by f (B, 1, 1, 1)."""
    return (x * f).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean grey level."""
    mean = _grayscale(x).mean((-3, -2, -1), keepdim=True)
    return (f * x + (1 - f) * mean).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Blend with the image's own grayscale version."""
    return (f * x + (1 - f) * _grayscale(x)).clamp(0, 1)


def adjust_hue(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by f (a fraction of the colour circle, in [-0.5, 0.5]) in HSV space."""
    maxc, _ = x.max(1, keepdim=True)
    minc, _ = x.min(1, keepdim=True)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    r, g, b = x.split(1, 1)
    hue = torch.where(maxc == r, (g - b) / safe,
                      torch.where(maxc == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    sat = chroma / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    hue = (hue + f) % 1.0
    # HSV -> RGB: channel n takes v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6, n = 5, 3, 1.
    n = torch.arange(5, 0, -2, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = (n + hue * 6) % 6
    return maxc - maxc * sat * torch.minimum(k, 4 - k).clamp(0, 1)


def color_jitter(x: torch.Tensor, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, p=0.8,
                 generator=None) -> torch.Tensor:
    """torchvision's ColorJitter under RandomApply(p), per sample: own factors and own random order of the four.

    Factors are drawn as torchvision does: U(max(0, 1 - s), 1 + s) for brightness, contrast and
    saturation, U(-hue, hue) for the hue shift. At each of the four steps the batch is sorted by
    the op each sample does then, so every op runs once, on a contiguous slice; the slice sizes
    are read back in one transfer (not one wait for the GPU per op).
    """
    b, dev = x.shape[0], x.device
    apply = torch.rand(b, device=dev, generator=generator) < p

    def factor(s, centre):
        low, high = (centre - s, centre + s) if centre == 0 else (max(0.0, 1 - s), 1 + s)
        return torch.empty(b, 1, 1, 1, device=dev).uniform_(low, high, generator=generator)

    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    factors = torch.cat([factor(brightness, 1), factor(contrast, 1), factor(saturation, 1), factor(hue, 0)], 1)
    order = torch.rand(b, 4, device=dev, generator=generator).argsort(1)
    op_at = torch.where(apply[:, None], order, len(ops))            # (B, step): op index, 4 = none
    counts = F.one_hot(op_at, len(ops) + 1).sum(0).tolist()            # (step, op) slice sizes: the one sync
    where = torch.arange(b, device=dev)                                 # original index of each row
    for step in range(4):
        perm = op_at[:, step].argsort(stable=True)
        x, factors, op_at, where = x[perm], factors[perm], op_at[perm], where[perm]
        start = 0
        for k, op in enumerate(ops):
            n = counts[step][k]
            if n:
                x[start:start + n] = op(x[start:start + n], factors[start:start + n, k:k + 1])
            start += n
    out = torch.empty_like(x)
    out[where] = x
    return out


def random_grayscale(x: torch.Tensor, p: float = 0.2, generator=None) -> torch.Tensor:
    """Replace each sample by its grayscale version (3 equal channels) with probability p."""
    gray = _uniform(x.shape[0], generator, x.device) < p
    return torch.where(gray.view(-1, 1, 1, 1), _grayscale(x).expand_as(x), x)


def blur_kernel_size(side: int, fraction: float = 0.1) -> int:
    """Odd kernel of about `fraction` of the side (the SimCLR code's int(0.1 side), made odd): 23 at 224 px, 3 at 32 px."""
    return 2 * (int(fraction * side) // 2) + 1


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma=(0.1, 2.0), p: float = 1.0, generator=None) -> torch.Tensor:
    """Separable Gaussian blur, sigma ~ U(sigma) per sample, reflect padding; each sample blurred with probability p."""
    b, c, h, w = x.shape
    r = kernel_size // 2
    if r == 0:
        return x
    sig = _uniform(b, generator, x.device, *sigma)
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    kern = torch.exp(-t[None] ** 2 / (2 * sig[:, None] ** 2))
    kern = kern / kern.sum(1, keepdim=True)
    keep = _uniform(b, generator, x.device) >= p
    kern = torch.where(keep[:, None], (t == 0).to(x.dtype).expand_as(kern), kern)
    kern = kern.repeat_interleave(c, 0)                               # (B*C, k): one filter per channel
    y = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect")
    y = F.conv2d(y, kern.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, kern.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


@dataclass(frozen=True)
class ViewProfile:
    """The SimCLR view recipe; defaults are the study's 224 px recipe (sthalles/SimCLR, which it used)."""

    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter: tuple = (0.8, 0.8, 0.8, 0.2)     # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 1.0                       # the study's code blurs every view
    blur_sigma: tuple = (0.1, 2.0)
    blur_fraction: float = 0.1                # kernel side as a fraction of the image side


VIEW_PROFILES = {
    "imagenet": ViewProfile(),
    # 28-64 px (SimCLR's CIFAR recipe): colour strength 0.5, no blur (a 3-px kernel only smears
    # what little detail there is), crops no smaller than a fifth of the area.
    "small": ViewProfile(crop_scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), blur_p=0.0),
}


def view_profile(name: str = "auto", resolution: int | None = None, **overrides) -> ViewProfile:
    """Pick a profile ('auto': 'small' up to 64 px, else 'imagenet') and override any of its fields."""
    if name == "auto":
        if resolution is None:
            raise NbstudyError("views='auto' needs the image resolution: pass resolution= or name a profile")
        name = "small" if int(resolution) <= 64 else "imagenet"
    if name not in VIEW_PROFILES:
        raise NbstudyError(f"unknown view profile {name!r}: use 'auto', {', '.join(map(repr, VIEW_PROFILES))}")
    valid = {f.name for f in fields(ViewProfile)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise NbstudyError(f"unknown view option(s) {', '.join(unknown)}: valid are {', '.join(sorted(valid))}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(VIEW_PROFILES[name], **fixed)


def simclr_view(x: torch.Tensor, profile: ViewProfile, generator=None) -> torch.Tensor:
    """One random view per sample: resized crop, flip, colour jitter, grayscale, blur (the SimCLR order)."""
    x = random_resized_crop(x, None, profile.crop_scale, profile.crop_ratio, generator)
    x = random_hflip(x, profile.hflip_p, generator)
    x = color_jitter(x, *profile.jitter, p=profile.jitter_p, generator=generator)
    x = random_grayscale(x, profile.gray_p, generator)
    if profile.blur_p > 0:
        x = gaussian_blur(x, blur_kernel_size(x.shape[-1], profile.blur_fraction), profile.blur_sigma,
                          profile.blur_p, generator)
    return x
