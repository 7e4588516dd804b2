"""Gromov-Wasserstein (GW) transport between two metric-measure spaces (Mémoli 2011; Peyré, Cuturi & Solomon 2016).

For intra-domain dissimilarities ``C1`` (n, n) and ``C2`` (m, m) with weights ``p`` (n,) and ``q`` (m,)::

    GW(C1, C2, p, q) = min_{T in U(p, q)} sum_{i,j,k,l} L(C1_ik, C2_jl) T_ij T_kl

with ``L(x, y) = (x - y)^2`` (``"square_loss"``) or ``L(x, y) = x log(x / y) - x + y`` (``"kl_loss"``). Both losses
decompose as ``L(x, y) = f1(x) + f2(y) - h1(x) h2(y)``, so for ``T in U(p, q)`` the tensor product is (Peyré et al.
2016, Prop. 1)::

    (L (x) T)_ij = sum_kl L(C1_ik, C2_jl) T_kl = (f1(C1) p)_i + (f2(C2) q)_j - (h1(C1) T h2(C2)^T)_ij

costing O(n^2 m + n m^2) instead of the O(n^2 m^2) of the 4-D tensor, and ``GW = <L (x) T, T>``. The problem is a
non-convex quadratic program; the solvers find stationary points:

- ``reg=None`` (or 0): conditional gradient (Frank-Wolfe) with exact line search (Vayer et al. 2019, Alg. 1-2), each
  linearisation solved exactly by :func:`geossl.ot.emd`; the algorithm of POT's ``ot.gromov.gromov_wasserstein``.
- ``reg > 0``: entropic GW by projected mirror descent (Peyré et al. 2016, Prop. 2), each step a log-domain Sinkhorn
  problem (:func:`geossl.ot.sinkhorn`); the algorithm of POT's ``ot.gromov.entropic_gromov_wasserstein``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import scipy.optimize
import torch

from geossl.errors import GeosslError
from geossl.ot._checks import _as_tensor, check_reg
from geossl.ot.emd import emd
from geossl.ot.sinkhorn import sinkhorn

__all__ = ["LOSSES", "GromovResult", "gromov_wasserstein", "gromov_wasserstein2"]

#: Supported ground losses ``L(C1_ik, C2_jl)``.
LOSSES = ("square_loss", "kl_loss")

#: Gradient modes of :func:`gromov_wasserstein2`.
GROMOV_GRADS = ("envelope", "autodiff", "detach")

# Offset inside the logarithms of "kl_loss", as POT, so that zero dissimilarities (the diagonal of a distance
# matrix) give a finite loss.
_KL_OFFSET = 1e-18


@dataclass
class GromovResult:
    """Gromov-Wasserstein solution (returned with ``return_result=True``).

    Attributes:
        plan: coupling ``T``, shape (n, m).
        value: GW loss ``<L (x) T, T> = sum_ijkl L(C1_ik, C2_jl) T_ij T_kl`` at ``T``, shape () (POT's
            ``gromov_wasserstein2`` / ``entropic_gromov_wasserstein2`` value; no entropy term).
        objective: the objective the solver minimised: ``value`` for exact GW, ``value - reg H(T)`` with
            ``H(T) = -sum T (log T - 1)`` for entropic GW; shape ().
        n_iters: outer iterations run (of the best restart).
        converged: whether the stopping criterion was met before ``max_iter`` (best restart).
    """

    plan: torch.Tensor
    value: torch.Tensor
    objective: torch.Tensor
    n_iters: int
    converged: bool


def check_matrix(x: Any, name: str, *, square: bool, like: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``x`` as a finite 2-D floating tensor (square if asked), on ``like``'s device when given.

    Raises:
        GeosslError: naming ``name`` for a wrong type, dimension, shape, device or non-finite entries.
    """
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise GeosslError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}.") from None
    if x.is_complex():
        raise GeosslError(f"{name} must be real, got a complex tensor.")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if like is not None and x.device != like.device:
        raise GeosslError(
            f"{name} is on {x.device} but the first input is on {like.device}; move them to the same device."
        )
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        want = "(n, n)" if square else "(n, d)"
        raise GeosslError(f"{name} must be a non-empty matrix of shape {want}, got shape {tuple(x.shape)}.")
    if square and x.shape[0] != x.shape[1]:
        raise GeosslError(f"{name} must be a square (n, n) dissimilarity matrix, got shape {tuple(x.shape)}.")
    if not bool(torch.isfinite(x.detach()).all()):
        raise GeosslError(f"{name} contains NaN or Inf; use finite values.")
    return x


