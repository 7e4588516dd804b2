"""Weighted k-nearest-neighbour classifier on frozen features (``evaluation.md`` §1).

The protocol is the weighted vote of Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", CVPR) as used by DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers", ICCV) with k = 20 and T = 0.07::

    s(q, x)   = cosine similarity (features L2-normalised)
    N_k(q)    = the k training features most similar to q
    score_c   = Σ_{x ∈ N_k(q)} exp(s(q, x) / T) · 1[y_x = c]
    predict   = argmax_c score_c              (top-5 from the 5 largest scores)

Returned scores are normalised to sum to one per query and computed as ``exp((s - s_max) / T)``: this multiplies every
class score of a query by the same positive constant, so predictions and top-5 are exactly those of the formula above,
while small temperatures (T = 0.01 gives exp(100), beyond float32) cannot overflow.

Neighbour search and determinism: candidates are found in float32, by blockwise ``torch.topk`` over query chunks or
by a faiss flat index (``backend="faiss"``; ``"auto"`` uses faiss when it is installed and the features are on the
CPU), with a margin of :data:`RERANK_MARGIN` extra candidates; they are then re-ranked with similarities recomputed
exactly in float64, element by element, and ordered by similarity, ties going to the smaller class label. The vote uses
these float64 similarities. Both backends therefore give identical scores and predictions (tested; asserted on
EuroSAT by ``benchmarks/eval_speed.py``). The tie rule depends only on (similarity, label) pairs, and a bank row gets
bit-identical similarities wherever it sits, so permuting the bank cannot change the result; when the tie group of
the k-th neighbour reaches past the candidates (many exact duplicates), that query is re-ranked against the whole
bank. Ties between class scores go to the smallest class index.

A sweep over k and T (:func:`knn_sweep`) searches the neighbours once for the largest k: the canonical order makes the
k nearest a prefix of the k_max nearest, so every (k, T) cell equals a separate :func:`knn_classify` call.
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
    infer_num_classes,
    topk_accuracy,
)
from geossl.eval._neighbours import RERANK_BLOCK as _RERANK_BLOCK
from geossl.eval._neighbours import RERANK_MARGIN, candidate_indices, resolve_backend

Metric = Literal["cosine", "euclidean"]
Backend = Literal["torch", "faiss", "auto"]
_METRICS = ("cosine", "euclidean")


def _exact_similarity(queries: Tensor, rows: Tensor, metric: str) -> Tensor:
    """float64 similarity of each query (m, D) to its own rows (m, n, D), computed elementwise so that a bank row
    gets bit-identical values wherever it sits (no matmul blocking)."""
    if metric == "cosine":
        return (rows * queries[:, None, :]).sum(dim=-1)
    return -(rows - queries[:, None, :]).pow(2).sum(dim=-1).sqrt()


def _canonical_order(sims: Tensor, labels: Tensor) -> Tensor:
    """Permutation of each row sorting by similarity descending, ties by label ascending."""
    by_label = torch.sort(labels, dim=1, stable=True).indices
    by_sim = torch.sort(sims.gather(1, by_label), dim=1, descending=True, stable=True).indices
    return by_label.gather(1, by_sim)


def knn_neighbours(
    bank: Tensor,
    bank_labels: Tensor,
    queries: Tensor,
    k: int,
    *,
    metric: str = "cosine",
    backend: str = "torch",
    chunk_size: int = 1024,
) -> tuple[Tensor, Tensor]:
    """The k nearest bank rows of each query in the canonical order of the module docstring.

    Two stages: candidates (k + :data:`RERANK_MARGIN` per query) are searched in float32 by blockwise ``torch.topk``
    or a faiss flat index, then re-ranked with similarities recomputed exactly in float64 and ordered by (similarity
    descending, label ascending). A query whose k-th similarity ties with its last candidate (more exact duplicates
    than the margin) is re-ranked against the whole bank. Both backends therefore return identical results, unless
    more than the margin of bank rows lie within float32 rounding (~1e-7 relative) of the k-th similarity without
    being exact duplicates.

    Args:
        bank: validated bank features (N, D) (not yet normalised).
        bank_labels: (N,) labels on the bank's device.
        queries: (M, D) features.
        k: 1 <= k <= N.
        metric: ``"cosine"`` or ``"euclidean"``.
        backend: ``"torch"`` or ``"faiss"`` (already resolved from ``"auto"``).
        chunk_size: queries per similarity block.

    Returns:
        ``(similarities (M, k) float64 descending, labels (M, k) long)``; similarity is the cosine or minus the
        Euclidean distance.
    """
    device = bank.device
    b64 = bank.double()
    q64 = queries.to(device).double()
    if metric == "cosine":
        b64, q64 = F.normalize(b64, dim=1), F.normalize(q64, dim=1)
    n = b64.shape[0]
    kc = min(n, k + RERANK_MARGIN)
    cand = candidate_indices(q64, b64, kc, metric, backend, chunk_size=chunk_size)
    sims = torch.empty(q64.shape[0], k, dtype=torch.float64, device=device)
    labels = torch.empty(q64.shape[0], k, dtype=torch.long, device=device)
    rows = max(1, _RERANK_BLOCK // max(1, kc * b64.shape[1]))
    for start in range(0, q64.shape[0], rows):
        c = cand[start:start + rows]
        s = _exact_similarity(q64[start:start + rows], b64[c], metric)
        y = bank_labels[c]
        order = _canonical_order(s, y)[:, :k]
        top_s, top_y = s.gather(1, order), y.gather(1, order)
        if kc < n:  # the tie group of the k-th neighbour may continue beyond the candidates: use the whole bank
            for r in torch.nonzero(top_s[:, -1] <= s.min(dim=1).values).flatten().tolist():
                full = _exact_similarity(q64[start + r][None], b64[None], metric)
                o = _canonical_order(full, bank_labels[None])[:, :k]
                top_s[r], top_y[r] = full.gather(1, o)[0], bank_labels[o[0]]
        sims[start:start + rows], labels[start:start + rows] = top_s, top_y
    return sims, labels


def _validated(train_features, train_labels, test_features, metric, chunk_size, num_classes):
    if metric not in _METRICS:
        raise unknown_name_error("metric", str(metric), _METRICS)
    if chunk_size < 1:
        raise GeosslError(f"chunk_size must be >= 1, got {chunk_size}.")
    bank = as_features(train_features, "train_features")
    bank_labels = as_labels(train_labels, "train_labels").to(bank.device)
    queries = as_features(test_features, "test_features", dtype=bank.dtype)
    check_same_length(bank, bank_labels, "train_features", "train_labels")
    check_nonempty(bank, "train_features")
    check_same_dim(bank, queries, "train_features", "test_features")
    return bank, bank_labels, queries, infer_num_classes(bank_labels, num_classes=num_classes)


def _check_k_t(k: int, temperature: float) -> None:
    if k < 1:
        raise GeosslError(f"k must be >= 1, got {k}.")
    if not temperature > 0:
        raise GeosslError(f"temperature must be > 0, got {temperature}.")


def _vote(sims: Tensor, labels: Tensor, k: int, temperature: float, n_classes: int) -> Tensor:
    """Normalised class scores (M, C) float32 from the first k canonical neighbours."""
    vals, nn_labels = sims[:, :k], labels[:, :k]
    # Shift by the best similarity (vals[:, :1]) before exp: a per-query constant factor, no overflow.
    weights = torch.exp((vals - vals[:, :1]) / temperature)
    scores = torch.zeros(vals.shape[0], n_classes, dtype=torch.float64, device=vals.device)
    scores.scatter_add_(1, nn_labels, weights)
    return (scores / scores.sum(dim=1, keepdim=True)).float()


def knn_predict(
    train_features: Tensor | Any,
    train_labels: Tensor | Any,
    test_features: Tensor | Any,
    *,
    k: int = 20,
    temperature: float = 0.07,
    metric: Metric = "cosine",
    num_classes: int | None = None,
    chunk_size: int = 1024,
    backend: Backend = "torch",
) -> Tensor:
    """Weighted k-NN class scores of each query (Wu et al. 2018; DINO defaults k = 20, T = 0.07).

    Args:
        train_features: bank features (N, D), torch or NumPy; need not be normalised.
        train_labels: bank labels (N,) in 0..C-1 (no -1: drop unlabeled samples first).
        test_features: query features (M, D).
        k: number of neighbours; clamped to N when the bank is smaller.
        temperature: T of the weights exp(s / T); large T tends to the uniform (majority) vote.
        metric: ``"cosine"`` (features L2-normalised, s = cosine) or ``"euclidean"`` (raw features, s = -‖q - x‖,
            weight exp(-d / T), so T is in units of feature distance).
        num_classes: C; defaults to ``max(train_labels) + 1``.
        chunk_size: queries per block of the (chunk, N) similarity matrix; bounds memory.
        backend: neighbour search, ``"torch"``, ``"faiss"`` or ``"auto"``; all give identical results (see the
            module docstring).

    Returns:
        Scores (M, C), float32 on the device of ``train_features``, each row summing to one (see the module docstring
        for the normalisation, which leaves the ranking of the classes unchanged).

    Raises:
        GeosslError: on mismatched lengths or dimensions, -1 or negative labels, non-finite features, k < 1, T <= 0,
            an unknown metric or backend, faiss requested but not installed, or an empty bank.
    """
    _check_k_t(k, temperature)
    bank, bank_labels, queries, n_classes = _validated(train_features, train_labels, test_features, metric,
                                                       chunk_size, num_classes)
    k = min(k, bank.shape[0])
    sims, labels = knn_neighbours(bank, bank_labels, queries, k, metric=metric,
                                  backend=resolve_backend(backend, bank.device), chunk_size=chunk_size)
    return _vote(sims, labels, k, temperature, n_classes)


def knn_classify(
    train_features: Tensor | Any,
    train_labels: Tensor | Any,
    test_features: Tensor | Any,
    test_labels: Tensor | Any,
    *,
    k: int = 20,
    temperature: float = 0.07,
    metric: Metric = "cosine",
    chunk_size: int = 1024,
    backend: Backend = "torch",
) -> dict[str, Any]:
    """Weighted k-NN evaluation (Wu et al. 2018; DINO protocol of Caron et al. 2021: k = 20, T = 0.07).

    Args:
        train_features: bank features (N, D).
        train_labels: bank labels (N,) in 0..C-1.
        test_features: query features (M, D).
        test_labels: query labels (M,) in 0..C-1.
        k: number of neighbours (clamped to N).
        temperature: vote temperature T.
        metric: ``"cosine"`` or ``"euclidean"`` (see :func:`knn_predict`).
        chunk_size: queries per similarity block.
        backend: ``"torch"``, ``"faiss"`` or ``"auto"`` (identical results).

    Returns:
        ``{"top1": float, "top5": float, "predictions": Tensor (M,) long, "scores": Tensor (M, C)}``; accuracies in
        percent (0-100); top-5 is computed over min(5, C) classes.

    Raises:
        GeosslError: see :func:`knn_predict`; also when test features and labels differ in length.
    """
    return knn_sweep(train_features, train_labels, test_features, test_labels, ks=(k,), temperatures=(temperature,),
                     metric=metric, chunk_size=chunk_size, backend=backend)[0]


def knn_sweep(
    train_features: Tensor | Any,
    train_labels: Tensor | Any,
    test_features: Tensor | Any,
    test_labels: Tensor | Any,
    *,
    ks: Sequence[int] = (10, 20, 100, 200),
    temperatures: Sequence[float] = (0.07,),
    metric: Metric = "cosine",
    chunk_size: int = 1024,
    backend: Backend = "torch",
) -> list[dict[str, Any]]:
    """k-NN accuracy for every (k, T) of a sweep (``evaluation.md`` §1), with one neighbour search for the largest k.

    Args:
        train_features, train_labels, test_features, test_labels: as :func:`knn_classify`.
        ks: numbers of neighbours (each clamped to N).
        temperatures: vote temperatures.
        metric, chunk_size, backend: as :func:`knn_predict`.

    Returns:
        One dict per (T, k), T-major in the given orders: ``{"k", "temperature", "top1", "top5", "predictions",
        "scores"}``, each identical to ``knn_classify(..., k=k, temperature=T)``; ``"k"`` is the requested k.
    """
    ks, temperatures = [int(k) for k in ks], [float(t) for t in temperatures]
    if not ks or not temperatures:
        raise GeosslError("the k-NN sweep needs at least one k and one temperature.")
    for k in ks:
        for t in temperatures:
            _check_k_t(k, t)
    test_y = as_labels(test_labels, "test_labels")
    train_y = as_labels(train_labels, "train_labels")
    test_f = as_features(test_features, "test_features")
    check_same_length(test_f, test_y, "test_features", "test_labels")
    bank, bank_labels, queries, n_classes = _validated(train_features, train_y, test_f, metric, chunk_size,
                                                       infer_num_classes(train_y, test_y))
    k_max = min(max(ks), bank.shape[0])
    sims, labels = knn_neighbours(bank, bank_labels, queries, k_max, metric=metric,
                                  backend=resolve_backend(backend, bank.device), chunk_size=chunk_size)
    test_y = test_y.to(bank.device)
    out = []
    for t in temperatures:
        for k in ks:
            scores = _vote(sims, labels, min(k, k_max), t, n_classes)
            out.append({
                "k": k,
                "temperature": t,
                "top1": topk_accuracy(scores, test_y, 1),
                "top5": topk_accuracy(scores, test_y, 5),
                # argmax returns the first maximum, i.e. the smallest class index on ties.
                "predictions": scores.argmax(dim=1).cpu(),
                "scores": scores.cpu(),
            })
    return out
