"""Backbones: torchvision ResNets for any number of input bands.

A backbone maps images (B, C, H, W) to features (B, D) (global-average-pooled, no classifier).
``in_chans`` sets the first convolution; ``small_stem`` replaces the 7x7/stride-2 convolution and
the max-pool by a 3x3/stride-1 convolution (the CIFAR variant of SimCLR, Chen et al. 2020, App. B.9).

Why the small stem is not the default at 64 px: on 2 CPU cores a forward+backward of 512 EuroSAT
images takes ~47 s with the small stem against ~2.3 s with the standard one (16x more activations),
so ``small_stem="auto"`` only turns it on for inputs of 32 px or less.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision import models

from geossl.errors import unknown_name_error

SMALL_STEM_MAX_SIZE = 32


@dataclass(frozen=True)
class BackboneInfo:
    """Registry entry: a constructor and the dimension of the pooled features."""

    build: Callable[[], nn.Module]
    feature_dim: int
    description: str


BACKBONES: dict[str, BackboneInfo] = {
    "resnet18": BackboneInfo(lambda: models.resnet18(weights=None), 512, "torchvision ResNet-18 (11.2 M parameters)"),
    "resnet34": BackboneInfo(lambda: models.resnet34(weights=None), 512, "torchvision ResNet-34 (21.3 M parameters)"),
    "resnet50": BackboneInfo(lambda: models.resnet50(weights=None), 2048, "torchvision ResNet-50 (23.5 M parameters)"),
}


def use_small_stem(small_stem: bool | str, image_size: int) -> bool:
    """Resolve ``small_stem="auto"``: on for images of at most 32 px, off otherwise."""
    if small_stem == "auto":
        return image_size <= SMALL_STEM_MAX_SIZE
    if isinstance(small_stem, str):
        return small_stem.lower() in {"true", "yes", "1"}
    return bool(small_stem)


def build_backbone(name: str, in_chans: int = 3, small_stem: bool = False) -> nn.Module:
    """Build a randomly initialised backbone whose forward returns pooled features.

    Args:
        name: a key of :data:`BACKBONES` (``resnet18``, ``resnet34``, ``resnet50``).
        in_chans: number of input bands C.
        small_stem: 3x3 stride-1 first convolution and no max-pool (for images ≤ 32 px).

    Returns:
        Module mapping (B, C, H, W) -> (B, D); ``module.feature_dim`` holds D.
    """
    if name not in BACKBONES:
        raise unknown_name_error("backbone", name, BACKBONES)
    if in_chans < 1:
        raise ValueError(f"in_chans must be >= 1, got {in_chans}")
    info = BACKBONES[name]
    net = info.build()
    if small_stem:
        net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_chans != 3:
        net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if small_stem or in_chans != 3:
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.fc = nn.Identity()
    net.feature_dim = info.feature_dim  # type: ignore[assignment]
    return net


def feature_dim(backbone: nn.Module) -> int:
    """Dimension D of the features a geossl backbone returns."""
    return int(getattr(backbone, "feature_dim"))


@torch.no_grad()
def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
