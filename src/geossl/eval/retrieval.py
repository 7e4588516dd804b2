"""Retrieval metrics and exact nearest-neighbour search (``evaluation.md`` §7).

Metrics, for a query q with label y_q and the reference set ranked by distance to q (q itself removed when the query
set is the reference set, the zero-shot deep-metric-learning protocol of SOP / CUB / Cars):

| Metric | Definition |
|---|---|
| Recall@K | 1 if any of the K nearest references has label y_q (the DML "recall", Oh Song et al. 2016) |
| Precision@1 | 1 if the nearest reference has label y_q (= Recall@1) |
| R-precision | R = number of references with label y_q; (hits among the R nearest) / R |
| MAP@R | (1/R) Σ_{i=1..R} P(i) · rel(i), P(i) = precision at rank i (Musgrave et al. 2020, "A Metric Learning Reality
  Check", ECCV) |

each averaged over the queries. Queries whose label has no reference (R = 0, e.g. a singleton class) cannot be
retrieved and are left out of every average, as pytorch-metric-learning's ``AccuracyCalculator`` does; their number is
reported. Values are fractions in [0, 1], as in Musgrave et al.

Neighbour search (:func:`nearest_neighbors`) runs in two stages so that its result does not depend on the backend:
candidates are found in float32, by blockwise ``torch.topk`` or by a faiss flat index, with a margin of extra
candidates; they are then re-ranked with distances recomputed exactly in float64, ties going to the smaller reference
index. Both backends therefore return identical indices unless more than ``margin`` references are within float32
rounding (~1e-6 relative) of the k-th distance, e.g. many exact duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from geossl.errors import GeosslError, unknown_name_error
from geossl.eval._checks import (
    as_features,
    as_labels,
    check_nonempty,
    check_same_dim,
    check_same_length,
)
from geossl.eval._neighbours import BACKENDS as _BACKENDS
from geossl.eval._neighbours import (
    RERANK_BLOCK,
    RERANK_MARGIN,
    candidate_indices,
    resolve_backend,
)

Metric = Literal["cosine", "euclidean"]
Backend = Literal["auto", "torch", "faiss"]
_METRICS = ("cosine", "euclidean")


def _rerank(q: Tensor, r: Tensor, cand: Tensor, k: int, metric: str) -> tuple[Tensor, Tensor]:
    """Exact float64 distances to the candidates; returns the k nearest (distances, indices), ties by index."""
    cand = cand.sort(dim=1).values  # ascending index, so the stable sort below breaks ties by index
    dist = torch.empty(cand.shape, dtype=torch.float64)
    rows = max(1, RERANK_BLOCK // max(1, cand.shape[1] * q.shape[1]))
    for start in range(0, q.shape[0], rows):
        c = cand[start:start + rows]
        diff_or_prod = r[c]  # (m, kc, D)
        qb = q[start:start + rows, None, :]
        if metric == "cosine":
            dist[start:start + rows] = 1.0 - (diff_or_prod * qb).sum(dim=-1)
        else:
            dist[start:start + rows] = (diff_or_prod - qb).pow(2).sum(dim=-1).sqrt()
    order = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    return dist.gather(1, order), cand.gather(1, order)


def nearest_neighbors(
    query: Tensor | Any,
    reference: Tensor | Any | None,
    k: int,
    metric: Metric = "cosine",
    backend: Backend = "auto",
    *,
    exclude_self: bool = False,
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """Exact k nearest references of each query, identical for the torch and faiss backends.

    Args:
        query: queries (M, D), torch or NumPy.
        reference: references (N, D); ``None`` means the queries themselves.
        k: neighbours per query, 1 <= k <= N (N − 1 with ``exclude_self``).
        metric: ``"cosine"`` (distance 1 − cosine similarity) or ``"euclidean"``.
        backend: ``"torch"`` (blockwise top-k), ``"faiss"`` (flat index; needs faiss installed) or ``"auto"`` (faiss
            when installed, else torch). Both give the same result (see the module docstring).
        exclude_self: reference row i is query i (the query set is the reference set, or its first M rows): never
            return it as a neighbour of query i.
        chunk_size: queries per similarity block of the torch backend.

    Returns:
        ``(distances, indices)``, each (M, k): float64 distances in ascending order and int64 reference indices;
        equal distances are ordered by reference index.

    Raises:
        GeosslError: on an unknown metric or backend, faiss requested but not installed, mismatched dimensions, k out
            of range, or ``exclude_self`` with fewer references than queries.
    """
    if metric not in _METRICS:
        raise unknown_name_error("metric", str(metric), _METRICS)
    if backend not in _BACKENDS:
        raise unknown_name_error("backend", str(backend), _BACKENDS)
    if chunk_size < 1:
        raise GeosslError(f"chunk_size must be >= 1, got {chunk_size}.")
    q = as_features(query, "query", dtype=torch.float64).cpu()
    r = q if reference is None else as_features(reference, "reference", dtype=torch.float64).cpu()
    check_nonempty(q, "query")
    check_nonempty(r, "reference")
    check_same_dim(q, r, "query", "reference")
    if exclude_self and r.shape[0] < q.shape[0]:
        raise GeosslError(f"exclude_self=True needs reference row i to be query i, but reference has {r.shape[0]} "
                          f"rows for {q.shape[0]} queries; pass reference=None or exclude_self=False.")
    available = r.shape[0] - int(exclude_self)
    if not 1 <= k <= available:
        raise GeosslError(f"k must be between 1 and the number of candidate references ({available}), got {k}.")
    resolved = resolve_backend(backend)

    if metric == "cosine":
        q = F.normalize(q, dim=1)
        r = q if reference is None else F.normalize(r, dim=1)
    kc = min(available, k + RERANK_MARGIN)
    cand = candidate_indices(q, r, kc, metric, resolved, exclude_self=exclude_self, chunk_size=chunk_size)
    return _rerank(q, r, cand, k, metric)


def retrieval_metrics(
    query: Tensor | Any,
    query_labels: Tensor | Any,
    reference: Tensor | Any | None = None,
    reference_labels: Tensor | Any | None = None,
    *,
    ks: Sequence[int] = (1, 5, 10),
    metric: Metric = "cosine",
    exclude_self: bool | None = None,
    backend: Backend = "auto",
    chunk_size: int = 1024,
) -> dict[str, Any]:
    """Recall@K, precision@1, R-precision and MAP@R of embeddings (Musgrave et al. 2020 definitions).

    Args:
        query: query embeddings (M, D).
        query_labels: query labels (M,).
        reference: reference (gallery) embeddings (N, D); ``None``: the queries are their own reference set.
        reference_labels: reference labels (N,); required with ``reference``.
        ks: the K of Recall@K (each clamped to the number of candidate references).
        metric: ``"cosine"`` or ``"euclidean"``.
        exclude_self: drop reference i from the ranking of query i; default True when ``reference`` is None, else
            False. With a separate reference set it means that its first M rows are the queries (In-Shop-style sets
            built as ``cat([query, gallery])``).
        backend: neighbour search backend (see :func:`nearest_neighbors`).
        chunk_size: queries per similarity block.

    Returns:
        ``{"recall@K" for K in ks, "precision_at_1", "r_precision", "map_at_r", "n_queries", "n_lone_queries"}``:
        metrics are floats in [0, 1] averaged over the ``n_queries`` queries that have at least one relevant
        reference; ``n_lone_queries`` were left out.

    Raises:
        GeosslError: on mismatched lengths or dimensions, a missing ``reference_labels``, ks < 1, or when no query has
            a relevant reference.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise GeosslError(f"ks must be a non-empty list of integers >= 1, got {ks}.")
    q = as_features(query, "query")
    q_y = as_labels(query_labels, "query_labels").cpu()
    check_same_length(q, q_y, "query", "query_labels")
    if (reference is None) != (reference_labels is None):
        raise GeosslError("pass reference and reference_labels together, or neither to use the queries as references.")
    if reference is None:
        r, r_y = q, q_y
    else:
        r = as_features(reference, "reference")
        r_y = as_labels(reference_labels, "reference_labels").cpu()
        check_same_length(r, r_y, "reference", "reference_labels")
    if exclude_self is None:
        exclude_self = reference is None
    if exclude_self and reference is not None and (r_y.shape[0] < q_y.shape[0]
                                                   or not torch.equal(r_y[:q_y.shape[0]], q_y)):
        raise GeosslError("exclude_self=True with a separate reference set needs its first rows to be the queries "
                          "(same labels); pass exclude_self=False for disjoint query and gallery sets.")

    # R per query: references sharing its label, its own copy excluded.
    n_classes = int(max(q_y.max(), r_y.max())) + 1
    r_count = torch.bincount(r_y, minlength=n_classes)[q_y] - int(exclude_self)
    valid = r_count > 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise GeosslError("no query has a relevant reference (a reference with the same label); check that "
                          "query_labels and reference_labels use the same class indices.")
    available = r.shape[0] - int(exclude_self)
    k_max = min(available, max(max(ks), int(r_count.max())))
    # Lone queries are searched too (cheap) so that row i still pairs with reference i under exclude_self.
    _, idx = nearest_neighbors(q, None if reference is None else r, k_max, metric, backend,
                               exclude_self=exclude_self, chunk_size=chunk_size)
    idx = idx[valid]
    y, big_r = q_y[valid], r_count[valid]
    hits = r_y[idx] == y[:, None]  # (M', k_max) relevance of each rank
    rank = torch.arange(1, k_max + 1)
    in_r = rank[None, :] <= big_r[:, None]
    rel = hits & in_r
    precision_at_i = rel.cumsum(dim=1).double() / rank[None, :]
    out: dict[str, Any] = {f"recall@{k}": float(hits[:, :min(k, k_max)].any(dim=1).double().mean()) for k in ks}
    out["precision_at_1"] = float(hits[:, 0].double().mean())
    out["r_precision"] = float((rel.sum(dim=1).double() / big_r).mean())
    out["map_at_r"] = float(((precision_at_i * rel).sum(dim=1) / big_r).mean())
    out["n_queries"] = n_valid
    out["n_lone_queries"] = int(q_y.shape[0] - n_valid)
    return out

