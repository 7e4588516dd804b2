"""Co-optimal transport (COOT): joint sample and feature couplings between two data matrices.

Redko, Vayer, Flamary & Courty, "CO-Optimal Transport", NeurIPS 2020. For ``X`` (n_x, d_x) with sample weights
``wx_samp`` (n_x,) and feature weights ``wx_feat`` (d_x,), and ``Y`` (n_y, d_y) with ``wy_samp``, ``wy_feat``::

    COOT(X, Y) = min_{P in U(wx_samp, wy_samp), Q in U(wx_feat, wy_feat)}  sum_{i,j,k,l} (X_ik - Y_jl)^2 P_ij Q_kl
                 (+ reg_samp KL(P || wx_samp wy_samp^T) + reg_feat KL(Q || wx_feat wy_feat^T) when regularised)

The objective is bilinear in ``(P, Q)``: for fixed ``Q`` it is a linear OT problem in ``P`` with cost
``M_samp = (X^2 wx_feat) 1^T + 1 (Y^2 wy_feat)^T - 2 X Q Y^T`` (n_x, n_y), and symmetrically for ``Q`` with
``M_feat = (X^T^2 wx_samp) 1^T + 1 (Y^T^2 wy_samp)^T - 2 X^T P Y`` (d_x, d_y). Block-coordinate descent (Redko et
al. 2020, Alg. 1) alternates exact (:func:`geossl.ot.emd`) or entropic (:func:`geossl.ot.sinkhorn`) solves of the
two blocks; it reaches a partial minimum that depends on the start.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch

from geossl.errors import GeosslError
from geossl.ot.emd import emd
from geossl.ot.gromov import check_matrix, check_max_iter, check_tol, check_weights
from geossl.ot.sinkhorn import sinkhorn

__all__ = ["COOTResult", "co_optimal_transport", "co_optimal_transport2"]

#: Gradient modes of :func:`co_optimal_transport2`.
COOT_GRADS = ("envelope", "autodiff", "detach")


@dataclass
class COOTResult:
    """Co-optimal transport solution (returned with ``return_result=True``).

    Attributes:
        plan_samp: sample coupling ``P``, shape (n_x, n_y).
        plan_feat: feature coupling ``Q``, shape (d_x, d_y).
        value: COOT cost ``sum_ijkl (X_ik - Y_jl)^2 P_ij Q_kl``, shape ().
        objective: ``value + reg_samp KL(P || wx_samp wy_samp^T) + reg_feat KL(Q || wx_feat wy_feat^T)``, shape ()
            (equal to ``value`` for exact blocks); the number POT's ``co_optimal_transport2`` returns.
        n_iters: block-coordinate iterations run (each updates ``P`` then ``Q``).
        converged: whether a stopping criterion was met before ``max_iter`` (False with ``n_iters``).
    """

    plan_samp: torch.Tensor
    plan_feat: torch.Tensor
    value: torch.Tensor
    objective: torch.Tensor
    n_iters: int
    converged: bool


def _check_reg_pair(reg: Any) -> tuple[float, float]:
    """``(reg_samp, reg_feat)`` from a scalar or a pair; each must be >= 0 (0 = exact block)."""
    if isinstance(reg, torch.Tensor) and reg.numel() == 1:
        reg = reg.item()
    vals = list(reg) if isinstance(reg, (tuple, list)) else [reg, reg]
    if len(vals) != 2:
        raise GeosslError(f"reg must be a number or a pair (reg_samp, reg_feat), got {len(vals)} values.")
    out = []
    for v in vals:
        try:
            f = float(v.item() if isinstance(v, torch.Tensor) else v)
        except (TypeError, ValueError):
            raise GeosslError(f"reg must be a non-negative number or a pair of them, got {reg!r}.") from None
        if math.isnan(f) or f < 0 or math.isinf(f):
            raise GeosslError(f"reg must be finite and >= 0 (0 = exact OT block), got {reg!r}.")
        out.append(f)
    return out[0], out[1]


def _kl(P: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``KL(P || a b^T) = sum P log(P / (a b^T))`` (no mass term: both have mass 1), 0 log 0 = 0."""
    return (torch.xlogy(P, P) - torch.xlogy(P, a[:, None] * b[None, :])).sum()


