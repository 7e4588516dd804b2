"""Clustering evaluation: seeded k-means in torch and external / internal clustering metrics (``evaluation.md`` §6).

Protocol: k-means with k = number of classes, k-means++ initialisation and ``n_init = 10`` restarts (the lowest inertia
wins) on L2-normalised features, then

| Metric | Definition |
|---|---|
| NMI | I(Y; Ŷ) / ((H(Y) + H(Ŷ)) / 2) (arithmetic normalisation, Vinh et al. 2010) |
| ARI | adjusted Rand index (Hubert & Arabie 1985), from the pair-counting confusion matrix |
| clustering accuracy | best one-to-one matching of clusters to classes (Hungarian algorithm on the contingency table) |
| purity | (1/N) Σ_clusters max_class n_{cluster, class} |
| silhouette | mean over samples of (b − a) / max(a, b) (Rousseeuw 1987); a = mean distance to the own cluster, |
| | b = lowest mean distance to another cluster; 0 for samples of singleton clusters |

The metric conventions, including the degenerate cases (a single cluster, all-singleton labelings), follow
scikit-learn's ``normalized_mutual_info_score``, ``adjusted_rand_score`` and ``silhouette_score``, which are the test
oracles. Metrics accept arbitrary integer labelings (not necessarily 0..C−1) and return floats in their natural range
([0, 1] for NMI, accuracy and purity; [−0.5, 1] for ARI; [−1, 1] for the silhouette), not percentages.

k-means follows Lloyd's algorithm with the greedy k-means++ seeding of scikit-learn (Arthur & Vassilvitskii 2007, with
2 + ⌊ln k⌋ candidates per centre), its tolerance (``tol`` times the mean per-feature variance, on the squared centre
shift) and its relocation of empty clusters to the points farthest from their centres; being seeded through torch,
it does not reproduce scikit-learn's random draws, only its objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from geossl.errors import GeosslError, unknown_name_error
from geossl.eval._checks import as_features, check_nonempty, check_same_length

#: Above this many feature entries (N * D) k-means runs in float32 instead of float64.
FLOAT64_MAX_ENTRIES = 4_000_000


@dataclass(frozen=True)
class KMeansResult:
    """Output of :func:`kmeans`.

    Attributes:
        labels: cluster index of each sample (N,) long, in 0..k−1.
        centers: cluster centres (k, D), in the computation dtype.
        inertia: sum of squared distances of the samples to their centres (of the best restart).
        n_iter: Lloyd iterations of the best restart.
    """

    labels: Tensor
    centers: Tensor
    inertia: float
    n_iter: int


def _sq_dists(x: Tensor, x_sq: Tensor, centers: Tensor) -> Tensor:
    """Squared Euclidean distances (N, k) via ‖x‖² − 2⟨x, c⟩ + ‖c‖², clamped at 0 (cancellation can go below)."""
    return (x_sq[:, None] - 2.0 * x @ centers.T + centers.pow(2).sum(dim=1)[None, :]).clamp_min_(0.0)


def _kmeans_plusplus(x: Tensor, x_sq: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """Greedy k-means++ seeding (as scikit-learn's ``_kmeans_plusplus``); returns centres (k, D)."""
    n = x.shape[0]
    n_trials = 2 + int(math.log(k))
    centers = torch.empty(k, x.shape[1], dtype=x.dtype)
    first = int(torch.randint(n, (1,), generator=gen))
    centers[0] = x[first]
    closest = _sq_dists(x, x_sq, centers[:1]).squeeze(1)
    potential = closest.sum()
    for c in range(1, k):
        # D² sampling of a few candidates; keep the one that lowers the potential most (greedy variant).
        draws = torch.rand(n_trials, generator=gen, dtype=x.dtype) * potential
        cand = torch.searchsorted(torch.cumsum(closest, dim=0), draws).clamp_max_(n - 1)
        cand_d = torch.minimum(closest[None, :], _sq_dists(x, x_sq, x[cand]).T)  # (trials, N)
        pots = cand_d.sum(dim=1)
        best = int(pots.argmin())
        centers[c] = x[cand[best]]
        closest, potential = cand_d[best], pots[best]
    return centers


def _lloyd(x: Tensor, x_sq: Tensor, centers: Tensor, max_iter: int, tol: float) -> tuple[Tensor, Tensor, float, int]:
    """Lloyd iterations from ``centers``; returns (labels, centres, inertia, iterations)."""
    k = centers.shape[0]
    labels = None
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        d = _sq_dists(x, x_sq, centers)
        new_labels = d.argmin(dim=1)
        if labels is not None and torch.equal(new_labels, labels):
            break  # strict convergence: the assignment is a fixed point
        labels = new_labels
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centers).index_add_(0, labels, x)
        new_centers = sums / counts.clamp_min(1)[:, None].to(x.dtype)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            # Relocate empty clusters to the points farthest from their centres, as scikit-learn does, so that k
            # clusters survive.
            far = d.gather(1, labels[:, None]).squeeze(1).argsort(descending=True)[:empty.numel()]
            new_centers[empty] = x[far]
        shift = (new_centers - centers).pow(2).sum()
        centers = new_centers
        if shift <= tol:
            break
    d = _sq_dists(x, x_sq, centers)
    labels = d.argmin(dim=1)  # final E-step, so that labels are consistent with the returned centres
    inertia = float(d.gather(1, labels[:, None]).sum())
    return labels, centers, inertia, n_iter


