"""L_Sample, L_Feature and L_COOT ([B] §3.1, spec ssl_methods.md §2.1) against analytic values, POT and the
library's co-optimal transport."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from geossl.errors import GeosslError
from geossl.losses.ot_ssl import (
    COOTLoss,
    OTFeatureLoss,
    OTSampleLoss,
    coot_loss,
    ot_feature_loss,
    ot_sample_loss,
)
from geossl.ot.coot import co_optimal_transport

ot = pytest.importorskip("ot")
pot_coot = pytest.importorskip("ot.coot").co_optimal_transport


def _orthonormal_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q[:n]


def _random(n: int, d: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


def _unit(z: torch.Tensor) -> np.ndarray:
    z = z.detach().numpy()
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _pot_log_plan(M: np.ndarray, reg: float, n_iters: int) -> np.ndarray:
    """log of POT's log-domain Sinkhorn plan after exactly ``n_iters`` iterations (uniform marginals)."""
    n, m = M.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "did not converge" is expected with a handful of iterations
        _, log = ot.sinkhorn(np.full(n, 1 / n), np.full(m, 1 / m), M, reg, method="sinkhorn_log",
                             numItermax=n_iters, stopThr=-1.0, log=True)
    return log["log_u"][:, None] + log["log_v"][None, :] - M / reg


# ------------------------------------------------------------------------------------------------ L_Sample


def test_sample_loss_at_the_permutation_plan_is_2n_log_2n():
    # z_b = z_a with orthonormal rows: cost 0 on the pairing, 1 elsewhere, so at eps = 0.01 the plan is the
    # permutation / 2N up to e^-100; every plan entry is <= 1/(2N), hence the minimum 2N log 2N.
    z = _orthonormal_rows(8, 16)
    loss = ot_sample_loss(z, z.clone(), eps=0.01, n_iters=5)
    assert float(loss) == pytest.approx(16 * math.log(16), abs=1e-9)
    assert float(loss) == pytest.approx(44.36, abs=5e-3)  # the spec's number for N = 8
    assert float(ot_sample_loss(z, z.clone(), normalize_rows=True)) == pytest.approx(0.0, abs=1e-9)
    assert float(ot_sample_loss(z, z.clone(), layout="cross")) == pytest.approx(8 * math.log(8), abs=1e-9)
    assert float(ot_sample_loss(z, z.clone(), reduction="mean")) == pytest.approx(math.log(16), abs=1e-9)


def test_sample_loss_is_larger_for_a_shuffled_pairing_and_bounded_below():
    z = _orthonormal_rows(8, 16)
    shuffled = z[torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])]  # a derangement: no view is paired with its own image
    bound = 16 * math.log(16)
    assert float(ot_sample_loss(z, shuffled)) > bound + 100
    # columns are exact after every iteration, so even 5 iterations keep every entry <= 1/(2N)
    for seed in range(5):
        z_a, z_b = _random(8, 16, seed)
        assert float(ot_sample_loss(z_a, z_b)) >= bound - 1e-9
        assert float(ot_sample_loss(z_a, z_b, layout="cross")) >= 8 * math.log(8) - 1e-9


@pytest.mark.parametrize("eps,n_iters", [(0.01, 5), (0.05, 1), (0.1, 20)])
def test_sample_loss_equals_the_formula_with_pot_at_fixed_iterations(eps, n_iters):
    z_a, z_b = _random(6, 5, seed=3)
    z = np.concatenate([_unit(z_a), _unit(z_b)])
    M = 1 - z @ z.T
    np.fill_diagonal(M, 50.0)  # forbidden pairs: e^(-50/eps) is 0 in float64
    # POT updates columns first, geossl rows first; on this symmetric problem POT's plan is the transpose of
    # geossl's, and the loss (both outer diagonals) is invariant under transposition.
    log_pi = _pot_log_plan(M, eps, n_iters)
    n = 6
    expected = -sum(log_pi[i, i + n] + log_pi[i + n, i] for i in range(n))
    assert float(ot_sample_loss(z_a, z_b, eps=eps, n_iters=n_iters)) == pytest.approx(expected, rel=1e-11, abs=1e-9)


@pytest.mark.parametrize("eps,n_iters", [(0.01, 5), (0.2, 3)])
def test_cross_layout_equals_pot_at_fixed_iterations(eps, n_iters):
    z_a, z_b = _random(7, 4, seed=4)
    M = 1 - _unit(z_a) @ _unit(z_b).T
    # POT (columns first) on M^T runs geossl's iterates (rows first) on M, transposed; the diagonal is unchanged.
    log_pi = _pot_log_plan(M.T, eps, n_iters)
    expected = -np.trace(log_pi)
    got = ot_sample_loss(z_a, z_b, eps=eps, n_iters=n_iters, layout="cross")
    assert float(got) == pytest.approx(expected, rel=1e-11, abs=1e-9)


