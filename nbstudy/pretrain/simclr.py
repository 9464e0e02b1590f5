"""SimCLR (Chen et al. 2020): two random views per image, a projection head, NT-Xent.

As in the study's code: projection 512 -> 512 -> ReLU -> 128 (the first layer takes the
backbone's feature_dim: 2048 for ResNet50, 192 for ViT-Tiny), cosine similarity over a
temperature. Unlike it, the positive-pair labels come from the batch at hand, so a short
last batch is handled correctly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nbstudy import augment
from nbstudy.errors import NbstudyError
from nbstudy.params import Param, check_names, mapping, one_of, real, reals
from nbstudy.pretrain.base import PretextMethod, to_hwc


def contrastive_logits(z0: torch.Tensor, z1: torch.Tensor, temperature: float):
    """The 2N x 2N cosine-similarity logits (self-similarity masked out) and each row's positive index.

    Rows 0..N-1 are the first views, N..2N-1 the second; the positive of row i is i + N mod 2N.
    """
    n = z0.shape[0]
    z = F.normalize(torch.cat([z0, z1]), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.arange(2 * n, device=z.device).roll(n)
    return logits, targets


def nt_xent(z0: torch.Tensor, z1: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent / InfoNCE: mean over all 2N views of -log softmax of the positive among the other 2N - 1."""
    return F.cross_entropy(*contrastive_logits(z0, z1, temperature))


class SimCLR(PretextMethod):
    name = "simclr"
    options = {
        "temperature": Param(0.5, real(0, low_open=True), "NT-Xent temperature (the study's code: 0.07, with "
                             "batch 512 and hundreds of epochs; 0.5 is better on short small runs)"),
        "views": Param("auto", one_of("auto", *augment.VIEW_PROFILES), "view profile: auto (small up to 64 px, "
                       "else imagenet), small, imagenet"),
        "view_options": Param({}, mapping(), "overrides of the view profile's fields, e.g. {'blur_p': 0.5}"),
    }

    # What view_options may override, and the values each field takes (augment.ViewProfile).
    view_checks = {"crop_scale": reals(2, 0, 1, low_open=True), "crop_ratio": reals(2, 0, low_open=True),
                   "hflip_p": real(0, 1), "jitter": reals(4, 0), "jitter_p": real(0, 1), "gray_p": real(0, 1),
                   "blur_p": real(0, 1), "blur_sigma": reals(2, 0, low_open=True),
                   "blur_fraction": real(0, 1, low_open=True)}

    @classmethod
    def check_options(cls, options, params):
        given = options["view_options"]
        check_names(given, list(cls.view_checks), "view option")
        views = {k: cls.view_checks[k](f"method_options.view_options.{k}", v) for k, v in given.items()}
        for pair in ("crop_scale", "crop_ratio", "blur_sigma"):
            if pair in views and views[pair][0] > views[pair][1]:
                raise NbstudyError(f"method_options.view_options.{pair}={views[pair]} is invalid: give (low, high) "
                                   "with low <= high")
        return {**options, "view_options": {k: list(v) if isinstance(v, tuple) else v for k, v in views.items()}}

    def __init__(self, backbone, mean, std, resolution: int, temperature: float = 0.5, views: str = "auto",
                 view_options: dict | None = None):
        super().__init__(backbone, mean, std, resolution)
        self.temperature = float(temperature)
        self.profile = augment.view_profile(views, resolution, **(view_options or {}))
        self.head = nn.Sequential(nn.Linear(backbone.feature_dim, 512), nn.ReLU(inplace=True), nn.Linear(512, 128))

    def make_inputs(self, x, generator=None):
        """Both views of every image, stacked: (2B, 3, H, W); no targets (the pairing is positional).

        Made in one call on the doubled batch (each sample draws its own parameters): half the
        kernel launches of two calls, which is what bounds augmentation on small images."""
        return augment.simclr_view(torch.cat([x, x]), self.profile, generator), None

    def forward(self, inputs):
        return self.head(self.backbone(self.normalize(inputs)))

    def loss(self, outputs, targets=None):
        """NT-Xent and the fraction of views whose nearest other view is their positive."""
        logits, positive = contrastive_logits(*outputs.float().chunk(2), self.temperature)
        return F.cross_entropy(logits, positive), (logits.argmax(1) == positive).float().mean()

    def examples(self, inputs, targets, n):
        b = inputs.shape[0] // 2
        return [[(to_hwc(inputs[i]), "view 1"), (to_hwc(inputs[b + i]), "view 2")] for i in range(min(n, b))]
