"""GeoTIFF reading, writing and band stacking (Sentinel-1 / Sentinel-2, BigEarthNet layout).

rasterio is an optional dependency (the ``[geo]`` extra): it is imported inside the functions that need it,
so ``import geossl`` works without it.

Value conventions (spec remote_sensing.md §1.2): Sentinel-2 L2A patches are ``uint16`` surface reflectance
x 10 000 (``value_scale`` 1e-4); Sentinel-1 patches are ``float32`` backscatter in dB (``value_scale`` 1.0).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geossl.errors import GeosslError

PathLike = str | os.PathLike

#: Sentinel-2 L2A bands in BigEarthNet order: B01..B12 with B8A, without B10 (cirrus, absent from L2A).
S2_BANDS_L2A: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)  # fmt: skip
#: Sentinel-1 polarisations in the order returned by :func:`read_bigearthnet_s1`.
S1_BANDS: tuple[str, ...] = ("VV", "VH")

RESAMPLING_MODES = ("bilinear", "nearest")


def import_rasterio() -> Any:
    """Import rasterio or raise a GeosslError saying how to install it."""
    try:
        import rasterio
    except ImportError:
        raise GeosslError("reading .tif needs rasterio: pip install 'geossl[geo]'") from None
    return rasterio


def read_raster_unchecked(path: PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Like :func:`read_raster` but lets rasterio's own exceptions through (the folder loader classifies them)."""
    rasterio = import_rasterio()
    with rasterio.open(path) as src:
        array = src.read()  # (C, H, W), the file's dtype
        meta = {
            "dtype": str(array.dtype),
            "count": src.count,
            "height": src.height,
            "width": src.width,
            "crs": src.crs.to_string() if src.crs is not None else None,
            "transform": tuple(src.transform)[:6],
            "bounds": tuple(src.bounds),
            "res": tuple(src.res),
            "nodata": src.nodata,
            "band_names": list(src.descriptions),
        }
    return array, meta


