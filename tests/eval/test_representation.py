"""Representation geometry (evaluation.md §9): effective rank, alignment and uniformity vs the written-out formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from geossl.errors import GeosslError
from geossl.eval.representation import alignment, effective_rank, uniformity


def _gaussian(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_effective_rank_matches_entropy_of_singular_values_numpy():
    z = _gaussian(40, 12) * torch.linspace(0.1, 3.0, 12, dtype=torch.float64)  # uneven spectrum
    s = np.linalg.svd(z.numpy(), compute_uv=False)
    p = s / s.sum()
    expected = math.exp(-sum(pk * math.log(pk) for pk in p))
    assert effective_rank(z) == pytest.approx(expected, rel=1e-10)
    assert effective_rank(z.numpy()) == pytest.approx(expected, rel=1e-10)  # NumPy input


def test_effective_rank_closed_forms():
    q, _ = torch.linalg.qr(_gaussian(30, 30))
    assert effective_rank(q) == pytest.approx(30.0, rel=1e-10)  # flat spectrum -> full rank
    z = q[:, :4] @ torch.linalg.qr(_gaussian(10, 10, 1))[0][:4]  # 4 equal singular values, others 0
    assert effective_rank(z) == pytest.approx(4.0, rel=1e-8)
    assert effective_rank(_gaussian(50, 1) @ _gaussian(1, 8, 2)) == pytest.approx(1.0, abs=1e-8)
    assert effective_rank(torch.zeros(5, 3)) == 1.0


def test_effective_rank_center_option():
    # A constant offset adds one direction to the raw matrix; centring removes it.
    z = torch.zeros(20, 5, dtype=torch.float64) + torch.tensor([1.0, 2, 3, 4, 5], dtype=torch.float64)
    assert effective_rank(z) == pytest.approx(1.0)
    assert effective_rank(z + 1e-3 * _gaussian(20, 5), center=False) < 1.1
    noisy = (z + _gaussian(20, 5)).numpy()
    centred = effective_rank(noisy, center=True)
    s = np.linalg.svd(noisy - noisy.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    assert centred == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-10)


@pytest.mark.parametrize("alpha", [2.0, 1.0])
def test_alignment_formula(alpha):
    x, y = _gaussian(25, 6, 3), _gaussian(25, 6, 4)
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    yn = y.numpy() / np.linalg.norm(y.numpy(), axis=1, keepdims=True)
    expected = np.mean([np.sum((xn[i] - yn[i]) ** 2) ** (alpha / 2) for i in range(25)])
    assert alignment(x, y, alpha=alpha) == pytest.approx(expected, rel=1e-10)
    raw = np.mean([np.sum((x[i].numpy() - y[i].numpy()) ** 2) ** (alpha / 2) for i in range(25)])
    assert alignment(x, y, alpha=alpha, normalize=False) == pytest.approx(raw, rel=1e-10)
    assert alignment(x, 2.0 * x) == pytest.approx(0.0, abs=1e-12)  # same direction


@pytest.mark.parametrize("t,chunk", [(2.0, 1024), (2.0, 7), (0.5, 3)])
def test_uniformity_formula(t, chunk):
    x = _gaussian(23, 5, 5)
    xn = (x / x.norm(dim=1, keepdim=True)).numpy()
    terms = [math.exp(-t * float(np.sum((xn[i] - xn[j]) ** 2))) for i, j in itertools.combinations(range(23), 2)]
    expected = math.log(sum(terms) / len(terms))
    assert uniformity(x, t=t, chunk_size=chunk) == pytest.approx(expected, rel=1e-10)


def test_uniformity_collapse_and_spread():
    assert uniformity(torch.ones(10, 4)) == pytest.approx(0.0, abs=1e-12)
    # Antipodal pair: ‖x − y‖² = 4, so log exp(−2·4) = −8.
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)
    # Large t must not underflow to log(0).
    assert math.isfinite(uniformity(_gaussian(50, 8), t=500.0))


def test_bad_input():
    with pytest.raises(GeosslError, match="x has 3 rows but y has 4"):
        alignment(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(GeosslError, match="at least 2"):
        uniformity(torch.randn(1, 2))
    with pytest.raises(GeosslError, match="t must be > 0"):
        uniformity(torch.randn(4, 2), t=0.0)
    with pytest.raises(GeosslError, match="alpha"):
        alignment(torch.randn(3, 2), torch.randn(3, 2), alpha=-1)
