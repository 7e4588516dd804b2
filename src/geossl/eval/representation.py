"""Representation-geometry metrics: effective rank, alignment and uniformity (``evaluation.md`` §9).

* Effective rank (Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality", EUSIPCO):
  ``erank(Z) = exp(H(p))`` with ``p_k = σ_k / Σ_j σ_j`` the normalised singular values and ``H(p) = −Σ_k p_k log p_k``
  (0 log 0 = 0). Unlike :func:`geossl.eval.monitors.rankme` it has no 1e-7 smoothing, so it is exactly r for r equal
  singular values and exactly 1 for a rank-1 matrix.
* Alignment and uniformity (Wang & Isola 2020, "Understanding Contrastive Representation Learning through Alignment
  and Uniformity on the Hypersphere", ICML), on L2-normalised features::

      alignment  = E_{(x, y) positive pairs} ‖f(x) − f(y)‖₂^α                 (α = 2)
      uniformity = log E_{x, y i.i.d.} exp(−t ‖f(x) − f(y)‖₂²)               (t = 2)

  The expectation of the uniformity runs over the N(N − 1)/2 pairs of distinct samples, as ``torch.pdist`` in the
  authors' code. Lower is better for both; uniformity is ≤ 0 (0 for a collapsed batch) and, by Jensen's
  inequality, ≥ −t · (mean pairwise squared distance).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from geossl.errors import GeosslError
from geossl.eval._checks import as_features, check_same_dim, check_same_length


def effective_rank(z: Tensor | Any, *, center: bool = False) -> float:
    """Effective rank of a matrix (Roy & Vetterli 2007): the exponential of the entropy of its normalised singular
    values.

    Args:
        z: embeddings (N, D), torch or NumPy; computed in float64.
        center: subtract the column means first (the rank of the covariance rather than of the raw matrix; the paper
            and RankMe use the raw matrix).

    Returns:
        erank in [1, min(N, D)] as a Python float; 1.0 for the zero matrix (no direction is used).
    """
    t = as_features(z, "z", dtype=torch.float64)
    if t.shape[0] == 0:
        raise GeosslError("z is empty; the effective rank needs at least one embedding.")
    if center:
        t = t - t.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(t)
    total = s.sum()
    if total == 0:
        return 1.0
    p = s / total
    p = p[p > 0]  # 0 log 0 = 0
    return math.exp(float(-(p * p.log()).sum()))


def alignment(x: Tensor | Any, y: Tensor | Any, *, alpha: float = 2.0, normalize: bool = True) -> float:
    """Alignment of positive pairs (Wang & Isola 2020): ``mean_i ‖x_i − y_i‖₂^α``.

    Args:
        x: embeddings of the first views (N, D).
        y: embeddings of the second views (N, D); row i is the positive of ``x[i]``.
        alpha: exponent α (> 0; 2 in the paper).
        normalize: L2-normalise the rows first; the metric is defined on the unit hypersphere, so pass ``False``
            only for embeddings that are already normalised.

    Returns:
        The alignment as a Python float, in [0, 2^α] for normalised embeddings (0: every pair identical).
    """
    if not alpha > 0:
        raise GeosslError(f"alpha must be > 0, got {alpha}.")
    a = as_features(x, "x", dtype=torch.float64)
    b = as_features(y, "y", dtype=torch.float64)
    check_same_length(a, b, "x", "y")
    check_same_dim(a, b, "x", "y")
    if a.shape[0] == 0:
        raise GeosslError("x is empty; alignment needs at least one positive pair.")
    if normalize:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return float((a - b).norm(dim=1).pow(alpha).mean())


def uniformity(x: Tensor | Any, *, t: float = 2.0, normalize: bool = True, chunk_size: int = 1024) -> float:
    """Uniformity (Wang & Isola 2020): ``log mean_{i<j} exp(−t ‖x_i − x_j‖₂²)``.

    Computed by blocks of rows with a log-sum-exp, in O(chunk_size · N) memory and without underflow for large t.

    Args:
        x: embeddings (N, D), N >= 2.
        t: temperature t (> 0; 2 in the paper).
        normalize: L2-normalise the rows first (see :func:`alignment`).
        chunk_size: rows per block of the pairwise-distance computation.

    Returns:
        The uniformity as a Python float (≤ 0; 0 when all embeddings coincide, about −t·2 = −4 for t = 2 and embeddings
        spread uniformly on a high-dimensional sphere).
    """
    if not t > 0:
        raise GeosslError(f"t must be > 0, got {t}.")
    if chunk_size < 1:
        raise GeosslError(f"chunk_size must be >= 1, got {chunk_size}.")
    z = as_features(x, "x", dtype=torch.float64)
    n = z.shape[0]
    if n < 2:
        raise GeosslError(f"uniformity needs at least 2 embeddings, got {n}.")
    if normalize:
        z = F.normalize(z, dim=1)
    parts = []
    for start in range(0, n - 1, chunk_size):
        rows = z[start:start + chunk_size]
        d2 = torch.cdist(rows, z).pow(2)
        i = torch.arange(start, start + rows.shape[0])[:, None]
        upper = torch.arange(n)[None, :] > i  # each unordered pair once, as torch.pdist
        parts.append(torch.logsumexp((-t * d2)[upper], dim=0))
    n_pairs = n * (n - 1) / 2
    return float(torch.logsumexp(torch.stack(parts), dim=0) - math.log(n_pairs))
