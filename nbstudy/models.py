"""The study's networks: torchvision's ResNet18 (the study's), ResNet50 and a ViT-Tiny, random init.

The *backbone* is the network without its classification layer; it maps (B, 3, H, W) images
to (B, backbone.feature_dim) features (ResNet18 512, ResNet50 2048, ViT-Tiny 192).
Pretraining methods put their own heads on it, and the noisy-label stage puts a linear
classifier on it. Every backbone carries ``arch`` (its name in BACKBONES), ``feature_dim``
and ``small_stem``. State-dict keys are torchvision's (``conv1.weight``,
``encoder.layers.encoder_layer_0...``) without the classification layer.

- ResNets (He et al. 2016, torchvision ``resnet18``/``resnet50``): the stem is the
  ImageNet one (7x7 stride 2 + max-pool) or, for small images, a 3x3 stride-1 convolution
  without max-pool (`use_small_stem`).
- ViT-Tiny (Dosovitskiy et al. 2021; the DeiT-Tiny shape, Touvron et al. 2021: hidden 192,
  12 layers, 3 heads, MLP 768), torchvision's ``VisionTransformer``; features are the class
  token after the final LayerNorm. Patch size follows the resolution (`vit_patch`), so the
  image is at most 16 x 16 patches. It takes inputs of any side of at least one patch: the
  position embeddings (learned for the full image) are resized bicubically to the input's
  patch grid, as DINO and timm do; the jigsaw tiles need this. The stem does not apply (a
  ViT ignores it, so a study can compare a ResNet with the ImageNet stem and a ViT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.vision_transformer import VisionTransformer

from nbstudy.errors import NbstudyError

STEMS = ("auto", "imagenet", "small")
BACKBONES = ("resnet18", "resnet50", "vit_tiny")
RESNETS = {"resnet18": resnet18, "resnet50": resnet50}
VIT_TINY = {"num_layers": 12, "num_heads": 3, "hidden_dim": 192, "mlp_dim": 768}


def use_small_stem(stem: str, resolution: int) -> bool:
    """'auto' picks the 3x3 stride-1 stem (no max-pool) for images of 64 px or less."""
    if stem not in STEMS:
        raise NbstudyError(f"unknown stem {stem!r}: use one of {', '.join(STEMS)}")
    if stem == "auto":
        return int(resolution) <= 64
    return stem == "small"


def vit_patch(resolution: int) -> int:
    """The ViT's patch side for square images of `resolution` px: 4 up to 64 px (32 px: 8 x 8 patches, as
    ViTs on CIFAR use), 8 up to 128 px, else 16 (224 px: 14 x 14, ViT/16's grid)."""
    return 4 if resolution <= 64 else 8 if resolution <= 128 else 16


class ViT(VisionTransformer):
    """torchvision's VisionTransformer without its head, for any input side (position embeddings resized)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, hidden_dim) class-token features; H and W at least one patch (a rest of
        H mod patch pixels is dropped, as the patch convolution does)."""
        x = self.conv_proj(x)                                    # (B, D, gh, gw)
        gh, gw = x.shape[-2:]
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], 1)
        enc = self.encoder
        x = enc.ln(enc.layers(enc.dropout(x + self.position_embedding(gh, gw))))
        return x[:, 0]

    def position_embedding(self, gh: int, gw: int) -> torch.Tensor:
        """(1, 1 + gh gw, D): the class token's embedding and the patch grid's, resized bicubically when the
        grid is not the one the network was built for."""
        pos = self.encoder.pos_embedding
        g = self.image_size // self.patch_size
        if (gh, gw) == (g, g):
            return pos
        grid = pos[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(gh, gw), mode="bicubic", align_corners=False).to(pos.dtype)
        return torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], 1)


def build_backbone(small_stem: bool = False, arch: str = "resnet18", resolution: int = 32) -> nn.Module:
    """A backbone of `arch` (BACKBONES), random init (never downloads weights), for `resolution` px images.

    small_stem: the ResNets' 3x3 stride-1 stem without max-pool (ignored by the ViT, whose
    patch size is `vit_patch(resolution)`). Returns an nn.Module mapping (B, 3, H, W) to
    (B, feature_dim), with attributes arch, feature_dim, small_stem.
    Errors: NbstudyError for an unknown arch or a resolution smaller than one ViT patch.
    """
    if arch not in BACKBONES:
        raise NbstudyError(f"unknown backbone {arch!r}: use one of {', '.join(BACKBONES)}")
    if arch in RESNETS:
        net = RESNETS[arch](weights=None)
        if small_stem:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
            net.maxpool = nn.Identity()
        net.feature_dim = net.fc.in_features
        net.fc = nn.Identity()
    else:
        patch = vit_patch(resolution)
        if resolution < patch:
            raise NbstudyError(f"resolution {resolution} px is smaller than one {patch} px patch: use a larger one")
        net = ViT(image_size=resolution // patch * patch, patch_size=patch, **VIT_TINY)
        net.heads = nn.Identity()
        net.feature_dim, small_stem = VIT_TINY["hidden_dim"], False
    net.arch, net.small_stem = arch, bool(small_stem)
    return net


def run_backbone(arch: str, stem: str, resolution: int) -> nn.Module:
    """The backbone a run's `backbone` and `stem` parameters name, at `resolution` px (a ViT ignores the stem)."""
    return build_backbone(use_small_stem(stem, resolution), arch, resolution)


class Classifier(nn.Module):
    """Backbone + linear layer; `features` exposes the backbone's (B, feature_dim) representation."""

    def __init__(self, num_classes: int, small_stem: bool = False, backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else build_backbone(small_stem)
        self.fc = nn.Linear(self.backbone.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone(x))


def first_layer(arch: str) -> str:
    """What `first_layer_filters` returns for a backbone of `arch`: 'first convolution' or 'patch embedding'."""
    return "first convolution" if arch in RESNETS else "patch embedding"


def first_layer_filters(backbone: nn.Module) -> torch.Tensor:
    """The first layer's weights, detached on the CPU, for the filter plots: a ResNet's first convolution
    (64, 3, k, k), a ViT's patch embedding (192, 3, p, p)."""
    layer = backbone.conv_proj if isinstance(backbone, ViT) else backbone.conv1
    return layer.weight.detach().float().cpu().clone()