def kmeans(
    features: Tensor | Any,
    n_clusters: int,
    *,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
) -> KMeansResult:
    """k-means (Lloyd) with greedy k-means++ seeding and ``n_init`` seeded restarts; the lowest inertia is kept.

    Args:
        features: samples (N, D), torch or NumPy; used as given (normalise beforehand for the §6 protocol, or use
            :func:`kmeans_metrics`).
        n_clusters: k, 1 <= k <= N.
        n_init: number of restarts.
        max_iter: Lloyd iterations per restart.
        tol: relative tolerance: stop when the squared centre shift is <= tol · mean per-feature variance
            (scikit-learn's convention).
        seed: seed of the restarts.

    Returns:
        A :class:`KMeansResult`; float64 up to 4·10⁶ feature entries, float32 above.

    Raises:
        GeosslError: if k is not in 1..N, n_init or max_iter < 1, tol < 0, or the features are not finite.
    """
    x = as_features(features, "features")
    check_nonempty(x, "features")
    n = x.shape[0]
    if not 1 <= n_clusters <= n:
        raise GeosslError(f"n_clusters must be between 1 and the number of samples ({n}), got {n_clusters}.")
    if n_init < 1 or max_iter < 1:
        raise GeosslError(f"n_init and max_iter must be >= 1, got n_init={n_init}, max_iter={max_iter}.")
    if tol < 0:
        raise GeosslError(f"tol must be >= 0, got {tol}.")
    x = x.to(torch.float64 if x.numel() <= FLOAT64_MAX_ENTRIES else torch.float32).cpu()
    # Centring changes no distance but makes ‖x‖² − 2⟨x, c⟩ + ‖c‖² far less prone to cancellation.
    mean = x.mean(dim=0)
    xc = x - mean
    x_sq = xc.pow(2).sum(dim=1)
    tol_abs = tol * float(xc.var(dim=0, correction=0).mean())
    gen = torch.Generator().manual_seed(seed)
    best: tuple[Tensor, Tensor, float, int] | None = None
    for _ in range(n_init):
        init = _kmeans_plusplus(xc, x_sq, n_clusters, gen)
        run = _lloyd(xc, x_sq, init, max_iter, tol_abs)
        if best is None or run[2] < best[2]:
            best = run
    labels, centers, inertia, n_iter = best
    return KMeansResult(labels=labels, centers=centers + mean, inertia=inertia, n_iter=n_iter)


# ---------------------------------------------------------------------------------------------------- metrics


def _labeling(y: Tensor | Any, name: str) -> Tensor:
    """A 1-D integer labeling mapped to 0..K−1 (any integer values allowed, e.g. −1 for a noise cluster)."""
    t = torch.as_tensor(y)
    if t.ndim != 1:
        raise GeosslError(f"{name} must be a 1-D array of cluster or class indices, got shape {tuple(t.shape)}.")
    if t.is_floating_point() and t.numel() and not torch.equal(t, t.round()):
        raise GeosslError(f"{name} must hold integer labels, got non-integer values.")
    return torch.unique(t.cpu().long(), return_inverse=True)[1]


def contingency_matrix(labels_true: Tensor | Any, labels_pred: Tensor | Any) -> Tensor:
    """Contingency table n_{ij} = #{samples of class i in cluster j} (C, K) int64, classes and clusters in sorted order.

    Args:
        labels_true: class labels (N,).
        labels_pred: cluster labels (N,).
    """
    a, b = _labeling(labels_true, "labels_true"), _labeling(labels_pred, "labels_pred")
    check_same_length(a, b, "labels_true", "labels_pred")
    n_a = int(a.max()) + 1 if a.numel() else 0
    n_b = int(b.max()) + 1 if b.numel() else 0
    return torch.bincount(a * n_b + b, minlength=n_a * n_b).reshape(n_a, n_b)


def _entropy(counts: Tensor) -> float:
    p = counts[counts > 0].double() / counts.sum()
    return float(-(p * p.log()).sum())


