"""Entropic optimal transport: log-domain Sinkhorn (Cuturi 2013; Peyré & Cuturi 2019, §4).

The entropic OT problem between weights ``a`` (n,) and ``b`` (m,) with cost ``M`` (n, m) is::

    min_{P >= 0, P 1 = a, P^T 1 = b}  <P, M> - reg * H(P),        H(P) = -sum_ij P_ij (log P_ij - 1)

Its solution is ``P_ij = exp((f_i + g_j - M_ij) / reg)`` for dual potentials ``f``, ``g`` found by alternating
``logsumexp`` updates (log-domain Sinkhorn, Peyré & Cuturi 2019, Remark 4.23), which never underflow even for small
``reg``. Everything is pure PyTorch: device- and dtype-preserving, batched and differentiable.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from geossl.ot._checks import (
    check_grad,
    check_iterations,
    check_reg,
    prepare_problem,
    safe_log,
)
from geossl.errors import GeosslError
from geossl.ot._result import SinkhornResult

__all__ = ["SinkhornResult", "sinkhorn", "sinkhorn2"]


#: On CPU, batched problems are solved in blocks of at most this many cost entries (1 MiB of float32): a whole
#: (B, n, m) temporary per logsumexp falls out of cache, and measured on 2 cores a batch of 64 problems of 256x256
#: ran 3x slower as one block than as 64 cache-sized ones. GPUs take the whole batch at once.
CPU_BLOCK_ELEMENTS = 1 << 18


#: Solvers of the balanced problem: ``"log"`` (logsumexp updates) and ``"stabilized"`` (scaling with absorption).
METHODS = ("auto", "log", "stabilized")


def _iterate(
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    a: torch.Tensor,
    Mr: torch.Tensor,
    kappa1: float,
    kappa2: float,
    *,
    stabilized: bool = False,
    **kw: Any,
) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """The iterations over cache-sized blocks of the batch on CPU, over the whole batch elsewhere."""
    B, n, m = Mr.shape
    block = _iterate_block_stabilized if stabilized else _iterate_block
    if stabilized:
        kw.pop("balanced")
    else:
        kw = {**kw, "kappa1": kappa1, "kappa2": kappa2}
    if Mr.device.type != "cpu" or B == 1 or B * n * m <= CPU_BLOCK_ELEMENTS:
        return block(log_a, log_b, a, Mr, **kw)
    size = max(1, CPU_BLOCK_ELEMENTS // (n * m))
    log_a, log_b, a = log_a.expand(B, n), log_b.expand(B, m), a.expand(B, n)
    blocks = [block(log_a[i : i + size], log_b[i : i + size], a[i : i + size], Mr[i : i + size], **kw) for i in range(0, B, size)]
    fh, gh, ts, errs = zip(*blocks)
    return torch.cat(fh), torch.cat(gh), max(ts), torch.cat(errs)


def _iterate_block(
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    a: torch.Tensor,
    Mr: torch.Tensor,
    *,
    kappa1: float,
    kappa2: float,
    balanced: bool,
    n_iters: int | None,
    max_iter: int,
    tol: float,
    check_every: int,
) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Run the (possibly KL-relaxed) log-domain Sinkhorn iterations on scaled potentials.

    Args:
        log_a: log source weights (B, n).
        log_b: log target weights (B, m).
        a: source weights (B, n), for the row-marginal error.
        Mr: cost divided by ``reg`` (B, n, m).
        kappa1: ``reg_m1 / (reg_m1 + reg)`` (1 for a balanced side).
        kappa2: ``reg_m2 / (reg_m2 + reg)``.
        balanced: stopping quantity is the row-marginal L1 error (True) or the potential change (False).
        n_iters: fixed number of iterations (no convergence check) or None.
        max_iter: maximal number of iterations when ``n_iters`` is None.
        tol: stopping threshold on the error.
        check_every: iterations between convergence checks.

    Returns:
        ``(f / reg, g / reg, iterations run, per-problem error (B,))``.
    """
    B, n, m = Mr.shape
    fh = torch.zeros(B, n, dtype=Mr.dtype, device=Mr.device)
    gh = torch.zeros(B, m, dtype=Mr.dtype, device=Mr.device)

    def step(fh: torch.Tensor, gh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fh = log_a - torch.logsumexp(gh[:, None, :] - Mr, dim=2)
        if kappa1 != 1.0:
            fh = kappa1 * fh
        gh = log_b - torch.logsumexp(fh[:, :, None] - Mr, dim=1)
        if kappa2 != 1.0:
            gh = kappa2 * gh
        return fh, gh

    def error(fh: torch.Tensor, gh: torch.Tensor, prev: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            if balanced:
                # same expression as the returned plan, so the error describes that plan (float32 rounding)
                log_rows = torch.logsumexp(fh[:, :, None] + gh[:, None, :] - Mr, dim=2)
                return (torch.exp(log_rows) - a).abs().sum(-1)
            df = (fh - prev[0]).abs().amax(-1)
            dg = (gh - prev[1]).abs().amax(-1)
            return torch.maximum(df, dg)

    total = n_iters if n_iters is not None else max_iter
    err = None
    t = 0
    for t in range(1, total + 1):
        prev = (fh, gh)
        fh, gh = step(fh, gh)
        if n_iters is None and tol > 0 and (t % check_every == 0 or t == total):
            err = error(fh, gh, prev)
            if float(err.max()) < tol:
                break
    if err is None:
        err = error(fh, gh, prev)
    return fh, gh, t, err


def _iterate_block_stabilized(
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    a: torch.Tensor,
    Mr: torch.Tensor,
    *,
    n_iters: int | None,
    max_iter: int,
    tol: float,
    check_every: int,
) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Balanced Sinkhorn by scaling with absorption (Schmitzer 2019, "Stabilized sparse scaling algorithms", Alg. 2).

    The potentials are kept as ``F = fh + log u`` and ``G = gh + log v``: ``fh``, ``gh`` are absorbed into the
    stabilised kernel ``K = exp(fh + gh - Mr)`` and each update is a matrix-vector product with ``K`` instead of a
    logsumexp, so an iteration needs no ``exp`` of the n x m cost. The iterates are those of :func:`_iterate_block`
    (``F <- log a - LSE_j(G_j - Mr_ij)`` in exact arithmetic). The scalings are absorbed into the potentials when they
    leave ``[e^-tau, e^tau]``; a half-step whose products underflow (a row or column of ``K`` vanishing where the
    weight is positive) is done as an exact logsumexp step instead, so no iterate is ever inexact.

    Shapes as :func:`_iterate_block`; returns ``(F, G, iterations run, row-marginal L1 error (B,))``.
    """
    B, n, m = Mr.shape
    finfo = torch.finfo(Mr.dtype)
    tau = 30.0 if Mr.dtype == torch.float32 else 200.0
    hi, lo = math.exp(tau), math.exp(-tau)
    floor = finfo.tiny / finfo.eps  # below this a sum of kernel entries has lost its relative precision
    a_pos = (log_a > -1e4).expand(B, n)  # zero-mass points (safe_log maps them to -1e5) are never rescaled
    b_pos = (log_b > -1e4).expand(B, m)
    ea, eb = log_a.exp().expand(B, n), log_b.exp().expand(B, m)
    fh = torch.zeros(B, n, dtype=Mr.dtype, device=Mr.device)
    gh = torch.zeros(B, m, dtype=Mr.dtype, device=Mr.device)
    K = torch.exp(-Mr)
    # scalings as row vectors (B, 1, k): a (1 x m) @ (m x n) product is ~10x faster on CPU than the (n x m) @ (m x 1)
    # product of the same size (measured, batched BLAS), so K v is computed as v^T K^T with K^T a view
    u = torch.ones(B, 1, n, dtype=Mr.dtype, device=Mr.device)
    v = torch.ones(B, 1, m, dtype=Mr.dtype, device=Mr.device)

    def absorb() -> torch.Tensor:
        nonlocal fh, gh, u, v
        fh = fh + _log_scaling(u)
        gh = gh + _log_scaling(v)
        u, v = torch.ones_like(u), torch.ones_like(v)
        return torch.exp(fh[:, :, None] + gh[:, None, :] - Mr)

    def half_step(K: torch.Tensor, s: torch.Tensor, w: torch.Tensor, pos: torch.Tensor, rows: bool) -> tuple[torch.Tensor, bool]:
        Ks = torch.bmm(s, K.transpose(1, 2)) if rows else torch.bmm(s, K)
        new = torch.where(pos[:, None, :], w[:, None, :] / Ks, torch.zeros_like(Ks))
        Ks, new = Ks[:, 0], new[:, 0]
        flag = ((Ks < floor) & pos).any() | (new > hi).any() | ((new < lo) & pos).any()
        return new[:, None, :], bool(flag)

    def log_half_step(rows: bool) -> torch.Tensor:
        # exact logsumexp update of F (rows) or G (columns), then everything absorbed
        nonlocal fh, gh, u, v
        F, G = fh + _log_scaling(u), gh + _log_scaling(v)
        if rows:
            F = log_a - torch.logsumexp(G[:, None, :] - Mr, dim=2)
        else:
            G = log_b - torch.logsumexp(F[:, :, None] - Mr, dim=1)
        fh, gh = F, G
        u, v = torch.ones_like(u), torch.ones_like(v)
        return torch.exp(fh[:, :, None] + gh[:, None, :] - Mr)

    def row_error() -> torch.Tensor:
        rows = u[:, 0] * torch.bmm(v, K.transpose(1, 2))[:, 0]
        return (rows - ea).abs().sum(-1)

    def careful_iteration() -> None:
        nonlocal K, u, v
        new_u, flag = half_step(K, v, ea, a_pos, rows=True)
        if flag:
            K = absorb()
            new_u, flag = half_step(K, v, ea, a_pos, rows=True)
            if flag:
                K = log_half_step(rows=True)
                new_u = u
        u = new_u
        new_v, flag = half_step(K, u, eb, b_pos, rows=False)
        if flag:
            K = absorb()
            new_v, flag = half_step(K, u, eb, b_pos, rows=False)
            if flag:
                K = log_half_step(rows=False)
                new_v = v
        v = new_v

    zero_mass = not bool(a_pos.all()) or not bool(b_pos.all())
    ea3, eb3 = ea[:, None, :], eb[:, None, :]
    Kt = K.transpose(1, 2)

    def fast_chunk(steps: int) -> bool:
        # plain scaling steps without host synchronisation; True when every scaling stayed in bounds (an
        # underflowed product shows up as a scaling above e^tau for any weight above ~1e-15)
        nonlocal u, v
        for _ in range(steps):
            u = ea3 / torch.bmm(v, Kt)
            v = eb3 / torch.bmm(u, K)
        bounded = (u <= hi).all() & (u >= lo).all() & (v <= hi).all() & (v >= lo).all()
        return bool(bounded)

    total = n_iters if n_iters is not None else max_iter
    chunk = min(check_every, 10)
    err = None
    t = 0
    while t < total:
        steps = min(chunk, total - t)
        if n_iters is None and tol > 0:
            steps = min(steps, check_every - t % check_every)
        saved = (u, v)
        if zero_mass or not fast_chunk(steps):
            u, v = saved  # redo the chunk step by step, absorbing or falling back to logsumexp where needed
            for _ in range(steps):
                careful_iteration()
            Kt = K.transpose(1, 2)
        t += steps
        if n_iters is None and tol > 0 and (t % check_every == 0 or t == total):
            err = row_error()
            if float(err.max()) < tol:
                break
    if err is None:
        err = row_error()
    return fh + _log_scaling(u), gh + _log_scaling(v), t, err


def _log_scaling(s: torch.Tensor) -> torch.Tensor:
    """``log s`` of a scaling vector (B, 1, k) as (B, k); a zero scaling (zero-mass point) gives -1e5, as safe_log."""
    s = s[:, 0]
    return torch.where(s > 0, torch.log(torch.where(s > 0, s, torch.ones_like(s))), torch.full_like(s, -1e5))


def _solve(
    a: Any,
    b: Any,
    M: Any,
    reg: Any,
    *,
    reg_m: tuple[float, float] | None,
    reg_type: str,
    n_iters: int | None,
    max_iter: int,
    tol: float,
    grad: str,
    check_every: int,
    method: str = "log",
) -> tuple[SinkhornResult, bool]:
    """Shared driver of the balanced and unbalanced solvers; returns the result and whether M was batched."""
    balanced = reg_m is None
    reg = check_reg(reg, "reg")
    check_iterations(n_iters, max_iter, tol, check_every)
    check_grad(grad)
    if method not in METHODS:
        raise GeosslError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    a, b, M, batched, out_dtype = prepare_problem(a, b, M, balanced=balanced)
    stabilized = balanced and _use_stabilized(method, grad, M, a, b)
    kappa1, kappa2 = (1.0, 1.0) if balanced else tuple(1.0 if r == float("inf") else r / (r + reg) for r in reg_m)

    with torch.autocast(device_type=M.device.type, enabled=False):

        def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            log_a, log_b = safe_log(a), safe_log(b)
            Mr = M / reg
            if not balanced and reg_type == "kl":
                # eps KL(P || a b^T) == -eps H(P) with the cost M - eps log a - eps log b (up to a constant).
                Mr = Mr - log_a[:, :, None] - log_b[:, None, :]
            return log_a, log_b, Mr

        iter_kw = {
            "stabilized": stabilized,
            "balanced": balanced,
            "n_iters": n_iters,
            "max_iter": max_iter,
            "tol": tol,
            "check_every": check_every,
        }
        if grad == "autodiff":
            log_a, log_b, Mr = inputs()
            fh, gh, t, err = _iterate(log_a, log_b, a, Mr, kappa1, kappa2, **iter_kw)
        else:
            with torch.no_grad():
                log_a, log_b, Mr = inputs()
                fh, gh, t, err = _iterate(log_a, log_b, a, Mr, kappa1, kappa2, **iter_kw)
            if grad == "envelope":
                log_a, log_b, Mr = inputs()  # differentiable w.r.t. M (and a, b through the "kl" cost)

        if grad == "detach":
            with torch.no_grad():
                plan, value, objective = _value_terms(fh, gh, Mr, M, a, b, reg, reg_m, reg_type)
        else:
            plan, value, objective = _value_terms(fh, gh, Mr, M, a, b, reg, reg_m, reg_type)
            if grad == "envelope":
                value, objective = _envelope(plan, value, objective, fh, gh, M, a, b, reg, balanced)

    def out(x: torch.Tensor) -> torch.Tensor:
        x = x.to(out_dtype)
        return x if batched else x.squeeze(0)

    converged = bool(float(err.max()) < tol) if tol > 0 else False
    result = SinkhornResult(
        plan=out(plan),
        f=out(reg * fh),
        g=out(reg * gh),
        value=out(value),
        objective=out(objective),
        n_iters=t,
        marginal_error=out(err),
        converged=converged,
    )
    return result, batched


def _use_stabilized(method: str, grad: str, M: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> bool:
    """Resolve ``method``: ``"auto"`` takes the scaling solver on CPU when no graph goes through the iterations.

    On CPU an ``exp`` per cost entry and iteration is what makes log-domain Sinkhorn slow, and the scaling solver
    avoids it; on a GPU the ``exp`` is nearly free while the solver's per-step checks would synchronise the host.
    Autodiff through the iterations stays on the logsumexp form, whose backward has no division by the scalings.
    """
    if method != "auto":
        return method == "stabilized"
    graph = grad == "autodiff" and torch.is_grad_enabled() and any(t.requires_grad for t in (M, a, b))
    return M.device.type == "cpu" and not graph


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Generalised KL ``sum p log(p / q) - p + q`` over the last dimension."""
    return (torch.xlogy(p, p) - torch.xlogy(p, q) - p + q).sum(-1)


def _value_terms(
    fh: torch.Tensor,
    gh: torch.Tensor,
    Mr: torch.Tensor,
    M: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    reg: float,
    reg_m: tuple[float, float] | None,
    reg_type: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Plan (B, n, m), linear value <P, M> (B,) and full regularised objective (B,)."""
    log_plan = fh[:, :, None] + gh[:, None, :] - Mr
    plan = torch.exp(log_plan)
    value = (plan * M).sum((-2, -1))
    if reg_m is None or reg_type == "entropy":
        # -reg H(P) = reg sum P (log P - 1)
        reg_term = (plan * (log_plan - 1)).sum((-2, -1))
    else:
        # reg KL(P || a b^T) with log(P / (a b^T)) = f/reg + g/reg - M/reg
        log_ratio = fh[:, :, None] + gh[:, None, :] - M / reg
        reg_term = (plan * log_ratio - plan).sum((-2, -1)) + a.sum(-1) * b.sum(-1)
    objective = value + reg * reg_term
    if reg_m is not None:
        if reg_m[0] != float("inf"):
            objective = objective + reg_m[0] * _kl(plan.sum(-1), a)
        if reg_m[1] != float("inf"):
            objective = objective + reg_m[1] * _kl(plan.sum(-2), b)
    return plan, value, objective


def _envelope(
    plan: torch.Tensor,
    value: torch.Tensor,
    objective: torch.Tensor,
    fh: torch.Tensor,
    gh: torch.Tensor,
    M: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    reg: float,
    balanced: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attach envelope-theorem gradients to the values: d/dM = P; balanced also d/da = f - mean f, d/db = g - mean g."""
    P = plan.detach()
    surrogate = (P * (M - M.detach())).sum((-2, -1))
    if balanced:
        f = reg * fh.detach()
        g = reg * gh.detach()
        f = f - f.mean(-1, keepdim=True)
        g = g - g.mean(-1, keepdim=True)
        surrogate = surrogate + (f * (a - a.detach())).sum(-1) + (g * (b - b.detach())).sum(-1)
    return value.detach() + surrogate, objective.detach() + surrogate


def sinkhorn(
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    M: torch.Tensor,
    reg: float,
    *,
    n_iters: int | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "autodiff",
    return_result: bool = False,
    check_every: int = 10,
    method: str = "auto",
) -> torch.Tensor | SinkhornResult:
    """Entropic OT plan by log-domain Sinkhorn (Cuturi 2013; Peyré & Cuturi 2019, §4.2 and Remark 4.23).

    Solves ``min_{P in U(a, b)} <P, M> - reg H(P)`` with ``H(P) = -sum P (log P - 1)``, the problem solved by POT's
    ``ot.sinkhorn(a, b, M, reg, method="sinkhorn_log")``. Each iteration updates the potentials (cost units)::

        f_i <- reg log a_i - reg LSE_j((g_j - M_ij) / reg)      # rows exact
        g_j <- reg log b_j - reg LSE_i((f_i - M_ij) / reg)      # columns exact (after a full iteration)

    and the plan is ``P_ij = exp((f_i + g_j - M_ij) / reg)``. After each iteration the column marginal is exact and
    the row marginal carries the residual error.

    Args:
        a: source weights (n,), or (B, n) / (n,) (broadcast) for batched ``M``; ``None`` = uniform 1/n. Must be
            non-negative and sum to 1 (zero-mass points are allowed, e.g. padding).
        b: target weights (m,), or (B, m) / (m,); ``None`` = uniform 1/m. Same constraints as ``a``.
        M: cost matrix (n, m) or batch of cost matrices (B, n, m); finite.
        reg: entropic regularisation strength ``reg`` (epsilon) > 0, in cost units.
        n_iters: if given, run exactly this many iterations with no convergence check (no host synchronisation in
            the loop; use for speed or a fixed differentiable unrolling). ``max_iter`` and ``tol`` are then ignored
            for stopping (``converged`` in the result still compares the final error with ``tol``).
        max_iter: maximal number of iterations when ``n_iters`` is None.
        tol: stop when the L1 row-marginal error ``||P 1 - a||_1`` (per problem, max over the batch) is below
            ``tol``, checked every ``check_every`` iterations. ``tol=0`` runs ``max_iter`` iterations.
        grad: gradient mode.

            - ``"autodiff"``: backpropagate through all iterations (memory O(iterations * n * m)).
            - ``"detach"``: everything computed without a graph; the outputs have no gradient.
            - ``"envelope"``: the potentials ``f``, ``g`` are computed without gradient; then the plan is re-expressed
              as ``exp((f + g - M) / reg)`` with ``f``, ``g`` constant, so the plan is differentiable w.r.t. ``M``
              only through this explicit formula (``dP_ij/dM_ij = -P_ij / reg``; no gradient reaches ``a``, ``b``).
              The values in the result (``value``, ``objective``) get the envelope-theorem gradient of the
              regularised objective: ``d/dM = P``, ``d/da = f - mean f``, ``d/db = g - mean g``. Memory O(n * m).
        return_result: return a :class:`SinkhornResult` instead of the plan.
        check_every: iterations between convergence checks (each check is a device-to-host synchronisation).
        method: how the iterations are computed; all give the same iterates (equal to 1e-12 in float64, tested).

            - ``"log"``: logsumexp updates of the potentials, as above.
            - ``"stabilized"``: Sinkhorn scaling with the scalings absorbed into the potentials when they grow
              (Schmitzer 2019, Alg. 2): a matrix-vector product per half-step instead of an ``exp`` per cost entry,
              with an exact logsumexp half-step wherever a kernel row or column underflows. Several times faster
              on CPU (``benchmarks/results/ot_speed.md``).
            - ``"auto"`` (default): ``"stabilized"`` on CPU when no autodiff graph runs through the iterations
              (``grad`` is ``"detach"`` or ``"envelope"``, or no input requires grad), ``"log"`` otherwise.

    Returns:
        The plan, shape (n, m) or (B, n, m), with ``M``'s dtype and device; or a :class:`SinkhornResult` when
        ``return_result=True`` (plan, potentials ``f`` (.., n) and ``g`` (.., m) in cost units, ``value = <P, M>``,
        ``objective = <P, M> - reg H(P)``, iterations run, marginal error, convergence flag).

    Raises:
        GeosslError: for mismatched shapes, negative weights, weights not summing to 1 (tolerance
            ``max(1e-6, 8 eps_dtype)``), ``reg <= 0``, NaN/Inf in ``M`` or ``a``/``b``, or invalid iteration/grad
            settings; the message names the argument.

    Notes:
        float16/bfloat16 inputs are solved in float32 (autocast disabled) and the outputs cast back.
    """
    result, _ = _solve(
        a,
        b,
        M,
        reg,
        reg_m=None,
        reg_type="entropy",
        n_iters=n_iters,
        max_iter=max_iter,
        tol=tol,
        grad=grad,
        check_every=check_every,
        method=method,
    )
    return result if return_result else result.plan


def sinkhorn2(
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    M: torch.Tensor,
    reg: float,
    *,
    n_iters: int | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "autodiff",
    return_result: bool = False,
    check_every: int = 10,
    method: str = "auto",
) -> torch.Tensor | SinkhornResult:
    """Entropic OT value by log-domain Sinkhorn (Cuturi 2013; Peyré & Cuturi 2019, §4.2).

    Value convention (same as POT's ``ot.sinkhorn2``): the **linear** cost ``<P, M> = sum_ij P_ij M_ij`` at the
    entropic plan ``P``, without the entropy term. The full regularised objective ``<P, M> - reg H(P)``
    (``H(P) = -sum P (log P - 1)``) is ``sinkhorn2(..., return_result=True).objective``.

    Arguments are those of :func:`sinkhorn` (including ``method``). Gradients: ``"autodiff"`` differentiates ``<P, M>`` through the
    iterations; ``"envelope"`` returns the same number but with the envelope-theorem gradient of the regularised
    objective (``d/dM = P``, ``d/da = f - mean f``, ``d/db = g - mean g``), which is cheaper and differs from the exact
    gradient of the linear term by O(reg); ``"detach"`` returns no gradient.

    Returns:
        The value, shape () or (B,) for batched ``M``, with ``M``'s dtype and device; or a :class:`SinkhornResult`
        when ``return_result=True``.

    Raises:
        GeosslError: as :func:`sinkhorn`.
    """
    result, _ = _solve(
        a,
        b,
        M,
        reg,
        reg_m=None,
        reg_type="entropy",
        n_iters=n_iters,
        max_iter=max_iter,
        tol=tol,
        grad=grad,
        check_every=check_every,
        method=method,
    )
    return result if return_result else result.value
