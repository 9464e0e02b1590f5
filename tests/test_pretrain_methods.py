"""The study's four pretext methods: inputs and targets known by construction, shapes, heads, gradients (the
follow-up's two-view methods: test_pretrain_zoo.py)."""

import numpy as np
import pytest
import torch

from nbstudy.errors import NbstudyError
from nbstudy.models import build_backbone
from nbstudy.pretrain import METHODS, build_method
from nbstudy.pretrain.jigmag import ORDERS, Jigmag, make_jigmag
from nbstudy.pretrain.jigsaw import (Jigsaw, make_puzzle, min_hamming, normalize_tiles, permutation_set,
                                     tile_geometry)
from nbstudy.pretrain.rotation import rotate_all

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registry():
    assert list(METHODS) == ["simclr", "rotation", "jigsaw", "jigmag",
                             "barlow_twins", "byol", "moco", "simsiam", "vicreg"]
    assert all(cls.name == name for name, cls in METHODS.items())


def test_rotations_are_exact_and_labelled_by_quarter_turns():
    x = torch.rand(3, 3, 6, 6, generator=_gen())
    turned, labels = rotate_all(x)
    assert turned.shape == (12, 3, 6, 6) and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for img, k in zip(turned, labels.tolist()):
        back = torch.rot90(img, -k, dims=(1, 2))
        assert any(torch.equal(back, orig) for orig in x)
    assert torch.equal(turned[3], torch.rot90(x[0], 1, dims=(1, 2)))    # counter-clockwise, no interpolation


def test_permutation_set_is_deterministic_and_far_apart():
    perms = permutation_set(100)
    assert perms.shape == (100, 9) and perms.dtype == np.int64
    assert all(sorted(p) == list(range(9)) for p in perms.tolist())
    assert len({tuple(p) for p in perms.tolist()}) == 100 and perms[0].tolist() == list(range(9))
    permutation_set.cache_clear()
    assert np.array_equal(permutation_set(100), perms)
    assert min_hamming(perms) >= 6
    # Greedy farthest-point: each added permutation is at least as far from its predecessors as the next one.
    dist = (perms[:, None] != perms[None]).sum(-1)
    gaps = [dist[i, :i].min() for i in range(1, 100)]
    assert all(a >= b for a, b in zip(gaps, gaps[1:]))
    random = np.array([np.random.default_rng(s).permutation(9) for s in range(100)])
    assert min_hamming(perms) > min_hamming(random)
    with pytest.raises(NbstudyError, match="permutations=1 is out of range"):
        permutation_set(1)


def test_tile_geometry_for_small_and_large_images():
    assert tile_geometry(32) == (10, 8, 8)
    assert tile_geometry(28) == (9, 7, 7)
    assert tile_geometry(224, small_stem=False) == (74, 63, 63)
    assert tile_geometry(32, small_stem=False) == (10, 8, 32)         # upsampled for the ImageNet stem
    assert tile_geometry(32, tile=12) == (10, 8, 12)
    assert tile_geometry(12) == (4, 2, 2)                               # the smallest puzzle: 2-px tiles
    for side in (8, 9, 10, 11):                                         # 1-px tiles: no content, NaN per-tile std
        with pytest.raises(NbstudyError, match=f"jigsaw at {side} px .* tiles of 1 px: use a resolution of at least 12"):
            tile_geometry(side)
    with pytest.raises(NbstudyError, match="tile=1 is invalid"):
        tile_geometry(32, tile=1)


