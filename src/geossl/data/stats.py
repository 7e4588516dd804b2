"""Per-band mean and standard deviation, cached on disk.

Statistics are in *scaled* units (raw * ``value_scale``), e.g. 0..1 for 8-bit images and reflectance for
Sentinel-2, so that normalisation is ``(raw * value_scale - mean) / std`` whatever the file format.

The cache lives under ``$GEOSSL_CACHE_DIR`` (default ``~/.cache/geossl``), never in the data folder, which
may be read-only or shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from geossl.data.base import ImageDataset
from geossl.errors import GeosslError

_STATS_VERSION = 1
_CHUNK_VALUES = 2**24  # values per float64 accumulation step: bounds the temporary memory to ~256 MB


def cache_dir() -> Path:
    """The geossl cache folder: ``$GEOSSL_CACHE_DIR``, default ``~/.cache/geossl``."""
    return Path(os.environ.get("GEOSSL_CACHE_DIR") or Path.home() / ".cache" / "geossl").expanduser()


def _cache_key(dataset: ImageDataset, max_samples: int, seed: int) -> str:
    text = f"v{_STATS_VERSION}|{dataset.fingerprint()}|scale={dataset.value_scale!r}|max={max_samples}|seed={seed}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _sample_indices(n: int, max_samples: int, seed: int) -> torch.Tensor:
    if n <= max_samples:
        return torch.arange(n)
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.sort(rng.choice(n, size=max_samples, replace=False))).long()


def _images(dataset: ImageDataset, indices: torch.Tensor) -> torch.Tensor:
    """(K, C, H, W) images of the given items, straight from memory when the dataset holds a tensor."""
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        return images[indices]
    return torch.stack([dataset[int(i)][0] for i in indices])


def compute_band_statistics(
    dataset: ImageDataset, indices: torch.Tensor
) -> tuple[list[float], list[float]]:
    """Per-band mean and population std (ddof 0) in scaled units over the given items, in float64.

    8-bit images are reduced to exact per-band histograms (fast, and exact); other dtypes are reduced per chunk
    in float64 and the chunks merged with Chan et al.'s parallel (count, mean, M2) update, which, unlike a
    running sum of squares, does not lose precision when the mean is large compared with the spread.
    """
    c = dataset.num_bands
    h, w = dataset.image_size
    chunk = max(1, _CHUNK_VALUES // (c * h * w))
    hist = torch.zeros(c, 256, dtype=torch.float64)
    count, mean, m2 = 0, torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(indices), chunk):
        x = _images(dataset, indices[start : start + chunk])
        if x.dtype == torch.uint8:
            for band in range(c):
                hist[band] += torch.bincount(x[:, band].reshape(-1), minlength=256).double()
            continue
        var_b, mean_b = torch.var_mean(x.to(torch.float64), dim=(0, 2, 3), correction=0)
        n_b = x.shape[0] * h * w
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + var_b * n_b + delta**2 * (count * n_b / total)
        count = total
    if hist.sum() > 0:
        values = torch.arange(256, dtype=torch.float64)
        n = hist.sum(dim=1)
        mean = (hist * values).sum(dim=1) / n
        var = (hist * (values[None, :] - mean[:, None]) ** 2).sum(dim=1) / n
    else:
        var = m2 / max(count, 1)
    scale = dataset.value_scale
    return [float(v) * scale for v in mean], [float(v) ** 0.5 * scale for v in var]


def band_statistics(
    dataset: ImageDataset, *, cache: bool = True, max_samples: int = 20000, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Per-band mean and std of a dataset in scaled units (raw * value_scale).

    Args:
        dataset: usually the training split.
        cache: read/write ``<cache_dir>/stats/<key>.json``; the key hashes the dataset fingerprint (file list
            with sizes and mtimes, or the tensor bytes), ``value_scale``, ``max_samples`` and ``seed``.
        max_samples: use a seeded random subset of at most this many images.
        seed: seed of that subset.

    Returns:
        ``(mean, std)``: two lists of C floats (std is the population std, ddof 0).
    """
    if len(dataset) == 0:
        raise GeosslError("cannot compute band statistics of an empty dataset; check the data split")
    path = cache_dir() / "stats" / f"{_cache_key(dataset, max_samples, seed)}.json" if cache else None
    if path is not None and path.is_file():
        try:
            stored = json.loads(path.read_text())
            if len(stored["mean"]) == len(stored["std"]) == dataset.num_bands:
                return [float(v) for v in stored["mean"]], [float(v) for v in stored["std"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable or stale entry: recompute and overwrite
    indices = _sample_indices(len(dataset), max_samples, seed)
    mean, std = compute_band_statistics(dataset, indices)
    if path is not None:
        _write_json(path, {"mean": mean, "std": std, "num_images": len(indices), "value_scale": dataset.value_scale})
    return mean, std


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically (temp file + rename) so concurrent runs never read half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        os.replace(tmp, path)
    except OSError as exc:
        # A read-only home must not stop training: statistics are simply recomputed next time.
        warnings.warn(f"could not cache band statistics in {path.parent} ({exc}); set GEOSSL_CACHE_DIR", stacklevel=3)
