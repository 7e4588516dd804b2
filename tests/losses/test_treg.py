"""T-REG / T-REGS: values from the definitions, the simplex and uniformity theorems, and the collapse cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import cdist

from geossl.errors import GeosslError
from geossl.geometry.mst import mst_length
from geossl.losses.treg import TREG, TREGSLoss, mst_loss, sphere_loss, treg


def test_terms_equal_their_definitions() -> None:
    z = torch.randn(20, 6, dtype=torch.float64)
    x = z.numpy()
    length = float(minimum_spanning_tree(cdist(x, x)).sum())
    assert mst_loss(z).item() == pytest.approx(-length / 20, rel=1e-10)
    assert sphere_loss(z).item() == pytest.approx(float(((np.linalg.norm(x, axis=1) - 1) ** 2).mean()), rel=1e-12)
    assert treg(z, gamma=0.3, lam=0.5).item() == pytest.approx(-0.3 * length / 20 + 0.5 * sphere_loss(z).item(), rel=1e-10)


def test_tregs_is_mse_plus_treg_on_each_view() -> None:
    a, b = torch.randn(16, 8, dtype=torch.float64), torch.randn(16, 8, dtype=torch.float64)
    expected = 10 * F.mse_loss(a, b) + TREG()(a) + TREG()(b)
    assert TREGSLoss()(a, b).item() == pytest.approx(expected.item(), rel=1e-12)


def _optimise(n: int, d: int, gamma: float, lam: float, steps: int, lr: float, seed: int = 0) -> torch.Tensor:
    """Gradient descent of T-REG on free point positions, from a small clustered start."""
    g = torch.Generator().manual_seed(seed)
    z = (0.1 * torch.randn(n, d, generator=g, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.SGD([z], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        (n * treg(z, gamma, lam)).backward()  # the n· undoes the 1/n of both terms: per-point forces of order 1
        opt.step()
    return z.detach()


def _mean_offdiag_cos(z: torch.Tensor) -> float:
    u = F.normalize(z, dim=1)
    n = u.shape[0]
    return float(((u @ u.T).sum() - n) / (n * (n - 1)))


@pytest.mark.parametrize(
    ("lam", "radius", "steps"), [pytest.param(1.0, 1.695, 3000, marks=pytest.mark.slow), (10.0, 1.070, 400)]
)
def test_n_le_d_plus_1_reaches_the_regular_simplex(lam: float, radius: float, steps: int) -> None:
    """Spec table: n = d = 64, γ = 1: mean pairwise cosine −1/(n−1), radius 1 + γĒ/(2λ) with Ē ≈ √2 per point."""
    z = _optimise(64, 64, 1.0, lam, steps=steps, lr=0.05)
    assert _mean_offdiag_cos(z) == pytest.approx(-1 / 63, abs=2e-4)
    assert z.norm(dim=1).mean().item() == pytest.approx(radius, abs=0.02)


def test_many_points_in_3d_spread_over_the_sphere() -> None:
    """n ≫ d: the directions become near-uniform on S² (mean cosine ≈ 0, no hemisphere left empty)."""
    z = _optimise(200, 3, 1.0, 1.0, steps=600, lr=0.05)
    u = F.normalize(z, dim=1)
    assert abs(_mean_offdiag_cos(z)) < 0.01
    assert u.mean(0).norm().item() < 0.02  # the resultant of uniform directions vanishes
    # every octant of the sphere holds a fair share of the 200 directions (25 expected)
    octant = ((u > 0).long() * torch.tensor([1, 2, 4])).sum(1)
    assert torch.bincount(octant, minlength=8).min().item() >= 12


def test_gradient_of_the_mst_term_pushes_edge_ends_apart() -> None:
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    treg(z, gamma=1.0, lam=0.0).backward()
    # L_E = −‖z0 − z1‖/2: descending it moves z0 left and z1 right
    torch.testing.assert_close(z.grad, torch.tensor([[0.5, 0.0], [-0.5, 0.0]], dtype=torch.float64))


def _train_linear_encoder(loss_fn, steps: int = 600, seed: int = 0) -> torch.Tensor:
    """A linear encoder on noisy 32-d views of 64 points; returns the singular values of its embeddings."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 32, generator=g, dtype=torch.float64)
    enc = torch.nn.Linear(32, 16, dtype=torch.float64)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(enc.parameters(), lr=1.0)
    for _ in range(steps):
        a = x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        b = x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)
        opt.zero_grad()
        loss_fn(enc(a), enc(b)).backward()
        opt.step()
    with torch.no_grad():
        z = enc(x)
        return torch.linalg.svdvals(z - z.mean(0))


def test_invariance_alone_collapses_and_tregs_does_not() -> None:
    s_mse = _train_linear_encoder(lambda a, b: 10 * F.mse_loss(a, b))
    s_tregs = _train_linear_encoder(TREGSLoss(beta=10, gamma=0.2, lam=0.02))
    assert s_mse[0].item() < 1e-4  # every input mapped to (nearly) one point
    # T-REGS keeps a spread, full-rank embedding: the effective rank stays close to the dimension 16
    p = s_tregs / s_tregs.sum()
    effective_rank = torch.exp(-(p * p.log()).sum()).item()
    assert s_tregs[0].item() > 5 and effective_rank > 12


def test_bad_input() -> None:
    with pytest.raises(GeosslError, match="at least 2"):
        treg(torch.randn(1, 4))
    with pytest.raises(GeosslError, match="same shape"):
        TREGSLoss()(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(GeosslError, match="non-negative"):
        TREG(gamma=-1)


def test_normalize_option_regularises_the_unit_vectors() -> None:
    # For scale-free losses (BYOL): T-REG on F.normalize(z), so the value ignores the scale of z and has no sphere term.
    torch.manual_seed(0)
    z = torch.randn(24, 8)
    reg = TREG(normalize=True)
    expected = -0.2 * mst_length(F.normalize(z, dim=1)) / 24
    assert torch.allclose(reg(z), expected, atol=1e-6)
    assert torch.allclose(reg(37.0 * z), reg(z), atol=1e-5)
    assert not torch.allclose(TREG()(37.0 * z), TREG()(z))
