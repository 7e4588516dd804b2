"""Gromov-Wasserstein (Frank-Wolfe and entropic) against POT (the test oracle, spec ot.md §4.4)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from geossl.errors import GeosslError
from geossl.ot.gromov import GromovResult, gromov_wasserstein, gromov_wasserstein2

ot = pytest.importorskip("ot")


def weights(g: torch.Generator, n: int) -> torch.Tensor:
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    return w / w.sum()


def random_problem(seed: int, n: int, m: int, normalize: bool = False):
    """Euclidean distance matrices of random clouds in R^2 and R^3 (incomparable spaces), non-uniform weights."""
    g = torch.Generator().manual_seed(seed)
    p, q = weights(g, n), weights(g, m)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = torch.randn(m, 3, generator=g, dtype=torch.float64)
    C1, C2 = torch.cdist(x, x), torch.cdist(y, y)
    if normalize:
        C1, C2 = C1 / C1.max(), C2 / C2.max()
    return C1, C2, p, q


def pot(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


# Small sizes and POT's own start p q^T: on these problems both solvers follow the same Frank-Wolfe path (each
# linearised LP has a unique optimal vertex for generic data), so the plans match, not only the values.
EXACT_CASES = [(seed, loss) for seed in range(25) for loss in ("square_loss", "kl_loss")]  # 50 problems


@pytest.mark.parametrize("seed,loss", EXACT_CASES)
def test_exact_matches_pot(seed: int, loss: str) -> None:
    n, m = 4 + seed % 9, 5 + (seed * 3) % 8
    C1, C2, p, q = random_problem(seed, n, m)
    if loss == "kl_loss":
        C1, C2 = C1 + 0.1, C2 + 0.1  # positive dissimilarities for the KL loss
    res = gromov_wasserstein(C1, C2, p, q, loss, return_result=True)
    assert isinstance(res, GromovResult) and res.converged
    T_ref, log = pot(ot.gromov.gromov_wasserstein, C1, C2, p, q, loss, log=True)
    assert (res.plan - T_ref).abs().max() < 1e-6
    assert abs(float(res.value) - float(log["gw_dist"])) < 1e-6
    assert res.n_iters == len(log["loss"]) - 1  # same path, same number of Frank-Wolfe steps
    v = gromov_wasserstein2(C1, C2, p, q, loss)
    assert abs(float(v) - float(pot(ot.gromov.gromov_wasserstein2, C1, C2, p, q, loss))) < 1e-6
    assert (res.plan.sum(1) - p).abs().max() < 1e-12 and (res.plan.sum(0) - q).abs().max() < 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_exact_asymmetric_and_value_formula(seed: int) -> None:
    C1, C2, p, q = random_problem(50 + seed, 8, 9)
    g = torch.Generator().manual_seed(seed)
    C1 = C1 + 0.5 * torch.rand(8, 8, generator=g, dtype=torch.float64)  # not symmetric
    res = gromov_wasserstein(C1, C2, p, q, return_result=True)
    T_ref, log = pot(ot.gromov.gromov_wasserstein, C1, C2, p, q, log=True)
    assert (res.plan - T_ref).abs().max() < 1e-6
    assert abs(float(res.value) - float(log["gw_dist"])) < 1e-6
    # the value is the 4-index sum written out (no tensor-product decomposition)
    L = (C1[:, None, :, None] - C2[None, :, None, :]) ** 2  # L[i, j, k, l] = (C1_ik - C2_jl)^2
    brute = torch.einsum("ijkl,ij,kl->", L, res.plan, res.plan)
    assert abs(float(brute) - float(res.value)) < 1e-12


def _isometric_copy(seed: int, n: int = 12):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    theta = float(torch.rand((), generator=g)) * 2 * math.pi
    R = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=torch.float64)
    perm = torch.randperm(n, generator=g)
    y = (x @ R.T + torch.tensor([3.0, -1.0], dtype=torch.float64))[perm]
    return torch.cdist(x, x), torch.cdist(y, y), perm


@pytest.mark.parametrize("seed", range(5))
def test_isometric_copy_recovers_permutation(seed: int) -> None:
    C1, C2, perm = _isometric_copy(seed)
    res = gromov_wasserstein(C1, C2, n_init=10, seed=0, return_result=True)
    assert abs(float(res.value)) < 1e-10
    # y_j = R x_{perm[j]} + t: point i of the first cloud is matched to the j with perm[j] == i
    assert torch.equal(res.plan.argmax(1), torch.argsort(perm))
    T = gromov_wasserstein(C1, C2, as_permutation=True)
    expected = torch.zeros(12, 12, dtype=torch.float64)
    expected[perm, torch.arange(12)] = 1 / 12
    assert torch.equal(T, expected)
    assert abs(float(gromov_wasserstein2(C1, C1))) < 1e-12  # GW(C, C) = 0


def test_restarts_are_seeded_and_keep_the_best() -> None:
    C1, C2, p, q = random_problem(77, 10, 11)
    v1 = float(gromov_wasserstein2(C1, C2, p, q))
    r5 = gromov_wasserstein(C1, C2, p, q, n_init=5, seed=1, return_result=True)
    r5b = gromov_wasserstein(C1, C2, p, q, n_init=5, seed=1, return_result=True)
    assert torch.equal(r5.plan, r5b.plan)
    assert float(r5.value) <= v1 + 1e-12
    # a restart is a POT run from its start: compare one from an interior coupling
    g = torch.Generator().manual_seed(2)
    cost = torch.rand(10, 11, generator=g, dtype=torch.float64)
    G0 = pot(ot.sinkhorn, p, q, cost, 0.05, numItermax=100000, stopThr=1e-13)
    res = gromov_wasserstein(C1, C2, p, q, G0=G0, return_result=True)
    T_ref = pot(ot.gromov.gromov_wasserstein, C1, C2, p, q, G0=G0)
    assert (res.plan - T_ref).abs().max() < 1e-6


# moderate reg on normalised costs: POT's scaling Sinkhorn needs thousands of iterations per step below that
ENTROPIC_CASES = [(seed, (0.1, 0.3)[seed % 2]) for seed in range(20)] + [(20, 0.03)]


@pytest.mark.parametrize("seed,reg", ENTROPIC_CASES)
def test_entropic_matches_pot(seed: int, reg: float) -> None:
    n, m = 4 + seed % 9, 5 + (seed * 3) % 8
    C1, C2, p, q = random_problem(seed, n, m, normalize=True)
    res = gromov_wasserstein(C1, C2, p, q, reg=reg, tol=1e-9, inner_tol=1e-10, inner_max_iter=20000, return_result=True)
    assert res.converged
    T_ref, log = pot(
        ot.gromov.entropic_gromov_wasserstein, C1, C2, p, q,
        epsilon=reg, tol=1e-9, numItermax=20000, stopThr=1e-11, log=True,
    )
    assert (res.plan - T_ref).abs().max() < 1e-6
    assert abs(float(res.value) - float(log["gw_dist"])) < 1e-6
    # objective = value - reg H(T), H(T) = -sum T (log T - 1)
    H = -(res.plan * (torch.log(res.plan) - 1)).sum()
    assert abs(float(res.objective) - float(res.value - reg * H)) < 1e-12


def test_exact_gradients_match_pot_and_formula() -> None:
    C1, C2, p, q = random_problem(5, 7, 9)
    leaves = [t.clone().requires_grad_() for t in (C1, C2, p, q)]
    v = gromov_wasserstein2(*leaves)
    gC1, gC2, gp, gq = torch.autograd.grad(v, leaves)
    ref = [t.clone().requires_grad_() for t in (C1, C2, p, q)]
    pot(ot.gromov.gromov_wasserstein2, *ref).backward()
    T = gromov_wasserstein(C1, C2, p, q)
    # envelope gradient of the square loss, written out: 2 C1 * p p^T - 2 T C2 T^T
    assert (gC1 - (2 * C1 * torch.outer(p, p) - 2 * T @ C2 @ T.T)).abs().max() < 1e-12
    assert (gC2 - (2 * C2 * torch.outer(q, q) - 2 * T.T @ C1 @ T)).abs().max() < 1e-12
    assert (gC1 - ref[0].grad).abs().max() < 1e-8
    assert (gC2 - ref[1].grad).abs().max() < 1e-8
    # weights: centred duals of the linearised problem at the solution (POT: of its last LP)
    assert (gp - ref[2].grad).abs().max() < 1e-6
    assert (gq - ref[3].grad).abs().max() < 1e-6


def _sqdist(x: torch.Tensor) -> torch.Tensor:
    # squared distances written out: differentiable everywhere (cdist is not at 0)
    return ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)


def test_entropic_autodiff_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    theta = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)

    def f(x, y, theta):
        # fixed iteration counts (tol = 0) make the value a smooth function of the inputs; the weights are a
        # softmax so that perturbed weights still sum to 1
        return gromov_wasserstein2(
            _sqdist(x) / 4, _sqdist(y) / 4, None, torch.softmax(theta, 0),
            reg=0.3, max_iter=4, tol=0, inner_max_iter=20, inner_tol=0, grad="autodiff",
        )

    assert torch.autograd.gradcheck(f, (x, y, theta), eps=1e-6, atol=1e-6)


def test_entropic_envelope_is_gradient_of_objective() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, generator=g, dtype=torch.float64)
    y = torch.randn(6, 3, generator=g, dtype=torch.float64)
    kw = {"reg": 0.2, "tol": 1e-13, "max_iter": 5000, "inner_tol": 1e-13, "inner_max_iter": 20000}

    def objective(x):
        return gromov_wasserstein2(_sqdist(x) / 8, _sqdist(y) / 8, return_result=True, **kw).objective

    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(objective(xg), xg)
    h = 1e-5
    with torch.no_grad():
        for i, k in [(0, 0), (2, 1), (4, 0)]:
            e = torch.zeros_like(x)
            e[i, k] = h
            fd = (objective(x + e) - objective(x - e)) / (2 * h)
            assert abs(float(fd) - float(grad[i, k])) < 1e-6


def test_dtype_and_iterations() -> None:
    C1, C2, p, q = random_problem(9, 6, 7)
    T = gromov_wasserstein(C1.float(), C2.float(), p.float(), q.float())
    assert T.dtype == torch.float32
    assert (T.double() - pot(ot.gromov.gromov_wasserstein, C1, C2, p, q)).abs().max() < 1e-5
    res = gromov_wasserstein(C1, C2, p, q, max_iter=1, return_result=True)
    assert res.n_iters == 1
    T1 = pot(ot.gromov.gromov_wasserstein, C1, C2, p, q, max_iter=1)
    assert (res.plan - T1).abs().max() < 1e-10


def test_bad_inputs() -> None:
    C1, C2, p, q = random_problem(10, 4, 5)
    with pytest.raises(GeosslError, match="^C1 must be a square"):
        gromov_wasserstein(C1[:, :3], C2)
    with pytest.raises(GeosslError, match="^C2 must be a square"):
        gromov_wasserstein2(C1, C2[:4])
    with pytest.raises(GeosslError, match="^p must have shape"):
        gromov_wasserstein(C1, C2, q, q)
    with pytest.raises(GeosslError, match="^q has negative entries"):
        gromov_wasserstein(C1, C2, p, torch.tensor([0.5, 0.5, 0.2, -0.3, 0.1], dtype=torch.float64))
    with pytest.raises(GeosslError, match="^q must sum to 1"):
        gromov_wasserstein(C1, C2, p, 2 * q)
    with pytest.raises(GeosslError, match="^loss must be one of"):
        gromov_wasserstein(C1, C2, loss="l2")
    with pytest.raises(GeosslError, match="^C1 has negative entries"):
        gromov_wasserstein(C1 - 1, C2, loss="kl_loss")
    with pytest.raises(GeosslError, match="^reg must be > 0"):
        gromov_wasserstein(C1, C2, reg=-0.1)
    with pytest.raises(GeosslError, match="^grad='autodiff' needs entropic"):
        gromov_wasserstein2(C1, C2, grad="autodiff")
    with pytest.raises(GeosslError, match="^C1 contains NaN"):
        gromov_wasserstein(torch.full((4, 4), float("nan")), C2)
    with pytest.raises(GeosslError, match="^G0 must be a coupling"):
        gromov_wasserstein(C1, C2, G0=torch.full((4, 5), 0.1, dtype=torch.float64))
    with pytest.raises(GeosslError, match="^as_permutation=True needs"):
        gromov_wasserstein(C1, C2, as_permutation=True)
    with pytest.raises(GeosslError, match="^max_iter must be"):
        gromov_wasserstein(C1, C2, max_iter=0)