def normalized_mutual_info(labels_true: Tensor | Any, labels_pred: Tensor | Any) -> float:
    """NMI with arithmetic normalisation, I(Y; Ŷ) / ((H(Y) + H(Ŷ)) / 2) (scikit-learn's default).

    Degenerate cases as scikit-learn: 1.0 when both labelings have a single group (or no sample), 0.0 when the mutual
    information is 0.

    Args:
        labels_true: class labels (N,).
        labels_pred: cluster labels (N,).
    """
    c = contingency_matrix(labels_true, labels_pred)
    if c.shape[0] == c.shape[1] and c.shape[0] <= 1:
        return 1.0
    n = c.sum().double()
    rows, cols = c.sum(dim=1).double(), c.sum(dim=0).double()
    nz = c > 0
    nij = c[nz].double()
    outer = (rows[:, None] * cols[None, :])[nz]
    mi = float((nij / n * (torch.log(nij) + torch.log(n) - torch.log(outer))).sum())
    mi = max(mi, 0.0)  # rounding can give −1e-17 for independent labelings
    if mi == 0.0:
        return 0.0
    # I ≤ min(H) ≤ mean(H); the clamp only removes rounding (1 + 4e-16 for identical partitions).
    return min(mi / ((_entropy(rows) + _entropy(cols)) / 2.0), 1.0)


