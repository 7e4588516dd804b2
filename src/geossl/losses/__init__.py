"""Losses as ``nn.Module`` s (with functional twins), usable in a plain PyTorch loop."""

from geossl.losses.bam import BAMLoss
from geossl.losses.barlow_twins import BarlowTwinsLoss, barlow_twins_loss
from geossl.losses.contrastive import NTXentLoss, info_nce, nt_xent
from geossl.losses.dense_ot import (
    DenseOTLoss,
    SoftDenseLoss,
    dense_targets,
    soft_dense_loss,
)
from geossl.losses.dino import DINOLoss, dino_loss, teacher_temperature
from geossl.losses.mmcr import MMCRLoss, mmcr_loss
from geossl.losses.moco import (
    MemoryQueue,
    MoCoLoss,
    MoCoV3Loss,
    moco_loss,
    moco_v3_loss,
)
from geossl.losses.negative_cosine import (
    NegativeCosineSimilarity,
    negative_cosine_similarity,
)
from geossl.losses.ot_ssl import (
    COOTLoss,
    OTFeatureLoss,
    OTSampleLoss,
    coot_loss,
    ot_feature_loss,
    ot_sample_loss,
)
from geossl.losses.swav import SwAVLoss, SwAVQueue, swav_codes, swav_loss
from geossl.losses.treg import TREG, TREGSLoss, treg, tregs_loss
from geossl.losses.uniformity import (
    AlignUniformLoss,
    SSWUniformityLoss,
    SWUniformityLoss,
)
from geossl.losses.vicreg import VICRegLoss, vicreg_loss

__all__ = [
    "TREG",
    "AlignUniformLoss",
    "BAMLoss",
    "BarlowTwinsLoss",
    "COOTLoss",
    "DINOLoss",
    "DenseOTLoss",
    "MMCRLoss",
    "MemoryQueue",
    "MoCoLoss",
    "MoCoV3Loss",
    "NTXentLoss",
    "NegativeCosineSimilarity",
    "OTFeatureLoss",
    "OTSampleLoss",
    "SSWUniformityLoss",
    "SWUniformityLoss",
    "SoftDenseLoss",
    "SwAVLoss",
    "SwAVQueue",
    "TREGSLoss",
    "VICRegLoss",
    "barlow_twins_loss",
    "coot_loss",
    "dense_targets",
    "dino_loss",
    "info_nce",
    "mmcr_loss",
    "moco_loss",
    "moco_v3_loss",
    "negative_cosine_similarity",
    "nt_xent",
    "ot_feature_loss",
    "ot_sample_loss",
    "soft_dense_loss",
    "swav_codes",
    "swav_loss",
    "teacher_temperature",
    "treg",
    "tregs_loss",
    "vicreg_loss",
]
