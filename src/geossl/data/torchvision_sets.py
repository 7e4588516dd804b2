"""CIFAR-10, CIFAR-100 and STL-10 as in-memory uint8 datasets.

The files are parsed directly (same on-disk layout as torchvision's): that works offline, needs no md5 check
of the whole archive on every start, and gives tensors rather than PIL images. torchvision is only used to
download, and only when asked (``download=True``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from geossl.data.base import TensorImageDataset
from geossl.errors import GeosslError, unknown_name_error

TORCHVISION_SETS: dict[str, str] = {
    "cifar10": "CIFAR-10: 60,000 32x32 RGB images, 10 classes, official 50,000/10,000 train/test split",
    "cifar100": "CIFAR-100: 60,000 32x32 RGB images, 100 classes, official 50,000/10,000 train/test split",
    "stl10": "STL-10: 96x96 RGB, 10 classes, 5,000 train / 8,000 test + 100,000 unlabelled images",
}

# Folder (as created by torchvision) and the files that must be in it.
_LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"),
    ),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
    "stl10": (
        "stl10_binary",
        ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin", "class_names.txt"),
    ),
}

_STL_SHAPE = (3, 96, 96)
_STL_CHUNK = 4096  # images per transposition step: keeps the 2.8 GB unlabelled split from being copied twice


def _find_folder(name: str, root: Path) -> Path | None:
    """``root/<folder>`` or ``root`` itself if it is that folder; None if any file is missing."""
    folder_name, required = _LAYOUT[name]
    for folder in (root / folder_name, root):
        if all((folder / f).is_file() for f in required):
            return folder
    return None


def _download(name: str, root: Path) -> None:
    import torchvision.datasets as tvd

    try:
        if name == "stl10":
            tvd.STL10(str(root), split="train", download=True)
        else:
            (tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100)(str(root), train=True, download=True)
    except Exception as exc:  # network errors come in many types (URLError, HTTPError, RuntimeError...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GeosslError(
            f"could not download {name} to {root} ({reason}); check the network, or download it elsewhere and "
            "pass --root"
        ) from None


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            # CIFAR batches are Python 2 pickles; latin1 keeps their byte strings intact (as torchvision does).
            return pickle.load(f, encoding="latin1")
    except Exception as exc:
        raise GeosslError(
            f"cannot read {path} ({type(exc).__name__}); delete the folder and pass --download to fetch it again"
        ) from None


def _fingerprint(name: str, folder: Path, files: tuple[str, ...]) -> str:
    h = hashlib.sha256(name.encode())
    for f in files:
        st = (folder / f).stat()
        h.update(f"{f}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _cifar(name: str, folder: Path) -> dict[str, TensorImageDataset]:
    if name == "cifar10":
        parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        meta_file, names_key, labels_key = "batches.meta", "label_names", "labels"
    else:
        parts = {"train": ["train"], "test": ["test"]}
        meta_file, names_key, labels_key = "meta", "fine_label_names", "fine_labels"
    classes = [str(c) for c in _unpickle(folder / meta_file)[names_key]]
    base = _fingerprint(name, folder, _LAYOUT[name][1])
    out = {}
    for split, batch_files in parts.items():
        batches = [_unpickle(folder / f) for f in batch_files]
        try:
            images = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
            labels = np.concatenate([np.asarray(b[labels_key], dtype=np.int64) for b in batches])
        except (KeyError, ValueError) as exc:
            raise GeosslError(
                f"{folder} does not look like {name} ({type(exc).__name__}: {exc}); delete it and pass --download"
            ) from None
        out[split] = TensorImageDataset(
            torch.from_numpy(images),
            torch.from_numpy(labels),
            classes=classes,
            fingerprint=hashlib.sha256(f"{base}|{split}".encode()).hexdigest(),
        )
    return out


def _stl_images(path: Path) -> torch.Tensor:
    """Read an STL-10 ``*_X.bin`` file: uint8 images stored column-major, returned as (N, 3, 96, 96)."""
    size = path.stat().st_size
    per_image = int(np.prod(_STL_SHAPE))
    if size % per_image:
        raise GeosslError(f"{path} is truncated ({size} bytes); delete it and pass --download to fetch it again")
    raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // per_image, *_STL_SHAPE))
    out = torch.empty(raw.shape, dtype=torch.uint8)
    for a in range(0, raw.shape[0], _STL_CHUNK):
        out[a : a + _STL_CHUNK] = torch.from_numpy(np.ascontiguousarray(raw[a : a + _STL_CHUNK].transpose(0, 1, 3, 2)))
    del raw
    return out


def _stl10(folder: Path) -> dict[str, TensorImageDataset]:
    classes = [line.strip() for line in (folder / "class_names.txt").read_text().splitlines() if line.strip()]
    base = _fingerprint("stl10", folder, _LAYOUT["stl10"][1])
    out = {}
    for split in ("train", "test", "unlabeled"):
        images = _stl_images(folder / f"{split}_X.bin")
        if split == "unlabeled":
            labels, split_classes = None, None
        else:
            labels = torch.from_numpy(np.fromfile(folder / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1)
            split_classes = classes
            if labels.shape[0] != images.shape[0]:
                raise GeosslError(
                    f"{folder}: {split}_X.bin has {images.shape[0]} images but {split}_y.bin {labels.shape[0]} "
                    "labels; delete the folder and pass --download"
                )
        out[split] = TensorImageDataset(
            images,
            labels,
            classes=split_classes,
            fingerprint=hashlib.sha256(f"{base}|{split}".encode()).hexdigest(),
        )
    return out


def load_torchvision_dataset(
    name: str, root: str | os.PathLike, *, download: bool = False
) -> dict[str, TensorImageDataset]:
    """Load CIFAR-10, CIFAR-100 or STL-10 into memory.

    Args:
        name: "cifar10", "cifar100" or "stl10".
        root: folder containing torchvision's folder for the set (e.g. ``root/cifar-10-batches-py``), or that
            folder itself.
        download: fetch the set with torchvision if it is missing (never otherwise).

    Returns:
        Splits "train" and "test" (plus "unlabeled" for stl10, with labels -1 and classes None): uint8
        datasets of shape (N, 3, 32, 32) for CIFAR and (N, 3, 96, 96) for STL-10, with class names.
    """
    if name not in TORCHVISION_SETS:
        raise unknown_name_error("torchvision dataset", name, TORCHVISION_SETS)
    root = Path(root).expanduser()
    folder = _find_folder(name, root)
    if folder is None and download:
        root.mkdir(parents=True, exist_ok=True)
        _download(name, root)
        folder = _find_folder(name, root)
    if folder is None:
        raise GeosslError(f"{name} not found under {root}; pass --download to fetch it or --root to point at it")
    return _stl10(folder) if name == "stl10" else _cifar(name, folder)
