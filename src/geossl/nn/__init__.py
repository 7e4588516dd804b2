"""Network building blocks: backbones, heads, EMA teachers."""

from geossl.nn.backbones import BACKBONES, build_backbone, feature_dim, use_small_stem
from geossl.nn.ema import cosine_momentum, ema_update, make_teacher
from geossl.nn.heads import ProjectionHead, SimCLRProjectionHead

__all__ = [
    "BACKBONES",
    "ProjectionHead",
    "SimCLRProjectionHead",
    "build_backbone",
    "cosine_momentum",
    "ema_update",
    "feature_dim",
    "make_teacher",
    "use_small_stem",
]
