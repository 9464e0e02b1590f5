"""BYOL (Grill et al., NeurIPS 2020): an online network predicts a slowly moving target network's projection.

Online: backbone -> projector -> predictor q; target: an EMA copy of backbone + projector giving z'
(no gradient). loss = mean over both views of 2 - 2 cos(q(view a), z'(view b)), i.e. the squared
distance of the normalised vectors, symmetrised (the paper sums the two directions; here their
mean, so the loss lies in [0, 4]; Adam does not see the factor 2). After every optimizer step the
target moves: target <- tau_k target + (1 - tau_k) online, with the paper's cosine schedule
tau_k = 1 - (1 - tau_0)(cos(pi k / K) + 1) / 2 rising from tau_0 to 1 over the K steps of the run
(lightly's ``cosine_schedule``, which puts K - 1 where the paper has K so the last step reaches 1).

Defaults: tau_0 = 0.99, not the paper's 0.996. The paper's value is for ImageNet runs of ~300,000
steps; a target that moves 0.4 % per step barely leaves its random init in the few hundred steps
of a small run here (0.996^300 = 0.30 of it is left, 0.99^300 = 0.05), and 0.99 is what
solo-learn's CIFAR recipe uses. Heads of the paper's structure (Linear -> BN -> ReLU -> Linear)
but 1024 wide instead of 4096 (lightly's BYOL example), output 256 as in the paper (options ``hidden_dim``,
``out_dim``); lightly's ``BYOLProjectionHead`` / ``BYOLPredictionHead``.

Option ``head_lr_factor`` trains projector and predictor at that multiple of the base learning rate (default 1).
In a run of a few hundred steps on the synthetic set the predictor otherwise settles on the mean target direction
(a near-constant output) and the backbone learns nothing useful; at 10x, with SGD and grey views, it learns
(docs/pretraining.md, "Fourth search").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightly.models.modules.heads import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import update_momentum
from lightly.utils.scheduler import cosine_schedule

from nbstudy.params import Param, real, whole
from nbstudy.pretrain.twoview import (HEAD_LR_OPTION, VIEW_OPTIONS, TwoViewMethod, head_lr_groups, momentum_copy,
                                      pair_accuracy)


def byol_loss(q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean of 2 - 2 cos(q_i, z_partner(i)) over the 2N rows of online predictions q and target
    projections z, both (2N, D) with rows 0..N-1 view 1 and N..2N-1 view 2; a scalar in [0, 4]. z gets no
    gradient."""
    partner = z.detach().roll(z.shape[0] // 2, dims=0)          # view 2's target for view 1, and back
    return (2 - 2 * F.cosine_similarity(q, partner, dim=1)).mean()


def target_momentum(step: int, total_steps: int, base: float) -> float:
    """tau after 0-based step `step` of `total_steps`: cosine from `base` to 1 (BYOL, lightly's cosine_schedule)."""
    return cosine_schedule(step, total_steps, base, 1.0)


class BYOL(TwoViewMethod):
    name = "byol"
    options = {
        "base_momentum": Param(0.99, real(0, 1), "tau_0 of the target's EMA, rising to 1 by a cosine "
                               "(paper: 0.996 for ~300k steps; 0.99 suits short runs, as solo-learn's CIFAR recipe)"),
        "hidden_dim": Param(1024, whole(1), "hidden width of projector and predictor (paper: 4096)"),
        "out_dim": Param(256, whole(1), "output width of projector and predictor (paper: 256)"),
        **HEAD_LR_OPTION,
        **VIEW_OPTIONS,
    }

    def __init__(self, backbone, mean, std, resolution: int, base_momentum: float = 0.99, hidden_dim: int = 1024,
                 out_dim: int = 256, head_lr_factor: float = 1.0, views: str = "auto",
                 view_options: dict | None = None):
        super().__init__(backbone, mean, std, resolution, views, view_options)
        self.base_momentum = float(base_momentum)
        self.head_lr_factor = float(head_lr_factor)
        self.projector = BYOLProjectionHead(backbone.feature_dim, hidden_dim, out_dim)
        self.predictor = BYOLPredictionHead(out_dim, hidden_dim, out_dim)
        self.target_backbone = momentum_copy(self.backbone)
        self.target_projector = momentum_copy(self.projector)

    def forward(self, inputs):
        """(2B, 3, H, W) views -> (online predictions q, target projections z'), each (2B, out_dim)."""
        x = self.normalize(inputs)
        q = self.predictor(self.projector(self.backbone(x)))
        with torch.no_grad():
            z = self.target_projector(self.target_backbone(x))
        return q, z

    def loss(self, outputs, targets=None):
        """BYOL loss and the pair-finding accuracy (`pair_accuracy`) of the online predictions."""
        q, z = (o.float() for o in outputs)
        return byol_loss(q, z), pair_accuracy(q)

    def param_groups(self):
        """Backbone at the base lr, projector and predictor at head_lr_factor x it (the target has no gradient)."""
        return head_lr_groups(self, (self.projector, self.predictor), self.head_lr_factor)

    def after_step(self, step, total_steps):
        """Move the target towards the online network by the cosine-scheduled momentum."""
        tau = target_momentum(step, total_steps, self.base_momentum)
        update_momentum(self.backbone, self.target_backbone, tau)
        update_momentum(self.projector, self.target_projector, tau)
