"""Clustering protocol (evaluation.md §6); oracles: scikit-learn metrics and KMeans, brute-force matching."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from geossl.errors import GeosslError
from geossl.eval.clustering import (
    adjusted_rand_index,
    clustering_accuracy,
    contingency_matrix,
    kmeans,
    kmeans_metrics,
    normalized_mutual_info,
    purity,
    silhouette,
)

metrics = pytest.importorskip("sklearn.metrics")
cluster = pytest.importorskip("sklearn.cluster")
datasets = pytest.importorskip("sklearn.datasets")
threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpoolctl.threadpool_limits(1):
        yield


def _random_labelings():
    rng = np.random.default_rng(0)
    cases = []
    for n, ca, cb in [(50, 3, 3), (200, 10, 4), (97, 2, 15), (30, 30, 5), (400, 7, 7)]:
        cases.append((rng.integers(0, ca, n), rng.integers(0, cb, n)))
    a = rng.integers(0, 5, 120)
    cases.append((a, np.where(rng.random(120) < 0.8, a, rng.integers(0, 5, 120))))  # correlated
    cases.append((rng.choice([-1, 3, 7], 60), rng.choice([10, 20], 60)))  # non-contiguous, negative labels
    return cases


@pytest.mark.parametrize("case", range(7))
def test_external_metrics_equal_sklearn(case):
    y, p = _random_labelings()[case]
    assert normalized_mutual_info(y, p) == pytest.approx(metrics.normalized_mutual_info_score(y, p), abs=1e-6)
    assert adjusted_rand_index(y, p) == pytest.approx(metrics.adjusted_rand_score(y, p), abs=1e-6)
    c = metrics.cluster.contingency_matrix(y, p)
    assert torch.equal(contingency_matrix(torch.as_tensor(y), torch.as_tensor(p)), torch.as_tensor(c))
    assert purity(y, p) == pytest.approx(c.max(axis=0).sum() / c.sum(), abs=1e-12)


@pytest.mark.parametrize("y,p", [
    ([0, 0, 0, 0], [1, 1, 1, 1]),        # single group on both sides
    ([0, 1, 2, 3], [0, 1, 2, 3]),        # all singletons
    ([0, 0, 1, 1], [0, 0, 0, 0]),        # one side trivial
    ([0, 1, 2, 3], [0, 0, 0, 0]),
    ([0, 0, 1, 1], [1, 1, 0, 0]),        # permuted identity
    ([0, 0, 1, 1], [0, 1, 0, 1]),        # independent
])
def test_degenerate_labelings_follow_sklearn(y, p):
    assert normalized_mutual_info(y, p) == pytest.approx(metrics.normalized_mutual_info_score(y, p), abs=1e-12)
    assert adjusted_rand_index(y, p) == pytest.approx(metrics.adjusted_rand_score(y, p), abs=1e-12)


def test_clustering_accuracy_equals_brute_force_matching():
    rng = np.random.default_rng(1)
    for _ in range(5):
        y, p = rng.integers(0, 4, 80), rng.integers(0, 4, 80)
        best = max(sum(int(perm[pi] == yi) for yi, pi in zip(y, p)) for perm in itertools.permutations(range(4)))
        assert clustering_accuracy(y, p) == pytest.approx(best / 80)
    # More clusters than classes: extra clusters cannot be matched and count as errors.
    assert clustering_accuracy([0, 0, 1, 1], [0, 1, 2, 3]) == pytest.approx(0.5)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("chunk", [1024, 13])
def test_silhouette_equals_sklearn(metric, chunk):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 6))
    y = rng.integers(0, 5, 150)
    y[0] = 9  # a singleton cluster gets s = 0
    ours = silhouette(torch.as_tensor(x), y, metric=metric, chunk_size=chunk)
    assert ours == pytest.approx(metrics.silhouette_score(x, y, metric=metric), abs=1e-6)


@pytest.fixture(scope="module")
def blobs():
    x, y = datasets.make_blobs(n_samples=600, centers=6, n_features=8, cluster_std=1.0, random_state=0)
    return x, y


def test_kmeans_recovers_blobs_and_matches_sklearn_inertia(blobs):
    x, y = blobs
    ours = kmeans(torch.as_tensor(x), 6, n_init=10, seed=0)
    ref = cluster.KMeans(n_clusters=6, n_init=10, random_state=0).fit(x)
    assert adjusted_rand_index(y, ours.labels) == 1.0  # exact recovery of well-separated blobs
    assert ours.inertia == pytest.approx(ref.inertia_, rel=0.02)
    # Inertia is what it claims to be: the sum of squared distances to the returned centres.
    xt = torch.as_tensor(x)
    assert ours.inertia == pytest.approx(float((xt - ours.centers[ours.labels]).pow(2).sum()), rel=1e-9)
    assert ours.centers.shape == (6, 8) and ours.labels.shape == (600,)


def test_kmeans_on_overlapping_data_is_close_to_sklearn():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 5))  # no cluster structure: local optima differ, the objective should not
    ours = kmeans(x, 8, n_init=10, seed=1)
    ref = cluster.KMeans(n_clusters=8, n_init=10, random_state=1).fit(x)
    assert ours.inertia == pytest.approx(ref.inertia_, rel=0.03)


def test_kmeans_is_seeded_and_handles_degenerate_k():
    x = torch.randn(100, 4, generator=torch.Generator().manual_seed(4))
    a, b = kmeans(x, 5, seed=3), kmeans(x, 5, seed=3)
    assert torch.equal(a.labels, b.labels) and a.inertia == b.inertia
    full = kmeans(x, 100, n_init=1)  # k = N: every point its own centre
    assert full.inertia == pytest.approx(0.0, abs=1e-9)
    assert len(torch.unique(full.labels)) == 100
    one = kmeans(x, 1, n_init=1)
    assert one.inertia == pytest.approx(float((x.double() - x.double().mean(0)).pow(2).sum()), rel=1e-9)


def test_kmeans_metrics_on_blobs(blobs):
    x, y = blobs
    out = kmeans_metrics(x, y, with_silhouette=True)
    assert out["nmi"] == pytest.approx(1.0) and out["ari"] == 1.0 and out["acc"] == 1.0 and out["purity"] == 1.0
    assert out["n_clusters"] == 6
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert out["silhouette"] == pytest.approx(metrics.silhouette_score(xn, out["cluster_labels"].numpy()), abs=1e-6)


def test_kmeans_metrics_with_sot_runs():
    x, y = datasets.make_blobs(n_samples=90, centers=3, n_features=5, random_state=1)
    out = kmeans_metrics(x, y, transform="sot", n_init=3)
    assert out["cluster_labels"].shape == (90,)
    # Well-separated blobs stay separated in the transported (affinity-profile) features.
    assert out["nmi"] == pytest.approx(1.0) and out["acc"] == 1.0


def test_bad_input():
    with pytest.raises(GeosslError, match="features has 10 rows but labels has 9"):
        kmeans_metrics(torch.randn(10, 2), torch.zeros(9))
    with pytest.raises(GeosslError, match="n_clusters must be between 1 and the number of samples"):
        kmeans(torch.randn(5, 2), 6)
    with pytest.raises(GeosslError, match="labels_true has 3 rows but labels_pred has 2"):
        adjusted_rand_index([0, 1, 1], [0, 1])
    with pytest.raises(GeosslError, match="between 2 and N - 1"):
        silhouette(torch.randn(5, 2), [0] * 5)
    with pytest.raises(GeosslError, match="unknown transform"):
        kmeans_metrics(torch.randn(10, 2), torch.zeros(10), transform="pca")
