"""Self-supervised losses on optimal-transport plans: between samples, between features, and COOT.

Thesis [B] §3.1 (spec ``ssl_methods.md`` §2.1): instead of SimCLR's row-wise softmax of a similarity matrix, an
entropic OT plan is computed from a *distance* matrix, and the encoder is trained so that the plan puts its mass on
the ground-truth matching given by the augmentations (an inverse-OT setting, cf. Sinkformer, Sander et al. 2022).
Embeddings are L2-normalised, marginals uniform.

- :func:`ot_sample_loss` (L_Sample, [B] eqs. 3.3-3.6): plan between the 2N views, target = the other view.
- :func:`ot_feature_loss` (L_Feature, [B] eqs. 3.7-3.8): plan between the d features, target = the same feature.
- :func:`coot_loss` (L_COOT, [B] eqs. 3.9-3.10): both plans of co-optimal transport (Redko et al., NeurIPS 2020).

The plans are differentiated through the unrolled log-domain Sinkhorn iterations (``grad="autodiff"`` of
:func:`geossl.ot.sinkhorn`); the losses read ``log π = (f_i + g_j − C_ij) / ε`` from the dual potentials rather than
``log(exp(·))``, so a target entry of ~e^-200 (a wrong pairing at ε = 0.01, float32) gives a large finite loss
instead of ``log 0 = −inf``.

Distributed: with a process group initialised (and ``gather=True``) the embeddings are gathered with gradients
(:func:`geossl.dist.gather`) and **every process computes the whole loss of the global batch** (the plan needs all
rows anyway), so the value is identical on every process; the gather's backward sums the gradients over processes
and DDP divides by the world size, which gives exactly the single-process gradient (as for Barlow Twins; tested in
``tests/distributed/test_ot_ssl_ddp.py``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.losses.barlow_twins import cross_correlation
from geossl.losses.precision import float32_loss
from geossl.ot.sinkhorn import sinkhorn

__all__ = [
    "COOTLoss",
    "OTFeatureLoss",
    "OTSampleLoss",
    "coot_loss",
    "entropic_log_plan",
    "ot_feature_loss",
    "ot_sample_loss",
]

LAYOUTS = ("full", "cross")
FEATURE_NORMS = ("bt", "raw")
REG_SCALES = (None, "mean")
REDUCTIONS = ("sum", "mean")

#: Cost given to forbidden pairs (``C_ii = +inf`` in [B]), in units of ``max(1, ε)``: ``exp(-1e4)`` is 0 in every
#: dtype, while a true ``inf`` (or ``finfo.max``) would overflow in ``C / ε``. ``geossl.ot.sinkhorn`` takes no mask.
MASK_COST = 1e4


# ----------------------------------------------------------------------------------------------------------------
# shared helpers


def _check_pair(z_a: Any, z_b: Any) -> None:
    if not isinstance(z_a, torch.Tensor) or not isinstance(z_b, torch.Tensor):
        raise GeosslError("z_a and z_b must be tensors of shape (N, D); pass the two views' embeddings.")
    if z_a.dim() != 2 or z_a.shape != z_b.shape:
        raise GeosslError(
            f"z_a and z_b must both be (N, D) with the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}; "
            "pass one row per image for each view."
        )
    if z_a.shape[0] < 1 or z_a.shape[1] < 1:
        raise GeosslError(f"z_a and z_b must have at least one row and one column, got {tuple(z_a.shape)}.")


def _check_eps(eps: Any, name: str = "eps") -> float:
    try:
        v = float(eps)
    except (TypeError, ValueError):
        raise GeosslError(f"{name} must be a positive number, got {eps!r}.") from None
    if not math.isfinite(v) or v <= 0:
        raise GeosslError(f"{name} must be a finite number > 0 (0.01 in [B]), got {eps!r}.")
    return v


def _check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GeosslError(f"{name} must be a positive integer, got {value!r}.")
    return value


def _check_choice(value: Any, name: str, choices: tuple) -> Any:
    if value not in choices:
        raise GeosslError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}.")
    return value


def _gathered(z_a: torch.Tensor, z_b: torch.Tensor, gather: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if gather and dist.is_distributed():
        return dist.gather(z_a), dist.gather(z_b)
    return z_a, z_b


def _diag_mask(n: int, device: torch.device) -> torch.Tensor:
    return torch.eye(n, dtype=torch.bool, device=device)


def entropic_log_plan(
    M: torch.Tensor, eps: float, n_iters: int, *, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log of the entropic OT plan with uniform marginals after a fixed number of log-domain Sinkhorn iterations.

    Runs :func:`geossl.ot.sinkhorn` (``grad="autodiff"``, ``method="log"``: the graph goes through every
    iteration) and returns ``log P_ij = (f_i + g_j − M_ij) / ε`` from its potentials. Iteration order is that of
    ``geossl.ot.sinkhorn``: rows then columns, so after the last iteration the columns are exact and the rows carry
    the marginal error ([B]'s 5 iterations do not give a feasible plan; spec ``ot.md`` trap T5).

    Args:
        M: cost matrix (n, m).
        eps: entropic regularisation ε > 0, in cost units.
        n_iters: number of Sinkhorn iterations.
        mask: optional boolean (n, m), True = forbidden pair (``M_ij = +inf``, ``P_ij = 0``).

    Returns:
        ``(log_plan (n, m), marginal_error ())``; the error is the L1 row-marginal violation ``‖P 1 − a‖₁``,
        detached. Forbidden entries of ``log_plan`` are hugely negative (about ``−MASK_COST · max(1, ε) / ε``).
    """
    if mask is not None:
        M = torch.where(mask, torch.full_like(M, MASK_COST * max(1.0, eps)), M)
    res = sinkhorn(None, None, M, eps, n_iters=n_iters, grad="autodiff", return_result=True, method="log")
    log_plan = (res.f[:, None] + res.g[None, :] - M) / eps
    return log_plan, res.marginal_error.detach()


