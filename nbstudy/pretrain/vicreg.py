"""VICReg (Bardes, Ponce, LeCun, ICLR 2022): variance-invariance-covariance regularisation of two views.

loss = lambda * MSE(z0, z1)                                   (invariance)
     + mu * (hinge(z0) + hinge(z1)) / 2, hinge(z) = mean_d max(0, 1 - sqrt(Var z_d + eps))  (variance)
     + nu * (cov(z0) + cov(z1)), cov(z) = sum_{i != j} Cov(z)_ij^2 / D                   (covariance)
with the unbiased batch variance and covariance, eps 1e-4. The variance hinge keeps every
dimension's spread at least 1 (no collapse), the covariance term decorrelates dimensions. No
negatives, no momentum encoder, no standardisation inside the loss.

Defaults: weights lambda, mu, nu = 25, 25, 1 (the paper's); projector of the paper's structure
(three linear layers, BatchNorm + ReLU after the first two) but 2048 wide instead of 8192
(solo-learn's CIFAR recipe; option ``projector_dim``). The loss is lightly's ``VICRegLoss``
(written after the authors' code, facebookresearch/vicreg).
"""

from __future__ import annotations

import torch
from lightly.loss import VICRegLoss
from lightly.models.modules.heads import VICRegProjectionHead

from nbstudy.params import Param, real, whole
from nbstudy.pretrain.twoview import VIEW_OPTIONS, TwoViewMethod, pair_accuracy


def vicreg_loss(z0: torch.Tensor, z1: torch.Tensor, invariance: float = 25.0, variance: float = 25.0,
                covariance: float = 1.0) -> torch.Tensor:
    """VICReg loss of two (N, D) embeddings (N >= 2; lightly asserts it), a scalar (see the module docstring)."""
    return VICRegLoss(lambda_param=invariance, mu_param=variance, nu_param=covariance)(z0, z1)


class VICReg(TwoViewMethod):
    name = "vicreg"
    options = {
        "invariance": Param(25.0, real(0), "weight lambda of the invariance (MSE) term (the paper's 25)"),
        "variance": Param(25.0, real(0), "weight mu of the variance hinge (the paper's 25)"),
        "covariance": Param(1.0, real(0), "weight nu of the covariance term (the paper's 1)"),
        "projector_dim": Param(2048, whole(2), "width of the projector's three layers (paper: 8192)"),
        **VIEW_OPTIONS,
    }

    def __init__(self, backbone, mean, std, resolution: int, invariance: float = 25.0, variance: float = 25.0,
                 covariance: float = 1.0, projector_dim: int = 2048, views: str = "auto",
                 view_options: dict | None = None):
        super().__init__(backbone, mean, std, resolution, views, view_options)
        self.weights = (float(invariance), float(variance), float(covariance))
        self.head = VICRegProjectionHead(backbone.feature_dim, projector_dim, projector_dim, num_layers=3)

    def forward(self, inputs):
        """(2B, 3, H, W) views -> (2B, projector_dim) embeddings."""
        return self.head(self.backbone(self.normalize(inputs)))

    def loss(self, outputs, targets=None):
        """VICReg loss and the pair-finding accuracy (`pair_accuracy`) of the embeddings."""
        z = outputs.float()
        return vicreg_loss(*z.chunk(2), *self.weights), pair_accuracy(z)