def test_cross_layout_equals_pot_at_convergence():
    z_a, z_b = _random(6, 4, seed=5)
    M = 1 - _unit(z_a) @ _unit(z_b).T
    plan = ot.sinkhorn(np.full(6, 1 / 6), np.full(6, 1 / 6), M, 0.1, method="sinkhorn_log", numItermax=5000, stopThr=1e-15)
    expected = -np.log(np.diag(plan)).sum()
    got = ot_sample_loss(z_a, z_b, eps=0.1, n_iters=3000, layout="cross")
    assert float(got) == pytest.approx(expected, rel=1e-9)


def test_marginal_error_is_the_row_error_of_the_plan():
    z_a, z_b = _random(6, 5, seed=6)
    z = np.concatenate([_unit(z_a), _unit(z_b)])
    M = 1 - z @ z.T
    np.fill_diagonal(M, 50.0)
    plan_pot = np.exp(_pot_log_plan(M, 0.01, 5))  # = geossl's plan transposed (symmetric problem)
    expected = np.abs(plan_pot.sum(0) - 1 / 12).sum()
    _, info = ot_sample_loss(z_a, z_b, return_info=True)
    assert float(info["marginal_error"]) == pytest.approx(expected, rel=1e-8, abs=1e-14)
    assert float(info["marginal_error"]) > 1e-3  # 5 iterations at eps = 0.01 do not give a feasible plan
    module = OTSampleLoss()
    module(z_a, z_b)
    assert torch.equal(module.last_marginal_error, info["marginal_error"])


@pytest.mark.parametrize("layout", ["full", "cross"])
def test_float32_eps_001_five_iterations_gives_finite_loss_and_gradients(layout):
    g = torch.Generator().manual_seed(0)
    z_a = torch.randn(32, 16, generator=g, requires_grad=True)
    z_b = torch.randn(32, 16, generator=g, requires_grad=True)
    loss = OTSampleLoss(eps=0.01, n_iters=5, layout=layout)(z_a, z_b)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z_a.grad).all() and z_a.grad.abs().sum() > 0
    # a badly wrong pairing: target entries near e^-200 would be log 0 = -inf from the plan itself
    far = torch.nn.functional.normalize(torch.randn(32, 16, generator=g), dim=1)
    z = far.clone().requires_grad_(True)
    bad = ot_sample_loss(z, -far, layout=layout)
    bad.backward()
    assert torch.isfinite(bad) and float(bad.detach()) > 1000 and torch.isfinite(z.grad).all()


def test_sample_loss_gradient_matches_finite_differences():
    z_a, z_b = _random(3, 4, seed=7)
    z_a.requires_grad_(True)
    z_b.requires_grad_(True)
    for layout in ("full", "cross"):
        assert torch.autograd.gradcheck(
            lambda a, b, layout=layout: ot_sample_loss(a, b, eps=0.2, n_iters=5, layout=layout), (z_a, z_b)
        )


# ------------------------------------------------------------------------------------------------ L_Feature


def _hadamard_features() -> torch.Tensor:
    """8 x 7 rows of a Hadamard matrix without its constant column: columns centred, orthogonal, equal norms."""
    h = torch.tensor([[1.0]], dtype=torch.float64)
    for _ in range(3):
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h[:, 1:]


def test_feature_loss_minimum_d_log_d_at_the_identity():
    z = _hadamard_features()  # Barlow Twins cross-correlation of z with itself = I (to the 1e-5 BN guard)
    d = z.shape[1]
    assert float(ot_feature_loss(z, z.clone(), feature_norm="bt")) == pytest.approx(d * math.log(d), abs=1e-6)
    assert float(ot_feature_loss(z, z.clone(), normalize_rows=True)) == pytest.approx(0.0, abs=1e-6)
    eye = torch.eye(6, dtype=torch.float64)  # raw: rho = z^T z = I for one-hot rows
    assert float(ot_feature_loss(eye, eye.clone(), feature_norm="raw")) == pytest.approx(6 * math.log(6), abs=1e-9)
    permuted = z[:, torch.tensor([1, 2, 3, 4, 5, 6, 0])]
    assert float(ot_feature_loss(z, permuted)) > d * math.log(d) + 100
    for seed in range(3):
        z_a, z_b = _random(16, 7, seed)
        assert float(ot_feature_loss(z_a, z_b)) >= d * math.log(d) - 1e-9


@pytest.mark.parametrize("feature_norm", ["bt", "raw"])
def test_feature_loss_equals_the_formula_with_pot(feature_norm):
    z_a, z_b = _random(10, 5, seed=8)
    a, b = _unit(z_a), _unit(z_b)
    if feature_norm == "bt":
        # Barlow Twins: each feature centred and scaled over the batch (biased variance + 1e-5), then A^T B / N
        a = (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)
        b = (b - b.mean(0)) / np.sqrt(b.var(0) + 1e-5)
        rho = a.T @ b / 10
    else:
        rho = a.T @ b
    C = 1 - rho
    for eps, n_iters in ((0.01, 5), (0.3, 4)):
        log_pi = _pot_log_plan(C.T, eps, n_iters)  # transposed problem = geossl's iterates (see above)
        got = ot_feature_loss(z_a, z_b, eps=eps, n_iters=n_iters, feature_norm=feature_norm)
        assert float(got) == pytest.approx(-np.trace(log_pi), rel=1e-11, abs=1e-9)


