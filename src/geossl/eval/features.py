"""Frozen-feature extraction and an on-disk feature cache (``evaluation.md`` §0).

Every offline protocol (k-NN, linear probe, few-shot, clustering) runs on features extracted once, in ``eval()`` mode
and without augmentation. :class:`FeatureCache` stores them under a caller-chosen key (e.g. a hash of the checkpoint
and the dataset split) so that re-running an evaluation does not re-encode the dataset.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from geossl.errors import GeosslError


def _encoder_device(encoder: nn.Module) -> torch.device:
    for t in encoder.parameters():
        return t.device
    for t in encoder.buffers():
        return t.device
    return torch.device("cpu")


def _progress(iterable: Any, total: int | None, enabled: bool, desc: str) -> Any:
    """Wrap ``iterable`` in a tqdm bar when requested and tqdm is installed (it comes with Lightning)."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with lightning
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


def _as_label_tensor(labels: Any, batch_len: int) -> Tensor:
    if labels is None:
        return torch.full((batch_len,), -1, dtype=torch.long)
    t = torch.as_tensor(labels)
    if t.ndim != 1 or t.shape[0] != batch_len:
        raise GeosslError(f"the dataset must yield (image, label) with an integer label per image, got labels of shape "
                          f"{tuple(t.shape)} for a batch of {batch_len}; use label -1 for unlabeled images.")
    return t.long()


def extract_features(
    encoder: nn.Module,
    dataset: Any,
    *,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Encode a labelled dataset with a frozen encoder.

    The encoder runs in ``eval()`` mode under ``torch.inference_mode()``; the ``training`` flag of every submodule is
    restored afterwards (so a partly frozen model, e.g. with BatchNorm kept in eval mode, comes back unchanged), and so
    is its device.

    Args:
        encoder: maps a batch (B, C, H, W) to features (B, D) (any output of B rows is flattened to (B, -1)).
        dataset: a map-style or iterable dataset yielding ``(image (C, H, W) uint8 or float, label int)``, label -1
            for unlabeled images; or a ready :class:`~torch.utils.data.DataLoader` (used as is, in its order).
        preprocess: applied to each batch (B, C, H, W) on ``device`` before the encoder, e.g.
            ``lambda x: (x.float() / 255 - mean) / std``; default: cast to float32 unchanged.
        batch_size: images per forward pass.
        device: where the encoder runs; default: where its parameters are. The encoder is moved there for the
            extraction and moved back afterwards.
        num_workers: DataLoader worker processes.
        progress: show a tqdm progress bar.

    Returns:
        ``(features (N, D) float32, labels (N,) long)`` on CPU, in dataset order.

    Raises:
        GeosslError: when the dataset is empty, does not yield ``(image, label)`` pairs, or the encoder returns
            something other than a tensor with one row per image.
    """
    if batch_size < 1:
        raise GeosslError(f"batch_size must be >= 1, got {batch_size}.")
    home = _encoder_device(encoder)
    dev = torch.device(device) if device is not None else home
    if isinstance(dataset, DataLoader):
        loader = dataset
    else:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            pin_memory=dev.type == "cuda", drop_last=False)
    try:
        total = len(loader)
    except TypeError:  # iterable datasets without __len__
        total = None

    modes = {m: m.training for m in encoder.modules()}
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    move = dev != home  # a model split over devices is left where it is unless a device is asked for
    try:
        encoder.eval()
        if move:
            encoder.to(dev)
        with torch.inference_mode():
            for batch in _progress(loader, total, progress, "extract features"):
                if not isinstance(batch, (list, tuple)) or len(batch) != 2:
                    raise GeosslError("the dataset must yield (image, label) pairs; wrap it so that each item is "
                                      "(tensor (C, H, W), int label), with -1 for unlabeled images.")
                images, y = batch
                if not isinstance(images, Tensor) or images.ndim != 4:
                    raise GeosslError(f"images must batch to a (B, C, H, W) tensor, got "
                                      f"{getattr(images, 'shape', type(images).__name__)}; convert each image to a "
                                      "(C, H, W) tensor in the dataset.")
                x = images.to(dev, non_blocking=True)
                x = preprocess(x) if preprocess is not None else x.float()
                out = encoder(x)
                if not isinstance(out, Tensor) or out.shape[0] != images.shape[0]:
                    raise GeosslError("the encoder must return a tensor with one row of features per image; wrap it "
                                      "to select the representation (e.g. the backbone output before the projector).")
                feats.append(out.reshape(out.shape[0], -1).float().cpu())
                labels.append(_as_label_tensor(y, images.shape[0]))
    finally:
        if move:
            encoder.to(home)
        for m, mode in modes.items():
            m.training = mode
    if not feats:
        raise GeosslError("the dataset is empty; check its root folder and split.")
    return torch.cat(feats), torch.cat(labels)


class FeatureCache:
    """Features and labels stored as ``.pt`` files under a directory, one file per caller-given key.

    The key should identify everything that determines the features, e.g. ``FeatureCache.make_key(checkpoint_path,
    "eurosat", "test", "backbone")``; the file name is a hash of it, and the key is stored in the file and checked on
    load. Writes are atomic (temporary file, then rename), so an interrupted run never leaves a truncated cache entry.

    Args:
        root: cache directory (created on first save).

    Example:
        >>> cache = FeatureCache("runs/simclr/features")
        >>> key = FeatureCache.make_key("runs/simclr/checkpoints/last.ckpt", "eurosat-test")
        >>> feats, labels = cache.get_or_compute(key, lambda: extract_features(encoder, test_set))
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @staticmethod
    def make_key(*parts: Any) -> str:
        """Hash parts into a key: paths of existing files by their content, everything else by ``repr``.

        Args:
            parts: e.g. a checkpoint path, a dataset name, a split, a layer name, a dict of options.

        Returns:
            A 64-character hex SHA-256 digest.
        """
        h = hashlib.sha256()
        for part in parts:
            if isinstance(part, (str, os.PathLike)) and Path(part).is_file():
                with open(part, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
            else:
                h.update(repr(part).encode())
            h.update(b"\0")
        return h.hexdigest()

    def path(self, key: str) -> Path:
        """The file storing ``key``."""
        return self.root / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pt"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, features: Tensor, labels: Tensor) -> Path:
        """Store features (N, D) and labels (N,) under ``key``; returns the file path."""
        if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
            raise GeosslError(f"cannot cache features {tuple(features.shape)} with labels {tuple(labels.shape)}; "
                              "expected (N, D) and (N,).")
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"key": key, "features": features.detach().cpu(), "labels": labels.detach().cpu()}, tmp)
        os.replace(tmp, path)
        return path

    def load(self, key: str) -> tuple[Tensor, Tensor] | None:
        """Features and labels stored under ``key``, or ``None`` when absent.

        Raises:
            GeosslError: when the file is unreadable or was written for another key.
        """
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            stored, features, labels = blob["key"], blob["features"], blob["labels"]
        except Exception as e:  # any unpickling failure means a corrupt entry
            raise GeosslError(f"feature cache file {path} is unreadable ({type(e).__name__}); delete it to "
                              "recompute the features.") from e
        if stored != key:
            raise GeosslError(f"feature cache file {path} belongs to another key; delete it to recompute.")
        return features, labels

    def get_or_compute(self, key: str, compute: Callable[[], tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Load ``key`` or, when absent, call ``compute()`` and store its ``(features, labels)``."""
        hit = self.load(key)
        if hit is not None:
            return hit
        features, labels = compute()
        self.save(key, features, labels)
        return features, labels
