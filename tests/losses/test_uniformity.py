"""Alignment + uniformity losses: the exact sliced W₂ to Unif(S^{d−1}), SSW-SSL, SW-SSL and Wang–Isola."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from geossl.errors import GeosslError
from geossl.eval.representation import uniformity as uniformity_metric
from geossl.losses.uniformity import (
    AlignUniformLoss,
    SSWUniformityLoss,
    SWUniformityLoss,
    alignment_loss,
    ssw_uniformity,
    sw_uniformity,
    wang_isola_uniformity,
)
from geossl.ot.sliced import spherical_sliced_wasserstein_to_uniform
from geossl.ot.sphere_uniform import sliced_wasserstein_to_uniform_sphere


def _uniform_sphere(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=1)


@pytest.mark.parametrize("d", [2, 3, 5, 16])
def test_exact_sliced_w2_equals_numerical_quantile_integral(d: int) -> None:
    """W₂² per slice = ∫₀¹ (F_x^{-1}(s) − F_T^{-1}(s))² ds with T = 2·Beta((d−1)/2, (d−1)/2) − 1, on a fine grid."""
    x = torch.randn(37, d, dtype=torch.float64)
    theta = F.normalize(torch.randn(d, 4, dtype=torch.float64), dim=0)
    got = sliced_wasserstein_to_uniform_sphere(x, projections=theta, squared=True).item()
    s = (np.arange(200_000) + 0.5) / 200_000
    target = 2 * stats.beta.ppf(s, (d - 1) / 2, (d - 1) / 2) - 1
    proj = np.sort((x @ theta).numpy().T, axis=1)
    per_slice = [np.mean((p[np.minimum((s * 37).astype(int), 36)] - target) ** 2) for p in proj]
    assert got == pytest.approx(float(np.mean(per_slice)), rel=1e-4)


def test_exact_sliced_w2_matches_pot_against_a_large_uniform_sample() -> None:
    ot = pytest.importorskip("ot")
    x = torch.randn(64, 4, dtype=torch.float64) * 0.7
    theta = F.normalize(torch.randn(4, 8, dtype=torch.float64), dim=0)
    sample = _uniform_sphere(64 * 2000, 4)
    ref = ot.sliced_wasserstein_distance(x.numpy(), sample.numpy(), n_projections=8, projections=theta.numpy()) ** 2
    # Monte-Carlo reference: its target sample of 128,000 points is off by a few 1e-3 relative
    assert sliced_wasserstein_to_uniform_sphere(x, projections=theta, squared=True).item() == pytest.approx(ref, rel=1.5e-2)


def test_uniform_points_give_penalties_near_zero_and_clusters_do_not() -> None:
    u = _uniform_sphere(8192, 3)
    cluster = F.normalize(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) + 0.1 * torch.randn(8192, 3, dtype=torch.float64), dim=1)
    for term in (ssw_uniformity, sw_uniformity):
        assert term(u, n_projections=50, seed=0).item() < 1e-3
        assert term(cluster, n_projections=50, seed=0).item() > 0.05


def test_ssw_term_is_the_squared_spherical_sliced_wasserstein() -> None:
    z = _uniform_sphere(100, 5, seed=3)
    value = ssw_uniformity(z, n_projections=20, seed=1)
    assert value.item() == pytest.approx(spherical_sliced_wasserstein_to_uniform(z, 20, seed=1).item() ** 2, rel=1e-12)


def test_wang_isola_uniformity_equals_the_evaluation_metric() -> None:
    z = _uniform_sphere(300, 8, seed=2)
    assert wang_isola_uniformity(z).item() == pytest.approx(uniformity_metric(z, t=2.0), rel=1e-10)
    # a collapsed batch has the maximal value 0
    assert wang_isola_uniformity(torch.ones(10, 3, dtype=torch.float64) / math.sqrt(3)).item() == pytest.approx(0.0, abs=1e-12)


def test_losses_are_alignment_plus_weighted_uniformity() -> None:
    a, b = _uniform_sphere(64, 3, 0), _uniform_sphere(64, 3, 1)
    align = ((a - b) ** 2).sum(1).mean()
    assert SSWUniformityLoss(lam=20, seed=4)(a, b).item() == pytest.approx(
        (align + 10 * (ssw_uniformity(a, 10, 4) + ssw_uniformity(b, 10, 4))).item(), rel=1e-12)
    assert SWUniformityLoss(lam=1, seed=4)(a, b).item() == pytest.approx(
        (align + 0.5 * (sw_uniformity(a, 10, 4) + sw_uniformity(b, 10, 4))).item(), rel=1e-12)
    assert AlignUniformLoss()(a, b).item() == pytest.approx(
        (alignment_loss(a, b) + 0.5 * (wang_isola_uniformity(a) + wang_isola_uniformity(b))).item(), rel=1e-12)


def test_ssw_gradient_flow_spreads_a_clustered_start() -> None:
    """Spec CPU check: descending SSW₂² alone on S² from a cluster decreases the Wang–Isola uniformity."""
    z = F.normalize(torch.tensor([1.0, 0.0, 0.0]) + 0.2 * torch.randn(256, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    start = wang_isola_uniformity(z).item()
    history = []
    for step in range(150):
        z.requires_grad_(True)
        (256 * ssw_uniformity(z, n_projections=20, seed=step)).backward()
        with torch.no_grad():
            z = F.normalize(z - 0.5 * z.grad, dim=1)
        if step % 50 == 49:
            history.append(wang_isola_uniformity(z).item())
    # uniform on S²: log E exp(−2‖x − y‖²) = log((1 − e⁻⁸)/8) ≈ −2.08
    assert history[0] < start and history[-1] < history[0] and history[-1] < -1.9


def _train_sphere_encoder(loss_fn, steps: int = 300, seed: int = 0) -> torch.Tensor:
    """A linear map to S² trained on noisy views of 128 points; returns the embeddings of the clean points."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 16, generator=g)
    torch.manual_seed(seed)
    enc = torch.nn.Linear(16, 3)
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    for _ in range(steps):
        a, b = x + 0.3 * torch.randn(x.shape, generator=g), x + 0.3 * torch.randn(x.shape, generator=g)
        opt.zero_grad()
        loss_fn(F.normalize(enc(a), dim=1), F.normalize(enc(b), dim=1)).backward()
        opt.step()
    with torch.no_grad():
        return F.normalize(enc(x), dim=1)


def test_alignment_alone_collapses_and_the_ssw_term_prevents_it() -> None:
    collapsed = _train_sphere_encoder(lambda a, b: alignment_loss(a, b))
    spread = _train_sphere_encoder(SSWUniformityLoss(lam=20, n_projections=10))
    assert wang_isola_uniformity(collapsed).item() > -0.1  # every point at (nearly) one place
    assert wang_isola_uniformity(spread).item() < -1.5


def test_bad_input() -> None:
    with pytest.raises(GeosslError, match="same shape"):
        SSWUniformityLoss()(_uniform_sphere(8, 3), _uniform_sphere(9, 3))
    with pytest.raises(GeosslError, match="d >= 2"):
        sliced_wasserstein_to_uniform_sphere(torch.randn(5, 1))
    with pytest.raises(GeosslError, match="non-negative"):
        SWUniformityLoss(lam=-1.0)
