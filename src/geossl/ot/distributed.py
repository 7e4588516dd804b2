"""Log-domain Sinkhorn whose rows are split over processes (SwAV's distributed Sinkhorn-Knopp).

SwAV (Caron et al., NeurIPS 2020, §3.1 and Alg. 1 of its appendix) balances the assignments of the *global*
batch to K prototypes: the rows (samples) of the cost matrix live on different processes while the K columns
(prototypes) are shared. The global problem is the entropic OT problem of :func:`geossl.ot.sinkhorn`::

    min_{P >= 0, P 1 = a, P^T 1 = b}  <P, M> - reg H(P),      a_i = 1/N (N = sum over processes of n_local)

Its row update ``f_i <- reg log a_i - reg LSE_j((g_j - M_ij) / reg)`` only needs the local row, so it stays
local; the column update needs a logsumexp over the rows of *every* process. It is computed stably with two
all-reduces: the per-column maximum (MAX), then the sum of the exponentials shifted by that maximum (SUM)::

    LSE_i x_ij = m_j + log sum_{processes} sum_{local i} exp(x_ij - m_j),    m_j = max over all processes of x_ij

so nothing underflows even at small ``reg`` (the scaling-domain code of SwAV divides by sums of ``exp(S / eps)``,
which overflow in float16 and underflow for costs far from the minimum; spec ``ot.md`` §2.7, traps T1-T2).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as torch_dist

from geossl import dist
from geossl.errors import GeosslError
from geossl.ot._checks import check_reg, prepare_problem, safe_log

__all__ = ["distributed_sinkhorn"]

_LAST = ("columns", "rows")
_SCALE = ("plan", "rows")


@torch.no_grad()
def distributed_sinkhorn(
    M_local: torch.Tensor,
    reg: float,
    *,
    b: torch.Tensor | None = None,
    n_iters: int = 3,
    last: str = "columns",
    scale: str = "plan",
) -> torch.Tensor:
    """Entropic OT plan of a cost matrix whose rows are split over processes, in the log domain.

    Every process holds ``M_local`` (n_local, K): its own rows (samples) against the same K columns (prototypes).
    The global problem has the N = sum(n_local) rows of all processes, uniform row weights 1/N and column
    weights ``b``. ``n_local`` may differ between processes. Without a process group (or with one process) the
    result equals :func:`geossl.ot.sinkhorn` ``(None, b, M_local, reg, n_iters=n_iters)`` (``last="columns"``).

    Each iteration updates the scaled potentials (``last="columns"``, the order of :func:`geossl.ot.sinkhorn`)::

        f_i <- log(1/N) - LSE_j(g_j - M_ij / reg)            # local: rows exact
        g_j <- log b_j  - LSE_{i, all processes}(f_i - M_ij / reg)   # all-reduce MAX + SUM: columns exact

    ``last="rows"`` swaps the two half-steps (columns first, then rows), the order of SwAV's Sinkhorn-Knopp
    (Caron et al. 2020, Alg. 1: prototypes normalised, then samples), so every sample's row is exact after the
    last iteration. With ``M = -scores`` and ``b`` uniform it computes SwAV's codes.

    Args:
        M_local: local rows of the cost matrix, shape (n_local, K); finite. For SwAV, ``M_local = -scores``
            (the negated prototype similarities) and ``reg`` is SwAV's epsilon (0.05).
        reg: entropic regularisation ``reg`` > 0, in cost units.
        b: column weights (K,), non-negative, summing to 1; ``None`` = uniform 1/K. Must be the same on every
            process (not checked).
        n_iters: number of iterations (each one row and one column update); fixed, no convergence check, since
            a check would cost another collective. SwAV uses 3.
        last: the marginal made exact by the last half-step: ``"columns"`` (row update then column update, as
            :func:`geossl.ot.sinkhorn`) or ``"rows"`` (column update then row update, as SwAV).
        scale: ``"plan"`` returns the local rows of the global plan (total mass 1 over all processes, rows sum to
            1/N); ``"rows"`` returns them multiplied by N, so each row is a distribution over the K columns (SwAV's
            codes: exactly with ``last="rows"``, up to the residual row-marginal error with ``last="columns"``).

    Returns:
        The local rows of the global plan, shape (n_local, K), with ``M_local``'s dtype and device, no gradient.

    Raises:
        GeosslError: for a non-2-D or non-finite ``M_local``, ``reg <= 0``, an invalid ``b``, ``n_iters``,
            ``last`` or ``scale``, or (distributed) processes whose K differ or that hold no row at all.

    Notes:
        Collectives per call: one all-gather of the shapes, then two all-reduces of K numbers per iteration. Every
        process must call it (with ``n_local = 0`` allowed on some of them). float16/bfloat16 inputs are solved
        in float32 (autocast disabled) and the result cast back.
    """
    if isinstance(n_iters, bool) or not isinstance(n_iters, int) or n_iters < 1:
        raise GeosslError(f"n_iters must be a positive integer, got {n_iters!r}.")
    if last not in _LAST:
        raise GeosslError(f"last must be one of {', '.join(_LAST)}; got {last!r}.")
    if scale not in _SCALE:
        raise GeosslError(f"scale must be one of {', '.join(_SCALE)}; got {scale!r}.")
    reg = check_reg(reg, "reg")
    if not isinstance(M_local, torch.Tensor) or M_local.dim() != 2:
        shape = tuple(M_local.shape) if isinstance(M_local, torch.Tensor) else type(M_local).__name__
        raise GeosslError(f"M_local must be a tensor of shape (n_local, K), got {shape}.")
    n_local, K = M_local.shape
    N = _global_rows(n_local, K, M_local.device)
    if n_local == 0:
        # prepare_problem refuses empty problems; a process without rows still joins every collective.
        out_dtype = M_local.dtype
        M = M_local.to(torch.float32 if out_dtype in (torch.float16, torch.bfloat16) else out_dtype)
        b = _uniform_or(b, K, M)
    else:
        _, b, M, _, out_dtype = prepare_problem(None, b, M_local, balanced=True)
        M, b = M[0], b[0]

    with torch.autocast(device_type=M.device.type, enabled=False):
        Mr = M / reg
        log_a = math.log(1.0 / N)
        log_b = safe_log(b)
        fh = torch.zeros(n_local, dtype=M.dtype, device=M.device)
        gh = torch.zeros(K, dtype=M.dtype, device=M.device)

        def rows(gh: torch.Tensor) -> torch.Tensor:
            return log_a - torch.logsumexp(gh[None, :] - Mr, dim=1)

        def columns(fh: torch.Tensor) -> torch.Tensor:
            return log_b - _global_logsumexp_rows(fh[:, None] - Mr)

        for _ in range(n_iters):
            if last == "columns":
                fh = rows(gh)
                gh = columns(fh)
            else:
                gh = columns(fh)
                fh = rows(gh)
        plan = torch.exp(fh[:, None] + gh[None, :] - Mr)
        if scale == "rows":
            plan = plan * N
    return plan.to(out_dtype)


def _uniform_or(b: Any, K: int, M: torch.Tensor) -> torch.Tensor:
    """Column weights for a process without rows (validated like :func:`prepare_problem` would)."""
    dummy = torch.zeros(1, K, dtype=M.dtype, device=M.device)
    return prepare_problem(None, b, dummy, balanced=True)[1][0]


def _global_rows(n_local: int, K: int, device: torch.device) -> int:
    """Total number of rows over the processes, after checking that they all have the same K."""
    if not dist.is_distributed():
        if n_local == 0:
            raise GeosslError("M_local has no rows; give at least one sample.")
        return n_local
    shapes = torch.tensor([n_local, K], dtype=torch.long, device=device)
    parts = [torch.empty_like(shapes) for _ in range(dist.world_size())]
    torch_dist.all_gather(parts, shapes)
    table = torch.stack(parts).tolist()
    ks = sorted({k for _, k in table})
    if len(ks) > 1:
        raise GeosslError(f"M_local must have the same number of columns K on every process, got K in {ks}.")
    N = sum(n for n, _ in table)
    if N == 0:
        raise GeosslError("M_local has no rows on any process; give at least one sample.")
    return N


def _global_logsumexp_rows(x: torch.Tensor) -> torch.Tensor:
    """``logsumexp`` over dim 0 of the rows of every process: (n_local, K) -> (K,).

    The shift is the global per-column maximum, so every exponent is <= 0 and the largest term is exactly 1.
    """
    if not dist.is_distributed():
        return torch.logsumexp(x, dim=0)
    if x.shape[0] > 0:
        m = x.amax(dim=0)
    else:
        m = torch.full(x.shape[1:], -torch.inf, dtype=x.dtype, device=x.device)
    torch_dist.all_reduce(m, op=torch_dist.ReduceOp.MAX)
    s = torch.exp(x - m).sum(dim=0)
    torch_dist.all_reduce(s, op=torch_dist.ReduceOp.SUM)
    return m + torch.log(s)
