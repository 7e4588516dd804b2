"""Name → method class. Names are kebab-case; an unknown name lists the known ones."""

from __future__ import annotations

from geossl.errors import unknown_name_error
from geossl.methods.base import Method
from geossl.methods.dino import DINO
from geossl.methods.simclr import SimCLR
from geossl.methods.swav import SwAV

METHODS: dict[str, type[Method]] = {
    SimCLR.name: SimCLR,
    SwAV.name: SwAV,
    DINO.name: DINO,
}


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name`` (GeosslError with the closest match otherwise)."""
    if name not in METHODS:
        raise unknown_name_error("method", name, METHODS)
    return METHODS[name]
