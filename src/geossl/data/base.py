"""Dataset base classes: images as (C, H, W) tensors in the file's raw units, plus metadata.

Every loader in :mod:`geossl.data` returns an :class:`ImageDataset`. Images are never normalised here:
normalisation needs per-band statistics of the *training* split (see :mod:`geossl.data.stats`), and keeping
raw values (``uint8`` for 8-bit files) keeps memory at one byte per pixel for the common RGB case.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
import numpy as np
import torch
from torch.utils.data import Dataset

from geossl.errors import GeosslError

#: ``value_scale`` of 8-bit images: raw 0..255 -> scaled 0..1.
UINT8_SCALE = 1.0 / 255.0
#: ``value_scale`` of 16-bit images: Sentinel-2 L2A stores surface reflectance x 10 000 as uint16, so
#: raw * 1e-4 is reflectance (about 0..1). Other 16-bit data (e.g. 16-bit PNG photos, 0..65535) need an
#: explicit ``value_scale`` from the user.
UINT16_SCALE = 1e-4

IndexLike = torch.Tensor | np.ndarray | Sequence[int] | range


def default_value_scale(dtype: torch.dtype | np.dtype | str) -> float:
    """The ``value_scale`` implied by a raw dtype: 1/255 for uint8, 1e-4 for uint16, 1.0 otherwise."""
    name = str(dtype).replace("torch.", "")
    if name == "uint8":
        return UINT8_SCALE
    if name == "uint16":
        return UINT16_SCALE
    return 1.0


def as_index_tensor(indices: IndexLike, length: int) -> torch.Tensor:
    """Convert indices (tensor, array, list, range, bool mask) to a 1-D long tensor, checking bounds.

    Args:
        indices: integer indices or a boolean mask of shape (length,).
        length: size of the indexed dataset.

    Returns:
        Long tensor of shape (K,).
    """
    idx = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
    if idx.dtype == torch.bool:
        if idx.shape != (length,):
            raise GeosslError(f"boolean subset mask has shape {tuple(idx.shape)}, expected ({length},)")
        return idx.nonzero().flatten()
    if idx.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    if idx.is_floating_point() or idx.is_complex():
        raise GeosslError(f"subset indices must be integers, got dtype {idx.dtype}")
    idx = idx.flatten().long()
    if int(idx.min()) < -length or int(idx.max()) >= length:
        raise GeosslError(f"subset index out of range for a dataset of {length} images")
    return idx % length  # negative indices count from the end, as in Python


class ImageDataset(Dataset):
    """Base class: a labelled or unlabelled set of equally sized images.

    ``dataset[i]`` returns ``(image, label)``: ``image`` is a tensor of shape (C, H, W), dtype ``uint8`` for
    8-bit files and ``float32`` otherwise, in the file's raw units (NOT normalised; multiply by
    :attr:`value_scale` to get scaled units); ``label`` is an ``int``, -1 when unlabelled.

    Attributes:
        classes: class names indexed by label, or None when unlabelled.
        num_bands: C.
        image_size: (H, W), shared by all items.
        value_scale: factor from raw to scaled units (1/255 for 8-bit, 1e-4 for uint16 Sentinel-2 L2A
            reflectance x 10 000, 1.0 for float data). Users may overwrite it.
        labels: long tensor of shape (N,), -1 for unlabelled items.
        band_names: optional names of the C bands (e.g. ``["B02", "B03", "B04"]``).
        files: optional source file of each item (for error messages, visualisation, fingerprints).
    """

    classes: list[str] | None
    num_bands: int
    image_size: tuple[int, int]
    value_scale: float
    labels: torch.Tensor
    band_names: list[str] | None = None
    files: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    @property
    def has_labels(self) -> bool:
        """True when the dataset has class names and at least one labelled item."""
        return self.classes is not None and bool((self.labels >= 0).any())

    def subset(self, indices: IndexLike) -> ImageDataset:
        """A dataset with the given items (in the given order), keeping all metadata.

        The default returns a view (:class:`SubsetImageDataset`); in-memory datasets return a compact copy.
        """
        return SubsetImageDataset(self, as_index_tensor(indices, len(self)))

    def fingerprint(self) -> str:
        """A hex string that changes whenever the dataset content changes (used as a cache key).

        The default hashes every item, which reads the whole dataset; subclasses provide cheaper ones.
        """
        h = hashlib.sha256(f"{type(self).__name__} {len(self)} {self.num_bands} {self.image_size}".encode())
        for i in range(len(self)):
            image, label = self[i]
            h.update(image.contiguous().numpy().tobytes())
            h.update(str(label).encode())
        return h.hexdigest()

    def __repr__(self) -> str:
        h, w = self.image_size
        classes = f"{len(self.classes)} classes" if self.classes is not None else "unlabelled"
        return (
            f"{type(self).__name__}({len(self)} images, {self.num_bands}x{h}x{w}, {classes}, "
            f"value_scale={self.value_scale:g})"
        )


class TensorImageDataset(ImageDataset):
    """In-memory images: a tensor of shape (N, C, H, W) plus labels.

    Args:
        images: (N, C, H, W) tensor, ``uint8`` or floating point (stored as ``float32``).
        labels: (N,) integer tensor, -1 for unlabelled items; None means all unlabelled.
        classes: class names indexed by label. If None but some labels are >= 0, names "0", "1", ... are used.
        value_scale: raw-to-scaled factor; default from the dtype (1/255 for uint8, 1.0 for float). Pass 1e-4
            for float tensors holding Sentinel-2 reflectance x 10 000.
        band_names: optional names of the C bands.
        files: optional source path of each item.
        fingerprint: optional content fingerprint (e.g. a hash of the source file list with sizes and
            mtimes); if None it is computed from the tensor bytes when first needed.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        classes: Sequence[str] | None = None,
        value_scale: float | None = None,
        band_names: Sequence[str] | None = None,
        files: Sequence[str] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise GeosslError(f"images must be a tensor of shape (N, C, H, W), got {shape}")
        if images.dtype != torch.uint8:
            images = images.float()  # one float dtype everywhere keeps transforms simple
        n = images.shape[0]
        if labels is None:
            labels = torch.full((n,), -1, dtype=torch.long)
        labels = torch.as_tensor(labels).long().flatten()
        if labels.shape[0] != n:
            raise GeosslError(f"got {n} images but {labels.shape[0]} labels; pass one label per image")
        if classes is None and n > 0 and int(labels.max()) >= 0:
            classes = [str(i) for i in range(int(labels.max()) + 1)]
        if classes is not None and n > 0 and int(labels.max()) >= len(classes):
            raise GeosslError(f"label {int(labels.max())} has no class name ({len(classes)} classes given)")
        if band_names is not None and len(band_names) != images.shape[1]:
            raise GeosslError(f"{len(band_names)} band names given for {images.shape[1]} bands")
        if files is not None and len(files) != n:
            raise GeosslError(f"{len(files)} file names given for {n} images")
        if value_scale is None:
            value_scale = default_value_scale(images.dtype)
        if not (math.isfinite(value_scale) and value_scale > 0):
            raise GeosslError(f"value_scale must be a positive number, got {value_scale}")

        self.images = images
        self.labels = labels
        self.classes = list(classes) if classes is not None else None
        self.num_bands = int(images.shape[1])
        self.image_size = (int(images.shape[2]), int(images.shape[3]))
        self.value_scale = float(value_scale)
        self.band_names = list(band_names) if band_names is not None else None
        self.files = list(files) if files is not None else None
        self._fingerprint = fingerprint

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, indices: IndexLike) -> TensorImageDataset:
        """Copy the selected items into a new contiguous dataset (same classes, scale, band names).

        Copying (rather than keeping a view) gives each split its own contiguous tensor, which is what fast
        batched GPU loading wants; the parent can then be freed.
        """
        idx = as_index_tensor(indices, len(self))
        fingerprint = None
        if self._fingerprint is not None:
            # Derive from the parent's cheap fingerprint instead of hashing the copied bytes later.
            h = hashlib.sha256(self._fingerprint.encode())
            h.update(idx.numpy().astype("<i8").tobytes())
            fingerprint = h.hexdigest()
        return TensorImageDataset(
            self.images[idx],
            self.labels[idx],
            classes=self.classes,
            value_scale=self.value_scale,
            band_names=self.band_names,
            files=[self.files[i] for i in idx.tolist()] if self.files is not None else None,
            fingerprint=fingerprint,
        )

    def fingerprint(self) -> str:
        """sha256 of the given fingerprint, or of the image and label bytes (computed once)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(f"{tuple(self.images.shape)} {self.images.dtype}".encode())
            h.update(self.images.contiguous().numpy().tobytes())
            h.update(self.labels.numpy().astype("<i8").tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


class SubsetImageDataset(ImageDataset):
    """A view on selected items of another dataset (for datasets that do not hold one tensor)."""

    def __init__(self, parent: ImageDataset, indices: torch.Tensor) -> None:
        self.parent = parent
        self.indices = indices
        self.labels = parent.labels[indices]
        self.classes = parent.classes
        self.num_bands = parent.num_bands
        self.image_size = parent.image_size
        self.value_scale = parent.value_scale
        self.band_names = parent.band_names
        self.files = [parent.files[i] for i in indices.tolist()] if parent.files is not None else None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.parent[int(self.indices[index])]

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.parent.fingerprint().encode())
        h.update(self.indices.numpy().astype("<i8").tobytes())
        return h.hexdigest()
