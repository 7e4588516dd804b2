"""Exact (Kantorovich) optimal transport as a linear program (Peyré & Cuturi 2019, §2.3 and §3).

The exact OT problem between weights ``a`` (n,) and ``b`` (m,) with cost ``M`` (n, m) is::

    min_{P in U(a, b)} <P, M>,      U(a, b) = {P >= 0 : P 1_m = a, P^T 1_n = b}

with dual ``max_{f_i + g_j <= M_ij} <f, a> + <g, b>``. It is solved on the CPU in float64 by the network simplex of
POT (Bonneel et al. 2011) when POT is installed (``pip install geossl[ot]``; 40x faster than an LP solver at 600x600),
otherwise by the HiGHS simplex solver of SciPy (``scipy.optimize.linprog(method="highs")``); or with the Jonker-Volgenant assignment solver
(``scipy.optimize.linear_sum_assignment``) when ``n == m`` and both marginals are uniform, where an optimal plan is a
permutation matrix divided by ``n`` (Birkhoff's theorem). Inputs and outputs are PyTorch tensors on any device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse
import torch

from geossl.errors import GeosslError
from geossl.ot._checks import prepare_problem

__all__ = ["MAX_LP_ENTRIES", "SOLVERS", "EMDResult", "emd", "emd2"]

#: ``auto``: POT's network simplex when POT is importable, HiGHS otherwise.
SOLVERS = ("auto", "network_simplex", "highs")

#: Largest ``n * m`` solved as a linear program: the LP has ``n * m`` variables and HiGHS needs several copies of
#: them, so beyond this size it takes minutes and gigabytes where entropic OT (``sinkhorn``) takes seconds.
MAX_LP_ENTRIES = 4_000_000

# HiGHS' default feasibility tolerances (1e-7) would let the simplex stop at a vertex whose reduced costs are only
# nearly non-negative; with the cost rescaled to [-1, 1] the tightest tolerances HiGHS accepts keep the value within
# ~1e-10 of the optimum.
_HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


@dataclass
class EMDResult:
    """Exact OT solution (returned with ``return_result=True``).

    Shapes are given for a single problem; batched problems carry a leading batch dimension ``B``.

    Attributes:
        plan: optimal plan ``P``, shape (n, m) or (B, n, m); detached (it is piecewise constant in ``M``).
        f: source dual potential, shape (n,) or (B, n), centred (``sum f = 0``). With ``g``: ``f_i + g_j <= M_ij``,
            with equality where ``P_ij > 0`` (complementary slackness), and ``<f, a> + <g, b> = <P, M>``.
        g: target dual potential, shape (m,) or (B, m); it carries the constant removed from ``f`` (so it is not
            centred; the gradient of :func:`emd2` w.r.t. ``b`` is ``g - mean g``).
        value: optimal cost ``<P, M>``, shape () or (B,); differentiable as in :func:`emd2`.
    """

    plan: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    value: torch.Tensor


def _transport_lp(a: np.ndarray, b: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve one exact OT problem with positive weights by HiGHS; returns the plan (n, m) and duals f (n,), g (m,).

    ``a`` and ``b`` must have equal sums. The last column constraint is implied by the others (both marginals
    carry the same mass) and is dropped, so the LP has full row rank; its dual is fixed to ``g_{m-1} = 0``.
    """
    n, m = M.shape
    scale = float(np.abs(M).max())
    scale = scale if scale > 0 else 1.0
    # variable k = i * m + j is P_ij: one nonzero in row constraint i and one in column constraint n + j
    var = np.arange(n * m)
    i, j = np.divmod(var, m)
    keep = j < m - 1
    rows = np.concatenate([i, n + j[keep]])
    cols = np.concatenate([var, var[keep]])
    A = scipy.sparse.csc_array((np.ones(rows.shape[0]), (rows, cols)), shape=(n + m - 1, n * m))
    rhs = np.concatenate([a, b[:-1]])
    res = scipy.optimize.linprog(
        (M / scale).ravel(), A_eq=A, b_eq=rhs, bounds=(0, None), method="highs", options=_HIGHS_OPTIONS
    )
    if res.status != 0:
        raise GeosslError(f"emd: the HiGHS LP solver failed ({res.message}); check M, a and b.")
    plan = np.clip(res.x, 0.0, None).reshape(n, m)
    duals = res.eqlin.marginals * scale
    return plan, duals[:n], np.concatenate([duals[n:], [0.0]])


