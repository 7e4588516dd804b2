"""OT between samples, between features, and COOT as SSL methods (thesis [B] §3.1; spec ``ssl_methods.md`` §2.1).

Three methods with the same two-view pipeline, ``z = projector(backbone(x))``, and one of the losses of
:mod:`geossl.losses.ot_ssl` on the normalised embeddings:

- ``ot-sample`` (:class:`OTSample`): L_Sample, the entropic plan between the 2N views should be the pairing;
- ``ot-feature`` (:class:`OTFeature`): L_Feature, the entropic plan between the d features should be the identity;
- ``ot-coot`` (:class:`OTCOOT`): L_COOT, both plans of co-optimal transport should be the identity.

[B] states only the loss settings (ε = 0.01 and 5 Sinkhorn iterations for L_Sample/L_Feature, λ_S = λ_F = 1 for
L_COOT, batch 1024). Everything else is "not stated" and follows the spec's rule to reuse the §2.2 setup of the
same thesis (SSW-SSL): the encoder is followed by ``Linear(D → 1024) → ReLU → Linear(1024 → d, no bias)`` (the
"fc to 1024" then the embedding layer of §2.2's ResNet-18 variant) and L2 normalisation; d = 128 (the authors'
``feat_dim`` default of §2.2); SGD with momentum 0.9, weight decay 1e-3 and lr 0.05 at §2.2's batch 512, i.e.
``lr = 0.025`` per 256 images under the engine's linear scaling. Library addition: gradients clipped at norm 3
(``gradient_clip``, as DINO). The losses are sums over the batch with ε = 0.01, so their gradient norms at
initialisation are 1e4-1e5 (measured: 1.3e5 for L_Sample with batch 256 on a small MLP); with plain SGD at lr 0.05
the first steps saturate the plans (cost gaps ≫ ε) and the gradient then vanishes (1e-3 after 150 steps, loss stuck
at twice its minimum), while with clipping training continues. [B] names no optimiser.

Expected behaviour [B Tables 3.1/3.2]: L_Feature > L_Sample > SimCLR under linear probing at batch 1024, L_COOT
worst (collapsing on STL-10). The plan's marginal error is logged (``marginal_error``): 5 iterations at ε = 0.01
do not give a bistochastic plan.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from geossl.losses.ot_ssl import COOTLoss, OTFeatureLoss, OTSampleLoss
from geossl.methods._multicrop import check_views
from geossl.methods.base import Method, StepOutput
from geossl.nn.backbones import feature_dim

__all__ = ["OTCOOT", "OTFeature", "OTSample", "ot_projector"]

#: §2.2's optimisation setup (SGD 0.05 at batch 512, momentum 0.9, wd 1e-3) as a base lr per 256 images, plus
#: gradient clipping (library choice, see the module docstring).
OT_OPTIM_DEFAULTS: dict[str, Any] = {"optimizer": "sgd", "lr": 0.025, "weight_decay": 1e-3, "gradient_clip": 3.0}


def ot_projector(in_dim: int, hidden_dim: int = 1024, out_dim: int = 128) -> nn.Sequential:
    """The head of [B] §3.2's encoder, reused for §3.1: ``Linear(in → hidden) → ReLU → Linear(hidden → out)``.

    Shapes:
        (B, in_dim) -> (B, out_dim); the losses normalise the rows.
    """
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim, bias=False)
    )


class _TwoViewOT(Method):
    """Two views, one backbone pass over both, the §2.2 head, and an OT loss on ``(z_a, z_b)``."""

    criterion: nn.Module

    def __init__(self, backbone: nn.Module, hidden_dim: int, projection_dim: int) -> None:
        super().__init__(backbone)
        self.projector = ot_projector(feature_dim(backbone), hidden_dim, projection_dim)

    def _logs(self) -> dict[str, float]:
        err = getattr(self.criterion, "last_marginal_error", None)
        return {} if err is None else {"marginal_error": float(err)}

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        check_views(self.name, views, local_crops=False)
        x_a, x_b = views
        # one pass over both views: BatchNorm sees the 2N views together (as SimCLR)
        h = self.backbone(torch.cat([x_a, x_b]))
        z_a, z_b = self.projector(h).chunk(2)
        loss = self.criterion(z_a, z_b)
        return StepOutput(
            loss=loss, features=h[: len(x_a)].detach(), embeddings=z_a.detach(), logs=self._logs(), branches=[z_a, z_b]
        )


class OTSample(_TwoViewOT):
    """OT between samples (L_Sample, [B] §3.1): the entropic plan between the 2N views should be the pairing.

    Loss :class:`geossl.losses.ot_ssl.OTSampleLoss`: cost ``1 − cos`` over ``cat(z_a, z_b)`` with a masked diagonal,
    ε = 0.01, 5 log-domain Sinkhorn iterations differentiated through, ``−Σ (log π_{i,i+N} + log π_{i+N,i})``
    ([B] eq. 3.5, summed as printed). Head and optimiser: see the module docstring (§2.2 setup, [B] gives none).

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: head hidden width (1024, §2.2).
        projection_dim: embedding dimension d (128).
        eps: ε (0.01 in [B]).
        n_iters: Sinkhorn iterations (5 in [B]).
        layout: ``"full"`` (2N × 2N, default) or ``"cross"`` (N × N), the two readings of [B].
        normalize_rows: use ``log(2N π)`` (minimum 0).
        reduction: ``"sum"`` ([B]) or ``"mean"``.
        gather: the global batch under DDP.
    """

    name = "ot-sample"
    optim_defaults: ClassVar[dict[str, Any]] = dict(OT_OPTIM_DEFAULTS)

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 1024,
        projection_dim: int = 128,
        eps: float = 0.01,
        n_iters: int = 5,
        layout: str = "full",
        normalize_rows: bool = False,
        reduction: str = "sum",
        gather: bool = True,
    ) -> None:
        super().__init__(backbone, hidden_dim, projection_dim)
        self.criterion = OTSampleLoss(eps, n_iters, layout, normalize_rows, reduction, gather)


class OTFeature(_TwoViewOT):
    """OT between features (L_Feature, [B] §3.1): the entropic plan between the d features should be the identity.

    Loss :class:`geossl.losses.ot_ssl.OTFeatureLoss`: cost ``1 − ρ`` with ρ the Barlow Twins cross-correlation
    (resolved reading of the garbled [B] eq. 3.7), ε = 0.01, 5 iterations, ``−Σ_i log π_ii``. Head and optimiser:
    see the module docstring.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: head hidden width (1024).
        projection_dim: d, the side of the feature plan (128).
        eps: ε (0.01 in [B]).
        n_iters: Sinkhorn iterations (5 in [B]).
        feature_norm: ``"bt"`` (default) or ``"raw"`` ([B] eq. 3.7 as printed).
        normalize_rows: use ``log(d π_ii)``.
        reduction: ``"sum"`` ([B]) or ``"mean"``.
        gather: the global batch under DDP.
    """

    name = "ot-feature"
    optim_defaults: ClassVar[dict[str, Any]] = dict(OT_OPTIM_DEFAULTS)

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 1024,
        projection_dim: int = 128,
        eps: float = 0.01,
        n_iters: int = 5,
        feature_norm: str = "bt",
        normalize_rows: bool = False,
        reduction: str = "sum",
        gather: bool = True,
    ) -> None:
        super().__init__(backbone, hidden_dim, projection_dim)
        self.criterion = OTFeatureLoss(eps, n_iters, feature_norm, normalize_rows, reduction, gather)


class OTCOOT(_TwoViewOT):
    """Co-optimal transport between the views (L_COOT, [B] §3.1): sample and feature plans both the identity.

    Loss :class:`geossl.losses.ot_ssl.COOTLoss` with λ_S = λ_F = 1 ([B]); entropic blocks with ε = 0.05 relative to
    the mean cost (library choice: [B] says ε "needs to be adjusted"), N × N sample plan (resolved reading of
    [B] eq. 3.10), 5 block-coordinate iterations of 10 Sinkhorn iterations, all differentiated through. [B] reports
    it as the worst of its objectives, collapsing on STL-10. Logs both plans' marginal errors.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: head hidden width (1024).
        projection_dim: d (128).
        lam_s: λ_S (1).
        lam_f: λ_F (1).
        eps: ε (relative with ``reg_scale="mean"``).
        reg_scale: ``"mean"`` or ``None`` (absolute ε).
        layout: ``"cross"`` (default) or ``"full"`` (cat with itself, masked diagonal).
        n_iters: block-coordinate iterations.
        inner_iters: Sinkhorn iterations per block.
        reduction: ``"sum"`` ([B]) or ``"mean"``.
        gather: the global batch under DDP.
    """

    name = "ot-coot"
    optim_defaults: ClassVar[dict[str, Any]] = dict(OT_OPTIM_DEFAULTS)

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 1024,
        projection_dim: int = 128,
        lam_s: float = 1.0,
        lam_f: float = 1.0,
        eps: float = 0.05,
        reg_scale: str | None = "mean",
        layout: str = "cross",
        n_iters: int = 5,
        inner_iters: int = 10,
        reduction: str = "sum",
        gather: bool = True,
    ) -> None:
        super().__init__(backbone, hidden_dim, projection_dim)
        self.criterion = COOTLoss(
            lam_s, lam_f, eps, reg_scale, layout, n_iters, inner_iters, reduction=reduction, gather=gather
        )

    def _logs(self) -> dict[str, float]:
        info = self.criterion.last_info
        if not info:
            return {}
        return {
            "marginal_error": float(info["marginal_error_samples"]),
            "marginal_error_features": float(info["marginal_error_features"]),
        }
