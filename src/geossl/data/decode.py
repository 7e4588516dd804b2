"""Decoding image files into (C, H, W) numpy arrays, and decoding many of them into one in-memory tensor.

Formats: .jpg/.jpeg/.png via PIL (the file's band count is kept: grayscale 1, RGB 3, RGBA 4...), .tif/.tiff via
rasterio (any band count and dtype), .npy arrays shaped (C, H, W) or (H, W).

Measured on EuroSAT (27,000 64x64 JPEGs) on 2 shared cores: about 4 s for the whole set, serially (threads do
not help for such small images; see ``_run_chunks``).
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from geossl.data.base import TensorImageDataset, default_value_scale
from geossl.data.geotiff import read_raster_unchecked, resample
from geossl.errors import GeosslError
from geossl.host_memory import available_memory_bytes

PIL_EXTENSIONS = (".jpg", ".jpeg", ".png")
TIFF_EXTENSIONS = (".tif", ".tiff")
NPY_EXTENSIONS = (".npy",)
IMAGE_EXTENSIONS = PIL_EXTENSIONS + TIFF_EXTENSIONS + NPY_EXTENSIONS

T = TypeVar("T")

_CHUNK = 64  # files per thread-pool task: amortises scheduling overhead, keeps the progress bar lively
_THREADS_MIN_PIXELS = 128 * 128  # per band; below this, decoding in threads is slower (see _run_chunks)


def pil_to_array(image: Image.Image) -> np.ndarray:
    """Convert a PIL image to a (C, H, W) array, keeping the band count of the file.

    Palette images become RGB (RGBA if they have transparency), 1-bit images become 8-bit grayscale, and
    CMYK / YCbCr JPEGs become RGB (their bands are a colour encoding, not separate measurements).
    """
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "1":
        image = image.convert("L")
    elif mode in ("CMYK", "YCbCr"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.dtype.byteorder == ">":  # 16-bit big-endian PNG modes ("I;16B")
        array = array.astype(array.dtype.newbyteorder("="))
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    array = np.ascontiguousarray(array)
    # np.asarray(PIL image) can be a read-only view (1-band images); torch warns on non-writable arrays.
    return array if array.flags.writeable else array.copy()


def decode_image_bytes(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG bytes into a (C, H, W) array (uint8 for 8-bit images)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return pil_to_array(image)


def _check_npy_shape(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise GeosslError(f"array file {path} has shape {array.shape}; save images as (C, H, W) or (H, W) arrays")
    if array.shape[2] <= 4 < array.shape[0]:
        # A (64, 64, 3) array is an (H, W, C) image: reading it as 64 bands of 64x3 pixels would be silent garbage.
        raise GeosslError(
            f"array file {path} has shape {array.shape}, which looks like (H, W, C); save it as (C, H, W) with "
            "np.transpose(a, (2, 0, 1))"
        )
    return array


def read_image_file(path: str | os.PathLike) -> np.ndarray:
    """Read one image file into a (C, H, W) array in the file's dtype.

    Raises:
        GeosslError: for a layout or dependency problem the user must fix (missing rasterio, bad array shape).
        Exception: whatever the decoder raises for an unreadable (corrupt, truncated) file.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext in PIL_EXTENSIONS:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file must fail here, not later in a training step
            return pil_to_array(image)
    if ext in TIFF_EXTENSIONS:
        return read_raster_unchecked(path)[0]
    if ext in NPY_EXTENSIONS:
        return _check_npy_shape(np.load(path, allow_pickle=False), path)
    raise GeosslError(f"unsupported image file {path}; use {', '.join(IMAGE_EXTENSIONS)}")


@dataclass
class _Unreadable:
    name: str
    reason: str


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    reason = text[0] if text else ""
    reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    return reason[:160]


def _prepare(array: np.ndarray, name: str, image_size: tuple[int, int] | None) -> tuple[np.ndarray, str]:
    """Convert to the stored dtype (uint8 stays uint8, everything else float32) and resize if asked.

    Returns:
        ``(array, source dtype name)``; the source dtype decides ``value_scale``.
    """
    dtype = array.dtype
    if np.issubdtype(dtype, np.complexfloating) or dtype.kind not in "biuf":
        raise GeosslError(f"image {name} has unsupported dtype {dtype}; convert it to an integer or float type")
    if dtype != np.uint8:
        array = array.astype(np.float32)
    if image_size is not None and tuple(array.shape[1:]) != tuple(image_size):
        resized = resample(torch.from_numpy(array), image_size, "bilinear")
        if dtype == np.uint8:
            resized = resized.round_().clamp_(0, 255).to(torch.uint8)
        array = resized.numpy()
    return array, dtype.name


