"""Pretext losses and the learning-rate schedule, against lightly and hand computations."""

import math

import pytest
import torch
from lightly.loss import NTXentLoss

from nbstudy.pretrain.base import classification_loss
from nbstudy.pretrain.run import lr_factor, steps_per_epoch
from nbstudy.pretrain.simclr import SimCLR, contrastive_logits, nt_xent
from nbstudy.models import build_backbone


@pytest.mark.parametrize("n, dim, temperature", [(8, 16, 0.07), (5, 128, 0.5), (1, 4, 0.2), (33, 32, 1.0)])
def test_nt_xent_equals_lightly(n, dim, temperature):
    g = torch.Generator().manual_seed(n)
    z0, z1 = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    ours = nt_xent(z0, z1, temperature)
    theirs = NTXentLoss(temperature=temperature)(z0, z1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_nt_xent_by_hand():
    # Two images, each view equal to its pair: a=(1,0), b=(0,1). Every row sees its positive at
    # cosine 1 and two negatives at cosine 0, so loss = -log(e^(1/T) / (e^(1/T) + 2)).
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    for t in (1.0, 0.5):
        assert nt_xent(z, 2 * z, t).item() == pytest.approx(math.log(1 + 2 * math.exp(-1 / t)), rel=1e-6)
    # Swapped partners: each row's positive is at cosine 0, its copy (a negative) at cosine 1,
    # so loss = -log(e^0 / (e^0 + e^0 + e^1)) = log(2 + e).
    swapped = nt_xent(z, z.flip(0), 1.0).item()
    assert swapped == pytest.approx(math.log(2 + math.e), rel=1e-6)


def test_contrastive_targets_follow_the_actual_batch():
    for n in (1, 3, 4):
        logits, targets = contrastive_logits(torch.randn(n, 8), torch.randn(n, 8), 0.5)
        assert logits.shape == (2 * n, 2 * n) and torch.isinf(logits.diagonal()).all()
        assert targets.tolist() == [i + n for i in range(n)] + list(range(n))
    method = SimCLR(build_backbone(False), (0.5,) * 3, (0.25,) * 3, resolution=16)
    z = torch.randn(6, 128)
    loss, acc = method.loss(torch.cat([z, z]))                         # identical views: all positives found
    assert acc.item() == 1.0 and loss.item() == pytest.approx(nt_xent(z, z, method.temperature).item())


def test_classification_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    loss, acc = classification_loss(logits, torch.tensor([0, 1, 1]))
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(3))) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6) and acc.item() == pytest.approx(2 / 3)


def test_lr_schedule_warms_up_then_follows_a_cosine_per_iteration():
    warm, total = 4, 20
    assert [lr_factor(s, warm, total) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, warm, total) == 1.0
    assert lr_factor(12, warm, total) == pytest.approx(0.5)             # half-way through the cosine
    assert lr_factor(total, warm, total) == pytest.approx(0.0, abs=1e-12)
    decay = [lr_factor(s, warm, total) for s in range(warm, total + 1)]
    assert all(a > b for a, b in zip(decay, decay[1:]))                 # strictly falling at every step
    assert lr_factor(0, 0, 10) == 1.0


def test_steps_per_epoch_skips_only_a_single_leftover_image():
    assert steps_per_epoch(10, 4) == 3 and steps_per_epoch(9, 4) == 2 and steps_per_epoch(8, 4) == 2
