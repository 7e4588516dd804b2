"""The scaling solver with absorption (``method="stabilized"``) against the logsumexp solver and POT.

Both solvers compute the same iterates in exact arithmetic, so they must agree at every fixed number of iterations,
stop at the same iteration, and match POT's log-domain Sinkhorn in every regime: plain scaling (large reg),
absorption (scalings leaving [e^-tau, e^tau]) and logsumexp fall-back (the whole kernel underflows, reg = 1e-3).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import importlib
from geossl.errors import GeosslError
from geossl.ot import sinkhorn, sinkhorn2

ot = pytest.importorskip("ot")
sinkhorn_module = importlib.import_module("geossl.ot.sinkhorn")


def problem(seed: int, n: int, m: int, scale: float, dtype=torch.float64, batch: int | None = None):
    g = torch.Generator().manual_seed(seed)
    shape_a = (batch, n) if batch else (n,)
    shape_b = (batch, m) if batch else (m,)
    a = torch.rand(shape_a, generator=g, dtype=dtype) + 0.05
    b = torch.rand(shape_b, generator=g, dtype=dtype) + 0.05
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    M = torch.rand((batch, n, m) if batch else (n, m), generator=g, dtype=dtype) * scale
    return a, b, M


REGIMES = [(1.0, 1.0), (1.0, 0.05), (10.0, 0.01), (10.0, 1e-3)]  # (cost scale, reg)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("scale,reg", REGIMES)
def test_same_iterates_as_logsumexp(seed: int, scale: float, reg: float) -> None:
    a, b, M = problem(seed, 5 + seed, 9 - seed % 3, scale)
    for n_iters in (1, 7, 60):
        P_log = sinkhorn(a, b, M, reg, n_iters=n_iters, method="log")
        P_stab = sinkhorn(a, b, M, reg, n_iters=n_iters, method="stabilized")
        assert torch.allclose(P_stab, P_log, atol=1e-12, rtol=0), (n_iters, (P_stab - P_log).abs().max())
    r_log = sinkhorn(a, b, M, reg, max_iter=20000, tol=1e-9, method="log", return_result=True)
    r_stab = sinkhorn(a, b, M, reg, max_iter=20000, tol=1e-9, method="stabilized", return_result=True)
    assert r_stab.n_iters == r_log.n_iters
    assert torch.allclose(r_stab.f, r_log.f, atol=1e-9) and torch.allclose(r_stab.g, r_log.g, atol=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_matches_pot_log_domain(seed: int) -> None:
    scale, reg = REGIMES[seed % len(REGIMES)]
    a, b, M = problem(100 + seed, 4 + seed % 9, 3 + (seed * 7) % 11, scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P_ref = ot.sinkhorn(a, b, M, reg, method="sinkhorn_log", numItermax=100000, stopThr=1e-13)
    res = sinkhorn(a, b, M, reg, max_iter=100000, tol=1e-12, method="stabilized", return_result=True)
    assert res.converged
    assert torch.allclose(res.plan, P_ref, atol=1e-6, rtol=0)
    assert abs(float(res.value) - float((P_ref * M).sum())) < 1e-6


def test_every_regime_takes_its_path(monkeypatch) -> None:
    """Large reg never leaves plain scaling; small reg has to fall back to logsumexp half-steps."""
    calls = {"lse": 0}
    real = torch.logsumexp

    def counting(*args, **kwargs):
        calls["lse"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "logsumexp", counting)
    a, b, M = problem(0, 20, 30, 1.0)
    sinkhorn(a, b, M, 1.0, n_iters=50, method="stabilized")
    assert calls["lse"] == 0
    a, b, M = problem(0, 20, 30, 10.0)
    sinkhorn(a, b, M, 1e-3, n_iters=50, method="stabilized")  # exp(-M / reg) is 0 everywhere at the start
    assert calls["lse"] > 0


def test_float32_small_reg_is_finite_and_converges() -> None:
    a, b, M = problem(3, 64, 50, 10.0, dtype=torch.float32)
    res = sinkhorn(a, b, M, 1e-3, max_iter=20000, tol=1e-4, method="stabilized", return_result=True)
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.f).all() and torch.isfinite(res.g).all()
    assert res.converged and float(res.marginal_error) < 1e-4
    ref = sinkhorn(a.double(), b.double(), M.double(), 1e-3, max_iter=20000, tol=1e-10, method="log")
    assert torch.allclose(res.plan.double(), ref, atol=1e-4)


def test_batched_and_cpu_blocks(monkeypatch) -> None:
    a, b, M = problem(5, 12, 17, 1.0, batch=9)
    monkeypatch.setattr(sinkhorn_module, "CPU_BLOCK_ELEMENTS", 2 * 12 * 17)  # 5 blocks of at most 2 problems
    P = sinkhorn(a, b, M, 0.05, n_iters=80, method="stabilized")
    for i in range(9):
        assert torch.allclose(P[i], sinkhorn(a[i], b[i], M[i], 0.05, n_iters=80, method="log"), atol=1e-12)


def test_zero_mass_points() -> None:
    a, b, M = problem(1, 6, 7, 1.0)
    a = a.clone()
    a[2] = 0.0
    a = a / a.sum()
    for reg in (0.05, 1e-3):
        P_stab = sinkhorn(a, b, M, reg, n_iters=40, method="stabilized")
        P_log = sinkhorn(a, b, M, reg, n_iters=40, method="log")
        assert torch.isfinite(P_stab).all() and float(P_stab[2].abs().max()) == 0.0
        assert torch.allclose(P_stab, P_log, atol=1e-12)


def test_auto_picks_logsumexp_when_differentiating() -> None:
    a, b, M = problem(2, 5, 6, 1.0)
    M = M.requires_grad_()
    v = sinkhorn2(a, b, M, 0.1, n_iters=30)  # auto: log (graph through the iterations)
    (g_auto,) = torch.autograd.grad(v, M)
    v_log = sinkhorn2(a, b, M, 0.1, n_iters=30, method="log")
    (g_log,) = torch.autograd.grad(v_log, M)
    assert torch.allclose(g_auto, g_log, atol=0, rtol=0)
    # envelope gradients do not depend on how the potentials were found
    v_env = sinkhorn2(a, b, M, 0.1, grad="envelope", tol=1e-12, max_iter=10000)
    v_env_log = sinkhorn2(a, b, M, 0.1, grad="envelope", tol=1e-12, max_iter=10000, method="log")
    (g1,) = torch.autograd.grad(v_env, M)
    (g2,) = torch.autograd.grad(v_env_log, M)
    assert torch.allclose(g1, g2, atol=1e-10)


def test_unknown_method() -> None:
    with pytest.raises(GeosslError, match="method must be one of"):
        sinkhorn(None, None, torch.rand(3, 4), 0.1, method="sinkhorn_log")