def _check_memory(n: int, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Fail early, with advice, instead of letting the OS kill the process halfway through decoding."""
    needed = n * int(np.prod(shape)) * (1 if dtype == torch.uint8 else 4)
    available = available_memory_bytes()
    if available is None:
        return  # not known on this platform
    if needed > 0.9 * available:
        c, h, w = shape
        raise GeosslError(
            f"loading {n} images of {c}x{h}x{w} needs {needed / 2**30:.1f} GiB of memory but only "
            f"{available / 2**30:.1f} GiB is available; pass --image-size to shrink them or use fewer images"
        )


@dataclass
class _Tally:
    """Counts of a property (band count, size, dtype) with the first file showing each value."""

    counts: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def add(self, value: object, name: str) -> None:
        self.counts[value] = self.counts.get(value, 0) + 1
        self.examples.setdefault(value, name)

    def by_frequency(self) -> list:
        return sorted(self.counts, key=lambda v: -self.counts[v])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _progress(enabled: bool | None):
    """A rich progress bar, shown only on a terminal unless forced (keeps logs and test output clean)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if enabled is None:
        enabled = sys.stderr.isatty()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=not enabled,
    )


def _run_chunks(work: Callable[[int], list], n: int, num_workers: int | None) -> Iterator[list]:
    """Yield ``work(start)`` for each chunk start, in order; threads only where they pay off.

    The first chunk is decoded serially and decides: for small images (EuroSAT's 64x64 JPEGs) per-image Python
    overhead dominates and threads only add GIL contention (measured on 2 cores: 4.1 s serial vs 4.6 s with 2
    threads and 6.3 s with 4 for the 27,000 EuroSAT images); larger images spend their time in decoders that
    release the GIL.
    """
    starts = range(0, n, _CHUNK)
    if n == 0:
        return
    first = work(0)
    yield first
    if num_workers is None:
        pixels = max((r[1][0][0].size for r in first if not isinstance(r[1], _Unreadable)), default=0)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        num_workers = min(4, cpus) if pixels >= _THREADS_MIN_PIXELS else 1
    if num_workers <= 1:
        yield from map(work, starts[1:])
        return
    pool = ThreadPoolExecutor(num_workers)
    try:
        yield from pool.map(work, starts[1:])
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, do not decode the remaining chunks