def test_feature_loss_float32_finite_with_gradients():
    g = torch.Generator().manual_seed(1)
    z_a = torch.randn(64, 32, generator=g, requires_grad=True)
    z_b = (z_a.detach() + 0.1 * torch.randn(64, 32, generator=g)).requires_grad_(True)
    module = OTFeatureLoss()
    loss = module(z_a, z_b)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_a.grad).all() and z_a.grad.abs().sum() > 0
    assert module.last_marginal_error is not None and torch.isfinite(module.last_marginal_error)


# ------------------------------------------------------------------------------------------------ L_COOT


def test_coot_loss_finite_with_gradients_in_float32():
    g = torch.Generator().manual_seed(2)
    for layout in ("cross", "full"):
        z_a = torch.randn(16, 8, generator=g, requires_grad=True)
        z_b = torch.randn(16, 8, generator=g, requires_grad=True)
        module = COOTLoss(layout=layout)
        loss = module(z_a, z_b)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(z_a.grad).all() and z_a.grad.abs().sum() > 0 and z_b.grad.abs().sum() > 0
        assert set(module.last_info) >= {"marginal_error_samples", "marginal_error_features", "eps"}


def test_coot_loss_equals_the_libraries_co_optimal_transport_plans():
    z_a, z_b = _random(6, 4, seed=9)
    z_a.requires_grad_(True)
    z_b.requires_grad_(True)
    X = torch.nn.functional.normalize(z_a, dim=1)
    Y = torch.nn.functional.normalize(z_b, dim=1)
    # reg_scale="mean": eps times the mean of the 4-index COOT cost (X_ik - Y_jl)^2, written out
    eps = 0.05 * float(((X[:, None, :, None] - Y[None, :, None, :]) ** 2).mean().detach())
    P, Q = co_optimal_transport(X, Y, reg=eps, n_iters=3, inner_max_iter=7, inner_tol=0.0, grad="autodiff")
    expected = -torch.log(torch.diagonal(P)).sum() - 2.0 * torch.log(torch.diagonal(Q)).sum()
    loss, info = coot_loss(z_a, z_b, 0.05, lam_f=2.0, n_iters=3, inner_iters=7, return_info=True)
    assert float(info["eps"]) == pytest.approx(eps, rel=1e-12)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-10)
    g_ours = torch.autograd.grad(loss, (z_a, z_b))
    g_ref = torch.autograd.grad(expected, (z_a, z_b))
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_coot_loss_equals_the_formula_with_pot_plans():
    # POT's block-coordinate descent with 3 iterations, each block solved to convergence (log-domain Sinkhorn):
    # the same path as 3 outer iterations of 300 inner ones at eps = 0.1
    z_a, z_b = _random(6, 4, seed=10)
    X, Y = _unit(z_a), _unit(z_b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P, Q = pot_coot(X, Y, epsilon=0.1, nits_bcd=3, tol_bcd=0, early_stopping_tol=0, nits_ot=100000,
                        tol_sinkhorn=1e-15, method_sinkhorn="sinkhorn_log")
    expected = -np.log(np.diag(P)).sum() - np.log(np.diag(Q)).sum()
    with torch.no_grad():
        got = coot_loss(z_a, z_b, 0.1, reg_scale=None, n_iters=3, inner_iters=300)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_coot_full_layout_masks_the_sample_diagonal():
    z_a, z_b = _random(5, 3, seed=11)
    loss_full, _ = coot_loss(z_a, z_b, layout="full", return_info=True)
    assert torch.isfinite(loss_full)
    # with the diagonal allowed, each view would be matched to itself (cost 0), not to its pair
    from geossl.losses.ot_ssl import coot_log_plans

    Z = torch.nn.functional.normalize(torch.cat([z_a, z_b]), dim=1)
    log_P, _, _, _ = coot_log_plans(Z, Z, 0.01, 5, 10, sample_mask=torch.eye(10, dtype=torch.bool))
    assert float(torch.diagonal(log_P).exp().max()) == 0.0
    assert torch.allclose(log_P.exp().sum(0), torch.full((10,), 0.1, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "call",
    [
        lambda: OTSampleLoss(eps=0),
        lambda: OTSampleLoss(n_iters=0),
        lambda: OTSampleLoss(layout="diag"),
        lambda: OTFeatureLoss(feature_norm="zscore"),
        lambda: COOTLoss(reg_scale="max"),
        lambda: COOTLoss(lam_s=-1),
        lambda: ot_sample_loss(torch.randn(4, 3), torch.randn(5, 3)),
        lambda: ot_feature_loss(torch.randn(1, 3), torch.randn(1, 3)),
    ],
)
def test_bad_arguments_raise_geossl_error(call):
    with pytest.raises(GeosslError):
        call()