def test_puzzle_tiles_come_from_the_cells_the_permutation_names():
    side = 30                                                        # cells of 10 px, each one constant = its index
    cell_id = (torch.arange(side) // 10)[:, None] * 3 + (torch.arange(side) // 10)[None, :]
    x = (cell_id.float() / 10).expand(4, 3, side, side).contiguous()
    perms = torch.from_numpy(permutation_set(100))
    labels = torch.tensor([0, 5, 42, 99])
    tiles = make_puzzle(x, perms, labels, cell=10, crop=8, tile=8, generator=_gen())
    assert tiles.shape == (4, 9, 3, 8, 8)
    for b in range(4):
        for pos in range(9):
            assert torch.allclose(tiles[b, pos], torch.full((3, 8, 8), perms[labels[b], pos].item() / 10), atol=1e-6)


def test_puzzle_crops_move_inside_their_cell():
    ramp = (torch.arange(30) + 0.5).expand(30, 30)                   # value = x position
    x = torch.stack([ramp, ramp.T, ramp]).expand(64, -1, -1, -1)
    perms = torch.from_numpy(permutation_set(100))
    tiles = make_puzzle(x, perms, torch.zeros(64, dtype=torch.long), cell=10, crop=8, tile=8, generator=_gen())
    left = tiles[:, 0, 0, 0, 0] - 0.5                                # left pixel of the top-left tile
    assert set(left.round().long().tolist()) == {0, 1, 2}            # offsets 0..cell-crop, all used
    steps = tiles[:, 0, 0, 0, 1:] - tiles[:, 0, 0, 0, :-1]
    torch.testing.assert_close(steps, torch.ones(64, 7), atol=1e-5, rtol=0)   # copied pixel by pixel, not resampled


def test_tiles_are_normalised_each_on_its_own():
    t = normalize_tiles(torch.rand(5, 3, 8, 8, generator=_gen()) * 3 + 1)
    torch.testing.assert_close(t.mean((-2, -1)), torch.zeros(5, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(t.std((-2, -1)), torch.ones(5, 3), atol=1e-5, rtol=0)
    assert torch.isfinite(normalize_tiles(torch.ones(1, 3, 4, 4))).all()


def test_jigmag_quadrants_show_the_ordered_magnifications():
    side = 64                                                        # value = Chebyshev distance from the centre
    c = torch.arange(side) + 0.5 - side / 2
    ring = torch.maximum(c[:, None].abs(), c[None, :].abs()) / (side / 2)
    x = ring.expand(24, 3, side, side).contiguous()
    labels = torch.arange(24)
    grid = make_jigmag(x, labels, tile=32)
    assert grid.shape == (24, 3, 64, 64)
    for b in range(24):
        for q in range(4):
            r, col = divmod(q, 2)
            quadrant = grid[b, 0, r * 32:(r + 1) * 32, col * 32:(col + 1) * 32]
            # centre crop of side S / 2**m reaches a distance of 2**-m from the centre
            assert quadrant.max().item() == pytest.approx(2.0 ** -ORDERS[b, q].item(), abs=0.05)
    assert len({tuple(o) for o in ORDERS.tolist()}) == 24


def test_jigmag_draws_all_24_orders():
    method = Jigmag(build_backbone(True), MEAN, STD, resolution=16)
    _, labels = method.make_inputs(torch.rand(600, 3, 16, 16, generator=_gen()), _gen())
    assert set(labels.tolist()) == set(range(24))


@pytest.mark.parametrize("name, out_dim, n_inputs", [("simclr", 128, 8), ("rotation", 4, 16),
                                                      ("jigsaw", 100, 4), ("jigmag", 24, 4)])
def test_each_method_trains_end_to_end_on_a_tiny_batch(name, out_dim, n_inputs):
    data = type("D", (), {"resolution": 16, "mean": MEAN, "std": STD})()
    method = build_method({"method": name, "stem": "small"}, data)
    x = torch.rand(4, 3, 16, 16, generator=_gen())
    inputs, targets = method.make_inputs(x, _gen())
    assert len(inputs) == n_inputs and inputs.min() >= 0 and inputs.max() <= 1 + 1e-6
    outputs = method(inputs)
    assert outputs.shape == (n_inputs, out_dim)
    loss, acc = method.loss(outputs, targets)
    assert torch.isfinite(loss) and 0 <= acc.item() <= 1
    loss.backward()
    assert method.backbone.conv1.weight.grad.abs().sum() > 0


def test_jigsaw_runs_one_shared_trunk_over_nine_tiles():
    method = Jigsaw(build_backbone(True), MEAN, STD, resolution=32)
    calls = []
    method.backbone.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    tiles, _ = method.make_inputs(torch.rand(2, 3, 32, 32, generator=_gen()), _gen())
    assert method(tiles).shape == (2, 100) and calls == [torch.Size([18, 3, 8, 8])]
    assert len(method.metadata()["jigsaw"]["permutations"]) == 100


def test_jigsaw_labels_are_uniform_over_the_permutation_set():
    method = Jigsaw(build_backbone(small_stem=True), MEAN, STD, resolution=12, permutations=10)
    _, labels = method.make_inputs(torch.rand(4000, 3, 12, 12, generator=_gen()), _gen(1))
    freq = torch.bincount(labels, minlength=10).float() / 4000
    assert labels.min() >= 0 and labels.max() < 10 and (freq - 0.1).abs().max() < 0.02