def _solve(
    X: Any,
    Y: Any,
    wx_samp: Any,
    wx_feat: Any,
    wy_samp: Any,
    wy_feat: Any,
    reg: Any,
    *,
    n_iters: int | None,
    max_iter: int,
    tol: float,
    tol_value: float,
    inner_max_iter: int,
    inner_tol: float,
    grad: str,
) -> COOTResult:
    """Validate the inputs, run block-coordinate descent and build the value with the requested gradient."""
    if grad not in COOT_GRADS:
        raise GeosslError(f"grad must be one of {', '.join(COOT_GRADS)}; got {grad!r}.")
    reg_s, reg_f = _check_reg_pair(reg)
    if grad == "autodiff" and (reg_s == 0 or reg_f == 0):
        raise GeosslError(
            "grad='autodiff' needs entropic blocks (reg > 0 for both); exact plans are piecewise constant."
        )
    X = check_matrix(X, "X", square=False)
    Y = check_matrix(Y, "Y", square=False, like=X)
    out_dtype = torch.promote_types(X.dtype, Y.dtype)
    work = torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype
    X, Y = X.to(work), Y.to(work)
    (nx, dx), (ny, dy) = X.shape, Y.shape
    wxs = check_weights(wx_samp, "wx_samp", nx, work, X.device, "the rows of X")
    wxf = check_weights(wx_feat, "wx_feat", dx, work, X.device, "the columns of X")
    wys = check_weights(wy_samp, "wy_samp", ny, work, X.device, "the rows of Y")
    wyf = check_weights(wy_feat, "wy_feat", dy, work, X.device, "the columns of Y")
    if n_iters is not None:
        check_max_iter(n_iters, "n_iters")
    check_max_iter(max_iter)
    tol, tol_value = check_tol(tol), check_tol(tol_value, "tol_value")
    check_max_iter(inner_max_iter, "inner_max_iter")
    inner_tol = check_tol(inner_tol, "inner_tol")
    # no gradient reaches the weights: they only fix the polytopes (and the constant parts of the costs)
    wxs, wxf, wys, wyf = wxs.detach(), wxf.detach(), wys.detach(), wyf.detach()

    def block(a: torch.Tensor, b: torch.Tensor, M: torch.Tensor, eps: float) -> torch.Tensor:
        if eps == 0:
            return emd(a, b, M)
        return sinkhorn(
            a, b, M, eps, max_iter=inner_max_iter, tol=inner_tol, grad="autodiff" if grad == "autodiff" else "detach"
        )

    with torch.no_grad() if grad != "autodiff" else contextlib.nullcontext():
        Xi, Yi = (X, Y) if grad == "autodiff" else (X.detach(), Y.detach())
        # constant parts of the two linearised costs (they use the fixed marginals, as the tensor product of GW)
        const_s = ((Xi * Xi) @ wxf)[:, None] + ((Yi * Yi) @ wyf)[None, :]
        const_f = ((Xi * Xi).T @ wxs)[:, None] + ((Yi * Yi).T @ wys)[None, :]
        # start from the independent couplings and update the sample block first (as POT)
        P = wxs[:, None] * wys[None, :]
        Q = wxf[:, None] * wyf[None, :]
        previous = math.inf
        converged = False
        total = n_iters if n_iters is not None else max_iter
        it = 0
        for it in range(1, total + 1):
            P_prev = P
            P = block(wxs, wys, const_s - 2 * Xi @ Q @ Yi.T, reg_s)
            M_feat = const_f - 2 * Xi.T @ P @ Yi
            Q = block(wxf, wyf, M_feat, reg_f)
            if n_iters is None:
                # POT's two criteria: L1 change of the sample plan, change of the objective
                change = float((P - P_prev).abs().sum())
                objective = float((M_feat * Q).sum())
                if reg_s > 0:
                    objective += reg_s * float(_kl(P, wxs, wys))
                if reg_f > 0:
                    objective += reg_f * float(_kl(Q, wxf, wyf))
                if change < tol or abs(previous - objective) < tol_value:
                    converged = True
                    break
                previous = objective

    if grad == "detach":
        X, Y = X.detach(), Y.detach()
    if grad != "autodiff":
        # envelope theorem: plans held at the partial minimum, gradient = partial derivative in X and Y, i.e.
        # 2 X * (wx_samp wx_feat^T) - 2 P Y Q^T for X (as POT's co_optimal_transport2)
        P, Q = P.detach(), Q.detach()
    cx = ((X * X).T @ wxs)[:, None] + ((Y * Y).T @ wys)[None, :]
    value = ((cx - 2 * X.T @ P @ Y) * Q).sum()
    objective = value
    if reg_s > 0:
        objective = objective + reg_s * _kl(P, wxs, wys)
    if reg_f > 0:
        objective = objective + reg_f * _kl(Q, wxf, wyf)
    return COOTResult(
        plan_samp=P.to(out_dtype),
        plan_feat=Q.to(out_dtype),
        value=value.to(out_dtype),
        objective=objective.to(out_dtype),
        n_iters=it,
        converged=converged,
    )


