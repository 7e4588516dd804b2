"""Input conversion and validation shared by the evaluation protocols.

Every protocol accepts torch tensors or NumPy arrays (``evaluation.md`` §13) and turns malformed input into a one-line
:class:`~geossl.errors.GeosslError` instead of a shape error deep inside a matmul.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from geossl.errors import GeosslError


def as_features(x: Any, name: str, *, dtype: torch.dtype | None = None) -> Tensor:
    """Return ``x`` as a floating 2-D tensor of shape (N, D), checking that it is finite.

    Args:
        x: a tensor, array or nested sequence of shape (N, D).
        name: the argument name used in error messages.
        dtype: the floating dtype to convert to; ``None`` keeps a floating input's dtype and maps others to float32.
    """
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if t.ndim != 2:
        raise GeosslError(f"{name} must be a 2-D (N, D) array of features, got shape {tuple(t.shape)}; "
                          "flatten or pool the encoder output first.")
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.float()
    if not torch.isfinite(t).all():
        raise GeosslError(f"{name} contains NaN or infinite values; check the encoder checkpoint and the input "
                          "normalisation.")
    return t


def as_labels(y: Any, name: str, *, allow_unlabeled: bool = False) -> Tensor:
    """Return ``y`` as a 1-D int64 tensor of class indices (N,).

    Args:
        y: integer labels; -1 marks an unlabeled sample.
        name: the argument name used in error messages.
        allow_unlabeled: accept -1 entries instead of raising.
    """
    t = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
    if t.ndim != 1:
        raise GeosslError(f"{name} must be a 1-D array of class indices, got shape {tuple(t.shape)}.")
    if t.is_complex() or (t.is_floating_point() and t.numel() and not torch.equal(t, t.round())):
        raise GeosslError(f"{name} must hold integer class indices, got non-integer values.")
    t = t.long()
    lowest = -1 if allow_unlabeled else 0
    if t.numel() and int(t.min()) < lowest:
        if int(t.min()) == -1:
            raise GeosslError(f"{name} contains -1 (unlabeled samples); drop them before evaluating, e.g. "
                              f"features[labels >= 0].")
        raise GeosslError(f"{name} contains negative class index {int(t.min())}; labels must be 0..C-1.")
    return t


def check_same_length(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raise if two arrays do not describe the same number of samples."""
    if a.shape[0] != b.shape[0]:
        raise GeosslError(f"{name_a} has {a.shape[0]} rows but {name_b} has {b.shape[0]}; they must describe the "
                          "same samples.")


def check_nonempty(t: Tensor, name: str) -> None:
    """Raise if an array has no samples."""
    if t.shape[0] == 0:
        raise GeosslError(f"{name} is empty; the split has no samples.")


def check_same_dim(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raise if two feature matrices have different feature dimensions."""
    if a.shape[1] != b.shape[1]:
        raise GeosslError(f"{name_a} has dimension {a.shape[1]} but {name_b} has {b.shape[1]}; extract both with "
                          "the same encoder and layer.")


def infer_num_classes(*labels: Tensor, num_classes: int | None = None) -> int:
    """Number of classes: ``num_classes`` if given (checked against the labels), else ``max(label) + 1``."""
    seen = max((int(y.max()) + 1 for y in labels if y.numel()), default=0)
    if num_classes is None:
        if seen == 0:
            raise GeosslError("cannot infer the number of classes from empty labels; pass num_classes.")
        return seen
    if num_classes < seen:
        raise GeosslError(f"num_classes={num_classes} but the labels go up to {seen - 1}; pass num_classes >= "
                          f"{seen}.")
    return int(num_classes)


def topk_accuracy(scores: Tensor, labels: Tensor, k: int) -> float:
    """Top-k accuracy in percent (0-100) of class scores (M, C) against labels (M,).

    Ranking uses a stable descending sort, so equal scores are ordered by class index (deterministic); k is clamped to C.
    """
    k = min(k, scores.shape[1])
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    hit = (order == labels[:, None]).any(dim=1)
    return 100.0 * hit.double().mean().item()
