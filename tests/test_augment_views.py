"""SimCLR view augmentations: each op against torchvision or a hand-made case, per-sample randomness, profiles."""

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from nbstudy import augment as A
from nbstudy.errors import NbstudyError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("ours, theirs, factor", [
    (A.adjust_brightness, TF.adjust_brightness, 1.4),
    (A.adjust_contrast, TF.adjust_contrast, 0.5),
    (A.adjust_saturation, TF.adjust_saturation, 1.7),
    (A.adjust_hue, TF.adjust_hue, 0.2),
    (A.adjust_hue, TF.adjust_hue, -0.45),
])
def test_colour_ops_match_torchvision(ours, theirs, factor):
    x = torch.rand(3, 3, 12, 12, generator=_gen())
    x[0] = x[0, :1]                                  # a gray image: hue and saturation undefined
    got = ours(x, torch.full((3, 1, 1, 1), factor))
    torch.testing.assert_close(got, theirs(x, factor), atol=2e-6, rtol=0)


def test_color_jitter_is_per_sample_and_respects_p():
    x = 0.6 * torch.rand(1, 3, 8, 8, generator=_gen()).expand(16, -1, -1, -1)   # no clipping at 1.5x
    assert torch.equal(A.color_jitter(x, p=0.0, generator=_gen()), x)
    y = A.color_jitter(x, p=1.0, generator=_gen())
    assert y.min() >= 0 and y.max() <= 1
    assert len({round(float(v), 5) for v in y.mean((1, 2, 3))}) == 16       # each sample its own factors
    b = A.color_jitter(x, brightness=0.5, contrast=0, saturation=0, hue=0, p=1.0, generator=_gen())
    ratio = b[..., 0, 0] / x[..., 0, 0]                                       # brightness only: one factor per sample
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio >= 0.5 - 1e-5) & (ratio <= 1.5 + 1e-5)).all()


def test_random_grayscale():
    x = torch.rand(8, 3, 5, 5, generator=_gen())
    g = A.random_grayscale(x, p=1.0, generator=_gen())
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    assert torch.equal(A.random_grayscale(x, p=0.0, generator=_gen()), x)


def test_gaussian_blur_matches_torchvision_and_keeps_flat_images():
    x = torch.rand(2, 3, 16, 16, generator=_gen())
    got = A.gaussian_blur(x, 5, sigma=(1.3, 1.3), p=1.0, generator=_gen())
    torch.testing.assert_close(got, TF.gaussian_blur(x, [5, 5], [1.3, 1.3]), atol=1e-6, rtol=0)
    flat = torch.full((2, 3, 9, 9), 0.3)
    torch.testing.assert_close(A.gaussian_blur(flat, 7, generator=_gen()), flat)
    assert torch.equal(A.gaussian_blur(x, 5, p=0.0, generator=_gen()), x)
    assert A.blur_kernel_size(224) == 23 and A.blur_kernel_size(32) == 3


def test_crop_resize_copies_whole_pixel_boxes_and_averages_halvings():
    x = torch.rand(1, 3, 10, 10, generator=_gen())
    cut = A.crop_resize(x, torch.tensor([[2.0, 3.0, 4.0, 5.0]]), (5, 4))     # x0, y0, w, h
    torch.testing.assert_close(cut, x[:, :, 3:8, 2:6])
    half = A.crop_resize(x, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), (5, 5))
    torch.testing.assert_close(half, F.avg_pool2d(x, 2))


def test_random_resized_crop_box_sizes_follow_scale():
    side = 40
    ramp = (torch.arange(side) + 0.5).div(side).expand(side, side)             # value = x position
    x = torch.stack([ramp, ramp.T, ramp]).expand(64, -1, -1, -1)
    whole = A.random_resized_crop(x, scale=(1, 1), ratio=(1, 1), generator=_gen())
    torch.testing.assert_close(whole, x)
    quarter = A.random_resized_crop(x, scale=(0.25, 0.25), ratio=(1, 1), generator=_gen())
    # A 20-px box sampled at 40 px: output columns 1 and 38 are 37 half-pixels apart (edges clamp, so skip them).
    width = quarter[:, 0, 0, 38] - quarter[:, 0, 0, 1]
    assert torch.allclose(width, torch.full_like(width, 37 * 0.5 / side), atol=1e-5)
    assert quarter[:, 0, 0, 0].unique().numel() > 30                          # each sample its own position
    small = A.random_resized_crop(x, size=8, generator=_gen())
    assert small.shape == (64, 3, 8, 8)


