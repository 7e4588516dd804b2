"""Dense contrastive loss with optimal-transport patch matching (DenseCL-style; thesis [B] §3.3).

DenseCL (Wang, Zhang, Shen, Kong, Li, CVPR 2021) contrasts the patches of two views of an image: each patch j of
view A is pulled towards its matched patch t(j) of view B, found by argmax of the cosine similarity. [B] §3.3
(spec ``ssl_methods.md`` §2.3) sees each dense map as a uniform distribution over its h·w patches and replaces the
argmax by an OT plan π between them (exact, entropic or unbalanced), used as a soft target::

    L_Soft-Dense = − Σ_i Σ_{j=1..hw} Σ_{k=1..hw} (h·w) π*_jk log [ exp(s_jk / τ) / Σ_l exp(s_jl / τ) ]

with ``s_jk = sim(z^A_ij, z^B_ik)`` (cosine) for image i. A permutation plan gives the hard (one-hot) dense loss,
as one-hot vs soft-label cross-entropy. Note: that identity (the spec's "recovers L_Dense exactly") holds for the
one-hot cross-entropy over the patches of the same image; [B] eq. 3.19 as reconstructed (spec §1.12) has only the
positive patch and the other images in its denominator, which no choice of targets in eq. 3.24 reproduces. Unbalanced OT lets view-exclusive patches (barely overlapping crops)
transport little mass, which down-weights them in the loss: the targets are **not renormalised**.

Resolved readings (spec): [B] eq. 3.22 writes argmax ⟨C, π⟩ with C = −sim, i.e. would minimise similarity; the
plan here is argmin ⟨C, π⟩ = argmax ⟨sim, π⟩. Balanced plans are computed on ``1 − cos`` (the same plan as for
``−cos``: balanced OT is invariant to adding a constant); unbalanced ones must be (negative costs create mass,
spec ``ot.md`` §3.3). Whether the other-image negatives of [B] eq. 3.19 stay in the denominator of eq. 3.24 is
unclear in the source: ``image_negatives=False`` (default) is the formula as printed. Plans are detached (targets).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.losses.contrastive import nt_xent
from geossl.losses.precision import float32_loss, full_precision
from geossl.ot.emd import emd
from geossl.ot.sinkhorn import sinkhorn
from geossl.ot.unbalanced import sinkhorn_unbalanced

__all__ = ["MATCHERS", "DenseOTLoss", "SoftDenseLoss", "dense_targets", "soft_dense_loss"]

#: Patch matchers of [B] Table 3.5.
MATCHERS = ("argmax", "uniform", "exact", "entropic", "unbalanced")
REDUCTIONS = ("mean", "sum")


def _flatten(x: Any, name: str) -> torch.Tensor:
    """(B, D, h, w) dense map -> (B, h·w, D) patch vectors; (B, n, D) is taken as is."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise GeosslError(f"{name} must be a dense map (B, D, h, w) or patch vectors (B, n, D), got {shape}.")
    if x.dim() == 4:
        return x.flatten(2).transpose(1, 2)
    return x