def _network_simplex(a: np.ndarray, b: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plan and duals of one problem with positive, equal-mass weights by POT's network simplex (C++)."""
    import ot

    plan, log = ot.lp.emd(a, b, np.ascontiguousarray(M), numItermax=100_000_000, log=True)
    if log.get("warning"):
        raise GeosslError(f"emd: the network simplex did not finish ({log['warning']}); use sinkhorn for this problem.")
    return plan, log["u"], log["v"]


def _pot_importable() -> bool:
    try:
        import ot  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_solver(solver: str) -> str:
    """``solver`` with ``"auto"`` replaced by the fastest one installed; a one-line error for an unusable choice."""
    if solver not in SOLVERS:
        raise GeosslError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}.")
    has_pot = _pot_importable()
    if solver == "auto":
        return "network_simplex" if has_pot else "highs"
    if solver == "network_simplex" and not has_pot:
        raise GeosslError("solver='network_simplex' needs POT: pip install pot (or geossl[ot]).")
    return solver


def _solve_numpy(a: np.ndarray, b: np.ndarray, M: np.ndarray, assignment: bool, solver: str = "highs") -> tuple[np.ndarray, ...]:
    """Plan (n, m) and duals f (n,), g (m,) (None for the assignment path) of one problem in float64."""
    n, m = M.shape
    if assignment:
        rows, cols = scipy.optimize.linear_sum_assignment(M)
        plan = np.zeros((n, m))
        plan[rows, cols] = 1.0 / n
        return plan, None, None
    # Both weights are rescaled to the same mass (they agree to the checking tolerance) and zero-mass points are
    # removed from the LP: their rows/columns of the plan are 0 and the LP stays non-degenerate in their place.
    b = b * (a.sum() / b.sum())
    ia, jb = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    plan = np.zeros((n, m))
    f, g = np.zeros(n), np.zeros(m)
    lp = _network_simplex if solver == "network_simplex" else _transport_lp
    sub_plan, f[ia], g[jb] = lp(a[ia], b[jb], M[np.ix_(ia, jb)])
    plan[np.ix_(ia, jb)] = sub_plan
    # zero-mass points: the largest feasible potential (c-transform), so that f_i + g_j <= M_ij everywhere
    za, zb = np.flatnonzero(a <= 0), np.flatnonzero(b <= 0)
    if za.size:
        f[za] = (M[np.ix_(za, jb)] - g[jb]).min(1)
    if zb.size:
        g[zb] = (M[:, zb] - f[:, None]).min(0)
    # centre f; the constant moves to g so that f_i + g_j is unchanged
    c = f.mean()
    return plan, f - c, g + c


def _solve(a: Any, b: Any, M: Any, need_duals: bool, solver: str = "auto") -> EMDResult:
    """Validate, solve each problem of the batch on the CPU and build the (differentiable) value."""
    solver = _resolve_solver(solver)
    uniform = a is None and b is None
    a, b, M, batched, out_dtype = prepare_problem(a, b, M, balanced=True)
    B, n, m = M.shape
    want_weight_grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    need_duals = need_duals or want_weight_grad
    a_np = a.detach().to("cpu", torch.float64).numpy()
    b_np = b.detach().to("cpu", torch.float64).numpy()
    if not uniform:
        uniform = bool((a_np == a_np[:, :1]).all() and (b_np == b_np[:, :1]).all())
    assignment = uniform and n == m and not need_duals
    if not assignment and solver == "highs" and n * m > MAX_LP_ENTRIES:
        raise GeosslError(
            f"emd: M has {n}x{m} = {n * m} entries per problem, more than the exact LP solver handles "
            f"({MAX_LP_ENTRIES}); use sinkhorn (entropic OT) with a small reg instead."
        )
    M_np = M.detach().to("cpu", torch.float64).numpy()

    plans, fs, gs = [], [], []
    for k in range(B):
        plan, f, g = _solve_numpy(a_np[k], b_np[k], M_np[k], assignment, solver)
        plans.append(plan)
        fs.append(f if f is not None else np.zeros(n))
        gs.append(g if g is not None else np.zeros(m))

    def to_torch(x: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(x)).to(device=M.device, dtype=M.dtype)

    P, f, g = to_torch(plans), to_torch(fs), to_torch(gs)
    # <P, M> with P constant has gradient P w.r.t. M (envelope theorem); the surrogate terms are zero in value and
    # give the centred duals as gradients w.r.t. a and b (Peyré & Cuturi 2019, §9.1)
    value = (P * M).sum((-2, -1))
    if want_weight_grad:
        gc = g - g.mean(-1, keepdim=True)
        value = value + (f * (a - a.detach())).sum(-1) + (gc * (b - b.detach())).sum(-1)

    def out(x: torch.Tensor) -> torch.Tensor:
        x = x.to(out_dtype)
        return x if batched else x.squeeze(0)

    return EMDResult(plan=out(P), f=out(f), g=out(g), value=out(value))


