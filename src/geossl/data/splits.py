"""Deterministic, stratified train/val/test splits.

EuroSAT (and most folders users bring) has no official split, so every reported number must state the split:
:func:`describe_split` gives the sentence to print.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from geossl.errors import GeosslError

SPLIT_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """Validate split fractions: 2 (train/test) or 3 (train/val/test) non-negative numbers summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) not in SPLIT_NAMES:
        raise GeosslError(f"split needs 2 (train/test) or 3 (train/val/test) fractions, got {len(fr)}: {fr}")
    if any(not math.isfinite(f) or f < 0 for f in fr) or fr[0] <= 0:
        raise GeosslError(f"split fractions must be >= 0 with a positive train part, got {fr}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise GeosslError(f"split fractions must sum to 1, got {fr} (sum {sum(fr):g}); e.g. --split 0.6 0.2 0.2")
    return fr


def _largest_remainder(total: int, fractions: Sequence[float]) -> np.ndarray:
    """Integer counts summing to ``total``, each within 1 of total * fraction (ties go to earlier parts)."""
    exact = np.array([round(total * f, 9) for f in fractions])  # round away float noise (0.6 * 5 = 2.9999...)
    counts = np.floor(exact).astype(np.int64)
    remainder = exact - counts
    order = sorted(range(len(fractions)), key=lambda k: (-remainder[k], k))
    for k in order[: total - int(counts.sum())]:
        counts[k] += 1
    return counts


def _allocate(class_sizes: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Per-class split counts (C, K): rows sum to the class sizes, columns to the rounded global totals.

    Each cell is floor(size * fraction) or one more, so every class is split within one image of the exact
    proportions; the extra units are placed Ryser-style (classes with most units left first, each into the
    parts with most units left), which always finds such a matrix when one exists.
    """
    exact = np.round(class_sizes[:, None] * np.asarray(fractions)[None, :], 9)
    counts = np.floor(exact).astype(np.int64)
    frac = exact - counts
    part_left = _largest_remainder(int(class_sizes.sum()), fractions) - counts.sum(0)
    class_left = class_sizes - counts.sum(1)
    for c in sorted(range(len(class_sizes)), key=lambda c: (-class_left[c], c)):
        parts = sorted(range(len(fractions)), key=lambda k: (-part_left[k], -frac[c, k], k))[: class_left[c]]
        for k in parts:
            counts[c, k] += 1
            part_left[k] -= 1
    if (part_left != 0).any() or (counts < 0).any():
        # Cannot happen for totals from _largest_remainder in practice; fall back to per-class rounding.
        counts = np.stack([_largest_remainder(int(s), fractions) for s in class_sizes])
    return counts


def stratified_split(
    labels: torch.Tensor | Sequence[int], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Split indices into train/test or train/val/test parts, stratified per class.

    Each class is shuffled with its own generator seeded by ``(seed, class)`` and cut into consecutive parts,
    with per-class counts rounded so that the part sizes are exact (27,000 EuroSAT images at 60/20/20 give
    16,200/5,400/5,400) and each class is within one image of its exact share. Unlabelled items (-1) form
    their own stratum, so an unlabelled dataset gets a plain seeded random split.

    Args:
        labels: (N,) integer labels, -1 for unlabelled.
        fractions: 2 or 3 non-negative fractions summing to 1 (a zero val part is allowed).
        seed: split seed; the same seed always gives the same split.

    Returns:
        One sorted long tensor of indices per part, shapes (N_k,), disjoint, covering all N items.
    """
    fr = check_fractions(fractions)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64).reshape(-1)
    strata, inverse = np.unique(y, return_inverse=True)
    members = [np.flatnonzero(inverse == s) for s in range(len(strata))]
    counts = _allocate(np.array([len(m) for m in members]), fr)
    parts: list[list[np.ndarray]] = [[] for _ in fr]
    for stratum, idx, row in zip(strata, members, counts):
        # Per-class generators: adding or removing a class does not reshuffle the others.
        perm = np.random.default_rng([seed, int(stratum) + 1]).permutation(idx)
        bounds = np.concatenate([[0], np.cumsum(row)])
        for k in range(len(fr)):
            parts[k].append(perm[bounds[k] : bounds[k + 1]])
    return tuple(
        torch.from_numpy(np.sort(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64)).long() for p in parts
    )


def _percent(f: float) -> str:
    return f"{f * 100:.4g}"


def describe_split(
    parts: Sequence[torch.Tensor | int], fractions: Sequence[float], seed: int, *, stratified: bool = True
) -> str:
    """One sentence stating a split, for every report.

    Example: ``"stratified 60/20/20 train/val/test split, seed 0: 16200/5400/5400 images"``.

    Args:
        parts: the index tensors returned by :func:`stratified_split` (or their sizes).
        fractions: the fractions used.
        seed: the seed used.
        stratified: False for an unlabelled (plain random) split.
    """
    fr = check_fractions(fractions)
    sizes = [int(p.numel()) if isinstance(p, torch.Tensor) else int(p) for p in parts]
    kind = "stratified" if stratified else "random"
    return (
        f"{kind} {'/'.join(_percent(f) for f in fr)} {'/'.join(SPLIT_NAMES[len(fr)])} split, seed {seed}: "
        f"{'/'.join(str(s) for s in sizes)} images"
    )
