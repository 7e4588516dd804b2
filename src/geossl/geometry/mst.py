"""Minimum spanning trees of point clouds: edges, differentiable length, intrinsic dimension.

The Euclidean minimum spanning tree (MST) of a point cloud Z = {z_1, ..., z_n} is the spanning tree of the complete
graph on Z whose total edge length ``E(MST(Z)) = Σ_{(a, b) ∈ MST} ‖z_a − z_b‖₂`` is minimal. Its edges are the finite
points of the degree-0 persistence diagram of the Rips filtration, which is why T-REG (Mordacq, Loiseaux, Kalogeiton,
Oudot, "T-REGS: Minimum Spanning Tree Regularization for Self-Supervised Learning", NeurIPS 2025) can differentiate it
as Carrière et al. (ICML 2021) differentiate persistence: find the edges without gradient, then sum differentiable
edge lengths. The gradient ``∂E/∂z_a = Σ_{(a, b) ∈ MST} (z_a − z_b)/‖z_a − z_b‖`` is a valid subgradient where the
MST is not unique.

:func:`mst_edges` computes the dense distance matrix, O(n²) time and memory, then runs Prim's algorithm, O(n²):
in NumPy for CPU tensors, on the tensors' device otherwise (no host round trip on a GPU; one sweep per added point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from geossl.errors import GeosslError

__all__ = ["intrinsic_dim_mst", "mst_edges", "mst_length"]

#: Added under the square root of each edge length, so that duplicate points give a zero (not NaN) gradient.
EDGE_EPS = 1e-12


def _check_cloud(z: torch.Tensor, name: str = "z") -> None:
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise GeosslError(f"{name} must be a 2-D tensor (n points, d dimensions), got {shape}")
    if not z.is_floating_point():
        raise GeosslError(f"{name} must be a floating-point tensor, got {z.dtype}")
    if not torch.isfinite(z).all():
        raise GeosslError(f"{name} contains NaN or infinite values; check the embeddings upstream")


@torch.no_grad()
def mst_edges(z: torch.Tensor) -> torch.Tensor:
    """Edges of the Euclidean minimum spanning tree of ``z`` (Prim's algorithm on the dense distance matrix).

    Args:
        z: points, shape (n, d). No gradient is recorded.

    Returns:
        Long tensor (n − 1, 2) of index pairs (empty for n ≤ 1), deterministic for a given input. Where the MST is
        not unique (ties), any one of the minimal trees is returned.
    """
    _check_cloud(z)
    n = z.shape[0]
    if n <= 1:
        return torch.empty(0, 2, dtype=torch.long, device=z.device)
    # Squared distances have the same MST and avoid n² square roots; float64 keeps near-ties in order.
    x = z.detach().double()
    sq = (x * x).sum(1)
    dist2 = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min_(0)
    if z.device.type == "cpu":
        return _prim_numpy(dist2)
    return _prim(dist2)


def _prim_numpy(dist2: torch.Tensor) -> torch.Tensor:
    """MST edges of a dense CPU distance matrix by Prim's algorithm in NumPy.

    O(n²) with one vectorised sweep per added point: 0.3 ms for 64 points and 75 ms for 2048 on one core, where
    SciPy's ``minimum_spanning_tree`` (Kruskal over all n² edges) takes 1.3 ms and 2.2 s.
    """
    d = dist2.numpy()
    n = d.shape[0]
    in_tree = np.zeros(n, dtype=bool)
    in_tree[0] = True
    best = d[0].copy()
    parent = np.zeros(n, dtype=np.int64)
    edges = np.empty((n - 1, 2), dtype=np.int64)
    for k in range(n - 1):
        j = int(np.where(in_tree, np.inf, best).argmin())
        edges[k] = (parent[j], j)
        in_tree[j] = True
        closer = d[j] < best
        best = np.where(closer, d[j], best)
        parent[closer] = j
    return torch.from_numpy(edges)


def _prim(dist2: torch.Tensor) -> torch.Tensor:
    """MST edges of a dense distance matrix by Prim's algorithm, on the matrix's device."""
    n, device = dist2.shape[0], dist2.device
    in_tree = torch.zeros(n, dtype=torch.bool, device=device)
    in_tree[0] = True
    best = dist2[0].clone()
    parent = torch.zeros(n, dtype=torch.long, device=device)
    inf = torch.tensor(float("inf"), dtype=best.dtype, device=device)
    edges = torch.empty(n - 1, 2, dtype=torch.long, device=device)
    for k in range(n - 1):
        j = torch.argmin(torch.where(in_tree, inf, best))
        edges[k, 0] = parent[j]
        edges[k, 1] = j
        in_tree[j] = True
        row = dist2[j]
        closer = row < best
        best = torch.where(closer, row, best)
        parent = torch.where(closer, j, parent)
    return edges


def mst_length(z: torch.Tensor, edges: torch.Tensor | None = None) -> torch.Tensor:
    """Total Euclidean length of the minimum spanning tree of ``z``, differentiable in ``z``.

    Args:
        z: points, shape (n, d).
        edges: precomputed :func:`mst_edges` of ``z`` (computed when omitted).

    Returns:
        Scalar ``Σ_{(a, b) ∈ MST} sqrt(‖z_a − z_b‖² + 1e-12)``; 0 for n ≤ 1.
    """
    if edges is None:
        edges = mst_edges(z)
    if edges.numel() == 0:
        return z.sum() * 0
    diff = z[edges[:, 0]] - z[edges[:, 1]]
    return torch.sqrt((diff * diff).sum(1) + EDGE_EPS).sum()


def intrinsic_dim_mst(
    x: torch.Tensor,
    sizes: Sequence[int] | None = None,
    n_repeats: int = 5,
    seed: int = 0,
) -> float:
    """Intrinsic dimension of a point cloud from the growth of its MST length (Steele 1988; Costa & Hero 2004).

    For n points drawn from a density on a d-dimensional manifold, ``E(MST(X_n)) ≈ C n^{(d−1)/d}``. Fitting
    ``log E = a log n + b`` over subsample sizes n gives ``d̂ = 1 / (1 − a)``.

    Args:
        x: points, shape (N, D), N ≥ 16.
        sizes: subsample sizes (default: 8 sizes log-spaced from N/16, at least 8, to min(N, 2048)).
        n_repeats: random subsamples per size (their MST lengths are averaged in log space).
        seed: seed of the subsampling.

    Returns:
        The estimate d̂ (``inf`` if the fitted slope is ≥ 1, i.e. the lengths grow at least linearly).
    """
    _check_cloud(x, "x")
    n_total = x.shape[0]
    if n_total < 16:
        raise GeosslError(f"the MST dimension estimate needs at least 16 points, got {n_total}")
    if sizes is None:
        hi = min(n_total, 2048)
        lo = max(8, hi // 16)
        sizes = sorted({int(round(v)) for v in torch.logspace(math.log10(lo), math.log10(hi), 8).tolist()})
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 2 or max(sizes) > n_total:
        raise GeosslError(f"sizes must hold at least two subsample sizes in [2, {n_total}], got {sizes}")
    g = torch.Generator().manual_seed(seed)
    log_n, log_e = [], []
    for n in sizes:
        reps = 1 if n == n_total else n_repeats
        logs = [torch.log(mst_length(x[torch.randperm(n_total, generator=g)[:n].to(x.device)].double())) for _ in range(reps)]
        log_n.append(math.log(n))
        log_e.append(float(torch.stack(logs).mean()))
    a = _slope(log_n, log_e)
    return math.inf if a >= 1 else 1.0 / (1.0 - a)


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
