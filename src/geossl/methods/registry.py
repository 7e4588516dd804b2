"""Name → method class. Names are kebab-case; an unknown name lists the known ones."""

from __future__ import annotations

from geossl.errors import unknown_name_error
from geossl.methods.base import Method
from geossl.methods.bam import BAM
from geossl.methods.barlow_twins import BarlowTwins
from geossl.methods.byol import BYOL
from geossl.methods.dense_ot import DenseOT
from geossl.methods.dino import DINO
from geossl.methods.mmcr import MMCR
from geossl.methods.moco import MoCoV2, MoCoV3
from geossl.methods.ot_ssl import OTCOOT, OTFeature, OTSample
from geossl.methods.simclr import SimCLR
from geossl.methods.simsiam import SimSiam
from geossl.methods.swav import SwAV
from geossl.methods.tregs import TREGS
from geossl.methods.uniformity_ssl import SSWSSL, SWSSL, WangIsola
from geossl.methods.vicreg import VICReg

METHODS: dict[str, type[Method]] = {
    SimCLR.name: SimCLR,
    MoCoV2.name: MoCoV2,
    MoCoV3.name: MoCoV3,
    BYOL.name: BYOL,
    SimSiam.name: SimSiam,
    BarlowTwins.name: BarlowTwins,
    VICReg.name: VICReg,
    SwAV.name: SwAV,
    DINO.name: DINO,
    MMCR.name: MMCR,
    OTSample.name: OTSample,
    OTFeature.name: OTFeature,
    OTCOOT.name: OTCOOT,
    DenseOT.name: DenseOT,
    TREGS.name: TREGS,
    SSWSSL.name: SSWSSL,
    SWSSL.name: SWSSL,
    WangIsola.name: WangIsola,
    BAM.name: BAM,
}


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name`` (GeosslError with the closest match otherwise)."""
    if name not in METHODS:
        raise unknown_name_error("method", name, METHODS)
    return METHODS[name]
