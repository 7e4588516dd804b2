"""Exact OT (HiGHS LP / network simplex / assignment) against POT's ``ot.emd`` (the test oracle, spec ot.md §1.5).

Every test runs twice: with the HiGHS LP (an independent solver, the meaningful comparison with POT) and with the
network-simplex path (POT's own solver, behind our validation, zero-mass handling, batching and gradients).
"""

from __future__ import annotations

import importlib

import pytest
import torch

from geossl.errors import GeosslError
from geossl.ot.emd import MAX_LP_ENTRIES, EMDResult, emd, emd2

ot = pytest.importorskip("ot")
emd_module = importlib.import_module("geossl.ot.emd")


@pytest.fixture(autouse=True, params=["highs", "network_simplex"])
def solver(request, monkeypatch):
    """Route solver="auto" to each exact solver in turn."""
    real = emd_module._resolve_solver
    monkeypatch.setattr(emd_module, "_resolve_solver", lambda s: real(request.param if s == "auto" else s))
    return request.param


def random_problem(seed: int, n: int, m: int, uniform: bool = False, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    if uniform:
        a = torch.full((n,), 1.0 / n, dtype=dtype)
        b = torch.full((m,), 1.0 / m, dtype=dtype)
    else:
        a = torch.rand(n, generator=g, dtype=dtype) + 0.05
        b = torch.rand(m, generator=g, dtype=dtype) + 0.05
        a, b = a / a.sum(), b / b.sum()
    x = torch.randn(n, 3, generator=g, dtype=dtype)
    y = torch.randn(m, 3, generator=g, dtype=dtype)
    return a, b, torch.cdist(x, y) ** 2


SHAPES = [(3 + seed % 11, 2 + (seed * 7) % 17) for seed in range(24)]  # rectangular, both orientations


@pytest.mark.parametrize("seed", range(24))
def test_matches_pot(seed: int) -> None:
    n, m = SHAPES[seed]
    a, b, M = random_problem(seed, n, m)
    res = emd(a, b, M, return_result=True)
    assert isinstance(res, EMDResult)
    P_ref, log = ot.emd(a, b, M, log=True)
    # generic costs: the optimal vertex is unique, so plans (not only values) must agree
    assert (res.plan - P_ref).abs().max() < 1e-10
    assert abs(float(emd2(a, b, M)) - float(ot.emd2(a, b, M))) < 1e-10
    assert abs(float(res.value) - float(ot.emd2(a, b, M))) < 1e-10
    # non-degenerate problem: centred duals are unique and equal POT's
    assert (res.f - (log["u"] - log["u"].mean())).abs().max() < 1e-8
    assert torch.allclose(emd(a, b, M), res.plan, atol=0)


@pytest.mark.parametrize("seed", range(6))
def test_marginals_duals_and_optimality(seed: int) -> None:
    a, b, M = random_problem(100 + seed, 9, 13)
    res = emd(a, b, M, return_result=True)
    P, f, g = res.plan, res.f, res.g
    assert (P >= 0).all()
    assert (P.sum(1) - a).abs().max() < 1e-12
    assert (P.sum(0) - b).abs().max() < 1e-12
    slack = M - f[:, None] - g[None, :]
    assert slack.min() > -1e-9  # dual feasibility
    assert slack[P > 1e-12].abs().max() < 1e-9  # complementary slackness
    assert abs(float((f * a).sum() + (g * b).sum()) - float(res.value)) < 1e-10  # strong duality
    assert abs(float(f.sum())) < 1e-10  # f is centred
    # no improving 2-cycle on the support: moving mass from (i,j),(k,l) to (i,l),(k,j) never lowers the cost
    support = P.nonzero().tolist()
    for i, j in support:
        for k, l in support:
            assert M[i, j] + M[k, l] <= M[i, l] + M[k, j] + 1e-10
    # sparse vertex: at most n + m - 1 nonzero entries
    assert len(support) <= 9 + 13 - 1


@pytest.mark.parametrize("seed", range(5))
def test_uniform_square_assignment(seed: int) -> None:
    a, b, M = random_problem(200 + seed, 12, 12, uniform=True)
    P = emd(None, None, M)
    assert torch.equal((P > 0).sum(0), torch.ones(12, dtype=torch.long))
    assert torch.equal((P > 0).sum(1), torch.ones(12, dtype=torch.long))
    assert torch.allclose(P[P > 0], torch.full((12,), 1 / 12, dtype=torch.float64))
    v_ref = float(ot.emd2(a, b, M))
    assert abs(float(emd2(None, None, M)) - v_ref) < 1e-12
    # explicitly uniform weights and the LP path (return_result needs duals) reach the same optimum
    assert abs(float(emd2(a, b, M)) - v_ref) < 1e-12
    assert abs(float(emd(a, b, M, return_result=True).value) - v_ref) < 1e-10


def test_identical_and_permuted_clouds() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(15, 4, generator=g, dtype=torch.float64)
    perm = torch.randperm(15, generator=g)
    M = torch.cdist(x, x[perm]) ** 2
    P = emd(None, None, M)
    assert float(emd2(None, None, M)) == pytest.approx(0.0, abs=1e-14)
    # x_i is matched to the j with perm[j] == i
    expected = torch.zeros(15, 15, dtype=torch.float64)
    expected[perm, torch.arange(15)] = 1 / 15
    assert torch.equal(P, expected)
    # same on the LP path
    assert torch.allclose(emd(None, None, M, return_result=True).plan, expected, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_batched(seed: int) -> None:
    g = torch.Generator().manual_seed(300 + seed)
    B, n, m = 4, 6, 9
    a = torch.rand(B, n, generator=g, dtype=torch.float64) + 0.1
    a = a / a.sum(-1, keepdim=True)
    b = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    b = b / b.sum()  # (m,) broadcast over the batch
    M = torch.rand(B, n, m, generator=g, dtype=torch.float64)
    P = emd(a, b, M)
    v = emd2(a, b, M)
    res = emd(a, b, M, return_result=True)
    assert P.shape == (B, n, m) and v.shape == (B,) and res.f.shape == (B, n) and res.g.shape == (B, m)
    for k in range(B):
        assert (P[k] - ot.emd(a[k], b, M[k])).abs().max() < 1e-10
        assert abs(float(v[k]) - float(ot.emd2(a[k], b, M[k]))) < 1e-10
    Pu = emd(None, None, M[:, :, :n])  # batched uniform square -> assignment per problem
    for k in range(B):
        assert abs(float((Pu[k] * M[k, :, :n]).sum()) - float(ot.emd2([], [], M[k, :, :n]))) < 1e-12


def test_zero_mass_points() -> None:
    a, b, M = random_problem(7, 6, 7)
    a = a.clone()
    a[2] = 0
    a = a / a.sum()
    res = emd(a, b, M, return_result=True)
    assert (res.plan[2] == 0).all()
    assert (res.plan.sum(1) - a).abs().max() < 1e-12 and (res.plan.sum(0) - b).abs().max() < 1e-12
    assert abs(float(res.value) - float(ot.emd2(a, b, M))) < 1e-10
    assert (M - res.f[:, None] - res.g[None, :]).min() > -1e-9  # duals stay feasible on the zero-mass row


def test_gradient_is_plan_and_duals() -> None:
    a, b, M = random_problem(11, 7, 8)
    a, b, M = a.requires_grad_(), b.requires_grad_(), M.requires_grad_()
    v = emd2(a, b, M)
    ga, gb, gM = torch.autograd.grad(v, (a, b, M))
    # oracle: POT's gradients (plan, centred duals) through its torch backend
    a2, b2, M2 = (t.detach().clone().requires_grad_() for t in (a, b, M))
    v2 = ot.emd2(a2, b2, M2)
    v2.backward()
    assert (gM - M2.grad).abs().max() < 1e-10
    assert (ga - a2.grad).abs().max() < 1e-8
    assert (gb - b2.grad).abs().max() < 1e-8
    assert abs(float(ga.sum())) < 1e-10 and abs(float(gb.sum())) < 1e-10

    # finite differences: the value is locally linear in (a, b, M) around a non-degenerate problem
    with torch.no_grad():
        h = 1e-7
        g = torch.Generator().manual_seed(0)
        dM = torch.randn(M.shape, generator=g, dtype=torch.float64)
        fd = (emd2(a, b, M + h * dM) - emd2(a, b, M - h * dM)) / (2 * h)
        assert abs(float(fd) - float((gM * dM).sum())) < 1e-6
        da = torch.zeros_like(a)
        da[1], da[4] = 1.0, -1.0  # keeps sum(a) = 1
        fd = (emd2(a + h * da, b, M) - emd2(a - h * da, b, M)) / (2 * h)
        assert abs(float(fd) - float((ga * da).sum())) < 1e-6
        db = torch.zeros_like(b)
        db[0], db[6] = 1.0, -1.0
        fd = (emd2(a, b + h * db, M) - emd2(a, b - h * db, M)) / (2 * h)
        assert abs(float(fd) - float((gb * db).sum())) < 1e-6
    # the plan itself is detached
    assert not emd(a, b, M).requires_grad


def test_batched_gradient() -> None:
    a, b, M = random_problem(12, 5, 6)
    Mb = torch.stack([M, 2 * M, M + 1]).requires_grad_()
    v = emd2(a, b, Mb)
    (gM,) = torch.autograd.grad(v.sum(), Mb)
    for k in range(3):
        assert torch.allclose(gM[k], ot.emd(a, b, Mb[k].detach()), atol=1e-10)


def test_dtype_and_device_preserved() -> None:
    a, b, M = random_problem(13, 6, 8, dtype=torch.float32)
    P = emd(a, b, M)
    assert P.dtype == torch.float32 and P.device == M.device
    assert (P.sum(0) - b).abs().max() < 1e-6
    v = emd2(a, b, M.half())
    assert v.dtype == torch.float16
    ref = float(ot.emd2(a.double(), b.double(), M.double()))
    assert abs(float(emd2(a, b, M)) - ref) < 1e-5


def test_bad_inputs(solver) -> None:
    a, b, M = random_problem(14, 4, 5)
    with pytest.raises(GeosslError, match="^a must have shape"):
        emd(torch.full((5,), 0.2, dtype=torch.float64), b, M)
    with pytest.raises(GeosslError, match="^b must have shape"):
        emd2(a, a, M)
    with pytest.raises(GeosslError, match="^a has negative entries"):
        emd(torch.tensor([0.5, 0.7, -0.3, 0.1], dtype=torch.float64), b, M)
    with pytest.raises(GeosslError, match="^b must sum to 1"):
        emd(a, 2 * b, M)
    with pytest.raises(GeosslError, match="^M must have shape"):
        emd(a, b, M[0])
    with pytest.raises(GeosslError, match="^M contains NaN"):
        emd(a, b, torch.full((4, 5), float("nan")))
    if solver == "highs":  # the network simplex has no size limit of its own
        with pytest.raises(GeosslError, match="sinkhorn"):
            emd(None, None, torch.zeros(MAX_LP_ENTRIES // 1000 + 1, 1000))
    with pytest.raises(GeosslError, match="^solver must be one of"):
        emd(a, b, M, solver="simplex")