def _reduce(terms: torch.Tensor, offset: float, normalize_rows: bool, reduction: str) -> torch.Tensor:
    """``−Σ (log π + [log n])`` over the target entries, or its mean."""
    if normalize_rows:
        terms = terms + offset
    loss = -terms.sum()
    return loss / terms.numel() if reduction == "mean" else loss


# ----------------------------------------------------------------------------------------------------------------
# L_Sample


@float32_loss
def ot_sample_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    eps: float = 0.01,
    n_iters: int = 5,
    *,
    layout: str = "full",
    normalize_rows: bool = False,
    reduction: str = "sum",
    gather: bool = True,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_Sample: cross-entropy between the entropic OT plan of the views and the ground-truth matching ([B] §3.1).

    ``layout="full"`` (default; [B] eq. 3.5 and Fig. 3.1) with ``z = cat(ẑ_a, ẑ_b)`` (2N, D), ``ẑ = z / ‖z‖``::

        C_ij = 1 − ⟨z_i, z_j⟩   (2N × 2N),   C_ii = +inf (masked)
        π    = entropic plan of C with marginals 1/(2N), ε, ``n_iters`` log-domain iterations (autodiff)
        L    = − Σ_{i=1..N} ( log π_{i,i+N} + log π_{i+N,i} )

    Index inconsistency of the source, resolved as the spec says: [B] eq. 3.3 defines an N × N cross-view cost
    while eq. 3.5 indexes a 2N × 2N plan with a masked diagonal and targets on the outer diagonals ``j = i ± N``.
    The 2N × 2N version (mirroring NT-Xent) is the default; ``layout="cross"`` is eq. 3.3 literally: the N × N
    cost ``C_ij = 1 − ⟨ẑ_a,i, ẑ_b,j⟩``, marginals 1/N, target identity, ``L = − Σ_i log π_ii``.

    Every entry of a plan with marginals 1/n is at most 1/n, so ``L ≥ 2N log 2N`` (``N log N`` for "cross"),
    attained by the permutation plan; ``normalize_rows=True`` uses ``log(n π)`` (row-stochastic target, minimum 0).

    Args:
        z_a: embeddings of the first views (N, D); normalised inside.
        z_b: embeddings of the second views (N, D), row i pairs with ``z_a[i]``.
        eps: entropic regularisation ε (0.01 in [B]; the cost lies in [0, 2]).
        n_iters: Sinkhorn iterations (5 in [B]; the plan is then not bistochastic, see ``return_info``).
        layout: ``"full"`` (2N × 2N, masked diagonal) or ``"cross"`` (N × N).
        normalize_rows: add ``log n`` to every target log-probability (n = 2N or N).
        reduction: ``"sum"`` ([B]'s formula) or ``"mean"`` (divided by the number of target entries, 2N or N).
        gather: under DDP, use the global batch (with gradients); every process returns the global loss.
        return_info: also return ``{"marginal_error": L1 row-marginal error of the plan (detached)}``.

    Returns:
        Scalar loss, or ``(loss, info)``.

    Raises:
        GeosslError: for inputs that are not two (N, D) tensors of the same shape, ``eps <= 0``, a non-positive
            ``n_iters`` or an unknown ``layout`` / ``reduction``.
    """
    _check_pair(z_a, z_b)
    eps = _check_eps(eps)
    n_iters = _check_int(n_iters, "n_iters")
    _check_choice(layout, "layout", LAYOUTS)
    _check_choice(reduction, "reduction", REDUCTIONS)
    z_a, z_b = _gathered(z_a, z_b, gather)
    z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    n = z_a.shape[0]
    if layout == "full":
        z = torch.cat([z_a, z_b])
        log_plan, err = entropic_log_plan(1 - z @ z.T, eps, n_iters, mask=_diag_mask(2 * n, z.device))
        idx = torch.arange(n, device=z.device)
        terms = torch.cat([log_plan[idx, idx + n], log_plan[idx + n, idx]])
        size = 2 * n
    else:
        log_plan, err = entropic_log_plan(1 - z_a @ z_b.T, eps, n_iters)
        terms = torch.diagonal(log_plan)
        size = n
    loss = _reduce(terms, math.log(size), normalize_rows, reduction)
    return (loss, {"marginal_error": err}) if return_info else loss


class OTSampleLoss(nn.Module):
    """L_Sample, OT between samples ([B] §3.1, eqs. 3.3-3.6; spec ``ssl_methods.md`` §2.1a).

    The entropic OT plan between the 2N views (cost ``1 − cos``, masked diagonal) should match the known pairing
    of the two augmentations; the loss is the cross-entropy ``−Σ log π`` on the pairing's entries. See
    :func:`ot_sample_loss` for the formula, the resolved index inconsistency of [B] (2N × 2N default,
    ``layout="cross"`` for the N × N reading) and the options.

    After each forward, :attr:`last_marginal_error` holds the plan's L1 row-marginal error (logged by the method).

    Args:
        eps: ε (0.01 in [B]).
        n_iters: Sinkhorn iterations (5 in [B]).
        layout: ``"full"`` or ``"cross"``.
        normalize_rows: use ``log(n π)``.
        reduction: ``"sum"`` ([B]) or ``"mean"``.
        gather: use the global batch under DDP.

    Shapes:
        forward(z_a (N, D), z_b (N, D)) -> scalar.

    Example:
        >>> loss_fn = OTSampleLoss(eps=0.01, n_iters=5)
        >>> loss = loss_fn(torch.randn(8, 32), torch.randn(8, 32))
    """

    def __init__(
        self,
        eps: float = 0.01,
        n_iters: int = 5,
        layout: str = "full",
        normalize_rows: bool = False,
        reduction: str = "sum",
        gather: bool = True,
    ) -> None:
        super().__init__()
        self.eps = _check_eps(eps)
        self.n_iters = _check_int(n_iters, "n_iters")
        self.layout = _check_choice(layout, "layout", LAYOUTS)
        self.normalize_rows = bool(normalize_rows)
        self.reduction = _check_choice(reduction, "reduction", REDUCTIONS)
        self.gather = gather
        self.last_marginal_error: torch.Tensor | None = None

    @float32_loss
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        loss, info = ot_sample_loss(
            z_a, z_b, self.eps, self.n_iters, layout=self.layout, normalize_rows=self.normalize_rows,
            reduction=self.reduction, gather=self.gather, return_info=True,
        )
        self.last_marginal_error = info["marginal_error"]
        return loss

    def extra_repr(self) -> str:
        return f"eps={self.eps}, n_iters={self.n_iters}, layout={self.layout!r}, normalize_rows={self.normalize_rows}"


# ----------------------------------------------------------------------------------------------------------------
# L_Feature


def feature_correlation(z_a: torch.Tensor, z_b: torch.Tensor, feature_norm: str = "bt") -> torch.Tensor:
    """The d × d feature similarity ρ of L_Feature for row-normalised embeddings (N, d).

    ``"bt"``: the Barlow Twins cross-correlation (each feature centred and scaled over the batch, then
    ``ρ = ẑ_aᵀ ẑ_b / N``, entries in [−1, 1]); ``"raw"``: ``ρ_ij = Σ_b z_a,bi z_b,bj`` as printed in [B] eq. 3.7.
    """
    if feature_norm == "bt":
        return cross_correlation(z_a, z_b, center=True)
    return z_a.T @ z_b


@float32_loss
def ot_feature_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    eps: float = 0.01,
    n_iters: int = 5,
    *,
    feature_norm: str = "bt",
    normalize_rows: bool = False,
    reduction: str = "sum",
    gather: bool = True,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_Feature: OT between the d features of the two views, target = identity ([B] §3.1, eqs. 3.7-3.8).

    With ``ẑ = z / ‖z‖`` (rows)::

        C_ij = 1 − ρ_ij   (d × d),   π = entropic plan of C with marginals 1/d, ε, ``n_iters`` iterations
        L    = − Σ_{i=1..d} log π_ii

    [B] eq. 3.7 is garbled (it reads ``C_ij = 1 − Σ_b z^A_bi z^B_bj``, which lies in [−N, N] after row
    normalisation) while the text says "inspired by the cross-correlation of eq. 2.6"; resolved reading (spec):
    ``feature_norm="bt"`` (default), ρ = the batch-normalised Barlow Twins cross-correlation, so C ∈ [0, 2];
    ``"raw"`` is the printed sum. The text's "minimize the anti-diagonal terms" contradicts the formula; the
    formula (maximise the diagonal) is followed. Minimum ``d log d`` at the identity permutation plan
    (0 with ``normalize_rows=True``, which uses ``log(d π_ii)``).

    Args:
        z_a: embeddings of the first views (N, d); rows normalised inside.
        z_b: embeddings of the second views (N, d).
        eps: ε (0.01 in [B]).
        n_iters: Sinkhorn iterations (5 in [B]).
        feature_norm: ``"bt"`` or ``"raw"``.
        normalize_rows: add ``log d`` to every target log-probability.
        reduction: ``"sum"`` ([B]) or ``"mean"`` (divided by d).
        gather: under DDP, ρ over the global batch (with gradients); every process returns the global loss.
        return_info: also return ``{"marginal_error": ...}`` (L1 row-marginal error, detached).

    Returns:
        Scalar loss, or ``(loss, info)``.

    Raises:
        GeosslError: for bad shapes, ``eps <= 0``, a non-positive ``n_iters``, an unknown ``feature_norm`` or
            ``reduction``, or ``feature_norm="bt"`` with a single row (no batch statistics).
    """
    _check_pair(z_a, z_b)
    eps = _check_eps(eps)
    n_iters = _check_int(n_iters, "n_iters")
    _check_choice(feature_norm, "feature_norm", FEATURE_NORMS)
    _check_choice(reduction, "reduction", REDUCTIONS)
    z_a, z_b = _gathered(z_a, z_b, gather)
    if feature_norm == "bt" and z_a.shape[0] < 2:
        raise GeosslError("feature_norm='bt' standardises each feature over the batch; pass at least 2 rows.")
    z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    rho = feature_correlation(z_a, z_b, feature_norm)
    log_plan, err = entropic_log_plan(1 - rho, eps, n_iters)
    terms = torch.diagonal(log_plan)
    loss = _reduce(terms, math.log(terms.numel()), normalize_rows, reduction)
    return (loss, {"marginal_error": err}) if return_info else loss


class OTFeatureLoss(nn.Module):
    """L_Feature, OT between features ([B] §3.1, eqs. 3.7-3.8; spec ``ssl_methods.md`` §2.1b).

    A transposition of L_Sample inspired by Barlow Twins: the entropic plan between the d embedding dimensions of
    the two views (cost ``1 − ρ``, ρ the Barlow Twins cross-correlation by default) should be the identity.
    [B]'s hypothesis: Barlow Twins' decorrelation may be "a too aggressive regularization" and c-cyclically
    monotone feature correlations might suffice. See :func:`ot_feature_loss`.

    :attr:`last_marginal_error` holds the plan's L1 row-marginal error after each forward.

    Args:
        eps: ε (0.01 in [B]).
        n_iters: Sinkhorn iterations (5 in [B]).
        feature_norm: ``"bt"`` (default) or ``"raw"``.
        normalize_rows: use ``log(d π_ii)``.
        reduction: ``"sum"`` ([B]) or ``"mean"``.
        gather: use the global batch under DDP.

    Shapes:
        forward(z_a (N, d), z_b (N, d)) -> scalar.
    """

    def __init__(
        self,
        eps: float = 0.01,
        n_iters: int = 5,
        feature_norm: str = "bt",
        normalize_rows: bool = False,
        reduction: str = "sum",
        gather: bool = True,
    ) -> None:
        super().__init__()
        self.eps = _check_eps(eps)
        self.n_iters = _check_int(n_iters, "n_iters")
        self.feature_norm = _check_choice(feature_norm, "feature_norm", FEATURE_NORMS)
        self.normalize_rows = bool(normalize_rows)
        self.reduction = _check_choice(reduction, "reduction", REDUCTIONS)
        self.gather = gather
        self.last_marginal_error: torch.Tensor | None = None

    @float32_loss
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        loss, info = ot_feature_loss(
            z_a, z_b, self.eps, self.n_iters, feature_norm=self.feature_norm, normalize_rows=self.normalize_rows,
            reduction=self.reduction, gather=self.gather, return_info=True,
        )
        self.last_marginal_error = info["marginal_error"]
        return loss

    def extra_repr(self) -> str:
        return f"eps={self.eps}, n_iters={self.n_iters}, feature_norm={self.feature_norm!r}"


# ----------------------------------------------------------------------------------------------------------------
# L_COOT


def coot_log_plans(
    X: torch.Tensor,
    Y: torch.Tensor,
    eps: float,
    n_iters: int,
    inner_iters: int,
    *,
    sample_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log sample and feature plans of entropic COOT with uniform weights, differentiable (autodiff).

    The block-coordinate descent of :func:`geossl.ot.co_optimal_transport` (Redko et al. 2020, Alg. 1; POT's
    ``ot.coot``): start from the independent couplings, then ``n_iters`` times solve the sample block
    ``P ← OT_ε(M_s(Q))`` and the feature block ``Q ← OT_ε(M_f(P))`` with ``inner_iters`` log-domain Sinkhorn
    iterations each, where::

        M_s(Q) = (X² w_f) 1ᵀ + 1 (Y² w_f)ᵀ − 2 X Q Yᵀ          (n_x, n_y)
        M_f(P) = (X²ᵀ w_s) 1ᵀ + 1 (Y²ᵀ w_s)ᵀ − 2 Xᵀ P Y          (d_x, d_y)

    It is written out here (same iterates as ``co_optimal_transport(..., n_iters, inner_max_iter=inner_iters,
    inner_tol=0, grad="autodiff")``, tested) for two reasons: the loss needs ``log P`` from the potentials (the plans
    underflow in float32 at small ε) and the "full" layout forbids the diagonal of the sample plan, which
    ``co_optimal_transport`` cannot express.

    Args:
        X: source data (n_x, d).
        Y: target data (n_y, d).
        eps: entropic regularisation of both blocks (cost units).
        n_iters: block-coordinate iterations (each: sample block, then feature block).
        inner_iters: Sinkhorn iterations per block.
        sample_mask: optional boolean (n_x, n_y), True = forbidden sample pair.

    Returns:
        ``(log_P (n_x, n_y), log_Q (d, d), sample marginal error, feature marginal error)`` (errors detached).
    """
    nx, dx = X.shape
    ny, dy = Y.shape
    ws_x = torch.full((nx,), 1.0 / nx, dtype=X.dtype, device=X.device)
    ws_y = torch.full((ny,), 1.0 / ny, dtype=X.dtype, device=X.device)
    wf_x = torch.full((dx,), 1.0 / dx, dtype=X.dtype, device=X.device)
    wf_y = torch.full((dy,), 1.0 / dy, dtype=X.dtype, device=X.device)
    const_s = ((X * X) @ wf_x)[:, None] + ((Y * Y) @ wf_y)[None, :]
    const_f = ((X * X).T @ ws_x)[:, None] + ((Y * Y).T @ ws_y)[None, :]
    Q = wf_x[:, None] * wf_y[None, :]
    for _ in range(n_iters):
        log_P, err_s = entropic_log_plan(const_s - 2 * X @ Q @ Y.T, eps, inner_iters, mask=sample_mask)
        log_Q, err_f = entropic_log_plan(const_f - 2 * X.T @ log_P.exp() @ Y, eps, inner_iters)
        Q = log_Q.exp()
    return log_P, log_Q, err_s, err_f


@float32_loss
def coot_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    eps: float = 0.05,
    *,
    reg_scale: str | None = "mean",
    lam_s: float = 1.0,
    lam_f: float = 1.0,
    layout: str = "cross",
    n_iters: int = 5,
    inner_iters: int = 10,
    normalize_rows: bool = False,
    reduction: str = "sum",
    gather: bool = True,
    return_info: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_COOT: both plans of entropic co-optimal transport should be the identity ([B] §3.1, eqs. 3.9-3.10).

    COOT (Redko et al. 2020) between ``X`` and ``Y`` gives a sample plan π^s and a feature plan π^v jointly
    minimising ``Σ_ijkl (X_ik − Y_jl)² π^s_ij π^v_kl`` (entropic blocks, uniform marginals). With ``ẑ = z / ‖z‖``:

    - ``layout="cross"`` (default): ``X = ẑ_a``, ``Y = ẑ_b`` (N × d each), π^s is N × N with identity target::

          L = − λ_S Σ_{i=1..N} log π^s_ii − λ_F Σ_{k=1..d} log π^v_kk

    - ``layout="full"``: ``X = Y = cat(ẑ_a, ẑ_b)`` (2N × d), the sample plan's diagonal forbidden, targets on the
      outer diagonals as in L_Sample::

          L = − λ_S Σ_{i=1..N} ( log π^s_{i,i+N} + log π^s_{i+N,i} ) − λ_F Σ_k log π^v_kk

    Index inconsistency of the source, resolved as the spec says: COOT between z^A (N × d) and z^B (N × d) gives an
    N × N sample plan, yet [B] eq. 3.10 uses the ``i + N`` indices of the 2N × 2N layout; the N × N reading is the
    default and the "cat with itself, masked diagonal" reading is ``layout="full"``.

    ε: [B] says it "needs to be adjusted" and gives no value. Default (library choice, spec): ε = 0.05 relative to
    the cost scale, ``reg_scale="mean"``: ``ε_eff = ε · mean_{ijkl} (X_ik − Y_jl)²`` (detached), which is the mean
    entry of both block costs at the independent couplings (≈ 2/d for unit rows), so ε means the same for every d.
    ``reg_scale=None`` uses ε as is. COOT iterations are not stated in [B]: 5 block-coordinate iterations of 10
    Sinkhorn iterations each by default (the memory of the unrolled graph grows with their product).

    Args:
        z_a: embeddings of the first views (N, d); rows normalised inside.
        z_b: embeddings of the second views (N, d).
        eps: ε, relative (``reg_scale="mean"``) or absolute (``None``).
        reg_scale: ``"mean"`` or ``None``.
        lam_s: λ_S, weight of the sample term (1 in [B]).
        lam_f: λ_F, weight of the feature term (1 in [B]).
        layout: ``"cross"`` (N × N sample plan) or ``"full"`` (2N × 2N, masked diagonal).
        n_iters: block-coordinate iterations.
        inner_iters: Sinkhorn iterations per block.
        normalize_rows: add ``log n`` (n = sample-plan side) and ``log d`` to the target log-probabilities.
        reduction: ``"sum"`` ([B]) or ``"mean"`` (each term divided by its number of target entries).
        gather: under DDP, COOT of the global batch (with gradients); every process returns the global loss.
        return_info: also return ``{"marginal_error_samples": ..., "marginal_error_features": ..., "eps": ε_eff}``.

    Returns:
        Scalar loss, or ``(loss, info)``.

    Raises:
        GeosslError: for bad shapes, ``eps <= 0``, negative weights, an unknown ``layout`` / ``reg_scale`` /
            ``reduction`` or non-positive iteration counts.
    """
    _check_pair(z_a, z_b)
    eps = _check_eps(eps)
    _check_choice(reg_scale, "reg_scale", REG_SCALES)
    _check_choice(layout, "layout", LAYOUTS)
    _check_choice(reduction, "reduction", REDUCTIONS)
    n_iters = _check_int(n_iters, "n_iters")
    inner_iters = _check_int(inner_iters, "inner_iters")
    for name, lam in (("lam_s", lam_s), ("lam_f", lam_f)):
        if not math.isfinite(float(lam)) or float(lam) < 0:
            raise GeosslError(f"{name} must be a finite number >= 0 (1 in [B]), got {lam!r}.")
    z_a, z_b = _gathered(z_a, z_b, gather)
    z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    n = z_a.shape[0]
    if layout == "full":
        X = Y = torch.cat([z_a, z_b])
        mask = _diag_mask(2 * n, X.device)
    else:
        X, Y, mask = z_a, z_b, None
    if reg_scale == "mean":
        with torch.no_grad():
            # mean over i, j, k, l of (X_ik - Y_jl)^2, expanded so that no 4-index tensor is formed
            scale = (X * X).mean() + (Y * Y).mean() - 2 * X.mean() * Y.mean()
        eps = eps * max(float(scale), 1e-12)
    log_P, log_Q, err_s, err_f = coot_log_plans(X, Y, eps, n_iters, inner_iters, sample_mask=mask)
    if layout == "full":
        idx = torch.arange(n, device=X.device)
        samp = torch.cat([log_P[idx, idx + n], log_P[idx + n, idx]])
    else:
        samp = torch.diagonal(log_P)
    feat = torch.diagonal(log_Q)
    loss = float(lam_s) * _reduce(samp, math.log(log_P.shape[0]), normalize_rows, reduction)
    loss = loss + float(lam_f) * _reduce(feat, math.log(log_Q.shape[0]), normalize_rows, reduction)
    if not return_info:
        return loss
    info = {"marginal_error_samples": err_s, "marginal_error_features": err_f, "eps": torch.tensor(eps, dtype=torch.float64)}
    return loss, info


class COOTLoss(nn.Module):
    """L_COOT, co-optimal transport between the views ([B] §3.1, eqs. 3.9-3.10; spec ``ssl_methods.md`` §2.1c).

    Unifies L_Sample and L_Feature: COOT (Redko et al., NeurIPS 2020) jointly computes a sample plan and a feature
    plan, and both are pushed to the identity. [B] reports it as the worst objective, collapsing on STL-10.
    See :func:`coot_loss` for the formula, the resolved index inconsistency and the ε scaling.

    :attr:`last_marginal_error` holds the sample plan's L1 row-marginal error after each forward and
    :attr:`last_info` all of :func:`coot_loss`'s info.

    Args:
        lam_s: λ_S (1 in [B]).
        lam_f: λ_F (1 in [B]).
        eps: ε (relative with ``reg_scale="mean"``; 0.05 by default, library choice).
        reg_scale: ``"mean"`` or ``None``.
        layout: ``"cross"`` (default) or ``"full"``.
        n_iters: block-coordinate iterations.
        inner_iters: Sinkhorn iterations per block.
        normalize_rows: use ``log(n π)``.
        reduction: ``"sum"`` ([B]) or ``"mean"``.
        gather: use the global batch under DDP.

    Shapes:
        forward(z_a (N, d), z_b (N, d)) -> scalar.
    """

    def __init__(
        self,
        lam_s: float = 1.0,
        lam_f: float = 1.0,
        eps: float = 0.05,
        reg_scale: str | None = "mean",
        layout: str = "cross",
        n_iters: int = 5,
        inner_iters: int = 10,
        normalize_rows: bool = False,
        reduction: str = "sum",
        gather: bool = True,
    ) -> None:
        super().__init__()
        self.eps = _check_eps(eps)
        self.reg_scale = _check_choice(reg_scale, "reg_scale", REG_SCALES)
        self.layout = _check_choice(layout, "layout", LAYOUTS)
        self.reduction = _check_choice(reduction, "reduction", REDUCTIONS)
        self.n_iters = _check_int(n_iters, "n_iters")
        self.inner_iters = _check_int(inner_iters, "inner_iters")
        for name, lam in (("lam_s", lam_s), ("lam_f", lam_f)):
            if not math.isfinite(float(lam)) or float(lam) < 0:
                raise GeosslError(f"{name} must be a finite number >= 0 (1 in [B]), got {lam!r}.")
        self.lam_s, self.lam_f = float(lam_s), float(lam_f)
        self.normalize_rows = bool(normalize_rows)
        self.gather = gather
        self.last_marginal_error: torch.Tensor | None = None
        self.last_info: dict[str, torch.Tensor] = {}

    @float32_loss
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        loss, info = coot_loss(
            z_a, z_b, self.eps, reg_scale=self.reg_scale, lam_s=self.lam_s, lam_f=self.lam_f, layout=self.layout,
            n_iters=self.n_iters, inner_iters=self.inner_iters, normalize_rows=self.normalize_rows,
            reduction=self.reduction, gather=self.gather, return_info=True,
        )
        self.last_info = info
        self.last_marginal_error = info["marginal_error_samples"]
        return loss

    def extra_repr(self) -> str:
        return (
            f"lam_s={self.lam_s}, lam_f={self.lam_f}, eps={self.eps}, reg_scale={self.reg_scale!r}, "
            f"layout={self.layout!r}, n_iters={self.n_iters}, inner_iters={self.inner_iters}"
        )
