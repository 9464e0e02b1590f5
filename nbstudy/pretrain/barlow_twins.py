"""Barlow Twins (Zbontar et al., ICML 2021): make the cross-correlation of two views' embeddings the identity.

Each view's embedding is standardised along the batch; C = z0^T z1 / N (D x D); the loss is
sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2: the diagonal term makes each dimension
invariant to augmentation, the off-diagonal term decorrelates the dimensions (redundancy
reduction). No negatives, no momentum encoder.

Defaults: lambda 0.0051 (option ``lambd``, named as in the authors' code, facebookresearch/barlowtwins;
the paper's value, also in the scripts of the study's follow-up);
projector of the paper's structure, three linear layers with BatchNorm + ReLU after the first
two, but 2048 wide rather than 8192 (solo-learn's CIFAR recipe; option ``projector_dim``, 8192 for
the paper's). The loss is lightly's ``BarlowTwinsLoss`` (Algorithm 1 of the paper).

In short runs with small batches a narrower projector learns much faster: on the synthetic set at 32 px
(batch 64, 12 epochs, Adam 3e-3) 128 wide beats random init at seeds 0, 1, 2 where 512 wide does at seed
0 only (the CPU acceptance setting; docs/pretraining.md, "Third search").
"""

from __future__ import annotations

import torch
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules.heads import BarlowTwinsProjectionHead

from nbstudy.params import Param, real, whole
from nbstudy.pretrain.twoview import VIEW_OPTIONS, TwoViewMethod, pair_accuracy


def barlow_twins_loss(z0: torch.Tensor, z1: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """Barlow Twins loss of two (N, D) embeddings (N >= 2), a scalar: invariance + lambda * redundancy.

    Standardisation uses the biased batch variance (BatchNorm without affine, eps 1e-5), as the
    paper's code; the result is a sum over dimensions, not a mean (it grows with D)."""
    return BarlowTwinsLoss(lambda_param=lambd)(z0, z1)


class BarlowTwins(TwoViewMethod):
    name = "barlow_twins"
    options = {
        "lambd": Param(0.0051, real(0), "weight of the off-diagonal (redundancy) term (the paper's 0.0051)"),
        "projector_dim": Param(2048, whole(2), "width of the projector's three layers (paper: 8192)"),
        **VIEW_OPTIONS,
    }

    def __init__(self, backbone, mean, std, resolution: int, lambd: float = 0.0051, projector_dim: int = 2048,
                 views: str = "auto", view_options: dict | None = None):
        super().__init__(backbone, mean, std, resolution, views, view_options)
        self.lambd = float(lambd)
        self.head = BarlowTwinsProjectionHead(backbone.feature_dim, projector_dim, projector_dim)

    def forward(self, inputs):
        """(2B, 3, H, W) views -> (2B, projector_dim) embeddings."""
        return self.head(self.backbone(self.normalize(inputs)))

    def loss(self, outputs, targets=None):
        """Barlow Twins loss and the pair-finding accuracy (`pair_accuracy`) of the embeddings."""
        z = outputs.float()
        return barlow_twins_loss(*z.chunk(2), self.lambd), pair_accuracy(z)