def emd(
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    M: torch.Tensor,
    *,
    solver: str = "auto",
    return_result: bool = False,
) -> torch.Tensor | EMDResult:
    """Exact optimal transport plan (Kantorovich problem; Peyré & Cuturi 2019, §2.3), as POT's ``ot.emd``.

    Solves ``min_{P in U(a, b)} <P, M>``, ``U(a, b) = {P >= 0 : P 1 = a, P^T 1 = b}``, in float64 on the CPU:

    - ``n == m`` with uniform ``a`` and ``b`` (and no duals needed): the assignment problem, solved by
      ``scipy.optimize.linear_sum_assignment`` (Jonker-Volgenant); the plan is a permutation matrix divided by ``n``.
    - otherwise: the linear program on the transport polytope, solved by POT's network simplex (Bonneel et al.
      2011) when POT is installed, else by the HiGHS simplex solver (``scipy.optimize.linprog(method="highs")``);
      both return a vertex of ``U(a, b)`` and the dual potentials.

    Problems with more than :data:`MAX_LP_ENTRIES` cost entries are refused on the HiGHS path (use ``sinkhorn``).
    Optimal plans are not unique under ties (e.g. duplicated points); any optimal vertex may be returned.

    Args:
        a: source weights (n,), or (B, n) / (n,) (broadcast) for batched ``M``; ``None`` = uniform 1/n. Must be
            non-negative and sum to 1 (zero-mass points are allowed: their plan rows are 0).
        b: target weights (m,), or (B, m) / (m,); ``None`` = uniform 1/m. Same constraints as ``a``.
        M: cost matrix (n, m) or batch of cost matrices (B, n, m), solved one after the other; finite.
        solver: ``"auto"`` (network simplex if POT is installed, else HiGHS), ``"network_simplex"`` or ``"highs"``.
        return_result: return an :class:`EMDResult` (plan, centred dual potentials, value) instead of the plan.
            The duals come from the LP, so this never takes the assignment path.

    Returns:
        The plan, shape (n, m) or (B, n, m), with ``M``'s dtype and device, detached from the graph; or an
        :class:`EMDResult`.

    Raises:
        GeosslError: for mismatched shapes, negative weights, weights not summing to 1, NaN/Inf in the inputs, or
            a problem too large for the LP solver; the message names the argument.
    """
    result = _solve(a, b, M, need_duals=return_result, solver=solver)
    return result if return_result else result.plan


def emd2(
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    M: torch.Tensor,
    *,
    solver: str = "auto",
    return_result: bool = False,
) -> torch.Tensor | EMDResult:
    """Exact optimal transport cost ``<P*, M>`` (Peyré & Cuturi 2019, §2.3), as POT's ``ot.emd2``.

    Same solvers as :func:`emd` (network simplex or HiGHS LP, or ``linear_sum_assignment`` for uniform square problems).
    Gradients follow the envelope theorem: ``d value / dM = P*``, ``d value / da = f* - mean f*`` and
    ``d value / db = g* - mean g*`` (centred optimal dual potentials, as POT). They are supergradients where the
    optimal plan or duals are not unique (ties, degenerate problems such as uniform square ones).

    Args:
        a: source weights (n,) or (B, n); ``None`` = uniform. See :func:`emd`.
        b: target weights (m,) or (B, m); ``None`` = uniform.
        M: cost matrix (n, m) or (B, n, m).
        solver: as :func:`emd`.
        return_result: return an :class:`EMDResult` instead of the value.

    Returns:
        The value, shape () or (B,), with ``M``'s dtype and device; or an :class:`EMDResult`.

    Raises:
        GeosslError: as :func:`emd`.
    """
    result = _solve(a, b, M, need_duals=return_result, solver=solver)
    return result if return_result else result.value
