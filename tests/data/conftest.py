"""Fixtures for the data-layer tests: shared data locations, an isolated cache, image-folder builders."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
# CI keeps the shared data next to the repository (../shared/data); GEOSSL_SHARED_DATA overrides it.
SHARED_DATA = Path(os.environ.get("GEOSSL_SHARED_DATA") or REPO.parent / "shared" / "data")
EUROSAT_DIR = SHARED_DATA / "EuroSAT_RGB"
BIGEARTHNET_DIR = SHARED_DATA / "bigearthnet-example"

# Per-class image counts of EuroSAT RGB (from shared/data/README.md).
EUROSAT_COUNTS = {
    "AnnualCrop": 3000,
    "Forest": 3000,
    "HerbaceousVegetation": 3000,
    "Highway": 2500,
    "Industrial": 2500,
    "Pasture": 2000,
    "PermanentCrop": 2500,
    "Residential": 3000,
    "River": 2500,
    "SeaLake": 3000,
}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own GEOSSL_CACHE_DIR: nothing is written to ~/.cache and no test sees another's cache."""
    path = tmp_path_factory.mktemp("geossl-cache")
    monkeypatch.setenv("GEOSSL_CACHE_DIR", str(path))
    return path


@pytest.fixture
def eurosat_counts() -> dict[str, int]:
    return dict(EUROSAT_COUNTS)


@pytest.fixture
def eurosat_dir() -> Path:
    if not EUROSAT_DIR.is_dir():
        pytest.skip(f"EuroSAT_RGB not found at {EUROSAT_DIR} (set GEOSSL_SHARED_DATA)")
    return EUROSAT_DIR


@pytest.fixture
def bigearthnet_dir() -> Path:
    if not BIGEARTHNET_DIR.is_dir():
        pytest.skip(f"bigearthnet-example not found at {BIGEARTHNET_DIR} (set GEOSSL_SHARED_DATA)")
    return BIGEARTHNET_DIR


@pytest.fixture
def write_png() -> Callable[..., np.ndarray]:
    """write_png(path, array (H, W[, C])) -> the array written, for exact (lossless) comparisons."""

    def write(path: Path, array: np.ndarray) -> np.ndarray:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
        return array

    return write


@pytest.fixture
def make_labelled_folder(tmp_path: Path, write_png) -> Callable[..., Path]:
    """make_labelled_folder(counts={"cat": 3, ...}, size=(6, 8)) -> folder of random RGB PNGs."""

    def make(counts: dict[str, int], size: tuple[int, int] = (6, 8), name: str = "labelled", seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        root = tmp_path / name
        for cls, n in counts.items():
            for i in range(n):
                write_png(root / cls / f"{cls}_{i:03d}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        return root

    return make