def read_raster(path: PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read all bands of a raster file.

    Args:
        path: a GeoTIFF (or any format GDAL reads).

    Returns:
        ``(array, meta)``: ``array`` of shape (C, H, W) in the file's dtype and units; ``meta`` with keys
        dtype, count, height, width, crs (string or None), transform (6 affine coefficients), bounds
        (left, bottom, right, top), res (x, y), nodata, band_names (band descriptions, None where unset).
    """
    path = Path(path)
    if not path.is_file():
        raise GeosslError(f"raster file {path} does not exist; check the path")
    rasterio = import_rasterio()
    try:
        return read_raster_unchecked(path)
    except rasterio.errors.RasterioError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeosslError(f"cannot read raster {path} ({reason}); check it is a valid GeoTIFF") from None


def write_geotiff(
    path: PathLike,
    array: np.ndarray | torch.Tensor,
    *,
    dtype: str | np.dtype | None = None,
    band_names: Sequence[str] | None = None,
    crs: str | None = None,
    transform: Sequence[float] | None = None,
    nodata: float | None = None,
    compress: str | None = None,
) -> Path:
    """Write a (C, H, W) or (H, W) array as a multi-band GeoTIFF.

    Args:
        path: output file (parent folders are created).
        array: (C, H, W) or (H, W) values.
        dtype: output dtype (default: the array's). Integer dtypes round and clip float input first, e.g.
            ``dtype="uint16"`` to store resampled Sentinel-2 stacks in the L2A reflectance x 10 000 convention.
        band_names: optional band descriptions (read back as ``meta["band_names"]``).
        crs: e.g. ``"EPSG:32633"``; None writes no CRS.
        transform: 6 affine coefficients (a, b, c, d, e, f); default: a 1-unit pixel grid with origin at the
            top left, which keeps readers from warning about a missing geotransform.
        nodata: optional nodata value.
        compress: GDAL compression (e.g. ``"deflate"``); default none, like BigEarthNet files.

    Returns:
        The written path.
    """
    rasterio = import_rasterio()
    from rasterio.transform import Affine

    data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise GeosslError(f"write_geotiff expects an array of shape (C, H, W) or (H, W), got {data.shape}")
    out_dtype = np.dtype(dtype) if dtype is not None else (np.dtype("uint8") if data.dtype == bool else data.dtype)
    if np.issubdtype(out_dtype, np.integer) and not np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(out_dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    data = data.astype(out_dtype, copy=False)
    count, height, width = data.shape
    if band_names is not None and len(band_names) != count:
        raise GeosslError(f"{len(band_names)} band names given for {count} bands")
    affine = Affine(*transform[:6]) if transform is not None else Affine(1.0, 0.0, 0.0, 0.0, -1.0, float(height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": count,
        "dtype": out_dtype.name,
        "transform": affine,
        "crs": crs,
    }
    if nodata is not None:
        profile["nodata"] = nodata
    if compress is not None:
        profile["compress"] = compress
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if band_names is not None:
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
    return path


def resample(image: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resample a (C, H, W) or (N, C, H, W) image to ``size`` = (H', W').

    Bilinear uses ``align_corners=False`` (pixel areas, not pixel centres, are aligned: a 60x60 20 m band and a
    120x120 10 m band cover the same ground) and anti-aliasing when shrinking. Nearest uses torch's
    ``nearest-exact`` (pixel-centre rounding; plain ``nearest`` is shifted by half a pixel when shrinking).

    Returns:
        float32 tensor of shape (C, H', W') or (N, C, H', W').
    """
    if mode not in RESAMPLING_MODES:
        raise GeosslError(f"unknown resampling mode '{mode}'; use one of {', '.join(RESAMPLING_MODES)}")
    image = image.float()
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    batch = image if image.ndim == 4 else image[None]
    if mode == "nearest":
        out = F.interpolate(batch, size=size, mode="nearest-exact")
    else:
        shrinking = size[0] < image.shape[-2] or size[1] < image.shape[-1]
        out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return out if image.ndim == 4 else out[0]


def _check_same_footprint(paths: Sequence[Path], metas: Sequence[dict[str, Any]]) -> None:
    """Refuse to stack rasters that cover different ground (a wrong file would otherwise be silently mixed in)."""
    if any(m["crs"] is None for m in metas):
        return  # plain pixel grids: nothing to compare
    if len({m["crs"] for m in metas}) > 1:
        raise GeosslError(f"cannot stack {paths[0]} and others: they use different CRSs; reproject them first")
    tolerance = max(max(abs(r) for r in m["res"]) for m in metas)  # one coarse pixel
    ref = np.asarray(metas[0]["bounds"])
    for p, m in zip(paths, metas):
        if np.abs(np.asarray(m["bounds"]) - ref).max() > tolerance:
            raise GeosslError(
                f"cannot stack {p} with {paths[0]}: they cover different areas (bounds {m['bounds']} vs "
                f"{metas[0]['bounds']}); pass bands of one patch"
            )


def stack_bands(
    paths: Sequence[PathLike], size: tuple[int, int] | None = None, mode: str = "bilinear"
) -> torch.Tensor:
    """Read rasters on different native grids and resample them onto one grid.

    Args:
        paths: raster files, usually one band each (multi-band files contribute all their bands, in order).
        size: target (H, W); default the largest native grid (e.g. 120x120 for the 10 m Sentinel-2 bands).
        mode: ``"bilinear"`` or ``"nearest"``.

    Returns:
        float32 tensor of shape (C, H, W), in the files' raw units (e.g. reflectance x 10 000 for Sentinel-2).
    """
    if len(paths) == 0:
        raise GeosslError("stack_bands needs at least one raster file")
    if mode not in RESAMPLING_MODES:
        raise GeosslError(f"unknown resampling mode '{mode}'; use one of {', '.join(RESAMPLING_MODES)}")
    paths = [Path(p) for p in paths]
    arrays, metas = zip(*(read_raster(p) for p in paths))
    _check_same_footprint(paths, metas)
    if size is None:
        size = max((a.shape[1:] for a in arrays), key=lambda hw: hw[0] * hw[1])
    size = (int(size[0]), int(size[1]))
    bands = [resample(torch.from_numpy(a.astype(np.float32)), size, mode) for a in arrays]
    return torch.cat(bands, dim=0)


def _band_file(patch_dir: Path, band: str) -> Path:
    """``<patch_dir>/<patch name>_<band>.tif``, falling back to any ``*_<band>.tif`` in the folder."""
    path = patch_dir / f"{patch_dir.name}_{band}.tif"
    if path.is_file():
        return path
    matches = sorted(patch_dir.glob(f"*_{band}.tif"))
    if len(matches) != 1:
        raise GeosslError(
            f"BigEarthNet patch {patch_dir} has no single file for band {band} (expected {path.name}); "
            "point at a patch folder with one GeoTIFF per band"
        )
    return matches[0]


def _patch_dir(patch_dir: PathLike) -> Path:
    patch_dir = Path(patch_dir)
    if not patch_dir.is_dir():
        raise GeosslError(f"BigEarthNet patch folder {patch_dir} does not exist; check the path")
    return patch_dir


def read_bigearthnet_s2(
    patch_dir: PathLike, bands: Sequence[str] = S2_BANDS_L2A, *, mode: str = "bilinear"
) -> tuple[torch.Tensor, list[str]]:
    """Read a BigEarthNet-S2 patch and resample all bands to the 10 m grid.

    Args:
        patch_dir: folder with one GeoTIFF per band (``<patch>_B02.tif``...).
        bands: bands to read, in output order (default the 12 L2A bands, :data:`S2_BANDS_L2A`).
        mode: resampling of the 20 m / 60 m bands, ``"bilinear"`` or ``"nearest"``.

    Returns:
        ``(image, band_names)``: float32 tensor of shape (len(bands), 120, 120) in raw units (surface
        reflectance x 10 000, so ``value_scale`` = 1e-4), and the band names.
    """
    patch_dir = _patch_dir(patch_dir)
    image = stack_bands([_band_file(patch_dir, b) for b in bands], mode=mode)
    return image, list(bands)


#: Backscatter range of Sentinel-1 patches, in dB, outside which values are clipped (spec ``remote_sensing.md`` §1):
#: below -50 dB is the noise floor or no signal (-inf for zero power), above +10 dB bright point targets.
S1_CLIP_DB = (-50.0, 10.0)


def read_bigearthnet_s1(patch_dir: PathLike, clip_db: tuple[float, float] | None = S1_CLIP_DB) -> torch.Tensor:
    """Read a BigEarthNet-S1 patch.

    Args:
        patch_dir: the patch folder (``<name>/<name>_VV.tif`` and ``_VH.tif``).
        clip_db: clip the backscatter to this range in dB (default :data:`S1_CLIP_DB`, [-50, +10]), so that a
            zero-power pixel (-inf dB) or a bright point target does not dominate the band statistics; None keeps
            the file's values.

    Returns:
        float32 tensor of shape (2, 120, 120): backscatter in dB, bands in :data:`S1_BANDS` order (VV, VH).

    Raises:
        GeosslError: ``clip_db`` is not a range (low < high).
    """
    if clip_db is not None and not clip_db[0] < clip_db[1]:
        raise GeosslError(f"clip_db must be a range (low, high) in dB with low < high, got {tuple(clip_db)}")
    patch_dir = _patch_dir(patch_dir)
    image = stack_bands([_band_file(patch_dir, b) for b in S1_BANDS])
    return image if clip_db is None else image.clamp(*clip_db)


def read_bigearthnet_labels(patch_dir: PathLike) -> list[str]:
    """The CORINE land-cover labels of a BigEarthNet patch (from ``*_labels_metadata.json``)."""
    patch_dir = _patch_dir(patch_dir)
    files = sorted(patch_dir.glob("*_labels_metadata.json"))
    if not files:
        raise GeosslError(f"BigEarthNet patch {patch_dir} has no *_labels_metadata.json; check the folder")
    try:
        labels = json.loads(files[0].read_text())["labels"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise GeosslError(f"{files[0]} is not a BigEarthNet labels file (no 'labels' list); check it") from None
    return [str(label) for label in labels]
