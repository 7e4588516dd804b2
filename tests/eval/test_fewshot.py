"""Few-shot episodes (evaluation.md §5); oracles: plain nearest-mean loops, scikit-learn LogisticRegression, the CI
formula written out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geossl.errors import GeosslError
from geossl.eval.fewshot import (
    evaluate_fewshot,
    logistic_logits,
    prototype_logits,
    run_episodes,
    sample_episodes,
    sot_episode,
)


def _features(n_classes: int = 12, per_class: int = 30, d: int = 16, sep: float = 1.0, seed: int = 0):
    """Gaussian classes; sep scales the class means (sep = 1: overlapping, sep = 10: trivially separable)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    means = sep * torch.randn(n_classes, d, generator=g)
    x = means[y] + torch.randn(len(y), d, generator=g)
    perm = torch.randperm(len(y), generator=g)  # labels not sorted, as in a real feature file
    return x[perm], y[perm]


def test_episode_sampling():
    _, y = _features(n_classes=8, per_class=25)
    y = y.clone()
    y[y == 7] = torch.where(torch.arange(int((y == 7).sum())) < 10, 7, 6)  # class 7 has 10 < K + Q samples
    ep = sample_episodes(y, n_way=5, k_shot=5, n_query=15, n_episodes=50, seed=1)
    assert ep.classes.shape == (50, 5) and ep.support.shape == (50, 5, 5) and ep.query.shape == (50, 5, 15)
    for e in range(50):
        assert len(set(ep.classes[e].tolist())) == 5 and 7 not in ep.classes[e].tolist()
        for c in range(5):
            assert (y[ep.support[e, c]] == ep.classes[e, c]).all() and (y[ep.query[e, c]] == ep.classes[e, c]).all()
        ids = torch.cat([ep.support[e].flatten(), ep.query[e].flatten()]).tolist()
        assert len(ids) == len(set(ids)) == 5 * 20  # disjoint support / query, no repeats
    again = sample_episodes(y, n_way=5, k_shot=5, n_query=15, n_episodes=50, seed=1)
    other = sample_episodes(y, n_way=5, k_shot=5, n_query=15, n_episodes=50, seed=2)
    assert torch.equal(ep.support, again.support) and torch.equal(ep.query, again.query)
    assert not torch.equal(ep.support, other.support)


def _nearest_mean(support, query, metric):
    """A plainly written nearest-class-mean classifier: one query at a time, one class at a time."""
    preds = []
    for q in query.tolist():
        best, best_c = None, None
        for c in range(support.shape[0]):
            mu = [sum(col) / support.shape[1] for col in zip(*support[c].tolist())]
            if metric == "euclidean":
                score = -sum((a - b) ** 2 for a, b in zip(q, mu))
            else:
                score = sum(a * b for a, b in zip(q, mu)) / math.sqrt(sum(a * a for a in q) * sum(b * b for b in mu))
            if best is None or score > best:
                best, best_c = score, c
        preds.append(best_c)
    return preds


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_prototype_head_equals_plain_nearest_mean(metric):
    g = torch.Generator().manual_seed(3)
    support, query = torch.randn(5, 3, 8, generator=g), torch.randn(40, 8, generator=g)
    ours = prototype_logits(support, query, metric).argmax(dim=1)
    assert ours.tolist() == _nearest_mean(support, query, metric)


@pytest.mark.parametrize("metric,preprocess", [("euclidean", "none"), ("cosine", "l2"), ("euclidean", "l2"),
                                               ("euclidean", "cl2n")])
def test_run_episodes_accuracies_equal_plain_recomputation(metric, preprocess):
    x, y = _features(sep=0.5)
    x = x + 3.0  # an offset, so that centring matters
    base_mean = x[y >= 6].mean(dim=0)  # "base classes" 6..11 give the SimpleShot centre
    out = run_episodes(x, y, n_way=5, k_shot=2, n_query=4, n_episodes=20, metric=metric, preprocess=preprocess,
                       center=base_mean if preprocess == "cl2n" else None, seed=7)
    ep = sample_episodes(y, n_way=5, k_shot=2, n_query=4, n_episodes=20, seed=7)
    xp = {"none": x, "l2": x / x.norm(dim=1, keepdim=True),
          "cl2n": (x - base_mean) / (x - base_mean).norm(dim=1, keepdim=True)}[preprocess]
    expected = []
    for e in range(20):
        preds = _nearest_mean(xp[ep.support[e]], xp[ep.query[e].flatten()], metric)
        truth = [c for c in range(5) for _ in range(4)]
        expected.append(100.0 * sum(p == t for p, t in zip(preds, truth)) / 20)
    assert out["episode_accuracies"].tolist() == pytest.approx(expected)
    assert 20.0 < out["accuracy"] < 100.0  # not a trivial case


