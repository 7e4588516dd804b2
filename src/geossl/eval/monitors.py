"""Collapse monitors on a batch of embeddings Z (N, D) (``evaluation.md`` §10).

Computed every epoch on a fixed batch (or a rolling buffer) of embeddings; the thresholds raise warnings, not errors,
because a low value early in training or on a tiny batch is not necessarily a failure.

| Monitor | Collapse signature | Default warning |
|---|---|---|
| RankMe (Garrido et al. 2023) | → 1 (complete) or ≪ D (dimensional collapse) | < 0.1 · min(N, D) |
| per-dimension std of L2-normalised z | → 0; healthy ≈ 1/√D | < 0.1/√D |
| mean off-diagonal cosine | → 1 (all embeddings aligned) | > 0.9 |
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from geossl.errors import GeosslError
from geossl.eval._checks import as_features


def _embeddings(z: Tensor | Any) -> Tensor:
    t = as_features(z, "z", dtype=torch.float64)
    if t.shape[0] < 2:
        raise GeosslError(f"collapse monitors need a batch of at least 2 embeddings, got {t.shape[0]}.")
    return t


def rankme(z: Tensor | Any) -> float:
    """RankMe effective rank of embeddings (Garrido et al. 2023, "RankMe: Assessing the Downstream Performance of
    Pretrained Self-Supervised Representations by Their Rank", ICML).

    ``p_k = σ_k / Σ_j σ_j + 1e-7`` over the singular values σ of Z, and ``RankMe = exp(−Σ_k p_k log p_k)``; it lies in
    [1, min(N, D)] (up to the 1e-7 smoothing): min(N, D) for a flat spectrum, 1 for a rank-1 Z. Z is not centred, as in
    the paper.

    Args:
        z: embeddings (N, D), N >= 2 (torch or NumPy); computed in float64.

    Returns:
        The effective rank as a Python float.
    """
    t = _embeddings(z)
    s = torch.linalg.svdvals(t)
    if s.sum() == 0:  # Z = 0: fully collapsed, every singular value is zero
        return 1.0
    p = s / s.sum() + 1e-7
    return math.exp(float(-(p * p.log()).sum()))


def per_dim_std(z: Tensor | Any) -> float:
    """Mean over dimensions of the batch std of each coordinate of the L2-normalised embeddings.

    For embeddings spread isotropically on the unit sphere each coordinate has variance 1/D, so a healthy value is
    ≈ 1/√D; it goes to 0 when all embeddings collapse to one point (the SimSiam-without-stop-gradient signature,
    Chen & He 2021).

    Args:
        z: embeddings (N, D), N >= 2; the unbiased (N − 1) std is used.

    Returns:
        The mean per-dimension std as a Python float.
    """
    zn = F.normalize(_embeddings(z), dim=1)
    return float(zn.std(dim=0, correction=1).mean())


def mean_pairwise_cosine(z: Tensor | Any) -> float:
    """Mean cosine similarity over the N(N − 1) ordered pairs of distinct embeddings, in O(N·D) memory.

    Uses Σ_{i≠j} ⟨ẑ_i, ẑ_j⟩ = ‖Σ_i ẑ_i‖² − Σ_i ‖ẑ_i‖² with ẑ the L2-normalised rows. ≈ 1 under collapse; ≈ 0 for
    isotropic embeddings; −1/(N − 1) at the regular-simplex optimum of T-REG.

    Args:
        z: embeddings (N, D), N >= 2.
    """
    zn = F.normalize(_embeddings(z), dim=1)
    n = zn.shape[0]
    off_diag = zn.sum(dim=0).pow(2).sum() - zn.pow(2).sum()
    return float(off_diag / (n * (n - 1)))


def collapse_warnings(
    z: Tensor | Any,
    *,
    rankme_fraction: float = 0.1,
    std_fraction: float = 0.1,
    max_mean_cosine: float = 0.9,
) -> list[str]:
    """One-line warnings for the collapse signatures of ``evaluation.md`` §10; empty when the embeddings look healthy.

    Args:
        z: embeddings (N, D), N >= 2.
        rankme_fraction: warn when RankMe < rankme_fraction · min(N, D) (dimensional collapse).
        std_fraction: warn when the per-dimension std < std_fraction / √D (complete collapse).
        max_mean_cosine: warn when the mean pairwise cosine exceeds this (embeddings aligned).

    Returns:
        A list of messages, each naming the monitor, its value and the threshold (a single message when z contains
        NaN or inf).
    """
    raw = torch.as_tensor(z)
    if raw.is_floating_point() and not torch.isfinite(raw).all():
        # Divergence rather than collapse; the other monitors are undefined on NaN.
        return [f"non-finite embeddings: {int((~torch.isfinite(raw)).sum())} NaN/inf entries; lower the learning "
                "rate or check the loss for a division by zero."]
    t = _embeddings(raw)
    n, d = t.shape
    out = []
    rank, rank_min = rankme(t), rankme_fraction * min(n, d)
    if rank < rank_min:
        out.append(f"dimensional collapse: RankMe {rank:.2f} < {rank_min:.2f} ({rankme_fraction:g} x min(N, D) = "
                   f"min({n}, {d})); the embeddings use few directions.")
    std, std_min = per_dim_std(t), std_fraction / math.sqrt(d)
    if std < std_min:
        out.append(f"complete collapse: per-dimension std {std:.2e} < {std_min:.2e} ({std_fraction:g}/sqrt(D), "
                   f"healthy ~ {1 / math.sqrt(d):.2e}); the normalised embeddings barely vary across the batch.")
    cos = mean_pairwise_cosine(t)
    if cos > max_mean_cosine:
        out.append(f"collapse: mean pairwise cosine {cos:.3f} > {max_mean_cosine:g}; the embeddings point the same "
                   "way.")
    return out
