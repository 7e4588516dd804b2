"""Self-supervised methods, one small file each, registered by kebab-case name."""

from geossl.methods.base import Method, StepOutput
from geossl.methods.registry import METHODS, get_method
from geossl.methods.simclr import SimCLR

__all__ = ["METHODS", "Method", "SimCLR", "StepOutput", "get_method"]