def co_optimal_transport(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    wx_samp: torch.Tensor | None = None,
    wx_feat: torch.Tensor | None = None,
    wy_samp: torch.Tensor | None = None,
    wy_feat: torch.Tensor | None = None,
    reg: float | tuple[float, float] = 0.0,
    n_iters: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-7,
    tol_value: float = 1e-6,
    inner_max_iter: int = 500,
    inner_tol: float = 1e-7,
    grad: str = "envelope",
    return_result: bool = False,
) -> tuple[torch.Tensor, torch.Tensor] | COOTResult:
    """Sample and feature couplings of co-optimal transport (Redko et al., NeurIPS 2020), as POT's ``ot.coot``.

    Block-coordinate descent (Redko et al. 2020, Alg. 1; the algorithm of POT's ``ot.coot.co_optimal_transport``):
    start from ``P = wx_samp wy_samp^T``, ``Q = wx_feat wy_feat^T``; each iteration solves the sample block
    ``P <- OT(wx_samp, wy_samp, M_samp(Q))`` and then the feature block ``Q <- OT(wx_feat, wy_feat, M_feat(P))``
    (costs in the module docstring), each exactly by :func:`geossl.ot.emd` (``reg`` 0) or by log-domain
    :func:`geossl.ot.sinkhorn` (``reg > 0``). It stops when ``||P - P_prev||_1 < tol`` or when the objective changes
    by less than ``tol_value`` (POT's ``tol_bcd`` and ``early_stopping_tol``).

    Args:
        X: source data (n_x, d_x).
        Y: target data (n_y, d_y), same device as ``X``.
        wx_samp: weights of the rows of ``X`` (n_x,), non-negative, summing to 1; ``None`` = uniform.
        wx_feat: weights of the columns of ``X`` (d_x,); ``None`` = uniform.
        wy_samp: weights of the rows of ``Y`` (n_y,); ``None`` = uniform.
        wy_feat: weights of the columns of ``Y`` (d_y,); ``None`` = uniform.
        reg: entropic regularisation of the blocks, a number or a pair ``(reg_samp, reg_feat)``; 0 = exact block.
            The entropic term is ``reg KL(P || a b^T)`` (POT's convention), whose minimiser is the Sinkhorn plan.
        n_iters: if given, run exactly this many iterations without convergence checks (no host synchronisation
            for the checks; a fixed unrolling for ``grad="autodiff"``).
        max_iter: maximal number of iterations when ``n_iters`` is None (POT's ``nits_bcd``).
        tol: stop when the L1 change of the sample plan is below it (POT's ``tol_bcd``).
        tol_value: stop when the objective changes by less than it (POT's ``early_stopping_tol``).
        inner_max_iter: Sinkhorn iterations per entropic block (POT's ``nits_ot``; unused by exact blocks, which
            are solved to optimality, while POT caps its network simplex at ``nits_ot`` pivots).
        inner_tol: Sinkhorn tolerance (L1 row-marginal error) per entropic block.
        grad: ``"envelope"`` (plans detached), ``"autodiff"`` (entropic blocks only: plans differentiable w.r.t.
            ``X`` and ``Y`` through all iterations) or ``"detach"``.
        return_result: return a :class:`COOTResult` instead of the plans.

    Returns:
        ``(plan_samp (n_x, n_y), plan_feat (d_x, d_y))`` with the inputs' dtype and device, or a
        :class:`COOTResult`.

    Raises:
        GeosslError: for non-matrix or non-finite ``X``/``Y``, weights of the wrong shape, negative or not summing
            to 1, a negative or malformed ``reg``, or invalid iteration settings; the message names the argument.
    """
    result = _solve(
        X, Y, wx_samp, wx_feat, wy_samp, wy_feat, reg, n_iters=n_iters, max_iter=max_iter, tol=tol,
        tol_value=tol_value, inner_max_iter=inner_max_iter, inner_tol=inner_tol, grad=grad,
    )
    return result if return_result else (result.plan_samp, result.plan_feat)


def co_optimal_transport2(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    wx_samp: torch.Tensor | None = None,
    wx_feat: torch.Tensor | None = None,
    wy_samp: torch.Tensor | None = None,
    wy_feat: torch.Tensor | None = None,
    reg: float | tuple[float, float] = 0.0,
    n_iters: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-7,
    tol_value: float = 1e-6,
    inner_max_iter: int = 500,
    inner_tol: float = 1e-7,
    grad: str = "envelope",
    return_result: bool = False,
) -> torch.Tensor | COOTResult:
    """Co-optimal transport objective at the couplings of :func:`co_optimal_transport` (Redko et al. 2020).

    Returns POT's ``co_optimal_transport2`` number: ``sum_ijkl (X_ik - Y_jl)^2 P_ij Q_kl`` plus, for entropic
    blocks, ``reg_samp KL(P || wx_samp wy_samp^T) + reg_feat KL(Q || wx_feat wy_feat^T)`` (``result.value`` is the
    COOT cost alone). Gradients: ``"envelope"`` holds the plans constant, giving ``2 X * (wx_samp wx_feat^T) -
    2 P Y Q^T`` for ``X`` (and symmetrically for ``Y``), as POT; ``"autodiff"`` backpropagates through the
    iterations; the weights get no gradient.

    Args: as :func:`co_optimal_transport`.

    Returns:
        The objective, shape (), with the inputs' dtype and device; or a :class:`COOTResult`.

    Raises:
        GeosslError: as :func:`co_optimal_transport`.
    """
    result = _solve(
        X, Y, wx_samp, wx_feat, wy_samp, wy_feat, reg, n_iters=n_iters, max_iter=max_iter, tol=tol,
        tol_value=tol_value, inner_max_iter=inner_max_iter, inner_tol=inner_tol, grad=grad,
    )
    return result if return_result else result.objective
