"""Log-domain Sinkhorn against POT (the test oracle, spec ot.md §2.8)."""

from __future__ import annotations

import warnings

import pytest
import torch

from geossl.errors import GeosslError
from geossl.ot.sinkhorn import SinkhornResult, sinkhorn, sinkhorn2

ot = pytest.importorskip("ot")

TIGHT = {"max_iter": 50000, "tol": 1e-13}
POT_TIGHT = {"method": "sinkhorn_log", "numItermax": 50000, "stopThr": 1e-14}


def random_problem(seed: int, n: int, m: int, uniform: bool = False, scale: float = 1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    if uniform:
        a = torch.full((n,), 1.0 / n, dtype=dtype)
        b = torch.full((m,), 1.0 / m, dtype=dtype)
    else:
        a = torch.rand(n, generator=g, dtype=dtype) + 0.05
        b = torch.rand(m, generator=g, dtype=dtype) + 0.05
        a, b = a / a.sum(), b / b.sum()
    x = torch.randn(n, 2, generator=g, dtype=dtype)
    y = torch.randn(m, 2, generator=g, dtype=dtype)
    M = torch.cdist(x, y) ** 2 * scale
    return a, b, M


CASES = [(seed, reg) for seed in range(12) for reg in (0.05, 1.0)]  # 24 problems


@pytest.mark.parametrize("seed,reg", CASES)
def test_matches_pot(seed: int, reg: float) -> None:
    n, m = 3 + seed % 7, 4 + (seed * 5) % 9  # rectangular, varied
    a, b, M = random_problem(seed, n, m, uniform=seed % 4 == 3)
    res = sinkhorn(a, b, M, reg, **TIGHT, return_result=True)
    assert isinstance(res, SinkhornResult) and res.converged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P_ref = ot.sinkhorn(a, b, M, reg, **POT_TIGHT)
        v_ref = ot.sinkhorn2(a, b, M, reg, **POT_TIGHT)
    assert res.plan.shape == (n, m)
    assert torch.allclose(res.plan, P_ref, atol=1e-6, rtol=0)
    v = sinkhorn2(a, b, M, reg, **TIGHT)
    assert abs(float(v) - float(v_ref)) < 1e-6
    # POT's sinkhorn2 is the linear term <P, M>
    assert abs(float(v) - float((P_ref * M).sum())) < 1e-6
    # marginals
    assert torch.allclose(res.plan.sum(0), b, atol=1e-10)
    assert torch.allclose(res.plan.sum(1), a, atol=1e-10)
    # potentials reproduce the plan; objective = <P, M> - reg H(P)
    P2 = torch.exp((res.f[:, None] + res.g[None, :] - M) / reg)
    assert torch.allclose(P2, res.plan, atol=1e-12)
    H = -(res.plan * (torch.log(res.plan) - 1)).sum()
    assert torch.allclose(res.objective, res.value - reg * H, atol=1e-10)


def test_uniform_none_and_fixed_iterations() -> None:
    a, b, M = random_problem(0, 5, 6, uniform=True)
    P1 = sinkhorn(None, None, M, 0.3, **TIGHT)
    P2 = sinkhorn(a, b, M, 0.3, **TIGHT)
    assert torch.allclose(P1, P2, atol=1e-14)
    res = sinkhorn(a, b, M, 0.3, n_iters=7, return_result=True)
    assert res.n_iters == 7
    assert res.marginal_error.shape == ()
    assert torch.allclose(res.plan.sum(0), b, atol=1e-12)  # columns exact after each full iteration


def test_limits() -> None:
    a, b, M = random_problem(1, 6, 8)
    P = sinkhorn(a, b, M, 1e7, **TIGHT)
    assert torch.allclose(P, a[:, None] * b[None, :], atol=1e-5)
    v_small = sinkhorn2(a, b, M, 1e-3, **TIGHT)
    assert abs(float(v_small) - float(ot.emd2(a, b, M))) < 1e-2


@pytest.mark.parametrize("a_batched", [True, False])
def test_batched_equals_loop(a_batched: bool) -> None:
    B, n, m = 4, 5, 7
    probs = [random_problem(100 + k, n, m) for k in range(B)]
    M = torch.stack([p[2] for p in probs])
    if a_batched:
        a = torch.stack([p[0] for p in probs])
        b = torch.stack([p[1] for p in probs])
    else:
        a, b = probs[0][0], probs[0][1]
    for reg in (0.05, 1.0):
        res = sinkhorn(a, b, M, reg, **TIGHT, return_result=True)
        assert res.plan.shape == (B, n, m) and res.value.shape == (B,) and res.f.shape == (B, n)
        assert res.marginal_error.shape == (B,)
        vals = sinkhorn2(a, b, M, reg, **TIGHT)
        for k in range(B):
            ak = a[k] if a_batched else a
            bk = b[k] if a_batched else b
            Pk = sinkhorn(ak, bk, M[k], reg, **TIGHT)
            assert torch.allclose(res.plan[k], Pk, atol=1e-9)
            assert torch.allclose(vals[k], sinkhorn2(ak, bk, M[k], reg, **TIGHT), atol=1e-9)
        # fixed-iteration batched == fixed-iteration per problem exactly
        Pf = sinkhorn(a, b, M, reg, n_iters=5)
        Pf0 = sinkhorn(a[0] if a_batched else a, b[0] if a_batched else b, M[0], reg, n_iters=5)
        assert torch.allclose(Pf[0], Pf0, atol=1e-14)


def test_float32_small_reg_is_finite() -> None:
    g = torch.Generator().manual_seed(3)
    for n, m in [(10, 12), (32, 20)]:
        M = torch.rand(n, m, generator=g) * 10
        M.requires_grad_(True)
        res = sinkhorn(None, None, M, 1e-3, max_iter=2000, tol=1e-4, return_result=True)
        assert res.plan.dtype == torch.float32
        assert torch.isfinite(res.plan).all() and torch.isfinite(res.f).all() and torch.isfinite(res.g).all()
        assert torch.isfinite(res.marginal_error).all()
        if res.converged:
            assert float(res.marginal_error) < 1e-4
        res.value.backward()
        assert torch.isfinite(M.grad).all()
    # run to convergence (slow at reg = 1e-3): the reported error is then below tol
    M = torch.rand(10, 12, generator=g) * 10
    res = sinkhorn(None, None, M, 1e-3, max_iter=20000, tol=1e-3, grad="detach", return_result=True)
    assert res.converged and float(res.marginal_error) < 1e-3 and torch.isfinite(res.plan).all()
    assert abs(float(res.plan.sum(1).sub(1 / 10).abs().sum()) - float(res.marginal_error)) < 1e-5
    # fixed-iteration mode in float32 also stays finite (few iterations: infeasible but finite, error reported)
    M = torch.rand(16, 16, generator=g) * 10
    res = sinkhorn(None, None, M, 1e-3, n_iters=5, return_result=True)
    assert torch.isfinite(res.plan).all() and float(res.marginal_error) >= 0


def test_marginal_error_decreases() -> None:
    a, b, M = random_problem(5, 8, 9)
    errs = [float(sinkhorn(a, b, M, 0.05, n_iters=t, return_result=True).marginal_error) for t in (5, 20, 80, 320)]
    assert errs == sorted(errs, reverse=True)
    res = sinkhorn(a, b, M, 0.05, tol=1e-8, max_iter=10000, return_result=True)
    assert res.converged and float(res.marginal_error) < 1e-8 and res.n_iters % 10 == 0


def test_gradcheck_sinkhorn2() -> None:
    a, b, M = random_problem(7, 3, 4)
    M = M.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda C: sinkhorn2(a, b, C, 0.5, n_iters=15), (M,))
    # gradient w.r.t. the weights, kept on the simplex through a softmax parametrisation
    theta = torch.log(a).clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda C, t: sinkhorn2(torch.softmax(t, 0), b, C, 0.5, n_iters=15), (M, theta))


