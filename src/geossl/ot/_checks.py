"""Input validation shared by the OT solvers.

Every check raises :class:`~geossl.errors.GeosslError` (a ``ValueError``) with a one-line message that names the
offending argument.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from geossl.errors import GeosslError

GRAD_MODES = ("autodiff", "detach", "envelope")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_reg(value: Any, name: str = "reg", *, allow_inf: bool = False) -> float:
    """Return ``value`` as a float after checking that it is a positive number (finite unless ``allow_inf``).

    Args:
        value: the user's value (Python number or 0-d tensor).
        name: argument name used in the error message.
        allow_inf: accept ``+inf`` (e.g. ``reg_m = inf`` for a balanced side).

    Raises:
        GeosslError: if the value is not a number, is NaN, is <= 0, or is infinite while not allowed.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise GeosslError(f"{name} must be a positive scalar, got a tensor of shape {tuple(value.shape)}.")
        value = value.item()
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GeosslError(f"{name} must be a positive number, got {value!r}.") from None
    if math.isnan(v) or v <= 0:
        raise GeosslError(f"{name} must be > 0, got {v}.")
    if math.isinf(v) and not allow_inf:
        raise GeosslError(f"{name} must be finite, got {v}.")
    return v


def check_reg_m(reg_m: Any) -> tuple[float, float]:
    """Return the marginal penalties ``(reg_m1, reg_m2)`` from a scalar or a pair; ``inf`` is allowed.

    Raises:
        GeosslError: if ``reg_m`` has the wrong length or an entry is not > 0.
    """
    if isinstance(reg_m, torch.Tensor) and reg_m.numel() == 1:
        reg_m = reg_m.item()
    if isinstance(reg_m, (tuple, list)) or (isinstance(reg_m, torch.Tensor) and reg_m.dim() > 0):
        vals = list(reg_m)
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2:
            raise GeosslError(f"reg_m must be a scalar or a pair (reg_m1, reg_m2), got {len(vals)} values.")
        return check_reg(vals[0], "reg_m", allow_inf=True), check_reg(vals[1], "reg_m", allow_inf=True)
    v = check_reg(reg_m, "reg_m", allow_inf=True)
    return v, v


def check_iterations(n_iters: Any, max_iter: Any, tol: Any, check_every: Any) -> None:
    """Check the iteration controls of the Sinkhorn solvers.

    Raises:
        GeosslError: naming ``n_iters``, ``max_iter``, ``tol`` or ``check_every`` when one is invalid.
    """
    if n_iters is not None and (isinstance(n_iters, bool) or not isinstance(n_iters, int) or n_iters < 1):
        raise GeosslError(f"n_iters must be a positive integer or None, got {n_iters!r}.")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise GeosslError(f"max_iter must be a positive integer, got {max_iter!r}.")
    if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
        raise GeosslError(f"check_every must be a positive integer, got {check_every!r}.")
    try:
        t = float(tol)
    except (TypeError, ValueError):
        raise GeosslError(f"tol must be a non-negative number, got {tol!r}.") from None
    if math.isnan(t) or t < 0:
        raise GeosslError(f"tol must be >= 0, got {tol!r}.")


def check_grad(grad: Any) -> str:
    """Check the gradient mode (one of :data:`GRAD_MODES`)."""
    if grad not in GRAD_MODES:
        raise GeosslError(f"grad must be one of {', '.join(GRAD_MODES)}; got {grad!r}.")
    return grad


