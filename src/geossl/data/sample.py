"""The built-in ``eurosat-sample``: 1,500 EuroSAT RGB images shipped inside the package, with a fixed split.

Files are read through :mod:`importlib.resources`, so the sample works from an installed wheel as well as from a
source checkout. The split is part of the manifest (90 train / 30 val / 30 test per class) and is never
recomputed, so numbers obtained on the sample are comparable across machines and versions.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from geossl.data.base import TensorImageDataset
from geossl.data.decode import decode_image_bytes, decode_images
from geossl.errors import GeosslError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

SAMPLE_NAME = "eurosat-sample"
SAMPLE_SPLITS = ("train", "val", "test")


def sample_root() -> Traversable:
    """The sample's folder inside the installed package."""
    return files("geossl.data") / "sample" / "eurosat_sample"


def read_manifest() -> tuple[dict[str, Any], bytes]:
    """The sample manifest (parsed) and its raw bytes (which fingerprint the sample)."""
    path = sample_root() / "manifest.json"
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise GeosslError(
            f"the built-in {SAMPLE_NAME} is missing from this geossl install ({path}); reinstall geossl or run "
            "scripts/make_eurosat_sample.py"
        ) from None
    return json.loads(raw), raw


def load_eurosat_sample(
    *, image_size: tuple[int, int] | None = None, progress: bool | None = None
) -> tuple[dict[str, TensorImageDataset], dict[str, Any]]:
    """Load the built-in sample and cut it along the manifest's fixed split.

    Args:
        image_size: optional (H, W) to resize to (the images are 64x64).
        progress: show a progress bar (default: when stderr is a terminal).

    Returns:
        ``(splits, manifest)``: ``splits`` maps "train", "val", "test" to uint8 datasets of shape
        (N, 3, 64, 64) (900/300/300 images, 10 classes), ``manifest`` is the parsed manifest.
    """
    manifest, raw = read_manifest()
    root = sample_root()
    records = manifest["images"]

    def read(record: dict[str, Any]) -> np.ndarray:
        data = (root / record["path"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise GeosslError(f"bundled sample file {record['path']} is damaged (checksum mismatch); reinstall geossl")
        return decode_image_bytes(data)

    fingerprint = hashlib.sha256(raw + f"size={image_size}".encode()).hexdigest()
    full = decode_images(
        records,
        read,
        [str(root / r["path"]) for r in records],
        [r["label"] for r in records],
        classes=manifest["classes"],
        image_size=image_size,
        fingerprint=fingerprint,
        progress=progress,
        description=f"loading {SAMPLE_NAME}",
    )
    split_of = [r["split"] for r in records]
    splits = {
        name: full.subset(torch.tensor([i for i, s in enumerate(split_of) if s == name], dtype=torch.long))
        for name in SAMPLE_SPLITS
    }
    return splits, manifest
