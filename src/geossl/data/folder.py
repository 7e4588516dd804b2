"""Image folders: one sub-folder per class (labelled) or a flat folder of images (unlabelled)."""

from __future__ import annotations

import hashlib
import operator
import os
import warnings
from pathlib import Path

from geossl.data.base import TensorImageDataset
from geossl.data.decode import IMAGE_EXTENSIONS, TIFF_EXTENSIONS, decode_images, read_image_file
from geossl.data.geotiff import import_rasterio
from geossl.errors import GeosslError

_LOOKED_FOR = ", ".join(IMAGE_EXTENSIONS)
_FINGERPRINT_VERSION = "folder-v1"


def _is_hidden(name: str) -> bool:
    # Skips .DS_Store, macOS "._x.jpg" resource forks (not images) and .ipynb_checkpoints.
    return name.startswith(".")


def _scan(folder: Path, recursive: bool) -> list[os.DirEntry]:
    """Image files in ``folder`` (and below, if recursive), as DirEntry objects (their stat is cached)."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if _is_hidden(entry.name):
                continue
            if entry.is_dir():
                if recursive:
                    found.extend(_scan(Path(entry.path), recursive=True))
            elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(entry)
    return found


def find_images(root: str | os.PathLike) -> tuple[list[Path], list[int], list[str] | None, str]:
    """List the images of a folder in a deterministic (sorted) order.

    A folder whose sub-folders contain images is labelled (classes = sorted sub-folder names; images are found
    recursively inside each class folder); a folder with images directly inside is unlabelled.

    Returns:
        ``(files, labels, classes, fingerprint)``: labels are -1 and classes None for a flat folder; the
        fingerprint hashes the relative paths, sizes and modification times (not the folder's location).
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise GeosslError(f"data folder {root} does not exist; point --data at a folder of images")
    if not root.is_dir():
        raise GeosslError(
            f"{root} is a file, not a folder; point --data at a folder of images (flat, or one sub-folder per class)"
        )
    top = _scan(root, recursive=False)
    subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not _is_hidden(e.name))
    per_class = {name: _scan(root / name, recursive=True) for name in subdirs}
    classes = sorted(name for name, entries in per_class.items() if entries)

    if classes and top:
        raise GeosslError(
            f"{root} has images at the top level (e.g. {sorted(e.name for e in top)[0]}) and class sub-folders "
            f"(e.g. {classes[0]}); move the loose images into class folders, or point at a flat folder"
        )
    if classes:
        empty = [name for name in subdirs if not per_class[name]]
        if empty:
            warnings.warn(
                f"ignoring {len(empty)} class folder(s) without images in {root}: {', '.join(empty[:5])}"
                f"{' ...' if len(empty) > 5 else ''}",
                stacklevel=3,
            )
        pairs = [(entry, label) for label, name in enumerate(classes) for entry in per_class[name]]
    elif top:
        pairs = [(entry, -1) for entry in top]
    elif subdirs:
        raise GeosslError(
            f"no images found in {root}: its {len(subdirs)} sub-folders ({', '.join(subdirs[:3])}"
            f"{', ...' if len(subdirs) > 3 else ''}) are empty (looked for {_LOOKED_FOR}); put images in them"
        )
    else:
        raise GeosslError(
            f"no images found in {root} (looked for {_LOOKED_FOR}); point --data at a folder of images"
        )

    rel = [(Path(e.path).relative_to(root).as_posix(), e, label) for e, label in pairs]
    rel.sort(key=lambda t: t[0])
    h = hashlib.sha256(_FINGERPRINT_VERSION.encode())
    for name, entry, label in rel:
        st = entry.stat()
        h.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\t{label}\n".encode())
    files = [Path(e.path) for _, e, _ in rel]
    return files, [label for _, _, label in rel], (classes or None), h.hexdigest()


def load_image_folder(
    path: str | os.PathLike,
    *,
    image_size: tuple[int, int] | int | None = None,
    skip_corrupt: bool = False,
    value_scale: float | None = None,
    progress: bool | None = None,
    num_workers: int | None = None,
) -> TensorImageDataset:
    """Load a folder of images into memory.

    Layouts: ``path/<class>/<image>`` (labelled; labels index the sorted class names) or ``path/<image>``
    (unlabelled: labels -1, classes None). Files: .jpg/.jpeg/.png (band count of the file), .tif/.tiff (any
    band count and dtype; needs rasterio), .npy arrays shaped (C, H, W) or (H, W). Order is sorted by path.

    ``value_scale`` is inferred from the file dtype: uint8 -> 1/255, uint16 -> 1e-4 (the Sentinel-2 L2A
    convention, reflectance x 10 000; pass ``value_scale`` for other 16-bit data), float -> 1.0; mixed dtypes
    -> float32 with scale 1.0 (with a warning).

    Args:
        path: the folder.
        image_size: (H, W) (or one int for square) to resize all images to; by default all images must share
            one size.
        skip_corrupt: skip unreadable files (one warning) instead of raising.
        value_scale: override the inferred raw-to-scaled factor.
        progress: show a progress bar (default: when stderr is a terminal).
        num_workers: decoding threads.

    Returns:
        In-memory dataset: images (N, C, H, W), uint8 for 8-bit files, float32 otherwise, raw units.
    """
    files, labels, classes, fingerprint = find_images(path)
    if any(f.suffix.lower() in TIFF_EXTENSIONS for f in files):
        import_rasterio()  # fail once, up front, with the install hint
    size = normalize_image_size(image_size)
    fingerprint = hashlib.sha256(f"{fingerprint} size={size} scale={value_scale}".encode()).hexdigest()
    return decode_images(
        files,
        read_image_file,
        [str(f) for f in files],
        labels,
        classes=classes,
        image_size=size,
        skip_corrupt=skip_corrupt,
        value_scale=value_scale,
        fingerprint=fingerprint,
        progress=progress,
        num_workers=num_workers,
        description=f"loading {Path(path).name or path}",
    )


def normalize_image_size(image_size: tuple[int, int] | list[int] | int | None) -> tuple[int, int] | None:
    """Accept ``64`` or ``(64, 64)``; check the values are positive."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    try:
        size = tuple(operator.index(s) for s in size)
    except TypeError:
        size = ()
    if len(size) != 2 or min(size) <= 0:
        raise GeosslError(f"image size must be one or two positive integers (H W), got {image_size}")
    return (size[0], size[1])
