"""k-NN through torch and faiss (identical results), the one-search sweep, and the label subsets of the probe."""

from __future__ import annotations

import pytest
import torch

from geossl.errors import GeosslError
from geossl.eval import knn_classify, knn_predict, knn_sweep, stratified_subset
from geossl.eval.knn import RERANK_MARGIN, resolve_backend

faiss = pytest.importorskip("faiss")


def _clusters(n: int, m: int, d: int, c: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g)
    y_tr, y_te = torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (m,), generator=g)
    return (centers[y_tr] + 1.5 * torch.randn(n, d, generator=g), y_tr,
            centers[y_te] + 1.5 * torch.randn(m, d, generator=g), y_te)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_faiss_and_torch_give_identical_scores(metric):
    x_tr, y_tr, x_te, _ = _clusters(2000, 500, 32, 7)
    t = 0.07 if metric == "cosine" else 0.5
    a = knn_predict(x_tr, y_tr, x_te, k=20, temperature=t, metric=metric, backend="torch", chunk_size=97)
    b = knn_predict(x_tr, y_tr, x_te, k=20, temperature=t, metric=metric, backend="faiss")
    assert torch.equal(a, b)


def test_faiss_and_torch_agree_with_many_exact_duplicates():
    # Each bank vector appears RERANK_MARGIN + 4 times with different labels: the tie group of the k-th neighbour
    # reaches past the float32 candidates, and both backends must fall back to the same whole-bank ordering.
    g = torch.Generator().manual_seed(1)
    copies = RERANK_MARGIN + 4
    x_tr = torch.randn(30, 8, generator=g).repeat(copies, 1)
    y_tr = torch.randint(0, 6, (30 * copies,), generator=g)
    x_te = torch.randn(50, 8, generator=g)
    ref = knn_predict(x_tr, y_tr, x_te, k=3, backend="torch")
    assert torch.equal(knn_predict(x_tr, y_tr, x_te, k=3, backend="faiss"), ref)
    perm = torch.randperm(len(y_tr), generator=g)
    assert torch.equal(knn_predict(x_tr[perm], y_tr[perm], x_te, k=3, backend="faiss"), ref)


def test_sweep_cells_equal_single_calls():
    x_tr, y_tr, x_te, y_te = _clusters(600, 200, 16, 5, seed=2)
    sweep = knn_sweep(x_tr, y_tr, x_te, y_te, ks=(1, 10, 50), temperatures=(0.02, 0.5), backend="torch")
    assert [(r["k"], r["temperature"]) for r in sweep] == [(1, 0.02), (10, 0.02), (50, 0.02), (1, 0.5), (10, 0.5),
                                                           (50, 0.5)]
    for r in sweep:
        single = knn_classify(x_tr, y_tr, x_te, y_te, k=r["k"], temperature=r["temperature"], backend="faiss")
        assert torch.equal(single["predictions"], r["predictions"]) and torch.equal(single["scores"], r["scores"])
        assert single["top1"] == r["top1"] and single["top5"] == r["top5"]


def test_backend_resolution_and_errors(monkeypatch):
    assert resolve_backend("auto") == "faiss" and resolve_backend("torch") == "torch"
    assert resolve_backend("auto", torch.device("meta")) == "torch"  # faiss only searches CPU features
    x_tr, y_tr, x_te, y_te = _clusters(20, 5, 4, 2)
    with pytest.raises(GeosslError, match="Did you mean 'faiss'"):
        knn_predict(x_tr, y_tr, x_te, backend="fais")  # type: ignore[arg-type]
    monkeypatch.setattr("geossl.eval._neighbours.faiss_available", lambda: False)
    assert resolve_backend("auto") == "torch"
    with pytest.raises(GeosslError, match="faiss-cpu"):
        knn_classify(x_tr, y_tr, x_te, y_te, backend="faiss")
    with pytest.raises(GeosslError, match="at least one k"):
        knn_sweep(x_tr, y_tr, x_te, y_te, ks=())


def test_stratified_subset_is_seeded_per_class_and_keeps_every_class():
    y = torch.cat([torch.full((100,), 0), torch.full((50,), 1), torch.full((3,), 2)])
    idx = stratified_subset(y, 0.1, seed=0)
    assert torch.bincount(y[idx]).tolist() == [10, 5, 1]  # at least one sample of a small class
    assert torch.equal(idx, stratified_subset(y, 0.1, seed=0)) and not torch.equal(idx, stratified_subset(y, 0.1, 1))
    assert torch.equal(idx, torch.sort(idx).values)
    assert torch.equal(stratified_subset(y, 1.0), torch.arange(len(y)))
    with pytest.raises(GeosslError, match="label fraction"):
        stratified_subset(y, 0.0)
