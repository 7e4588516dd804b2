"""Co-optimal transport (block-coordinate descent) against POT (the test oracle, spec ot.md §5.3)."""

from __future__ import annotations

import warnings

import pytest
import torch

from geossl.errors import GeosslError
from geossl.ot.coot import COOTResult, co_optimal_transport, co_optimal_transport2

ot = pytest.importorskip("ot")
pytest.importorskip("ot.coot")
from ot.coot import co_optimal_transport as pot_coot
from ot.coot import co_optimal_transport2 as pot_coot2


def weights(g: torch.Generator, n: int) -> torch.Tensor:
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    return w / w.sum()


def random_problem(seed: int):
    """Rectangular X (n_x, d_x), Y (n_y, d_y) and four non-uniform weight vectors."""
    g = torch.Generator().manual_seed(seed)
    nx, dx, ny, dy = 5 + seed % 7, 3 + seed % 4, 4 + (seed * 3) % 8, 2 + (seed * 5) % 5
    X = torch.randn(nx, dx, generator=g, dtype=torch.float64)
    Y = torch.randn(ny, dy, generator=g, dtype=torch.float64)
    w = {"wx_samp": weights(g, nx), "wx_feat": weights(g, dx), "wy_samp": weights(g, ny), "wy_feat": weights(g, dy)}
    return X, Y, w


