"""Collapse monitors (evaluation.md §10): RankMe closed forms, per-dimension std, warnings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geossl.errors import GeosslError
from geossl.eval import collapse_warnings, mean_pairwise_cosine, per_dim_std, rankme


def _gaussian(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("d", [8, 64])
def test_rankme_of_orthogonal_matrix_is_d(d):
    q, _ = torch.linalg.qr(_gaussian(d, d).double())
    assert rankme(q) == pytest.approx(d, rel=1e-3)
    assert rankme(3.0 * q) == pytest.approx(d, rel=1e-3)  # scale invariant


def test_rankme_of_rank_one_matrix_is_one():
    u, v = _gaussian(100, 1, 1), _gaussian(1, 32, 2)
    assert rankme(u @ v) == pytest.approx(1.0, abs=1e-3)
    assert rankme(torch.zeros(10, 4)) == 1.0


def test_rankme_of_rank_r_matrix_with_equal_singular_values():
    q, _ = torch.linalg.qr(_gaussian(50, 50).double())
    z = q[:, :5] @ torch.linalg.qr(_gaussian(32, 32, 1).double())[0][:5]  # 5 equal singular values
    assert rankme(z) == pytest.approx(5.0, rel=1e-3)


def test_per_dim_std_collapsed_and_healthy():
    collapsed = _gaussian(1, 16).repeat(64, 1) * torch.rand(64, 1) + 0.0  # same direction, different norms
    assert per_dim_std(collapsed) == pytest.approx(0.0, abs=1e-7)
    d = 64
    assert per_dim_std(_gaussian(8192, d)) == pytest.approx(1 / math.sqrt(d), rel=0.02)


def test_mean_pairwise_cosine_matches_brute_force():
    z = _gaussian(40, 5) + 0.5
    zn = F.normalize(z.double(), dim=1)
    g = zn @ zn.T
    expected = (g.sum() - g.diagonal().sum()) / (40 * 39)
    assert mean_pairwise_cosine(z) == pytest.approx(expected.item(), abs=1e-12)
    assert mean_pairwise_cosine(np.ones((5, 3))) == pytest.approx(1.0)


def test_collapse_warnings():
    assert collapse_warnings(_gaussian(512, 32)) == []
    collapsed = _gaussian(1, 32).repeat(256, 1) + 1e-6 * _gaussian(256, 32, 1)
    msgs = collapse_warnings(collapsed)
    assert len(msgs) == 3 and any("RankMe" in m for m in msgs) and any("per-dimension std" in m for m in msgs)
    assert all("\n" not in m for m in msgs)
    # dimensional collapse only: 2 directions used out of 64, well spread
    low_rank = _gaussian(512, 2) @ _gaussian(2, 64, 1)
    msgs = collapse_warnings(low_rank)
    assert any("RankMe" in m for m in msgs) and not any("per-dimension" in m for m in msgs)
    nan = _gaussian(8, 4)
    nan[0, 0] = float("nan")
    assert len(collapse_warnings(nan)) == 1 and "non-finite" in collapse_warnings(nan)[0]


def test_user_errors():
    with pytest.raises(GeosslError):
        rankme(torch.randn(1, 4))
    with pytest.raises(GeosslError):
        per_dim_std(torch.randn(4))
