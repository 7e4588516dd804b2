"""The self-optimal-transport feature transform: SOT / BPA (Shalam & Korman, arXiv 2204.03065; ICML 2024).

A set of features is transported to itself, self-matches excluded, and the rows of the entropic plan become the
new descriptors: row i is the distribution of x_i's matching partners, so comparing rows compares whole affinity
profiles. The transform is parameterless, differentiable and permutation-equivariant. The algorithm follows the
authors' public code as digested in ``specs/ot.md`` §9: unit marginals, a large finite diagonal cost, a fixed
number of log-domain Sinkhorn iterations, then scaling by the maximum and a unit diagonal.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from geossl.errors import GeosslError
from geossl.ot.sinkhorn import sinkhorn

METRICS = ("cosine", "euclidean")


def _self_cost(X: torch.Tensor, metric: str, diagonal_cost: float) -> torch.Tensor:
    """Cost (B, n, n) of a set to itself with the diagonal replaced by ``diagonal_cost``."""
    if metric == "cosine":
        Xn = F.normalize(X, dim=-1)
        D = 1 - Xn @ Xn.transpose(-1, -2)
    else:
        D = torch.cdist(X, X)
        D = D / D.amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(D.dtype).tiny)
    eye = torch.eye(X.shape[-2], dtype=torch.bool, device=X.device)
    return D.masked_fill(eye, diagonal_cost)


def _check(X: torch.Tensor, reg: float, n_iters: int, metric: str) -> None:
    if not isinstance(X, torch.Tensor) or X.dim() not in (2, 3):
        raise GeosslError(f"X must be a tensor of shape (n, d) or (B, n, d), got {getattr(X, 'shape', type(X))}")
    if X.shape[-2] < 2:
        raise GeosslError(f"X must hold at least 2 points to transport a set to itself, got {X.shape[-2]}")
    if not torch.isfinite(X).all():
        raise GeosslError("X contains NaN or infinite values; clean the features first")
    if reg <= 0:
        raise GeosslError(f"reg must be > 0, got {reg}")
    if n_iters < 1:
        raise GeosslError(f"n_iters must be >= 1, got {n_iters}")
    if metric not in METRICS:
        raise GeosslError(f"metric must be one of {METRICS}, got '{metric}'")


def self_transport_log_plan(
    X: torch.Tensor, reg: float = 0.1, n_iters: int = 10, *, metric: str = "cosine", diagonal_cost: float = 1e5
) -> torch.Tensor:
    """Log of the entropic self-transport plan with unit marginals (rows and columns summing to 1 at convergence).

    Args:
        X: features (n, d) or (B, n, d).
        reg: entropic regularisation λ (0.1 by default, 0.1–0.2 for few-shot).
        n_iters: Sinkhorn iterations (10; 5 in the SOT code, 20 in the BPA training script).
        metric: ``cosine`` (1 − cos) or ``euclidean`` (distance divided by its maximum).
        diagonal_cost: cost of matching a point to itself (1e5 as in BPA).

    Returns:
        log W (n, n) or (B, n, n). Columns sum to 1 exactly after every iteration, rows at convergence; W is
        symmetric at convergence (the cost is).
    """
    _check(X, reg, n_iters, metric)
    batched = X.dim() == 3
    Xb = X if batched else X.unsqueeze(0)
    n = Xb.shape[-2]
    D = _self_cost(Xb, metric, diagonal_cost)
    result = sinkhorn(None, None, D, reg, n_iters=n_iters, return_result=True)
    f, g = result.f, result.g  # (B, n): D is always batched here
    # Marginals 1/n scaled to unit marginals: every Sinkhorn iterate scales by n, i.e. log W gains log n.
    log_w = (f[:, :, None] + g[:, None, :] - D) / reg + math.log(n)
    return log_w if batched else log_w.squeeze(0)


def self_transport(
    X: torch.Tensor,
    reg: float = 0.1,
    n_iters: int = 10,
    *,
    metric: str = "cosine",
    diagonal_cost: float = 1e5,
    max_scale: bool = True,
    sigmoid: bool = False,
) -> torch.Tensor:
    """SOT/BPA features: the rows of the self-transport plan, scaled by its maximum, with a unit diagonal.

    Args:
        X: features (n, d) or (B, n, d).
        reg, n_iters, metric, diagonal_cost: as :func:`self_transport_log_plan`.
        max_scale: divide each set's plan by its maximum.
        sigmoid: ``sigmoid(log W)`` instead of ``W`` (the early SOT default).

    Returns:
        New features (n, n) or (B, n, n): row i describes x_i; the output dimension is n, not d.
        Permutation-equivariant: permuting the points permutes rows and columns alike.
    """
    log_w = self_transport_log_plan(X, reg, n_iters, metric=metric, diagonal_cost=diagonal_cost)
    W = torch.sigmoid(log_w) if sigmoid else torch.exp(log_w)
    if max_scale:
        W = W / W.amax(dim=(-2, -1), keepdim=True)
    eye = torch.eye(W.shape[-1], dtype=torch.bool, device=W.device)
    return W.masked_fill(eye, 1.0)


class SelfTransport(nn.Module):
    """:func:`self_transport` as a module (no parameters), e.g. between a backbone and a few-shot head.

    Shapes:
        (n, d) -> (n, n); (B, n, d) -> (B, n, n).
    """

    def __init__(self, reg: float = 0.1, n_iters: int = 10, metric: str = "cosine", diagonal_cost: float = 1e5,
                 max_scale: bool = True, sigmoid: bool = False) -> None:
        super().__init__()
        self.reg, self.n_iters, self.metric = reg, n_iters, metric
        self.diagonal_cost, self.max_scale, self.sigmoid = diagonal_cost, max_scale, sigmoid

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self_transport(X, self.reg, self.n_iters, metric=self.metric, diagonal_cost=self.diagonal_cost,
                              max_scale=self.max_scale, sigmoid=self.sigmoid)

    def extra_repr(self) -> str:
        return f"reg={self.reg}, n_iters={self.n_iters}, metric={self.metric!r}"