def adjusted_rand_index(labels_true: Tensor | Any, labels_pred: Tensor | Any) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) from the pair-counting confusion matrix, in exact integer arithmetic.

    ``ARI = 2 (TP·TN − FN·FP) / ((TP + FN)(FN + TN) + (TP + FP)(FP + TN))`` with the pair counts taken over ordered
    pairs of distinct samples; 1.0 when FN = FP = 0 (identical partitions, including the all-in-one and all-singleton
    cases), as scikit-learn.

    Args:
        labels_true: class labels (N,).
        labels_pred: cluster labels (N,).
    """
    c = contingency_matrix(labels_true, labels_pred)
    n = int(c.sum())
    # Python ints: Σ n_ij² reaches ~10¹⁸ for a million samples, beyond float64's exact integers.
    sum_sq = sum(v * v for v in c.flatten().tolist())
    rows_sq = sum(v * v for v in c.sum(dim=1).tolist())
    cols_sq = sum(v * v for v in c.sum(dim=0).tolist())
    tp = sum_sq - n
    fp = cols_sq - sum_sq
    fn = rows_sq - sum_sq
    tn = n * n - fp - fn - sum_sq
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def purity(labels_true: Tensor | Any, labels_pred: Tensor | Any) -> float:
    """Purity: each cluster votes for its majority class, ``(1/N) Σ_j max_i n_ij``.

    Args:
        labels_true: class labels (N,).
        labels_pred: cluster labels (N,).
    """
    c = contingency_matrix(labels_true, labels_pred)
    if c.numel() == 0:
        raise GeosslError("labels_true is empty; purity needs at least one sample.")
    return float(c.max(dim=0).values.sum()) / float(c.sum())


def clustering_accuracy(labels_true: Tensor | Any, labels_pred: Tensor | Any) -> float:
    """Clustering accuracy: the fraction of samples correctly labelled under the best one-to-one cluster→class map
    (Hungarian algorithm on the contingency table; with more clusters than classes the extra clusters count as wrong).

    Args:
        labels_true: class labels (N,).
        labels_pred: cluster labels (N,).
    """
    import scipy.optimize  # core dependency; imported here to keep ``import geossl.eval`` light

    c = contingency_matrix(labels_true, labels_pred)
    if c.numel() == 0:
        raise GeosslError("labels_true is empty; clustering accuracy needs at least one sample.")
    rows, cols = scipy.optimize.linear_sum_assignment(c.numpy(), maximize=True)
    return float(c[torch.as_tensor(rows), torch.as_tensor(cols)].sum()) / float(c.sum())


def silhouette(
    features: Tensor | Any,
    labels: Tensor | Any,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    chunk_size: int = 1024,
) -> float:
    """Mean silhouette coefficient (Rousseeuw 1987), computed by blocks of rows in O(chunk_size · N) memory.

    For sample i in cluster A: ``a = Σ_{j ∈ A} d(i, j) / (|A| − 1)``, ``b = min_{B ≠ A} mean_{j ∈ B} d(i, j)``,
    ``s = (b − a) / max(a, b)``; s = 0 for singleton clusters (and when a = b = 0), as scikit-learn.

    Args:
        features: samples (N, D).
        labels: cluster labels (N,), with 2 <= number of clusters <= N − 1.
        metric: ``"euclidean"`` or ``"cosine"`` (1 − cosine similarity, scikit-learn's ``metric="cosine"``).
        chunk_size: rows per distance block.

    Returns:
        The silhouette score in [−1, 1].

    Raises:
        GeosslError: on mismatched lengths, a number of clusters outside 2..N−1 or an unknown metric.
    """
    if metric not in ("euclidean", "cosine"):
        raise unknown_name_error("metric", str(metric), ("euclidean", "cosine"))
    if chunk_size < 1:
        raise GeosslError(f"chunk_size must be >= 1, got {chunk_size}.")
    x = as_features(features, "features", dtype=torch.float64).cpu()
    y = _labeling(labels, "labels")
    check_same_length(x, y, "features", "labels")
    n = x.shape[0]
    k = int(y.max()) + 1 if n else 0
    if not 2 <= k <= n - 1:
        raise GeosslError(f"the silhouette needs between 2 and N - 1 = {n - 1} clusters, got {k}; it is undefined "
                          "for a single cluster or all-singleton clusters.")
    if metric == "cosine":
        x = F.normalize(x, dim=1)
    counts = torch.bincount(y, minlength=k).double()
    s = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, chunk_size):
        rows = x[start:start + chunk_size]
        d = 1.0 - rows @ x.T if metric == "cosine" else torch.cdist(rows, x)
        if metric == "cosine":
            d.clamp_min_(0.0)
        # Exact zero self-distances (the matmul path of cdist leaves ~1e-8).
        m = rows.shape[0]
        d[torch.arange(m), torch.arange(start, start + m)] = 0.0
        # Sum of distances from each row to each cluster (m, k); self-distance is 0, hence |A| − 1 below.
        sums = torch.zeros(rows.shape[0], k, dtype=torch.float64).index_add_(1, y, d)
        own = y[start:start + chunk_size]
        own_n = counts[own]
        a = sums.gather(1, own[:, None]).squeeze(1) / (own_n - 1).clamp_min(1)
        mean_other = (sums / counts[None, :]).scatter(1, own[:, None], math.inf)
        b = mean_other.min(dim=1).values
        denom = torch.maximum(a, b)
        si = torch.where(denom > 0, (b - a) / torch.where(denom > 0, denom, 1.0), torch.zeros_like(a))
        s[start:start + chunk_size] = torch.where(own_n > 1, si, torch.zeros_like(si))
    return float(s.mean())


def kmeans_metrics(
    features: Tensor | Any,
    labels: Tensor | Any,
    n_clusters: int | None = None,
    *,
    n_init: int = 10,
    seed: int = 0,
    normalize: bool = True,
    transform: Literal["sot"] | None = None,
    sot_reg: float = 0.1,
    sot_iters: int = 10,
    with_silhouette: bool = False,
) -> dict[str, Any]:
    """The §6 clustering protocol: k-means with k = number of classes on L2-normalised features, scored against the
    labels.

    Args:
        features: samples (N, D).
        labels: class labels (N,).
        n_clusters: k; defaults to the number of distinct labels.
        n_init: k-means restarts.
        seed: k-means seed.
        normalize: L2-normalise the features first (the protocol's default).
        transform: ``"sot"`` applies the self-optimal-transport transform (Shalam & Korman 2022) to the whole set
            before clustering; its output is N × N, so this is O(N²) memory (a few thousand samples at most).
        sot_reg: SOT entropic regularisation λ.
        sot_iters: SOT Sinkhorn iterations.
        with_silhouette: also compute the silhouette of the clustering (O(N²) time).

    Returns:
        ``{"nmi", "ari", "acc", "purity", "inertia", "n_clusters", "cluster_labels"}`` (+ ``"silhouette"``); metrics
        are floats in [0, 1] (ARI in [−0.5, 1]), ``cluster_labels`` a (N,) long tensor.

    Raises:
        GeosslError: on mismatched lengths, an unknown transform or invalid k-means arguments.
    """
    x = as_features(features, "features")
    y = torch.as_tensor(labels)
    check_same_length(x, y, "features", "labels")
    check_nonempty(x, "features")
    y = _labeling(y, "labels")
    if transform not in (None, "sot"):
        raise unknown_name_error("transform", str(transform), ("sot",))
    if n_clusters is None:
        n_clusters = int(y.max()) + 1
    if normalize:
        x = F.normalize(x, dim=1)
    if transform == "sot":
        from geossl.ot.self_transport import self_transport

        x = self_transport(x.double(), sot_reg, sot_iters)
    result = kmeans(x, n_clusters, n_init=n_init, seed=seed)
    out: dict[str, Any] = {
        "nmi": normalized_mutual_info(y, result.labels),
        "ari": adjusted_rand_index(y, result.labels),
        "acc": clustering_accuracy(y, result.labels),
        "purity": purity(y, result.labels),
        "inertia": result.inertia,
        "n_clusters": n_clusters,
        "cluster_labels": result.labels,
    }
    if with_silhouette:
        out["silhouette"] = silhouette(x, result.labels)
    return out