def test_envelope_equals_autodiff_at_convergence() -> None:
    for seed, reg in [(11, 0.1), (12, 1.0)]:
        a, b, M = random_problem(seed, 6, 5)
        M1 = M.clone().requires_grad_(True)
        a1 = a.clone().requires_grad_(True)
        res = sinkhorn2(a1, b, M1, reg, max_iter=5000, tol=1e-12, grad="autodiff", return_result=True)
        gM, ga = torch.autograd.grad(res.objective, (M1, a1))
        M2 = M.clone().requires_grad_(True)
        a2 = a.clone().requires_grad_(True)
        res2 = sinkhorn2(a2, b, M2, reg, max_iter=5000, tol=1e-12, grad="envelope", return_result=True)
        assert torch.allclose(res2.value, res.value, atol=1e-12)
        assert torch.allclose(res2.objective, res.objective, atol=1e-12)
        gM2, ga2 = torch.autograd.grad(res2.objective, (M2, a2))
        assert torch.allclose(gM2, res2.plan.detach(), atol=1e-14)
        assert torch.allclose(gM, gM2, atol=1e-6)
        # a lives on the simplex: compare gradients up to a constant
        assert torch.allclose(ga - ga.mean(), ga2 - ga2.mean(), atol=1e-6)
        # envelope value (linear number) carries the same gradient
        (gv,) = torch.autograd.grad(sinkhorn2(a, b, M2, reg, tol=1e-12, max_iter=5000, grad="envelope"), M2)
        assert torch.allclose(gv, gM2, atol=1e-14)
        # envelope plan depends on M only explicitly, with potentials fixed
        P = sinkhorn(a, b, M2, reg, tol=1e-12, max_iter=5000, grad="envelope")
        (gp,) = torch.autograd.grad(P.sum(), M2)
        assert torch.allclose(gp, -P.detach() / reg, atol=1e-12)


