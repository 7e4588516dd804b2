"""Retrieval metrics (evaluation.md §7); oracles: pytorch-metric-learning's AccuracyCalculator, brute-force NumPy
rankings, faiss vs torch neighbour search."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geossl.errors import GeosslError
from geossl.eval.retrieval import nearest_neighbors, retrieval_metrics

PML_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def _data(n: int, d: int, n_classes: int, seed: int, spread: float = 1.5):
    """Continuous random embeddings (no distance ties) with class structure, so the metrics are far from 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    centers = spread * torch.randn(n_classes, d, generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


def _pml(query, q_y, reference=None, r_y=None, ref_includes_query=False):
    ac = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    calc = ac.AccuracyCalculator(include=PML_METRICS, k="max_bin_count", device=torch.device("cpu"))
    return calc.get_accuracy(query, q_y, reference, r_y, ref_includes_query=ref_includes_query)


def _assert_match_pml(ours, ref):
    assert ours["precision_at_1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert ours["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_self_retrieval_equals_pytorch_metric_learning(metric, backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    x, y = _data(300, 8, 7, seed=0)
    y[0] = 99  # a singleton class: a lone query, left out by both
    ours = retrieval_metrics(x, y, metric=metric, backend=backend)
    # pml's default search is Euclidean (faiss IndexFlatL2): cosine ranking = Euclidean on normalised rows.
    xr = torch.nn.functional.normalize(x, dim=1) if metric == "cosine" else x
    _assert_match_pml(ours, _pml(xr, y))
    assert ours["n_queries"] == 299 and ours["n_lone_queries"] == 1
    assert 0.2 < ours["map_at_r"] < 0.9  # a non-trivial case


def test_separate_query_and_reference_sets_equal_pytorch_metric_learning():
    x, y = _data(400, 6, 5, seed=1)
    q, q_y, r, r_y = x[:120], y[:120], x[120:], y[120:]
    ours = retrieval_metrics(q, q_y, r, r_y, metric="euclidean")
    _assert_match_pml(ours, _pml(q, q_y, r, r_y))
    # Reference set that starts with the queries (In-Shop style), self excluded.
    ours = retrieval_metrics(q, q_y, x, y, metric="euclidean", exclude_self=True)
    _assert_match_pml(ours, _pml(q, q_y, x, y, ref_includes_query=True))


def _brute_force(x, y, k_list, metric):
    """Rankings by a float64 argsort with the query itself removed, then the metrics written out per query."""
    x, y = x.double().numpy(), y.numpy()
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1 - xn @ xn.T
    else:
        d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    recalls = {k: [] for k in k_list}
    rp, mapr = [], []
    for i in range(len(x)):
        order = np.argsort(d[i], kind="stable")[:-1]  # drop self (inf, last)
        rel = y[order] == y[i]
        r = int((y == y[i]).sum()) - 1
        for k in k_list:
            recalls[k].append(float(rel[:k].any()))
        rp.append(rel[:r].sum() / r)
        mapr.append(sum(rel[:j + 1].sum() / (j + 1) for j in range(r) if rel[j]) / r)
    return {k: np.mean(v) for k, v in recalls.items()}, np.mean(rp), np.mean(mapr)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_recall_at_k_and_map_at_r_written_out(metric):
    x, y = _data(150, 5, 6, seed=2, spread=1.0)
    ours = retrieval_metrics(x, y, ks=(1, 2, 5, 10), metric=metric, backend="torch")
    recalls, rp, mapr = _brute_force(x, y, (1, 2, 5, 10), metric)
    for k, v in recalls.items():
        assert ours[f"recall@{k}"] == pytest.approx(v, abs=1e-12)
    assert ours["recall@1"] == ours["precision_at_1"]
    assert ours["r_precision"] == pytest.approx(rp, abs=1e-12)
    assert ours["map_at_r"] == pytest.approx(mapr, abs=1e-12)
    assert ours["recall@1"] < ours["recall@5"] < 1.0


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_faiss_and_torch_neighbours_are_identical_and_exact(metric, exclude_self):
    pytest.importorskip("faiss")
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(2000, 32, generator=g)
    query = ref[:500] if exclude_self else torch.randn(500, 32, generator=g)
    d_t, i_t = nearest_neighbors(query, ref, 20, metric, "torch", exclude_self=exclude_self, chunk_size=128)
    d_f, i_f = nearest_neighbors(query, ref, 20, metric, "faiss", exclude_self=exclude_self)
    assert torch.equal(i_t, i_f)
    assert torch.equal(d_t, d_f)
    # Both equal a float64 brute-force ranking.
    qn, rn = query.double().numpy(), ref.double().numpy()
    if metric == "cosine":
        qn = qn / np.linalg.norm(qn, axis=1, keepdims=True)
        rn = rn / np.linalg.norm(rn, axis=1, keepdims=True)
        dist = 1 - qn @ rn.T
    else:
        dist = np.sqrt(((qn[:, None, :] - rn[None, :, :]) ** 2).sum(-1))
    if exclude_self:
        dist[np.arange(500), np.arange(500)] = np.inf
    expected = np.argsort(dist, axis=1, kind="stable")[:, :20]
    assert np.array_equal(i_t.numpy(), expected)
    assert np.allclose(d_t.numpy(), np.take_along_axis(dist, expected, axis=1), atol=1e-12)


def test_nearest_neighbors_self_reference_and_ties():
    x = torch.tensor([[0.0], [1.0], [1.0], [3.0]])
    d, i = nearest_neighbors(x, None, 2, "euclidean", "torch", exclude_self=True)
    # Row 1 and row 2 are duplicates: each is the other's nearest; equal distances go to the smaller index.
    assert i.tolist() == [[1, 2], [2, 0], [1, 0], [1, 2]]
    assert d[0].tolist() == [1.0, 1.0]


def test_bad_input():
    x, y = _data(20, 3, 2, seed=4)
    with pytest.raises(GeosslError, match="query has 20 rows but query_labels has 19"):
        retrieval_metrics(x, y[:19])
    with pytest.raises(GeosslError, match="reference and reference_labels together"):
        retrieval_metrics(x, y, reference=x)
    with pytest.raises(GeosslError, match="no query has a relevant reference"):
        retrieval_metrics(x[:5], torch.zeros(5, dtype=torch.long), x[5:], torch.ones(15, dtype=torch.long))
    with pytest.raises(GeosslError, match="k must be between 1"):
        nearest_neighbors(x, None, 20, exclude_self=True)
    with pytest.raises(GeosslError, match="unknown backend"):
        nearest_neighbors(x, x, 3, backend="annoy")
    with pytest.raises(GeosslError, match="query has dimension 3 but reference has 4"):
        nearest_neighbors(x, torch.randn(5, 4), 3)