def test_confidence_interval_formula():
    x, y = _features(sep=0.7)
    out = run_episodes(x, y, n_episodes=40, seed=0)
    accs = out["episode_accuracies"].numpy()
    assert out["accuracy"] == pytest.approx(float(np.mean(accs)))
    assert out["std"] == pytest.approx(float(np.std(accs)))  # population std (ddof = 0)
    assert out["ci95"] == pytest.approx(1.96 * float(np.std(accs)) / math.sqrt(40))
    assert out["ci95"] > 0


def test_logistic_head_matches_sklearn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    g = torch.Generator().manual_seed(5)
    means = 0.8 * torch.randn(5, 12, generator=g, dtype=torch.float64)
    support = means[:, None, :] + torch.randn(5, 5, 12, generator=g, dtype=torch.float64)
    query = means.repeat_interleave(6, dim=0) + torch.randn(30, 12, generator=g, dtype=torch.float64)
    for C in (1.0, 0.1):
        logits = logistic_logits(support, query, C=C)
        clf = linear_model.LogisticRegression(C=C, tol=1e-10, max_iter=10_000)
        clf.fit(support.reshape(25, 12).numpy(), np.repeat(np.arange(5), 5))
        ref = clf.predict_proba(query.numpy())
        assert np.abs(torch.softmax(logits, dim=1).numpy() - ref).max() < 1e-5
        assert np.array_equal(logits.argmax(dim=1).numpy(), clf.predict(query.numpy()))


def test_logistic_head_batched_equals_one_episode_at_a_time():
    g = torch.Generator().manual_seed(6)
    support, query = torch.randn(4, 3, 2, 6, generator=g), torch.randn(4, 9, 6, generator=g)
    batched = logistic_logits(support, query)
    for e in range(4):
        assert torch.allclose(batched[e], logistic_logits(support[e], query[e]), atol=1e-5)


@pytest.mark.parametrize("classifier", ["prototype", "logistic"])
@pytest.mark.parametrize("transform", [None, "sot"])
def test_easy_clusters_give_100_percent(classifier, transform):
    x, y = _features(n_classes=10, per_class=25, sep=10.0)
    res = evaluate_fewshot(x, y, k_shots=(1, 5), n_episodes=10, classifier=classifier, transform=transform)
    assert res[1]["accuracy"] == 100.0 and res[5]["accuracy"] == 100.0
    assert res[1]["ci95"] == 0.0 and res[5]["k_shot"] == 5 and res[1]["transform"] == transform


def test_sot_keeps_shapes_and_injects_labels():
    g = torch.Generator().manual_seed(8)
    support, query = torch.randn(3, 5, 2, 16, generator=g), torch.randn(3, 20, 16, generator=g)
    s, q = sot_episode(support, query)
    n = 5 * 2 + 20
    assert s.shape == (3, 5, 2, n) and q.shape == (3, 20, n)
    assert torch.isfinite(s).all() and torch.isfinite(q).all()
    s, q = sot_episode(support, query, label_injection=True)
    block = s.reshape(3, 10, n)[:, :, :10]
    same = torch.arange(5).repeat_interleave(2)
    expected = (same[:, None] == same[None, :]).double() / 2
    expected.fill_diagonal_(1.0)
    assert torch.equal(block, expected.expand(3, 10, 10).to(block))
    x, y = _features(sep=0.7)
    a = run_episodes(x, y, n_episodes=10, transform="sot", seed=4)
    b = run_episodes(x, y, n_episodes=10, transform="sot", seed=4)
    assert torch.equal(a["episode_accuracies"], b["episode_accuracies"])  # reproducible under a seed


def test_bad_input():
    x, y = _features(n_classes=4, per_class=20)
    with pytest.raises(GeosslError, match="fewer than n_way = 5"):
        run_episodes(x, y)
    with pytest.raises(GeosslError, match="features has 80 rows but labels has 79"):
        run_episodes(x, y[:79])
    with pytest.raises(GeosslError, match="unknown classifier"):
        run_episodes(x, y, n_way=3, classifier="svm")
    with pytest.raises(GeosslError, match="center has 3 entries"):
        run_episodes(x, y, n_way=3, preprocess="cl2n", center=torch.zeros(3))
