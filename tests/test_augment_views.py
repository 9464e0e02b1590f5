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
