"""SimSiam (Chen & He, CVPR 2021): predict one view's projection from the other's, with a stop-gradient.

Encoder f = backbone + projector, predictor h; for the two views z = f(x), p = h(z) and
loss = -cos(p0, stopgrad(z1)) / 2 - cos(p1, stopgrad(z0)) / 2, in [-1, 1]. No negatives and no
momentum encoder: the stop-gradient alone keeps the encoder from collapsing to a constant.

Heads of the paper's structure: projector of three linear layers with BatchNorm (+ ReLU after the
first two, BatchNorm without affine after the last), predictor a bottleneck MLP
d -> d/4 -> BN, ReLU -> d. The paper uses d = 2048 (bottleneck 512); here d = 1024 (bottleneck 256,
the same 4:1 ratio) for small CPU runs (option ``projector_dim``). The similarity is lightly's
``NegativeCosineSimilarity``.

Option ``head_lr_factor`` trains projector and predictor at that multiple of the base learning rate (default 1;
the paper's predictor keeps a fixed lr instead). In a run of a few hundred steps on the synthetic set the heads'
outputs otherwise collapse to a few directions within the first epoch and the backbone with them; at 10x, with SGD
and grey views, it learns (docs/pretraining.md, "Fourth search").
"""

from __future__ import annotations

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules.heads import SimSiamPredictionHead, SimSiamProjectionHead

from nbstudy.params import Param, whole
from nbstudy.pretrain.twoview import HEAD_LR_OPTION, VIEW_OPTIONS, TwoViewMethod, head_lr_groups, pair_accuracy


def simsiam_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's symmetrised negative cosine of (2N, D) predictions p and projections z (rows 0..N-1 view 1,
    N..2N-1 view 2), a scalar in [-1, 1]; no gradient flows into z."""
    p0, p1 = p.chunk(2)
    z0, z1 = z.detach().chunk(2)
    similarity = NegativeCosineSimilarity()
    return (similarity(p0, z1) + similarity(p1, z0)) / 2


class SimSiam(TwoViewMethod):
    name = "simsiam"
    options = {
        "projector_dim": Param(1024, whole(4), "width d of the projector; the predictor is d -> d/4 -> d "
                               "(paper: 2048)"),
        **HEAD_LR_OPTION,
        **VIEW_OPTIONS,
    }

    def __init__(self, backbone, mean, std, resolution: int, projector_dim: int = 1024, head_lr_factor: float = 1.0,
                 views: str = "auto", view_options: dict | None = None):
        super().__init__(backbone, mean, std, resolution, views, view_options)
        self.head_lr_factor = float(head_lr_factor)
        self.projector = SimSiamProjectionHead(backbone.feature_dim, projector_dim, projector_dim)
        self.predictor = SimSiamPredictionHead(projector_dim, projector_dim // 4, projector_dim)

    def forward(self, inputs):
        """(2B, 3, H, W) views -> (predictions p, projections z), each (2B, projector_dim)."""
        z = self.projector(self.backbone(self.normalize(inputs)))
        return self.predictor(z), z

    def param_groups(self):
        """Backbone at the base lr, projector and predictor at head_lr_factor x it."""
        return head_lr_groups(self, (self.projector, self.predictor), self.head_lr_factor)

    def loss(self, outputs, targets=None):
        """SimSiam loss and the pair-finding accuracy (`pair_accuracy`) of the projections."""
        p, z = (o.float() for o in outputs)
        return simsiam_loss(p, z), pair_accuracy(z)
