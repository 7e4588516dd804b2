"""Unbalanced entropic optimal transport with KL-relaxed marginals (Chizat et al. 2018), log domain.

Solves::

    min_{P >= 0}  <P, M> + reg * R(P) + reg_m1 KL(P 1 || a) + reg_m2 KL(P^T 1 || b)

with the generalised ``KL(p || q) = sum p log(p / q) - p + q`` and the entropic term

- ``reg_type="kl"`` (default, POT's default since 0.9.5): ``R(P) = KL(P || a b^T)``;
- ``reg_type="entropy"`` (Chizat et al. 2018): ``R(P) = -H(P) = sum P (log P - 1)``.

The scaling algorithm of Chizat et al. (2018) in log domain (Peyré & Cuturi 2019, §10.2)::

    f_i <- k1 (reg log a_i - reg LSE_j((g_j - M'_ij) / reg)),   k1 = reg_m1 / (reg_m1 + reg)
    g_j <- k2 (reg log b_j - reg LSE_i((f_i - M'_ij) / reg)),   k2 = reg_m2 / (reg_m2 + reg)
    P_ij = exp((f_i + g_j - M'_ij) / reg)

with ``M' = M`` for ``"entropy"`` and ``M'_ij = M_ij - reg log a_i - reg log b_j`` for ``"kl"``. It matches POT's
``ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg, reg_m, method="sinkhorn", reg_type=...)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from geossl.errors import GeosslError
from geossl.ot._checks import check_reg_m
from geossl.ot._result import SinkhornResult
from geossl.ot.sinkhorn import _solve

__all__ = ["sinkhorn_unbalanced", "sinkhorn_unbalanced2"]

_REG_TYPES = ("kl", "entropy")


def _run(a: Any, b: Any, M: Any, reg: Any, reg_m: Any, reg_type: Any, **kw: Any) -> SinkhornResult:
    if reg_type not in _REG_TYPES:
        raise GeosslError(f"reg_type must be one of {', '.join(_REG_TYPES)}; got {reg_type!r}.")
    pair = check_reg_m(reg_m)
    result, _ = _solve(a, b, M, reg, reg_m=pair, reg_type=reg_type, **kw)
    if isinstance(M, torch.Tensor) and bool((M.detach() < 0).any()):
        warnings.warn(
            "sinkhorn_unbalanced: M has negative entries; unbalanced OT is not invariant to shifting M and negative "
            "costs create mass. Use non-negative costs (e.g. M - M.min()).",
            stacklevel=3,
        )
    return result


def sinkhorn_unbalanced(
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    M: torch.Tensor,
    reg: float,
    reg_m: float | tuple[float, float],
    *,
    reg_type: str = "kl",
    n_iters: int | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "autodiff",
    return_result: bool = False,
    check_every: int = 10,
) -> torch.Tensor | SinkhornResult:
    """Unbalanced entropic OT plan (Chizat et al. 2018; Peyré & Cuturi 2019, §10.2), log domain.

    See the module docstring for the objective. The default ``reg_type="kl"`` (entropic term
    ``reg KL(P || a b^T)``) is POT's default, so ``sinkhorn_unbalanced(a, b, M, reg, reg_m)`` matches
    ``ot.unbalanced.sinkhorn_unbalanced(a, b, M, reg, reg_m)``; ``reg_type="entropy"`` gives Chizat et al.'s
    ``-reg H(P)`` form. Costs should be non-negative (a warning is raised otherwise): unbalanced OT is not
    invariant to shifting ``M``.

    Args:
        a: source weights (n,), or (B, n) / (n,) for batched ``M``; ``None`` = uniform 1/n. Non-negative; any total
            mass.
        b: target weights (m,), or (B, m) / (m,); ``None`` = uniform 1/m. Non-negative.
        M: cost matrix (n, m) or batch (B, n, m); finite.
        reg: entropic regularisation strength > 0.
        reg_m: marginal relaxation ``lambda`` > 0: a scalar for both sides or a pair ``(reg_m1, reg_m2)``;
            ``float("inf")`` makes that side a hard constraint (``(inf, inf)`` = balanced Sinkhorn).
        reg_type: ``"kl"`` (default, POT's) or ``"entropy"``.
        n_iters: fixed number of iterations (no convergence check), or None.
        max_iter: maximal number of iterations when ``n_iters`` is None.
        tol: stop when the largest change of the scaled potentials ``f / reg``, ``g / reg`` over one iteration (i.e.
            the relative change of the scalings ``u = exp(f / reg)``, ``v = exp(g / reg)``) is below ``tol``,
            checked every ``check_every`` iterations.
        grad: ``"autodiff"`` (through the iterations), ``"detach"`` (no gradient) or ``"envelope"`` (potentials
            without gradient; the plan ``exp((f + g - M') / reg)`` is differentiable through ``M'`` only; ``value``
            and ``objective`` get the envelope gradient ``d/dM = P`` and no gradient w.r.t. ``a``, ``b``).
        return_result: return a :class:`SinkhornResult` (its ``objective`` is the full objective above with the
            generalised KL, its ``marginal_error`` the potential-change criterion).
        check_every: iterations between convergence checks.

    Returns:
        The plan, shape (n, m) or (B, n, m), with ``M``'s dtype and device, or a :class:`SinkhornResult`.

    Raises:
        GeosslError: for mismatched shapes, negative weights, ``reg <= 0``, ``reg_m <= 0``, NaN/Inf in ``M``, an
            unknown ``reg_type`` or invalid iteration/grad settings; the message names the argument.
    """
    result = _run(
        a,
        b,
        M,
        reg,
        reg_m,
        reg_type,
        n_iters=n_iters,
        max_iter=max_iter,
        tol=tol,
        grad=grad,
        check_every=check_every,
    )
    return result if return_result else result.plan


def sinkhorn_unbalanced2(
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    M: torch.Tensor,
    reg: float,
    reg_m: float | tuple[float, float],
    *,
    reg_type: str = "kl",
    n_iters: int | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    grad: str = "autodiff",
    return_result: bool = False,
    check_every: int = 10,
) -> torch.Tensor | SinkhornResult:
    """Unbalanced entropic OT value (Chizat et al. 2018), POT's ``sinkhorn_unbalanced2`` convention.

    Returns the **linear** cost ``<P, M>`` at the unbalanced plan, as ``ot.unbalanced.sinkhorn_unbalanced2`` does
    with its default ``returnCost="linear"``. The full objective (entropic term plus both generalised KL penalties) is
    ``return_result=True`` -> ``.objective``; note that POT's ``returnCost="total"`` differs from it because POT
    omits the mass terms ``- p + q`` of the KL divergences.

    Arguments are those of :func:`sinkhorn_unbalanced`.

    Returns:
        The value, shape () or (B,), with ``M``'s dtype and device, or a :class:`SinkhornResult`.

    Raises:
        GeosslError: as :func:`sinkhorn_unbalanced`.
    """
    result = _run(
        a,
        b,
        M,
        reg,
        reg_m,
        reg_type,
        n_iters=n_iters,
        max_iter=max_iter,
        tol=tol,
        grad=grad,
        check_every=check_every,
    )
    return result if return_result else result.value