def pot(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


# POT caps its network simplex at nits_ot pivots (default 500) and its Sinkhorn at tol_sinkhorn = 1e-7; the oracle is
# run with both loose enough that every block is solved to optimality, as ours are.
POT_EXACT = {"nits_ot": 100000}
POT_ENTROPIC = {"nits_ot": 100000, "tol_sinkhorn": 1e-13}
OURS_ENTROPIC = {"inner_max_iter": 100000, "inner_tol": 1e-12}

CASES = [(seed, reg) for seed in range(25) for reg in (0.0, (0.1, 0.5))]  # 25 exact + 25 entropic problems


@pytest.mark.parametrize("seed,reg", CASES, ids=[f"{s}-{'exact' if r == 0 else 'entropic'}" for s, r in CASES])
def test_matches_pot(seed: int, reg) -> None:
    X, Y, w = random_problem(seed)
    ours_kw, pot_kw = ({}, POT_EXACT) if reg == 0 else (OURS_ENTROPIC, POT_ENTROPIC)
    res = co_optimal_transport(X, Y, **w, reg=reg, return_result=True, **ours_kw)
    assert isinstance(res, COOTResult) and res.converged
    P_ref, Q_ref, log = pot(pot_coot, X, Y, **w, epsilon=reg, log=True, **pot_kw)
    assert (res.plan_samp - P_ref).abs().max() < 1e-6
    assert (res.plan_feat - Q_ref).abs().max() < 1e-6
    assert res.n_iters == len(log["distances"])  # same path, same number of BCD iterations
    v_ref = float(pot(pot_coot2, X, Y, **w, epsilon=reg, **pot_kw))
    assert abs(float(res.objective) - v_ref) < 1e-6
    assert abs(float(co_optimal_transport2(X, Y, **w, reg=reg, **ours_kw)) - v_ref) < 1e-6
    # the COOT cost written out as the 4-index sum of (X_ik - Y_jl)^2 P_ij Q_kl
    L = (X[:, None, :, None] - Y[None, :, None, :]) ** 2
    brute = torch.einsum("ijkl,ij,kl->", L, res.plan_samp, res.plan_feat)
    assert abs(float(brute) - float(res.value)) < 1e-6
    if reg == 0:
        assert float(res.objective) == float(res.value)
        assert (res.plan_samp.sum(1) - w["wx_samp"]).abs().max() < 1e-12
        assert (res.plan_feat.sum(0) - w["wy_feat"]).abs().max() < 1e-12


def test_scalar_reg_equals_pair_and_uniform_defaults() -> None:
    X, Y, _ = random_problem(3)
    P1, Q1 = co_optimal_transport(X, Y, reg=0.2, **OURS_ENTROPIC)
    P2, Q2 = co_optimal_transport(X, Y, reg=(0.2, 0.2), **OURS_ENTROPIC)
    assert torch.equal(P1, P2) and torch.equal(Q1, Q2)
    P_ref, Q_ref = pot(pot_coot, X, Y, epsilon=0.2, **POT_ENTROPIC)
    assert (P1 - P_ref).abs().max() < 1e-6 and (Q1 - Q_ref).abs().max() < 1e-6


@pytest.mark.parametrize("seed", range(5))
def test_permuted_copy_recovers_both_permutations(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(10, 6, generator=g, dtype=torch.float64)
    rows, cols = torch.randperm(10, generator=g), torch.randperm(6, generator=g)
    Y = X[rows][:, cols]
    res = co_optimal_transport(X, Y, return_result=True)
    # Y[j, l] = X[rows[j], cols[l]]: sample i goes to the j with rows[j] == i, feature k to the l with cols[l] == k
    assert torch.equal(res.plan_samp.argmax(1), torch.argsort(rows))
    assert torch.equal(res.plan_feat.argmax(1), torch.argsort(cols))
    assert abs(float(res.value)) < 1e-12


def test_envelope_gradient_matches_pot_and_formula() -> None:
    X, Y, w = random_problem(8)
    Xg, Yg = X.clone().requires_grad_(), Y.clone().requires_grad_()
    v = co_optimal_transport2(Xg, Yg, **w)
    gX, gY = torch.autograd.grad(v, (Xg, Yg))
    P, Q = co_optimal_transport(X, Y, **w)
    # written out: d/dX sum (X_ik - Y_jl)^2 P_ij Q_kl = 2 X * (wx_samp wx_feat^T) - 2 P Y Q^T
    assert (gX - (2 * X * torch.outer(w["wx_samp"], w["wx_feat"]) - 2 * P @ Y @ Q.T)).abs().max() < 1e-12
    assert (gY - (2 * Y * torch.outer(w["wy_samp"], w["wy_feat"]) - 2 * P.T @ X @ Q)).abs().max() < 1e-12
    Xr, Yr = X.clone().requires_grad_(), Y.clone().requires_grad_()
    pot(pot_coot2, Xr, Yr, **w, **POT_EXACT).backward()
    assert (gX - Xr.grad).abs().max() < 1e-10 and (gY - Yr.grad).abs().max() < 1e-10
    # exact plans are locally constant in X at a generic point: the envelope gradient is the derivative
    h = 1e-6
    with torch.no_grad():
        D = torch.randn(X.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        fd = (co_optimal_transport2(X + h * D, Y, **w) - co_optimal_transport2(X - h * D, Y, **w)) / (2 * h)
    assert abs(float(fd) - float((gX * D).sum())) < 1e-6


def test_autodiff_gradcheck_fixed_iterations() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    Y = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)

    def f(X, Y):
        res = co_optimal_transport(
            X, Y, reg=(0.5, 0.8), n_iters=3, inner_max_iter=15, inner_tol=0, grad="autodiff", return_result=True
        )
        # the plans themselves are differentiable (what a loss on log P needs)
        return res.objective, torch.log(res.plan_samp).diagonal().sum(), torch.log(res.plan_feat).diagonal().sum()

    assert torch.autograd.gradcheck(f, (X, Y), eps=1e-6, atol=1e-6)


def test_fixed_iterations_and_dtype() -> None:
    X, Y, w = random_problem(4)
    res = co_optimal_transport(X, Y, **w, n_iters=1, return_result=True)
    assert res.n_iters == 1 and not res.converged
    P_ref, Q_ref = pot(pot_coot, X, Y, **w, nits_bcd=1, **POT_EXACT)
    assert (res.plan_samp - P_ref).abs().max() < 1e-10 and (res.plan_feat - Q_ref).abs().max() < 1e-10
    P32, Q32 = co_optimal_transport(X.float(), Y.float(), **{k: v.float() for k, v in w.items()})
    assert P32.dtype == torch.float32 and Q32.dtype == torch.float32
    P64, Q64 = co_optimal_transport(X, Y, **w)
    assert (P32.double() - P64).abs().max() < 1e-5 and (Q32.double() - Q64).abs().max() < 1e-5


def test_bad_inputs() -> None:
    X, Y, w = random_problem(5)
    with pytest.raises(GeosslError, match="^X must be a non-empty matrix"):
        co_optimal_transport(X[0], Y)
    with pytest.raises(GeosslError, match="^wx_samp must have shape"):
        co_optimal_transport(X, Y, wx_samp=w["wy_samp"])
    with pytest.raises(GeosslError, match="^wy_feat has negative entries"):
        bad = w["wy_feat"].clone()
        bad[0] = -bad[0]
        co_optimal_transport(X, Y, wy_feat=bad)
    with pytest.raises(GeosslError, match="^wx_feat must sum to 1"):
        co_optimal_transport(X, Y, wx_feat=2 * w["wx_feat"])
    with pytest.raises(GeosslError, match="^reg must be finite and >= 0"):
        co_optimal_transport(X, Y, reg=-1.0)
    with pytest.raises(GeosslError, match="^reg must be a number or a pair"):
        co_optimal_transport(X, Y, reg=(0.1, 0.2, 0.3))
    with pytest.raises(GeosslError, match="^grad='autodiff' needs entropic"):
        co_optimal_transport2(X, Y, reg=(0.1, 0.0), grad="autodiff")
    with pytest.raises(GeosslError, match="^Y contains NaN"):
        co_optimal_transport(X, torch.full((3, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(GeosslError, match="^n_iters must be"):
        co_optimal_transport(X, Y, n_iters=0)
