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

Determinism: the similarity matrix is processed in query chunks with ``torch.topk``; when several bank entries tie
with the k-th similarity and not all of them fit, the ones with the smallest class index are taken. That rule depends
only on (similarity, label) pairs, so permuting the bank cannot change the scores (duplicated features, the usual
source of exact ties, get bit-identical similarities). Ties between class scores go to the smallest class index.
Different chunk sizes may use different matmul kernels, which changes scores only at float rounding level (~1e-7).
"""

from __future__ import annotations

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

Metric = Literal["cosine", "euclidean"]
_METRICS = ("cosine", "euclidean")


def _similarity(queries: Tensor, bank: Tensor, metric: str) -> Tensor:
    """Similarity (m, N) between queries (m, D) and bank (N, D); both pre-normalised for cosine."""
    if metric == "cosine":
        return queries @ bank.T
    # Euclidean: similarity is the negative distance, so the vote weight is exp(-d / T) (T in distance units).
    return -torch.cdist(queries, bank)


def _select_neighbours(sim: Tensor, labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k similarities (m, k) sorted descending and the neighbours' labels (m, k), ties resolved by label.

    ``torch.topk`` breaks ties arbitrarily. Rows where bank entries tied with the k-th value do not all fit are
    recomputed so that the smallest labels win; other rows are already canonical.
    """
    vals, idx = sim.topk(k, dim=1, largest=True, sorted=True)
    kth = vals[:, -1:]
    n_tied_total = (sim == kth).sum(dim=1)
    n_tied_kept = (vals == kth).sum(dim=1)
    nn_labels = labels[idx]
    for r in torch.nonzero(n_tied_total > n_tied_kept).flatten().tolist():
        above = vals[r] > kth[r]
        tied_labels = labels[sim[r] == kth[r]]
        need = k - int(above.sum())
        # vals[r] is unchanged: its last `need` entries already equal the k-th value.
        nn_labels[r] = torch.cat([nn_labels[r][above], torch.sort(tied_labels).values[:need]])
    return vals, nn_labels


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

    Returns:
        Scores (M, C), float32 on the device of ``train_features``, each row summing to one (see the module docstring
        for the normalisation, which leaves the ranking of the classes unchanged).

    Raises:
        GeosslError: on mismatched lengths or dimensions, -1 or negative labels, non-finite features, k < 1, T <= 0,
            an unknown metric or an empty bank.
    """
    if metric not in _METRICS:
        raise unknown_name_error("metric", str(metric), _METRICS)
    if k < 1:
        raise GeosslError(f"k must be >= 1, got {k}.")
    if not temperature > 0:
        raise GeosslError(f"temperature must be > 0, got {temperature}.")
    if chunk_size < 1:
        raise GeosslError(f"chunk_size must be >= 1, got {chunk_size}.")
    bank = as_features(train_features, "train_features")
    bank_labels = as_labels(train_labels, "train_labels").to(bank.device)
    queries = as_features(test_features, "test_features", dtype=bank.dtype)
    check_same_length(bank, bank_labels, "train_features", "train_labels")
    check_nonempty(bank, "train_features")
    check_same_dim(bank, queries, "train_features", "test_features")
    n_classes = infer_num_classes(bank_labels, num_classes=num_classes)
    k = min(k, bank.shape[0])

    if metric == "cosine":
        bank = F.normalize(bank, dim=1)
    out = torch.empty(queries.shape[0], n_classes, dtype=torch.float32, device=bank.device)
    for start in range(0, queries.shape[0], chunk_size):
        q = queries[start:start + chunk_size].to(bank.device)
        if metric == "cosine":
            q = F.normalize(q, dim=1)
        vals, nn_labels = _select_neighbours(_similarity(q, bank, metric), bank_labels, k)
        # Shift by the best similarity (vals[:, :1]) before exp: a per-query constant factor, no overflow.
        weights = torch.exp((vals.double() - vals[:, :1].double()) / temperature)
        scores = torch.zeros(q.shape[0], n_classes, dtype=torch.float64, device=bank.device)
        scores.scatter_add_(1, nn_labels, weights)
        out[start:start + chunk_size] = (scores / scores.sum(dim=1, keepdim=True)).float()
    return out


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

    Returns:
        ``{"top1": float, "top5": float, "predictions": Tensor (M,) long}``; accuracies in percent (0-100); top-5 is
        computed over min(5, C) classes.

    Raises:
        GeosslError: see :func:`knn_predict`; also when test features and labels differ in length.
    """
    test_y = as_labels(test_labels, "test_labels")
    train_y = as_labels(train_labels, "train_labels")
    test_f = as_features(test_features, "test_features")
    check_same_length(test_f, test_y, "test_features", "test_labels")
    n_classes = infer_num_classes(train_y, test_y)
    scores = knn_predict(train_features, train_y, test_f, k=k, temperature=temperature, metric=metric,
                         num_classes=n_classes, chunk_size=chunk_size)
    test_y = test_y.to(scores.device)
    return {
        "top1": topk_accuracy(scores, test_y, 1),
        "top5": topk_accuracy(scores, test_y, 5),
        # argmax returns the first maximum, i.e. the smallest class index on ties.
        "predictions": scores.argmax(dim=1).cpu(),
    }
