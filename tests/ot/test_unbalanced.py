"""Unbalanced (KL-relaxed) log-domain Sinkhorn against POT (spec ot.md §3.3, §3.5)."""

from __future__ import annotations

import warnings

import pytest
import torch

from geossl.errors import GeosslError
from geossl.ot.sinkhorn import sinkhorn
from geossl.ot.unbalanced import sinkhorn_unbalanced, sinkhorn_unbalanced2

ot = pytest.importorskip("ot")

TIGHT = {"max_iter": 100000, "tol": 1e-14}
POT_TIGHT = {"method": "sinkhorn", "numItermax": 100000, "stopThr": 1e-15}


def random_problem(seed: int, n: int, m: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g, dtype=dtype) + 0.05
    b = torch.rand(m, generator=g, dtype=dtype) + 0.05
    a, b = a / a.sum(), b / b.sum()
    if seed % 3 == 2:  # unequal masses are allowed
        b = 1.5 * b
    x = torch.randn(n, 2, generator=g, dtype=dtype)
    y = torch.randn(m, 2, generator=g, dtype=dtype)
    return a, b, torch.cdist(x, y) ** 2 / 4


def pot(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


CASES = [(seed, reg, reg_m) for seed in range(6) for reg in (0.05, 1.0) for reg_m in (0.5, (2.0, float("inf")))]


@pytest.mark.parametrize("seed,reg,reg_m", CASES)  # 24 problems per convention
@pytest.mark.parametrize("reg_type", ["kl", "entropy"])
def test_matches_pot(seed: int, reg: float, reg_m, reg_type: str) -> None:
    n, m = 3 + seed % 5, 4 + (seed * 3) % 7
    a, b, M = random_problem(seed, n, m)
    kw = {} if reg_type == "kl" else {"reg_type": reg_type}  # "kl" is the default on both sides
    res = sinkhorn_unbalanced(a, b, M, reg, reg_m, **kw, **TIGHT, return_result=True)
    assert res.converged and res.plan.shape == (n, m)
    P_ref = pot(ot.unbalanced.sinkhorn_unbalanced, a, b, M, reg, reg_m, **kw, **POT_TIGHT)
    v_ref = pot(ot.unbalanced.sinkhorn_unbalanced2, a, b, M, reg, reg_m, **kw, **POT_TIGHT)
    assert torch.allclose(res.plan, P_ref, atol=1e-6, rtol=0)
    v = sinkhorn_unbalanced2(a, b, M, reg, reg_m, **kw, **TIGHT)
    assert abs(float(v) - float(v_ref)) < 1e-6
    assert abs(float(v) - float((P_ref * M).sum())) < 1e-6  # POT's default returnCost="linear"


def test_full_objective_matches_pot_total_plus_mass_terms() -> None:
    a, b, M = random_problem(1, 5, 6)
    reg, reg_m = 0.1, (0.7, 1.3)
    res = sinkhorn_unbalanced2(a, b, M, reg, reg_m, **TIGHT, return_result=True)
    total = pot(ot.unbalanced.sinkhorn_unbalanced2, a, b, M, reg, reg_m, returnCost="total", **POT_TIGHT)
    P = res.plan
    # POT's "total" uses KL without the mass terms (q - p); add them back
    mass = reg * (a.sum() * b.sum() - P.sum()) + reg_m[0] * (a.sum() - P.sum()) + reg_m[1] * (b.sum() - P.sum())
    assert abs(float(res.objective) - float(total + mass)) < 1e-6


def test_infinite_reg_m_is_balanced() -> None:
    a, b, M = random_problem(0, 5, 7)
    for reg_type in ("kl", "entropy"):
        P_u = sinkhorn_unbalanced(a, b, M, 0.2, float("inf"), reg_type=reg_type, **TIGHT)
        P_b = sinkhorn(a, b, M, 0.2, max_iter=50000, tol=1e-13)
        assert torch.allclose(P_u, P_b, atol=1e-9)
    # large finite reg_m approaches the balanced plan
    P_l = sinkhorn_unbalanced(a, b, M, 0.2, 1e5, max_iter=20000, tol=1e-12)
    assert torch.allclose(P_l, P_b, atol=1e-4)


def test_mass_decreases_with_reg_m_and_kl_mass_le_one() -> None:
    a, b, M = random_problem(3, 6, 6)
    masses = [
        float(sinkhorn_unbalanced(a, b, M, 0.1, lam, max_iter=20000, tol=1e-12).sum()) for lam in (10, 1, 0.1, 0.01)
    ]
    assert masses == sorted(masses, reverse=True)
    assert max(masses) <= 1.0


@pytest.mark.parametrize("a_batched", [True, False])
def test_batched_equals_loop(a_batched: bool) -> None:
    B, n, m = 3, 4, 6
    probs = [random_problem(10 + k, n, m) for k in range(B)]
    M = torch.stack([p[2] for p in probs])
    a = torch.stack([p[0] for p in probs]) if a_batched else probs[0][0]
    b = torch.stack([p[1] for p in probs]) if a_batched else probs[0][1]
    res = sinkhorn_unbalanced(a, b, M, 0.1, 0.5, **TIGHT, return_result=True)
    vals = sinkhorn_unbalanced2(a, b, M, 0.1, 0.5, **TIGHT)
    assert res.plan.shape == (B, n, m) and vals.shape == (B,) and res.marginal_error.shape == (B,)
    for k in range(B):
        ak, bk = (a[k], b[k]) if a_batched else (a, b)
        Pk = sinkhorn_unbalanced(ak, bk, M[k], 0.1, 0.5, **TIGHT)
        assert torch.allclose(res.plan[k], Pk, atol=1e-10)
        assert torch.allclose(vals[k], sinkhorn_unbalanced2(ak, bk, M[k], 0.1, 0.5, **TIGHT), atol=1e-10)


def test_float32_small_reg_is_finite() -> None:
    g = torch.Generator().manual_seed(0)
    M = (torch.rand(12, 9, generator=g) * 10).requires_grad_(True)
    res = sinkhorn_unbalanced(None, None, M, 1e-3, 0.5, max_iter=3000, tol=1e-5, return_result=True)
    assert res.plan.dtype == torch.float32
    assert torch.isfinite(res.plan).all() and torch.isfinite(res.marginal_error).all()
    if res.converged:
        assert float(res.marginal_error) < 1e-5
    res.value.backward()
    assert torch.isfinite(M.grad).all()


def test_gradcheck_and_envelope() -> None:
    a, b, M = random_problem(4, 3, 4)
    Mg = M.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda C: sinkhorn_unbalanced2(a, b, C, 0.5, 1.0, n_iters=15), (Mg,))
    for reg_type in ("kl", "entropy"):
        M1 = M.clone().requires_grad_(True)
        r1 = sinkhorn_unbalanced2(a, b, M1, 0.2, 0.7, reg_type=reg_type, **TIGHT, return_result=True)
        (g1,) = torch.autograd.grad(r1.objective, M1)
        M2 = M.clone().requires_grad_(True)
        r2 = sinkhorn_unbalanced2(a, b, M2, 0.2, 0.7, reg_type=reg_type, **TIGHT, grad="envelope", return_result=True)
        (g2,) = torch.autograd.grad(r2.value, M2)
        assert torch.allclose(g2, r2.plan.detach(), atol=1e-14)
        assert torch.allclose(g1, g2, atol=1e-6)
        assert torch.allclose(r1.value, r2.value, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_preserved_and_detach(dtype: torch.dtype) -> None:
    a, b, M = (t.to(dtype) for t in random_problem(5, 4, 5))
    M.requires_grad_(True)
    res = sinkhorn_unbalanced(a, b, M, 0.3, 1.0, n_iters=10, return_result=True)
    for t in (res.plan, res.f, res.g, res.value, res.objective):
        assert t.dtype == dtype
    P = sinkhorn_unbalanced(a, b, M, 0.3, 1.0, n_iters=10, grad="detach")
    assert not P.requires_grad and torch.allclose(P, res.plan.detach())


def test_negative_cost_warns() -> None:
    a, b, M = random_problem(0, 3, 3)
    with pytest.warns(UserWarning, match="negative"):
        sinkhorn_unbalanced(a, b, M - 1, 0.5, 1.0, n_iters=5)


def _bad(match: str, *args, **kwargs) -> None:
    with pytest.raises(GeosslError, match=match):
        sinkhorn_unbalanced(*args, **kwargs)


def test_bad_inputs() -> None:
    a, b, M = random_problem(0, 4, 5)
    _bad(r"\bM\b", a, b, M[0], 0.1, 1.0)
    _bad(r"\bM\b", a, b, torch.where(M > 0.5, torch.nan, M), 0.1, 1.0)
    _bad(r"\ba\b", a[:2], b, M, 0.1, 1.0)
    _bad(r"\bb\b", a, -b, M, 0.1, 1.0)
    _bad(r"\breg\b", a, b, M, 0.0, 1.0)
    _bad(r"\breg_m\b", a, b, M, 0.1, 0.0)
    _bad(r"\breg_m\b", a, b, M, 0.1, -1.0)
    _bad(r"\breg_m\b", a, b, M, 0.1, (1.0, 0.0))
    _bad(r"\breg_m\b", a, b, M, 0.1, (1.0, 2.0, 3.0))
    _bad(r"\breg_type\b", a, b, M, 0.1, 1.0, reg_type="tsallis")
    with pytest.raises(GeosslError, match=r"\breg_m\b"):
        sinkhorn_unbalanced2(a, b, M, 0.1, float("nan"))
    # masses need not sum to 1 in the unbalanced case
    assert torch.isfinite(sinkhorn_unbalanced(2 * a, b, M, 0.1, 1.0, n_iters=5)).all()