def test_detach_has_no_graph() -> None:
    a, b, M = random_problem(2, 4, 4)
    M.requires_grad_(True)
    P = sinkhorn(a, b, M, 0.5, n_iters=10, grad="detach")
    v = sinkhorn2(a, b, M, 0.5, n_iters=10, grad="detach")
    assert not P.requires_grad and not v.requires_grad
    assert torch.allclose(P, sinkhorn(a, b, M, 0.5, n_iters=10), atol=0)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_device_preserved(dtype: torch.dtype, device: str) -> None:
    a, b, M = random_problem(4, 5, 6)
    a, b, M = a.to(device, dtype), b.to(device, dtype), M.to(device, dtype)
    if dtype == torch.bfloat16:
        a, b = None, None  # bfloat16 weights do not sum to 1 within 1e-6; use uniform
    res = sinkhorn(a, b, M, 0.5, n_iters=20, return_result=True)
    for t in (res.plan, res.f, res.g, res.value, res.objective):
        assert t.dtype == dtype and t.device.type == device
    v = sinkhorn2(a, b, M, 0.5, n_iters=20)
    assert v.dtype == dtype and v.shape == ()


def test_zero_mass_points() -> None:
    a, b, M = random_problem(8, 5, 6)
    a_pad = torch.cat([a, torch.zeros(2, dtype=a.dtype)])
    M_pad = torch.cat([M, torch.rand(2, 6, dtype=M.dtype)], 0).requires_grad_(True)
    P_pad = sinkhorn(a_pad, b, M_pad, 0.2, **TIGHT)
    assert torch.isfinite(P_pad).all() and (P_pad[5:] == 0).all()
    assert torch.allclose(P_pad[:5], sinkhorn(a, b, M, 0.2, **TIGHT), atol=1e-10)
    sinkhorn2(a_pad, b, M_pad, 0.2, n_iters=20).backward()
    assert torch.isfinite(M_pad.grad).all()


def _bad(match: str, *args, **kwargs) -> None:
    with pytest.raises(GeosslError, match=match):
        sinkhorn(*args, **kwargs)


def test_bad_inputs() -> None:
    a, b, M = random_problem(0, 4, 5)
    _bad(r"\bM\b", a, b, M[:, :, None, None], 0.1)
    _bad(r"\bM\b", a, b, torch.where(M > 1, torch.nan, M), 0.1)
    _bad(r"\bM\b", a, b, torch.where(M > 1, torch.inf, M), 0.1)
    _bad(r"\ba\b", a[:3], b, M, 0.1)
    _bad(r"\bb\b", a, torch.ones(6, dtype=M.dtype) / 6, M, 0.1)
    _bad(r"\ba\b", torch.tensor([0.6, 0.6, -0.1, -0.1], dtype=M.dtype), b, M, 0.1)
    _bad(r"\ba\b", a * 1.01, b, M, 0.1)
    _bad(r"\bb\b", a, b * 0.5, M, 0.1)
    _bad(r"\breg\b", a, b, M, 0.0)
    _bad(r"\breg\b", a, b, M, -1.0)
    _bad(r"\breg\b", a, b, M, float("nan"))
    _bad(r"\bgrad\b", a, b, M, 0.1, grad="implicit")
    _bad(r"\bn_iters\b", a, b, M, 0.1, n_iters=0)
    _bad(r"\bmax_iter\b", a, b, M, 0.1, max_iter=0)
    _bad(r"\btol\b", a, b, M, 0.1, tol=-1.0)
    # batched: a of the wrong batch size
    _bad(r"\ba\b", torch.stack([a, a, a]), None, torch.stack([M, M]), 0.1)
    with pytest.raises(GeosslError, match=r"\breg\b"):
        sinkhorn2(a, b, M, 0)
    assert issubclass(GeosslError, ValueError)


def test_cpu_blocked_batch_equals_per_problem_solutions():
    """Batches larger than CPU_BLOCK_ELEMENTS are solved in blocks (here 2 + 2 + 1 problems)."""
    import importlib

    sk = importlib.import_module("geossl.ot.sinkhorn")  # the module; `geossl.ot.sinkhorn` is also the function

    g = torch.Generator().manual_seed(7)
    M = torch.rand(5, 300, 300, generator=g, dtype=torch.float64)
    a = torch.softmax(torch.randn(5, 300, generator=g, dtype=torch.float64), dim=1)
    assert M.numel() > sk.CPU_BLOCK_ELEMENTS
    batched = sk.sinkhorn2(a, None, M, 0.1, tol=1e-10, max_iter=2000, return_result=True)
    for i in range(5):
        single = sk.sinkhorn2(a[i], None, M[i], 0.1, tol=1e-10, max_iter=2000, return_result=True)
        assert torch.allclose(batched.plan[i], single.plan, atol=1e-12)
        assert torch.allclose(batched.value[i], single.value, atol=1e-12)
    assert batched.converged and batched.marginal_error.shape == (5,)
    fixed = sk.sinkhorn(None, None, M, 0.1, n_iters=7)
    assert torch.allclose(fixed[3], sk.sinkhorn(None, None, M[3], 0.1, n_iters=7), atol=1e-14)
