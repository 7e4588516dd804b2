"""Weighted k-NN (evaluation.md §1): oracles are brute force, a double-loop reference and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geossl.errors import GeosslError
from geossl.eval import knn_classify, knn_predict


def _random(n: int, m: int, d: int, c: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g),
            torch.randn(m, d, generator=g), torch.randint(0, c, (m,), generator=g))


def _reference_scores(bank, labels, queries, k, temperature, metric, num_classes):
    """Plain double loop over queries and bank entries: score_c = Σ_{top-k} exp(s/T)·1[y=c], then normalised."""
    bank, queries = bank.double(), queries.double()
    out = torch.zeros(queries.shape[0], num_classes, dtype=torch.float64)
    for i in range(queries.shape[0]):
        sims = []
        for j in range(bank.shape[0]):
            if metric == "cosine":
                s = float(queries[i] @ bank[j] / (queries[i].norm() * bank[j].norm()))
            else:
                s = -float((queries[i] - bank[j]).norm())
            sims.append((s, int(labels[j])))
        sims.sort(key=lambda t: -t[0])
        for s, y in sims[:k]:
            out[i, y] += math.exp(s / temperature)
        out[i] /= out[i].sum()
    return out


def test_separable_features_give_100_percent():
    g = torch.Generator().manual_seed(0)
    centers = F.normalize(torch.randn(10, 32, generator=g), dim=1) * 10
    y_tr, y_te = torch.arange(500) % 10, torch.arange(200) % 10
    x_tr = centers[y_tr] + 0.1 * torch.randn(500, 32, generator=g)
    x_te = centers[y_te] + 0.1 * torch.randn(200, 32, generator=g)
    out = knn_classify(x_tr, y_tr, x_te, y_te)
    assert out["top1"] == 100.0 and out["top5"] == 100.0
    assert torch.equal(out["predictions"], y_te)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_k1_is_the_nearest_neighbour_label(metric):
    x_tr, y_tr, x_te, y_te = _random(300, 80, 16, 7)
    if metric == "cosine":
        nearest = (F.normalize(x_te, dim=1) @ F.normalize(x_tr, dim=1).T).argmax(dim=1)
    else:
        nearest = torch.cdist(x_te.double(), x_tr.double()).argmin(dim=1)
    out = knn_classify(x_tr, y_tr, x_te, y_te, k=1, metric=metric)
    assert torch.equal(out["predictions"], y_tr[nearest])


@pytest.mark.parametrize("metric,temperature", [("cosine", 0.07), ("cosine", 0.5), ("euclidean", 0.3)])
def test_scores_match_double_loop_reference(metric, temperature):
    x_tr, y_tr, x_te, _ = _random(60, 15, 5, 4, seed=1)
    ours = knn_predict(x_tr, y_tr, x_te, k=7, temperature=temperature, metric=metric, num_classes=4)
    ref = _reference_scores(x_tr, y_tr, x_te, 7, temperature, metric, 4)
    assert torch.allclose(ours.double(), ref, atol=1e-6, rtol=0)


def test_chunking_does_not_change_predictions():
    # Different block sizes may use different matmul kernels: scores agree to float rounding, predictions exactly.
    x_tr, y_tr, x_te, _ = _random(200, 50, 8, 5)
    a, b = knn_predict(x_tr, y_tr, x_te, chunk_size=3), knn_predict(x_tr, y_tr, x_te)
    assert torch.allclose(a, b, atol=1e-6, rtol=0)
    assert torch.equal(a.argmax(dim=1), b.argmax(dim=1))


def test_bank_permutation_does_not_change_predictions_even_with_ties():
    # Each bank vector appears three times with three different labels: with k = 4 the 4th neighbour is one of
    # three exactly tied copies, which topk alone would pick arbitrarily.
    g = torch.Generator().manual_seed(3)
    base = torch.randn(40, 6, generator=g)
    x_tr = base.repeat(3, 1)
    y_tr = torch.cat([torch.randint(0, 5, (40,), generator=g) for _ in range(3)])
    x_te = torch.randn(100, 6, generator=g)
    y_te = torch.randint(0, 5, (100,), generator=g)
    ref = knn_predict(x_tr, y_tr, x_te, k=4)
    ref_cls = knn_classify(x_tr, y_tr, x_te, y_te, k=4)
    for seed in range(5):
        perm = torch.randperm(120, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(knn_predict(x_tr[perm], y_tr[perm], x_te, k=4), ref, atol=1e-6, rtol=0)
        out = knn_classify(x_tr[perm], y_tr[perm], x_te, y_te, k=4)
        assert torch.equal(out["predictions"], ref_cls["predictions"])
        assert out["top5"] == ref_cls["top5"]


def test_boundary_ties_take_the_smallest_labels():
    # Query equidistant to every bank vector: the k = 2 kept neighbours must be the two smallest labels.
    x_tr = torch.eye(4)
    y_tr = torch.tensor([3, 1, 2, 0])
    scores = knn_predict(x_tr, y_tr, torch.ones(1, 4), k=2)
    assert torch.allclose(scores, torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    # class-score ties go to the smallest class index
    assert knn_classify(x_tr, y_tr, torch.ones(1, 4), torch.tensor([1]), k=2)["predictions"].item() == 0


def test_top5_at_least_top1_and_in_percent():
    x_tr, y_tr, x_te, y_te = _random(400, 200, 16, 12, seed=4)
    out = knn_classify(x_tr, y_tr, x_te, y_te)
    assert 0.0 <= out["top1"] <= out["top5"] <= 100.0
    assert out["top1"] == pytest.approx(100.0 * (out["predictions"] == y_te).double().mean().item())
    assert out["predictions"].dtype == torch.long and out["predictions"].shape == (200,)


def test_large_temperature_is_sklearn_majority_vote():
    neighbors = pytest.importorskip("sklearn.neighbors")
    x_tr, y_tr, x_te, _ = _random(300, 150, 10, 4, seed=5)
    k = 9
    clf = neighbors.KNeighborsClassifier(n_neighbors=k, weights="uniform", metric="cosine", algorithm="brute")
    clf.fit(x_tr.numpy(), y_tr.numpy())
    sk_pred = torch.as_tensor(clf.predict(x_te.numpy()))
    idx = torch.as_tensor(clf.kneighbors(x_te.numpy(), return_distance=False))
    votes = F.one_hot(y_tr[idx], 4).sum(dim=1)
    top2 = votes.topk(2, dim=1).values
    no_tie = top2[:, 0] > top2[:, 1]
    assert no_tie.sum() > 100  # the comparison covers most queries
    ours = knn_predict(x_tr, y_tr, x_te, k=k, temperature=1e6).argmax(dim=1)
    assert torch.equal(ours[no_tie], sk_pred[no_tie])


def test_k_larger_than_bank_is_clamped_and_numpy_accepted():
    x_tr, y_tr, x_te, y_te = _random(12, 5, 4, 3)
    out = knn_classify(x_tr.numpy(), y_tr.numpy(), x_te.numpy(), y_te.numpy(), k=100)
    ref = knn_classify(x_tr, y_tr, x_te, y_te, k=12)
    assert torch.equal(out["predictions"], ref["predictions"])


def test_small_temperature_does_not_overflow():
    x_tr, y_tr, x_te, _ = _random(100, 20, 8, 3)
    scores = knn_predict(x_tr, y_tr, x_te, temperature=1e-3)
    assert torch.isfinite(scores).all()
    assert torch.allclose(scores.sum(dim=1), torch.ones(20))


def test_user_errors():
    x_tr, y_tr, x_te, y_te = _random(20, 5, 4, 3)
    with pytest.raises(GeosslError, match="-1"):
        knn_classify(x_tr, torch.cat([y_tr[:-1], torch.tensor([-1])]), x_te, y_te)
    with pytest.raises(GeosslError, match="rows"):
        knn_classify(x_tr, y_tr[:-1], x_te, y_te)
    with pytest.raises(GeosslError, match="rows"):
        knn_classify(x_tr, y_tr, x_te, y_te[:-1])
    with pytest.raises(GeosslError, match="dimension"):
        knn_predict(x_tr, y_tr, x_te[:, :3])
    with pytest.raises(GeosslError, match="metric"):
        knn_predict(x_tr, y_tr, x_te, metric="cosin")  # type: ignore[arg-type]
    with pytest.raises(GeosslError, match="NaN"):
        knn_predict(x_tr, y_tr, torch.full((2, 4), float("nan")))
    with pytest.raises(GeosslError):
        knn_predict(x_tr, y_tr, x_te, k=0)
    with pytest.raises(GeosslError):
        knn_predict(x_tr, y_tr, x_te, temperature=0.0)
    with pytest.raises(GeosslError) as info:
        knn_classify(x_tr, y_tr[:3], x_te, y_te)
    assert "\n" not in str(info.value)  # one-line messages
    assert np.isfinite(knn_classify(x_tr, y_tr, x_te, y_te)["top1"])
