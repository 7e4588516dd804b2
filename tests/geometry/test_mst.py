"""MST edges and length against scipy, the Carrière gradient, and the MST intrinsic-dimension estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import cdist

from geossl.errors import GeosslError
from geossl.geometry.mst import intrinsic_dim_mst, mst_edges, mst_length


def _scipy_length(x: np.ndarray) -> float:
    return float(minimum_spanning_tree(cdist(x, x)).sum())


@pytest.mark.parametrize("seed", range(100))
def test_length_equals_scipy_on_random_sets(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(2, 60)), int(rng.integers(1, 20))
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 10)
    got = mst_length(torch.from_numpy(x)).item()
    assert got == pytest.approx(_scipy_length(x), rel=1e-10)


def test_torch_and_numpy_prim_give_scipys_length() -> None:
    from geossl.geometry.mst import _prim

    x = torch.randn(80, 5, dtype=torch.float64)
    d2 = torch.cdist(x, x) ** 2
    for edges in (_prim(d2), mst_edges(x)):
        assert edges.shape == (79, 2)
        assert mst_length(x, edges).item() == pytest.approx(_scipy_length(x.numpy()), rel=1e-10)


def test_edges_form_a_spanning_tree() -> None:
    x = torch.randn(50, 7, dtype=torch.float64)
    edges = mst_edges(x)
    assert edges.shape == (49, 2)
    # union-find: n-1 edges that never close a cycle span the n points
    parent = list(range(50))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edges.tolist():
        ra, rb = find(a), find(b)
        assert ra != rb
        parent[ra] = rb


def test_gradient_is_the_sum_of_unit_edge_vectors_and_passes_gradcheck() -> None:
    x = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    mst_length(x).backward()
    expected = torch.zeros_like(x)
    with torch.no_grad():
        for a, b in mst_edges(x).tolist():
            u = (x[a] - x[b]) / (x[a] - x[b]).norm()
            expected[a] += u
            expected[b] -= u
    torch.testing.assert_close(x.grad, expected, rtol=1e-8, atol=1e-10)
    # away from ties the MST is locally constant, so the length is smooth and finite differences agree
    torch.autograd.gradcheck(lambda y: mst_length(y), (x.detach().clone().requires_grad_(),))


def test_duplicate_points_give_finite_gradients() -> None:
    x = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
    mst_length(x).backward()
    assert torch.isfinite(x.grad).all()


def test_tiny_clouds_and_bad_input() -> None:
    assert mst_length(torch.randn(1, 3)).item() == 0.0
    assert mst_edges(torch.randn(1, 3)).shape == (0, 2)
    with pytest.raises(GeosslError, match="2-D"):
        mst_edges(torch.randn(3))
    with pytest.raises(GeosslError, match="NaN"):
        mst_edges(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]))


@pytest.mark.parametrize("d", [2, 3, 4, 5])
def test_intrinsic_dimension_of_uniform_cubes(d: int) -> None:
    x = torch.rand(2048, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    assert abs(intrinsic_dim_mst(x) - d) <= 0.5


def test_intrinsic_dimension_of_a_swiss_roll_in_10d() -> None:
    g = torch.Generator().manual_seed(0)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(2048, generator=g, dtype=torch.float64))
    h = 21 * torch.rand(2048, generator=g, dtype=torch.float64)
    roll = torch.stack([t * torch.cos(t), h, t * torch.sin(t)], 1)
    q, _ = torch.linalg.qr(torch.randn(10, 3, generator=g, dtype=torch.float64))  # isometric embedding in R^10
    x = roll @ q.T
    assert abs(intrinsic_dim_mst(x) - 2) <= 0.5


def test_intrinsic_dimension_refuses_too_few_points() -> None:
    with pytest.raises(GeosslError, match="at least 16"):
        intrinsic_dim_mst(torch.randn(10, 3))