def test_view_profiles():
    assert A.view_profile("auto", 32) == A.VIEW_PROFILES["small"]
    assert A.view_profile("auto", 224) == A.VIEW_PROFILES["imagenet"]
    big = A.view_profile("imagenet")
    assert big.jitter == (0.8, 0.8, 0.8, 0.2) and big.jitter_p == 0.8 and big.gray_p == 0.2
    assert big.blur_sigma == (0.1, 2.0) and big.blur_fraction == 0.1
    assert A.view_profile("small", blur_p=0.5, crop_scale=[0.3, 1.0]).crop_scale == (0.3, 1.0)
    with pytest.raises(NbstudyError, match="blur_size.*valid are"):
        A.view_profile("small", blur_size=3)
    with pytest.raises(NbstudyError, match="unknown view profile"):
        A.view_profile("huge")


def test_simclr_views_are_random_per_sample_and_seeded():
    x = torch.rand(1, 3, 32, 32, generator=_gen()).expand(6, -1, -1, -1)
    profile = A.view_profile("imagenet")                 # with blur
    a = A.simclr_view(x, profile, _gen(1))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1 + 1e-6
    assert torch.equal(a, A.simclr_view(x, profile, _gen(1)))
    assert not torch.equal(a, A.simclr_view(x, profile, _gen(2)))
    assert not torch.allclose(a[0], a[1])


def _jitter_one_by_one(x, seed, s=(0.8, 0.8, 0.8, 0.2), p=0.8):
    """The reference: the same random draws as color_jitter, then each sample's ops applied in its own order."""
    g, b = _gen(seed), x.shape[0]
    apply = torch.rand(b, generator=g) < p
    factors = [torch.empty(b, 1, 1, 1).uniform_(max(0.0, 1 - v), 1 + v, generator=g) for v in s[:3]]
    factors.append(torch.empty(b, 1, 1, 1).uniform_(-s[3], s[3], generator=g))
    order = torch.rand(b, 4, generator=g).argsort(1)
    ops = (A.adjust_brightness, A.adjust_contrast, A.adjust_saturation, A.adjust_hue)
    out = []
    for i in range(b):
        xi = x[i:i + 1]
        for k in (order[i].tolist() if apply[i] else []):
            xi = ops[k](xi, factors[k][i:i + 1])
        out.append(xi)
    return torch.cat(out)


def test_color_jitter_equals_applying_each_sample_in_its_own_order():
    x = torch.rand(24, 3, 6, 6, generator=_gen(5))
    torch.testing.assert_close(A.color_jitter(x, generator=_gen(9)), _jitter_one_by_one(x, 9), atol=1e-6, rtol=0)


def test_flip_and_grayscale_rates_follow_p():
    n = 4000
    x = torch.rand(1, 3, 4, 4, generator=_gen()).expand(n, -1, -1, -1)
    flipped = (A.random_hflip(x, 0.5, _gen(1)) != x).flatten(1).any(1).float().mean()
    gray = (A.random_grayscale(x, 0.2, _gen(2)) != x).flatten(1).any(1).float().mean()
    assert abs(flipped - 0.5) < 4 * (0.25 / n) ** 0.5 and abs(gray - 0.2) < 4 * (0.16 / n) ** 0.5


def test_weak_crop_offsets_are_uniform_over_the_padding():
    n, pad = 3000, 2
    x = torch.zeros(n, 1, 8, 8)
    x[:, :, 4, 4] = 1.0                                   # a dot: where it lands gives the offset
    y = A.random_crop(x, pad, _gen(3))
    rows, cols = y[:, 0].amax(2).argmax(1), y[:, 0].amax(1).argmax(1)
    shifts = torch.stack([4 - rows, 4 - cols], 1) + pad   # 0..2 pad
    counts = torch.bincount(shifts.flatten(), minlength=2 * pad + 1).float() / (2 * n)
    assert shifts.min() >= 0 and shifts.max() <= 2 * pad
    assert (counts - 1 / (2 * pad + 1)).abs().max() < 0.03