def decode_images(
    items: Sequence[T],
    read: Callable[[T], np.ndarray],
    names: Sequence[str],
    labels: Sequence[int] | None = None,
    *,
    classes: Sequence[str] | None = None,
    image_size: tuple[int, int] | None = None,
    skip_corrupt: bool = False,
    value_scale: float | None = None,
    fingerprint: str | None = None,
    progress: bool | None = None,
    num_workers: int | None = None,
    description: str = "decoding images",
) -> TensorImageDataset:
    """Decode items into one in-memory :class:`TensorImageDataset`.

    Args:
        items: what ``read`` takes (paths, or package resources for the built-in sample).
        read: returns one image as a (C, H, W) array; raises on a corrupt file.
        names: display name of each item (the file path), used in messages and stored as ``files``.
        labels: label of each item; None for unlabelled.
        classes: class names.
        image_size: (H, W) to resize every image to (bilinear, anti-aliased); None requires equal sizes.
        skip_corrupt: skip unreadable files with one warning instead of raising.
        value_scale: override the scale inferred from the dtype.
        fingerprint: content fingerprint for the statistics cache.
        progress: show a progress bar (default: only when stderr is a terminal).
        num_workers: decoding threads (default: 1 for small images, else min(4, available CPUs)).
        description: progress-bar label.

    Returns:
        Dataset with images (N, C, H, W): uint8 when every file is 8-bit, float32 otherwise.
    """
    n = len(items)
    if image_size is not None:
        image_size = (int(image_size[0]), int(image_size[1]))

    def work(chunk_start: int) -> list[tuple[int, tuple[np.ndarray, str] | _Unreadable]]:
        out = []
        for i in range(chunk_start, min(chunk_start + _CHUNK, n)):
            try:
                out.append((i, _prepare(read(items[i]), names[i], image_size)))
            except (GeosslError, MemoryError, KeyboardInterrupt):
                raise
            except Exception as exc:  # decoders raise many types (OSError, SyntaxError, ValueError...)
                out.append((i, _Unreadable(names[i], _one_line(exc))))
        return out

    bands, sizes, dtypes = _Tally(), _Tally(), _Tally()
    unreadable: list[_Unreadable] = []
    buffer: torch.Tensor | None = None
    ref_shape: tuple[int, ...] | None = None
    kept: list[int] = []
    with _progress(progress) as bar:
        task = bar.add_task(description, total=n)
        for results in _run_chunks(work, n, num_workers):
            for i, result in results:
                if isinstance(result, _Unreadable):
                    unreadable.append(result)
                    continue
                array, dtype_name = result
                bands.add(array.shape[0], names[i])
                sizes.add(tuple(array.shape[1:]), names[i])
                dtypes.add(dtype_name, names[i])
                if buffer is None:
                    ref_shape = array.shape
                    buffer_dtype = torch.uint8 if array.dtype == np.uint8 else torch.float32
                    _check_memory(n, ref_shape, buffer_dtype)
                    buffer = torch.empty((n, *ref_shape), dtype=buffer_dtype)
                if array.shape != ref_shape:
                    continue  # reported below, with counts over all files
                if buffer.dtype == torch.uint8 and array.dtype != np.uint8:
                    buffer = buffer.float()  # mixed dtypes: everything becomes float32
                buffer[len(kept)] = torch.from_numpy(array)
                kept.append(i)
            bar.advance(task, len(results))

    _raise_for_problems(unreadable, bands, sizes, skip_corrupt)
    if not kept:
        raise GeosslError(f"none of the {n} images could be read (first: {names[0]}); check the files")
    assert buffer is not None
    images = buffer[: len(kept)]
    if len(kept) < n:
        images = images.clone()  # release the unused tail
    if len(dtypes.counts) > 1:
        (d1, d2) = dtypes.by_frequency()[:2]
        warnings.warn(
            f"images have mixed dtypes ({d1} in {dtypes.examples[d1]}, {d2} in {dtypes.examples[d2]}); "
            "loading them as float32 with value_scale 1.0 - convert them to one dtype or pass value_scale",
            stacklevel=3,
        )
        inferred_scale = 1.0
    else:
        inferred_scale = default_value_scale(next(iter(dtypes.counts)))
    kept_t = torch.tensor(kept, dtype=torch.long)
    return TensorImageDataset(
        images,
        torch.as_tensor(labels, dtype=torch.long)[kept_t] if labels is not None else None,
        classes=classes,
        value_scale=value_scale if value_scale is not None else inferred_scale,
        files=[names[i] for i in kept],
        fingerprint=fingerprint,
    )


def _raise_for_problems(unreadable: list[_Unreadable], bands: _Tally, sizes: _Tally, skip_corrupt: bool) -> None:
    """Turn the problems collected while decoding into one-line errors or a warning."""
    if unreadable and not skip_corrupt:
        more = f" (and {_plural(len(unreadable) - 1, 'more unreadable file')})" if len(unreadable) > 1 else ""
        first = unreadable[0]
        raise GeosslError(f"cannot read image {first.name} ({first.reason}){more}; remove it or pass --skip-corrupt")
    if unreadable:
        first = unreadable[0]
        warnings.warn(
            f"skipped {_plural(len(unreadable), 'unreadable image')}, first: {first.name} ({first.reason})",
            stacklevel=4,
        )
    if len(bands.counts) > 1:
        parts = [
            f"{_plural(c, 'band')} in {_plural(bands.counts[c], 'file')} (e.g. {bands.examples[c]})"
            for c in bands.by_frequency()
        ]
        raise GeosslError(f"images have different band counts: {', '.join(parts)}; convert them to one band count")
    if len(sizes.counts) > 1:
        common, *others = sizes.by_frequency()
        odd = others[0]
        more = f" (and {_plural(len(others) - 1, 'more size')})" if len(others) > 1 else ""
        raise GeosslError(
            f"images have different sizes: {sizes.counts[common]} are {common[0]}x{common[1]} "
            f"(e.g. {sizes.examples[common]}) but {sizes.examples[odd]} is {odd[0]}x{odd[1]}"
            f"{more}; pass --image-size H W "
            "(image_size=(H, W)) to resize them all"
        )