def _check_positive(value: Any, name: str, hint: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GeosslError(f"{name} must be a positive number ({hint}), got {value!r}.") from None
    if not math.isfinite(v) or v <= 0:
        raise GeosslError(f"{name} must be a finite number > 0 ({hint}), got {value!r}.")
    return v


def _check_matcher(matcher: Any) -> str:
    if matcher not in MATCHERS:
        raise GeosslError(f"matcher must be one of {', '.join(MATCHERS)}; got {matcher!r}.")
    return matcher


@torch.no_grad()
def dense_targets(
    feat_a: torch.Tensor,
    feat_b: torch.Tensor,
    matcher: str = "unbalanced",
    *,
    eps: float = 0.05,
    reg_m: float = 0.05,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Soft-dense targets ``T = (h·w) π`` between the patches of two views, per image (no gradient).

    Row j of ``T[i]`` is the target distribution of patch j of view A over the patches of view B (uniform
    marginals 1/n, n = h·w; cosine similarities ``S = ẑ_A ẑ_Bᵀ``, cost ``C = 1 − S``):

    - ``"argmax"``: one-hot at ``argmax_k S_jk`` (DenseCL, [B] eq. 3.18);
    - ``"uniform"``: ``π_jk = 1/n²`` ([B] Table 3.5; source garbled);
    - ``"exact"``: exact OT by :func:`geossl.ot.emd` (a permutation for uniform marginals);
    - ``"entropic"``: :func:`geossl.ot.sinkhorn` with ε = ``eps`` ([B] used ε = 10 and 1000, which on costs in
      [0, 2] are practically the uniform plan, spec ``ot.md`` trap T6); solved on ``Cᵀ`` and transposed back, so
      that the last half-step of the solver (columns) makes the target *rows* exact;
    - ``"unbalanced"``: :func:`geossl.ot.sinkhorn_unbalanced` with ε = ``eps``, λ = ``reg_m`` ([B]: λ = 0.05, ε not
      stated; library default 0.05), ``reg_type="kl"``; rows of ``n π`` with a mass above 1 (well-matched patches
      can slightly exceed their marginal) are scaled down to mass 1, rows below 1 are kept (not renormalised).

    Args:
        feat_a: view-A dense map (B, D, h, w) or patch vectors (B, n, D); normalised inside.
        feat_b: view-B dense map or patches, same shape.
        matcher: one of :data:`MATCHERS`.
        eps: entropic ε of ``"entropic"`` and ``"unbalanced"`` (cost units; cost in [0, 2]).
        reg_m: marginal relaxation λ of ``"unbalanced"``.
        max_iter: Sinkhorn iteration cap (``"entropic"``, ``"unbalanced"``).
        tol: Sinkhorn stopping threshold.

    Returns:
        Targets (B, n, n), float32 or float64, detached; rows sum to 1 for the balanced matchers (to the Sinkhorn
        tolerance for ``"entropic"``) and to at most 1 for ``"unbalanced"``.

    Raises:
        GeosslError: for maps of different shapes, an unknown matcher or a non-positive ``eps`` / ``reg_m``.
    """
    _check_matcher(matcher)
    a, b = _flatten(feat_a, "feat_a"), _flatten(feat_b, "feat_b")
    if a.shape != b.shape:
        raise GeosslError(f"feat_a and feat_b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    a, b = F.normalize(full_precision(a.detach()), dim=-1), F.normalize(full_precision(b.detach()), dim=-1)
    n = a.shape[1]
    sim = a @ b.transpose(1, 2)  # (B, n, n)
    if matcher == "argmax":
        return F.one_hot(sim.argmax(-1), n).to(sim.dtype)
    if matcher == "uniform":
        return torch.full_like(sim, 1.0 / n)
    cost = 1 - sim
    if matcher == "exact":
        return emd(None, None, cost) * n
    if matcher == "entropic":
        eps = _check_positive(eps, "eps", "[B] used 10 and 1000")
        plan = sinkhorn(None, None, cost.transpose(1, 2), eps, max_iter=max_iter, tol=tol, grad="detach")
        return plan.transpose(1, 2) * n
    eps = _check_positive(eps, "eps", "library default 0.05")
    reg_m = _check_positive(reg_m, "reg_m", "0.05 in [B]")
    # 1 - cos can be a hair below 0 in floating point; unbalanced OT needs non-negative costs
    plan = sinkhorn_unbalanced(None, None, cost.clamp_min(0), eps, reg_m, reg_type="kl", max_iter=max_iter, tol=tol, grad="detach")
    targets = plan * n
    mass = targets.sum(-1, keepdim=True)
    return targets / mass.clamp_min(1.0)


@float32_loss
def soft_dense_loss(
    dense_a: torch.Tensor,
    dense_b: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 0.2,
    *,
    image_negatives: bool = False,
    reduction: str = "mean",
    gather: bool = True,
) -> torch.Tensor:
    """Soft-dense cross-entropy ([B] eq. 3.24) for given targets.

    With ``s_jk = cos(z^A_ij, z^B_ik)`` and targets ``T_i = (h·w) π_i`` (B, n, n)::

        L = − Σ_i Σ_j Σ_k T_ijk log [ exp(s_jk / τ) / ( Σ_l exp(s_jl / τ) [+ Σ_{m≠i} exp(cos(z^A_ij, z̄^B_m) / τ)] ) ]

    The bracketed term is present with ``image_negatives=True``: the pooled view-B vectors of the other images
    (``z̄^B_m`` = mean of image m's view-B patches, normalised; [B] eq. 3.19's image-level negatives), gathered from
    every process under DDP (with gradients).

    Args:
        dense_a: view-A dense projections (B, D, h, w) or (B, n, D).
        dense_b: view-B dense projections, same shape.
        targets: (B, n, n), e.g. from :func:`dense_targets`; used as constants.
        temperature: τ > 0.
        image_negatives: add the other images' pooled view-B vectors to every denominator.
        reduction: ``"mean"`` (the sum divided by the number of anchor patches B·n, DenseCL's normalisation, so the
            term mixes with a global InfoNCE mean) or ``"sum"`` ([B]'s formula). Down-weighted rows are not
            renormalised in either case.
        gather: under DDP, take the image negatives from all processes.

    Returns:
        Scalar loss.

    Raises:
        GeosslError: for mismatched shapes, ``temperature <= 0`` or an unknown ``reduction``.
    """
    a, b = _flatten(dense_a, "dense_a"), _flatten(dense_b, "dense_b")
    if a.shape != b.shape:
        raise GeosslError(f"dense_a and dense_b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    B, n, _ = a.shape
    if not isinstance(targets, torch.Tensor) or targets.shape != (B, n, n):
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise GeosslError(f"targets must have shape {(B, n, n)} (images, patches of A, patches of B), got {shape}.")
    tau = _check_positive(temperature, "temperature", "DenseCL uses 0.2")
    if reduction not in REDUCTIONS:
        raise GeosslError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}.")
    za, zb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = za @ zb.transpose(1, 2) / tau  # (B, n, n)
    if image_negatives:
        pooled = F.normalize(b.mean(1), dim=-1)  # (B, D): image-level view-B vectors
        own = torch.arange(B, device=a.device)
        if gather and dist.is_distributed():
            pooled = dist.gather(pooled)
            own = own + dist.rank() * B
        neg = torch.einsum("bnd,md->bnm", za, pooled) / tau  # (B, n, M)
        self_image = F.one_hot(own, pooled.shape[0]).bool()[:, None, :]
        neg = neg.masked_fill(self_image, torch.finfo(neg.dtype).min)
        log_z = torch.logsumexp(torch.cat([logits, neg], dim=-1), dim=-1, keepdim=True)
    else:
        log_z = torch.logsumexp(logits, dim=-1, keepdim=True)
    loss = -(targets.detach().to(logits.dtype) * (logits - log_z)).sum()
    return loss / (B * n) if reduction == "mean" else loss


class SoftDenseLoss(nn.Module):
    """Soft-dense contrastive loss with a pluggable patch matcher ([B] §3.3; spec ``ssl_methods.md`` §2.3).

    Targets from :func:`dense_targets` (computed from ``match_a``/``match_b`` when given, e.g. backbone maps as in
    the original DenseCL, else from the dense projections themselves as in [B] eq. 3.18), then
    :func:`soft_dense_loss`. :attr:`last_target_mass` holds the mean row mass of the targets after each forward
    (1 for balanced matchers; below 1 when unbalanced OT leaves patches unmatched).

    Args:
        temperature: τ (not stated in [B]; DenseCL's 0.2).
        matcher: one of :data:`MATCHERS` (default ``"unbalanced"``, the variant [B] proposes to pursue).
        image_negatives: other images' pooled vectors in the denominators (default False: [B] eq. 3.24 as printed).
        eps: ε of the entropic and unbalanced matchers (library default 0.05).
        reg_m: λ of the unbalanced matcher (0.05 in [B]).
        reduction: ``"mean"`` or ``"sum"``.
        gather: image negatives from all processes under DDP.

    Shapes:
        forward(dense_a (B, D, h, w), dense_b (B, D, h, w), match_a=None, match_b=None) -> scalar.
    """

    def __init__(
        self,
        temperature: float = 0.2,
        matcher: str = "unbalanced",
        image_negatives: bool = False,
        eps: float = 0.05,
        reg_m: float = 0.05,
        reduction: str = "mean",
        gather: bool = True,
    ) -> None:
        super().__init__()
        self.temperature = _check_positive(temperature, "temperature", "DenseCL uses 0.2")
        self.matcher = _check_matcher(matcher)
        self.image_negatives = bool(image_negatives)
        self.eps = _check_positive(eps, "eps", "library default 0.05")
        self.reg_m = _check_positive(reg_m, "reg_m", "0.05 in [B]")
        if reduction not in REDUCTIONS:
            raise GeosslError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}.")
        self.reduction = reduction
        self.gather = gather
        self.last_target_mass: torch.Tensor | None = None

    @float32_loss
    def forward(
        self,
        dense_a: torch.Tensor,
        dense_b: torch.Tensor,
        match_a: torch.Tensor | None = None,
        match_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if (match_a is None) != (match_b is None):
            raise GeosslError("pass both match_a and match_b (features to match patches on), or neither.")
        ma, mb = (dense_a, dense_b) if match_a is None else (match_a, match_b)
        targets = dense_targets(ma, mb, self.matcher, eps=self.eps, reg_m=self.reg_m)
        if targets.shape[1] != _flatten(dense_a, "dense_a").shape[1]:
            raise GeosslError("match_a/match_b must have the same h x w grid as the dense projections.")
        self.last_target_mass = targets.sum(-1).mean()
        return soft_dense_loss(
            dense_a, dense_b, targets, self.temperature, image_negatives=self.image_negatives,
            reduction=self.reduction, gather=self.gather,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, matcher={self.matcher!r}, image_negatives={self.image_negatives}"


class DenseOTLoss(nn.Module):
    """Global InfoNCE mixed with the soft-dense OT loss: ``(1 − w) L_global + w L_dense``.

    [B] §3.3 trains on a mixture of dense and global losses (equal weights; the global term solves DenseCL's
    "chicken and egg" problem of random early matches); DenseCL writes it ``(1 − λ) L_g + λ L_d`` with λ = 0.5,
    which is the default ``dense_weight``. The global term is NT-Xent (:func:`geossl.losses.contrastive.nt_xent`,
    in-batch negatives, gathered under DDP); the dense term is :class:`SoftDenseLoss`.

    After each forward :attr:`last_terms` holds the detached ``global``, ``dense`` and ``target_mass`` values.

    Args:
        temperature: τ of both terms (DenseCL / MoCo v2: 0.2).
        dense_weight: w ∈ [0, 1].
        matcher: patch matcher, one of :data:`MATCHERS`.
        image_negatives: see :func:`soft_dense_loss`.
        eps: ε of the entropic / unbalanced matchers.
        reg_m: λ of the unbalanced matcher.
        gather: global negatives (and image negatives) from all processes under DDP.

    Shapes:
        forward(global_a (N, E), global_b (N, E), dense_a (N, D, h, w), dense_b (N, D, h, w),
        match_a=None, match_b=None) -> scalar.
    """

    def __init__(
        self,
        temperature: float = 0.2,
        dense_weight: float = 0.5,
        matcher: str = "unbalanced",
        image_negatives: bool = False,
        eps: float = 0.05,
        reg_m: float = 0.05,
        gather: bool = True,
    ) -> None:
        super().__init__()
        try:
            w = float(dense_weight)
        except (TypeError, ValueError):
            w = float("nan")
        if not 0.0 <= w <= 1.0:
            raise GeosslError(f"dense_weight must be in [0, 1] (0.5 in DenseCL), got {dense_weight!r}.")
        self.dense_weight = w
        self.temperature = _check_positive(temperature, "temperature", "DenseCL uses 0.2")
        self.gather = gather
        self.dense = SoftDenseLoss(temperature, matcher, image_negatives, eps, reg_m, "mean", gather)
        self.last_terms: dict[str, float] = {}

    @float32_loss
    def forward(
        self,
        global_a: torch.Tensor,
        global_b: torch.Tensor,
        dense_a: torch.Tensor,
        dense_b: torch.Tensor,
        match_a: torch.Tensor | None = None,
        match_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if global_a.dim() != 2 or global_a.shape != global_b.shape:
            raise GeosslError(
                f"global_a and global_b must both be (N, E), got {tuple(global_a.shape)} and {tuple(global_b.shape)}."
            )
        if dense_a.shape[0] != global_a.shape[0]:
            raise GeosslError(f"dense maps hold {dense_a.shape[0]} images but the global embeddings {global_a.shape[0]}.")
        l_global = nt_xent(global_a, global_b, self.temperature, gather=self.gather)
        l_dense = self.dense(dense_a, dense_b, match_a, match_b)
        self.last_terms = {
            "global": float(l_global.detach()),
            "dense": float(l_dense.detach()),
            "target_mass": float(self.dense.last_target_mass),
        }
        return (1 - self.dense_weight) * l_global + self.dense_weight * l_dense

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, dense_weight={self.dense_weight}"
