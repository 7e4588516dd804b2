"""Losses as ``nn.Module`` s (with functional twins), usable in a plain PyTorch loop."""

from geossl.losses.contrastive import NTXentLoss, info_nce, nt_xent
from geossl.losses.dino import DINOLoss, dino_loss, teacher_temperature
from geossl.losses.swav import SwAVLoss, SwAVQueue, swav_codes, swav_loss

__all__ = [
    "DINOLoss",
    "NTXentLoss",
    "SwAVLoss",
    "SwAVQueue",
    "dino_loss",
    "info_nce",
    "nt_xent",
    "swav_codes",
    "swav_loss",
    "teacher_temperature",
]