def _as_tensor(x: Any, name: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.device != device:
            raise GeosslError(f"{name} is on {x.device} but M is on {device}; move them to the same device.")
        if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
            raise GeosslError(f"{name} must be a real floating-point tensor, got dtype {x.dtype}.")
        return x.to(dtype)
    try:
        return torch.as_tensor(x, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise GeosslError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}.") from None


def prepare_problem(
    a: Any, b: Any, M: Any, *, balanced: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool, torch.dtype]:
    """Validate and normalise ``(a, b, M)`` for a (possibly batched) OT solver.

    Args:
        a: source weights (n,) or (B, n), or None for uniform 1/n.
        b: target weights (m,) or (B, m), or None for uniform 1/m.
        M: cost matrix (n, m) or batch of cost matrices (B, n, m).
        balanced: if True, ``a`` and ``b`` must each sum to 1 (per problem) within ``max(1e-6, 8 eps_dtype)``;
            otherwise only non-negativity is required.

    Returns:
        ``(a, b, M, batched, out_dtype)`` where ``M`` is (B, n, m), ``a`` is (B, n) and ``b`` is (B, m) (``B = 1``
        for a single problem), all in the working dtype (at least float32) on ``M``'s device; ``batched`` says
        whether the input ``M`` had a batch dimension and ``out_dtype`` is the dtype results are cast back to.

    Raises:
        GeosslError: naming ``M``, ``a`` or ``b`` for wrong shapes, NaN/Inf costs, negative weights or (balanced)
            weights that do not sum to 1.
    """
    if not isinstance(M, torch.Tensor):
        try:
            M = torch.as_tensor(M)
        except (TypeError, ValueError, RuntimeError):
            raise GeosslError(f"M must be a tensor or array of numbers, got {type(M).__name__}.") from None
    if not M.is_floating_point():
        M = M.to(torch.get_default_dtype())
    if M.is_complex():
        raise GeosslError("M must be real, got a complex tensor.")
    out_dtype = M.dtype
    work_dtype = torch.float32 if out_dtype in _LOW_PRECISION else out_dtype
    M = M.to(work_dtype)
    if M.dim() not in (2, 3):
        raise GeosslError(f"M must have shape (n, m) or (B, n, m), got shape {tuple(M.shape)}.")
    batched = M.dim() == 3
    if not batched:
        M = M.unsqueeze(0)
    B, n, m = M.shape
    if n == 0 or m == 0 or B == 0:
        raise GeosslError(f"M must be non-empty, got shape {tuple(M.shape[1:] if not batched else M.shape)}.")
    if not bool(torch.isfinite(M.detach()).all()):
        raise GeosslError("M contains NaN or Inf; use finite costs (a large finite value forbids a pair).")

    def weights(x: Any, name: str, size: int, dim_name: str) -> torch.Tensor:
        if x is None:
            return torch.full((B, size), 1.0 / size, dtype=work_dtype, device=M.device)
        x = _as_tensor(x, name, work_dtype, M.device)
        if x.dim() == 1 and x.shape[0] == size:
            x = x.unsqueeze(0).expand(B, size)
        elif not (batched and x.dim() == 2 and tuple(x.shape) == (B, size)):
            want = f"({size},) or ({B}, {size})" if batched else f"({size},)"
            raise GeosslError(
                f"{name} must have shape {want} to match M of shape {tuple(M.shape if batched else M.shape[1:])} "
                f"({dim_name}), got {tuple(x.shape)}."
            )
        xd = x.detach()
        if not bool(torch.isfinite(xd).all()):
            raise GeosslError(f"{name} contains NaN or Inf.")
        if bool((xd < 0).any()):
            raise GeosslError(f"{name} has negative entries; marginal weights must be >= 0.")
        if balanced:
            tol = max(1e-6, 8 * torch.finfo(out_dtype).eps)
            dev = float((xd.sum(-1) - 1).abs().max())
            if dev > tol:
                raise GeosslError(
                    f"{name} must sum to 1 (off by {dev:.3g}); normalise it, or use sinkhorn_unbalanced for unequal masses."
                )
        elif bool((xd.sum(-1) <= 0).any()):
            raise GeosslError(f"{name} has zero total mass; give it at least one positive weight.")
        return x

    a = weights(a, "a", n, "rows")
    b = weights(b, "b", m, "columns")
    return a, b, M, batched, out_dtype


def safe_log(x: torch.Tensor) -> torch.Tensor:
    """``log x`` with zero weights mapped to -1e5 (geomloss convention) and no NaN gradient at 0."""
    pos = x > 0
    return torch.where(pos, torch.log(torch.where(pos, x, torch.ones_like(x))), torch.full_like(x, -1e5))