def check_weights(x: Any, name: str, size: int, dtype: torch.dtype, device: torch.device, what: str) -> torch.Tensor:
    """Return the probability weights ``x`` (size,), or uniform ``1/size`` for ``None``.

    Raises:
        GeosslError: naming ``name`` for a wrong shape, NaN/Inf, negative entries or a sum different from 1.
    """
    if x is None:
        return torch.full((size,), 1.0 / size, dtype=dtype, device=device)
    x = _as_tensor(x, name, dtype, device)
    if tuple(x.shape) != (size,):
        raise GeosslError(f"{name} must have shape ({size},) to match {what}, got {tuple(x.shape)}.")
    xd = x.detach()
    if not bool(torch.isfinite(xd).all()):
        raise GeosslError(f"{name} contains NaN or Inf.")
    if bool((xd < 0).any()):
        raise GeosslError(f"{name} has negative entries; weights must be >= 0.")
    tol = max(1e-6, 8 * torch.finfo(dtype).eps)
    if abs(float(xd.sum()) - 1) > tol:
        raise GeosslError(f"{name} must sum to 1 (it sums to {float(xd.sum()):.6g}); normalise it.")
    return x


def check_max_iter(value: Any, name: str = "max_iter") -> int:
    """Check a positive iteration count."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GeosslError(f"{name} must be a positive integer, got {value!r}.")
    return value


def check_tol(value: Any, name: str = "tol") -> float:
    """Check a non-negative tolerance."""
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise GeosslError(f"{name} must be a non-negative number, got {value!r}.") from None
    if math.isnan(t) or t < 0:
        raise GeosslError(f"{name} must be >= 0, got {value!r}.")
    return t


class _Quadratic:
    """The GW objective ``T -> <L (x) T, T>`` through the tensor-product decomposition (Peyré et al. 2016, Prop. 1).

    Holds ``u = f1(C1) p`` (n,), ``v = f2(C2) q`` (m,), ``h1(C1)`` (n, n) and ``h2(C2)`` (m, m) for ``C1``, ``C2`` and,
    for asymmetric inputs, the same for ``C1^T``, ``C2^T`` (the gradient of ``T^T A T``-type forms is then the mean
    of both tensor products).
    """

    def __init__(self, C1: torch.Tensor, C2: torch.Tensor, p: torch.Tensor, q: torch.Tensor, loss: str) -> None:
        self.u, self.v, self.h1, self.h2 = _terms(C1, C2, p, q, loss)
        # same symmetry test as POT (numpy allclose: rtol 1e-5, atol 1e-10), so both take the same branches
        self.symmetric = bool(torch.allclose(C1, C1.T, atol=1e-10)) and bool(torch.allclose(C2, C2.T, atol=1e-10))
        self.transposed = None if self.symmetric else _terms(C1.T, C2.T, p, q, loss)

    def tensor(self, T: torch.Tensor) -> torch.Tensor:
        """``L (x) T`` (n, m)."""
        return _tensor(self.u, self.v, self.h1, self.h2, T)

    def value(self, T: torch.Tensor) -> torch.Tensor:
        """``<L (x) T, T>`` (0-d)."""
        return (self.tensor(T) * T).sum()

    def grad(self, T: torch.Tensor) -> torch.Tensor:
        """Gradient of the objective at ``T`` (n, m): ``2 L (x) T`` (POT's ``gwggrad``; symmetrised if needed)."""
        g = 2 * self.tensor(T)
        if self.transposed is not None:
            g = 0.5 * (g + 2 * _tensor(*self.transposed, T))
        return g

    def line_search(self, G: torch.Tensor, D: torch.Tensor) -> tuple[float, float, float]:
        """Exact minimisation of ``t -> value(G + t D)`` over [0, 1] (Vayer et al. 2019, Alg. 2).

        ``value(G + t D) = value(G) + b t + a t^2``; the constant part of the tensor product contributes nothing
        because ``D`` has zero marginals. Returns ``(t, a, b)``.
        """
        hDh = self.h1 @ D @ self.h2.T
        a = -float((hDh * D).sum())
        if self.symmetric:
            b = -2 * float((hDh * G).sum())
        else:
            b = -float((hDh * G).sum()) - float(((self.h1 @ G @ self.h2.T) * D).sum())
        if a > 0:
            t = min(1.0, max(0.0, -b / (2 * a)))
        else:  # concave (or linear) along D: the minimum is at an end point
            t = 1.0 if a + b < 0 else 0.0
        return t, a, b


def _terms(C1: torch.Tensor, C2: torch.Tensor, p: torch.Tensor, q: torch.Tensor, loss: str) -> tuple[torch.Tensor, ...]:
    """``(f1(C1) p, f2(C2) q, h1(C1), h2(C2))`` of the decomposition ``L(x, y) = f1(x) + f2(y) - h1(x) h2(y)``."""
    if loss == "square_loss":
        f1, f2, h1, h2 = C1 * C1, C2 * C2, C1, 2 * C2
    else:
        f1 = C1 * torch.log(C1 + _KL_OFFSET) - C1
        f2, h1, h2 = C2, C1, torch.log(C2 + _KL_OFFSET)
    return f1 @ p, f2 @ q, h1, h2


def _tensor(u: torch.Tensor, v: torch.Tensor, h1: torch.Tensor, h2: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    return u[:, None] + v[None, :] - h1 @ T @ h2.T


def _frank_wolfe(
    quad: _Quadratic, p: torch.Tensor, q: torch.Tensor, G0: torch.Tensor, max_iter: int, tol_rel: float, tol_abs: float
) -> tuple[torch.Tensor, int, bool]:
    """Conditional gradient on ``U(p, q)`` (Vayer et al. 2019, Alg. 1; POT's ``ot.optim.cg``).

    Returns the plan, the number of iterations and whether the stopping test was met.

    The value is tracked through the line-search quadratic rather than recomputed, as POT does, so that both stop
    at the same iteration.
    """
    G = G0
    cost = float(quad.value(G))
    for it in range(1, max_iter + 1):
        old = cost
        direction = emd(p, q, quad.grad(G)) - G  # vertex minimising the linearised objective, minus G
        t, a, b = quad.line_search(G, direction)
        G = G + t * direction
        cost = cost + a * t * t + b * t
        delta = abs(cost - old)
        if (cost != 0 and delta / abs(cost) < tol_rel) or delta < tol_abs:
            return G, it, True
    return G, max_iter, False


def _mirror_descent(
    quad: _Quadratic,
    p: torch.Tensor,
    q: torch.Tensor,
    G0: torch.Tensor,
    reg: float,
    max_iter: int,
    tol: float,
    inner: dict[str, Any],
) -> tuple[torch.Tensor, int, bool]:
    """Entropic GW by projected mirror descent (Peyré et al. 2016, Prop. 2; POT's PGD solver).

    Returns the plan, the number of iterations and whether the stopping test was met.

    Each step is ``T <- argmin_{U in U(p, q)} <grad(T), U> - reg H(U)`` with ``grad(T) = 2 L (x) T``: POT's update
    (Peyré et al. write ``L (x) T``, i.e. half this cost, see POT's note on a missing factor 2 in their Prop. 2).
    The plan change ``||T - T_prev||_F`` is checked at iterations 1, 11, 21, ... as in POT.
    """
    T = G0
    for it in range(max_iter):
        prev = T
        T = sinkhorn(p, q, quad.grad(T), reg, **inner)
        if it % 10 == 0:
            err = float(torch.linalg.norm((T - prev).detach()))
            if not err > tol:  # NaN stops too (as POT's ``while err > tol``) but is not convergence
                return T, it + 1, err <= tol
    return T, max_iter, False


def _random_coupling(p: torch.Tensor, q: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random interior coupling of ``U(p, q)``: entropic OT plan of a uniform random cost in [0, 1)."""
    cost = torch.rand(p.shape[0], q.shape[0], generator=generator, dtype=torch.float64).to(p.device, p.dtype)
    return sinkhorn(p, q, cost, 0.05, max_iter=100000, tol=1e-13, grad="detach")


def _solve(
    C1: Any,
    C2: Any,
    p: Any,
    q: Any,
    loss: Any,
    reg: Any,
    *,
    max_iter: int | None,
    tol: Any,
    tol_abs: Any,
    G0: Any,
    n_init: Any,
    seed: int | None,
    as_permutation: bool,
    grad: str,
    inner_max_iter: Any,
    inner_tol: Any,
) -> GromovResult:
    """Validate the inputs, run the solver (with restarts) and build the differentiable value."""
    if loss not in LOSSES:
        raise GeosslError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}.")
    if grad not in GROMOV_GRADS:
        raise GeosslError(f"grad must be one of {', '.join(GROMOV_GRADS)}; got {grad!r}.")
    if isinstance(reg, torch.Tensor) and reg.numel() == 1:
        reg = reg.item()
    exact = reg is None or (isinstance(reg, (int, float)) and not isinstance(reg, bool) and reg == 0)
    if not exact:
        reg = check_reg(reg, "reg")
    elif grad == "autodiff":
        raise GeosslError(
            "grad='autodiff' needs entropic GW (reg > 0); exact GW plans are piecewise constant, use grad='envelope'."
        )
    C1 = check_matrix(C1, "C1", square=True)
    C2 = check_matrix(C2, "C2", square=True, like=C1)
    if loss == "kl_loss":
        for name, C in (("C1", C1), ("C2", C2)):
            if bool((C.detach() < 0).any()):
                raise GeosslError(f"{name} has negative entries; loss='kl_loss' needs non-negative dissimilarities.")
    out_dtype = torch.promote_types(C1.dtype, C2.dtype)
    # exact GW works in float64: its line search and relative stopping test (1e-9) are below float32 resolution
    work = torch.float64 if exact else (torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype)
    C1, C2 = C1.to(work), C2.to(work)
    n, m = C1.shape[0], C2.shape[0]
    p = check_weights(p, "p", n, work, C1.device, "C1 (n, n)")
    q = check_weights(q, "q", m, work, C1.device, "C2 (m, m)")
    if max_iter is None:
        max_iter = 10000 if exact else 1000
    check_max_iter(max_iter)
    tol, tol_abs = check_tol(tol), check_tol(tol_abs, "tol_abs")
    if isinstance(n_init, bool) or not isinstance(n_init, int) or n_init < 1:
        raise GeosslError(f"n_init must be a positive integer, got {n_init!r}.")
    inner = {
        "max_iter": check_max_iter(inner_max_iter, "inner_max_iter"),
        "tol": check_tol(inner_tol, "inner_tol"),
        "grad": "autodiff" if grad == "autodiff" else "detach",
    }
    if G0 is not None:
        G0 = _as_tensor(G0, "G0", work, C1.device)
        if tuple(G0.shape) != (n, m):
            raise GeosslError(f"G0 must have shape ({n}, {m}) to match C1 and C2, got {tuple(G0.shape)}.")
        G0 = G0.detach()
        dev = max(float((G0.sum(1) - p).abs().max()), float((G0.sum(0) - q).abs().max()))
        if bool((G0 < 0).any()) or dev > 1e-8:
            raise GeosslError(f"G0 must be a coupling of p and q (non-negative, marginals p and q; off by {dev:.3g}).")
    if as_permutation and (n != m or not bool((p == p[0]).all()) or not bool((q == q[0]).all())):
        raise GeosslError(
            "as_permutation=True needs n == m and uniform p and q (a permutation plan has marginals 1/n)."
        )

    generator = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**62, ()).item()))
    best = None
    with torch.no_grad() if grad != "autodiff" else contextlib.nullcontext():
        # autodiff keeps the graph from the inputs through every iteration; otherwise the solve is graph-free
        C1d, C2d, pd, qd = (C1, C2, p, q) if grad == "autodiff" else (C1.detach(), C2.detach(), p.detach(), q.detach())
        quad = _Quadratic(C1d, C2d, pd, qd, loss)
        for k in range(n_init):
            if k == 0:
                start = G0 if G0 is not None else pd[:, None] * qd[None, :]
            else:
                start = _random_coupling(pd.detach(), qd.detach(), generator)
            if exact:
                T, iters, converged = _frank_wolfe(quad, pd, qd, start, max_iter, tol, tol_abs)
            else:
                T, iters, converged = _mirror_descent(quad, pd, qd, start, reg, max_iter, tol, inner)
            val = float(quad.value(T).detach())
            if best is None or val < best[0]:
                best = (val, T, iters, converged)
    _, T, iters, converged = best
    if as_permutation:
        rows, cols = scipy.optimize.linear_sum_assignment(-T.detach().cpu().numpy())
        perm = torch.zeros(n, n, dtype=work, device=C1.device)
        perm[torch.as_tensor(rows), torch.as_tensor(cols)] = 1.0 / n
        T = perm

    value = _value(C1, C2, p, q, loss, T, grad)
    objective = value
    if not exact:
        # -reg H(T) = reg sum T (log T - 1); xlogy gives 0 for exact zeros
        objective = value + reg * (torch.xlogy(T, T) - T).sum()
    return GromovResult(
        plan=T.detach().to(out_dtype) if grad != "autodiff" else T.to(out_dtype),
        value=value.to(out_dtype),
        objective=objective.to(out_dtype),
        n_iters=iters,
        converged=converged,
    )


def _value(
    C1: torch.Tensor, C2: torch.Tensor, p: torch.Tensor, q: torch.Tensor, loss: str, T: torch.Tensor, grad: str
) -> torch.Tensor:
    """GW loss at ``T`` with the requested gradient.

    ``"envelope"``: ``T`` is held constant, so the gradient w.r.t. ``C1``/``C2`` is the partial derivative at the
    solution (envelope theorem; e.g. ``2 C1 * p p^T - 2 T C2 T^T`` for the square loss, as POT); ``p`` and ``q`` enter
    only through the surrogate ``<f - mean f, p> + <g - mean g, q>`` with the optimal duals of the linearised problem
    at ``T`` (its KKT multipliers). ``"autodiff"``: the graph through the iterations. ``"detach"``: no graph.
    """
    if grad == "detach":
        with torch.no_grad():
            return _Quadratic(C1, C2, p, q, loss).value(T)
    if grad == "autodiff":
        return _Quadratic(C1, C2, p, q, loss).value(T)
    T = T.detach()
    quad = _Quadratic(C1, C2, p.detach(), q.detach(), loss)
    value = quad.value(T)
    if torch.is_grad_enabled() and (p.requires_grad or q.requires_grad):
        with torch.no_grad():
            duals = emd(p.detach(), q.detach(), quad.grad(T).detach(), return_result=True)
        f = duals.f - duals.f.mean()
        g = duals.g - duals.g.mean()
        value = value + (f * (p - p.detach())).sum() + (g * (q - q.detach())).sum()
    return value


def gromov_wasserstein(
    C1: torch.Tensor,
    C2: torch.Tensor,
    p: torch.Tensor | None = None,
    q: torch.Tensor | None = None,
    loss: str = "square_loss",
    reg: float | None = None,
    *,
    max_iter: int | None = None,
    tol: float = 1e-9,
    tol_abs: float = 1e-9,
    G0: torch.Tensor | None = None,
    n_init: int = 1,
    seed: int | None = None,
    as_permutation: bool = False,
    inner_max_iter: int = 1000,
    inner_tol: float = 1e-9,
    grad: str = "envelope",
    return_result: bool = False,
) -> torch.Tensor | GromovResult:
    """Gromov-Wasserstein coupling (Peyré, Cuturi & Solomon 2016; Vayer et al. 2019), as POT's ``ot.gromov``.

    Minimises ``sum_ijkl L(C1_ik, C2_jl) T_ij T_kl`` over couplings ``T`` of ``p`` and ``q`` (see the module
    docstring), using the O(n^2 m + n m^2) tensor-product decomposition of Peyré et al. (2016, Prop. 1).

    - ``reg=None`` or 0: conditional gradient (Frank-Wolfe) from ``G0`` (default ``p q^T``): linearise at ``T``
      (gradient ``2 L (x) T``), solve the linear problem exactly with :func:`geossl.ot.emd` (HiGHS), move towards
      its vertex with the exact line search of the quadratic, stop when the value changes by less than ``tol``
      (relative) or ``tol_abs`` (absolute). Same algorithm as ``ot.gromov.gromov_wasserstein``.
    - ``reg > 0``: entropic GW by mirror descent, ``T <- sinkhorn(p, q, 2 L (x) T, reg)`` until
      ``||T - T_prev||_F <= tol`` (checked every 10 iterations). Same algorithm as
      ``ot.gromov.entropic_gromov_wasserstein`` (``solver="PGD"``); POT's inner solver is the scaling Sinkhorn,
      here the log-domain :func:`geossl.ot.sinkhorn`.

    The problem is non-convex: both return a stationary point that depends on the start. ``n_init > 1`` adds
    restarts from random couplings (entropic plans of random costs, drawn from ``seed``) and keeps the lowest value.

    Args:
        C1: source dissimilarities (n, n); need not be symmetric (the gradient is then symmetrised, as POT).
        C2: target dissimilarities (m, m), same device as ``C1``.
        p: source weights (n,), non-negative, summing to 1; ``None`` = uniform.
        q: target weights (m,); ``None`` = uniform.
        loss: ``"square_loss"`` ``(x - y)^2`` or ``"kl_loss"`` ``x log(x / y) - x + y`` (non-negative inputs).
        reg: entropic regularisation (> 0), or ``None``/0 for exact GW.
        max_iter: outer iterations; default 10000 (exact) or 1000 (entropic), as POT.
        tol: relative value change (exact) or Frobenius plan change (entropic) to stop at.
        tol_abs: absolute value change to stop at (exact only).
        G0: initial coupling (n, m) with marginals ``p`` and ``q`` (to 1e-8); default ``p q^T``.
        n_init: number of starts; the first is ``G0``/``p q^T``.
        seed: seed of the random restarts.
        as_permutation: project the final plan on a permutation matrix / n (Hungarian algorithm on ``-T``; needs
            ``n == m`` and uniform weights). The value is then that of the permutation plan.
        inner_max_iter: Sinkhorn iterations per entropic step (POT's default 1000).
        inner_tol: Sinkhorn tolerance (L1 row-marginal error) per entropic step.
        grad: gradient of ``result.value``/``objective`` (see :func:`gromov_wasserstein2`); ``"autodiff"`` also makes
            the entropic plan differentiable.
        return_result: return a :class:`GromovResult` instead of the plan.

    Returns:
        The plan (n, m) with the inputs' dtype and device (detached unless ``grad="autodiff"``), or a
        :class:`GromovResult`.

    Raises:
        GeosslError: for non-square or non-finite ``C1``/``C2``, weights of the wrong shape, negative or not
            summing to 1, an unknown ``loss``, ``reg < 0``, negative inputs with ``"kl_loss"``, an invalid ``G0`` or
            invalid iteration settings; the message names the argument.
    """
    result = _solve(
        C1, C2, p, q, loss, reg, max_iter=max_iter, tol=tol, tol_abs=tol_abs, G0=G0, n_init=n_init, seed=seed,
        as_permutation=as_permutation, grad=grad, inner_max_iter=inner_max_iter, inner_tol=inner_tol,
    )
    return result if return_result else result.plan


def gromov_wasserstein2(
    C1: torch.Tensor,
    C2: torch.Tensor,
    p: torch.Tensor | None = None,
    q: torch.Tensor | None = None,
    loss: str = "square_loss",
    reg: float | None = None,
    *,
    max_iter: int | None = None,
    tol: float = 1e-9,
    tol_abs: float = 1e-9,
    G0: torch.Tensor | None = None,
    n_init: int = 1,
    seed: int | None = None,
    as_permutation: bool = False,
    inner_max_iter: int = 1000,
    inner_tol: float = 1e-9,
    grad: str = "envelope",
    return_result: bool = False,
) -> torch.Tensor | GromovResult:
    """Gromov-Wasserstein loss ``<L (x) T, T>`` at the coupling of :func:`gromov_wasserstein`.

    The value is POT's ``gromov_wasserstein2`` (exact) or ``entropic_gromov_wasserstein2`` (entropic: the GW loss at
    the entropic plan, without the entropy; the entropic objective is ``result.objective``).

    Gradients (``grad``):

    - ``"envelope"`` (default): the plan is held constant. For exact GW this is the gradient at the solution
      w.r.t. ``C1`` and ``C2`` (``2 C1 * p p^T - 2 T C2 T^T`` for the square loss, as POT), and ``p``, ``q`` get the
      centred optimal duals of the linearised problem at ``T`` (one extra LP, only when they require grad). For
      entropic GW it is the exact gradient of ``result.objective`` (``value - reg H(T)``, stationary in ``T`` at
      convergence) w.r.t. ``C1`` and ``C2``, not of ``value``; ``p``, ``q`` get no gradient.
    - ``"autodiff"`` (entropic only): backpropagate through all mirror-descent and Sinkhorn iterations (memory grows
      with the iteration count); gives the gradient of ``value`` itself, and of ``p`` and ``q``.
    - ``"detach"``: no gradient.

    Args: as :func:`gromov_wasserstein`.

    Returns:
        The value, shape (), with the inputs' dtype and device; or a :class:`GromovResult`.

    Raises:
        GeosslError: as :func:`gromov_wasserstein`; also ``grad="autodiff"`` with exact GW.
    """
    result = _solve(
        C1, C2, p, q, loss, reg, max_iter=max_iter, tol=tol, tol_abs=tol_abs, G0=G0, n_init=n_init, seed=seed,
        as_permutation=as_permutation, grad=grad, inner_max_iter=inner_max_iter, inner_tol=inner_tol,
    )
    return result if return_result else result.value
