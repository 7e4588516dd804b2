"""geossl: self-supervised and geometric representation learning for vision and Earth observation."""

__version__ = "0.1.0"
