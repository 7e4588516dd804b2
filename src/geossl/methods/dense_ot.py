"""Dense OT contrastive learning (thesis [B] §3.3; spec ``ssl_methods.md`` §2.3), a DenseCL-style method.

DenseCL (Wang, Zhang, Shen, Kong, Li, CVPR 2021) adds to a global contrastive loss a dense one between the
patches of the layer-4 feature maps of two views. [B] §3.3 replaces DenseCL's argmax patch matching by OT plans
(exact, entropic, unbalanced) used as soft targets, so that view-exclusive patches of barely overlapping crops can
stay unmatched (unbalanced OT) instead of being forced onto their most similar patch.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from geossl.errors import GeosslError
from geossl.losses.dense_ot import DenseOTLoss
from geossl.methods._multicrop import check_views
from geossl.methods.base import SCALE_FREE_TREG, Method, StepOutput
from geossl.nn.backbones import feature_dim
from geossl.nn.heads import ProjectionHead

__all__ = ["DenseOT", "DenseProjectionHead", "resnet_feature_map"]

_RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
MATCH_ON = ("projector", "backbone")


def resnet_feature_map(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer-4 feature map of a torchvision ResNet (the map its global average pooling reduces).

    Runs ``conv1 → bn1 → relu → maxpool → layer1 … layer4`` of the module, so ``map.mean((2, 3))`` equals
    ``backbone(x)`` for a geossl ResNet (``fc = Identity``).

    Args:
        backbone: a torchvision ResNet (as built by :func:`geossl.nn.backbones.build_backbone`).
        x: images (B, C, H, W).

    Returns:
        Feature map (B, D, h, w), e.g. h = w = H/32 with the standard stem (H/8 with the small stem).

    Raises:
        GeosslError: if the backbone has no ResNet stages.
    """
    missing = [s for s in _RESNET_STAGES if not hasattr(backbone, s)]
    if missing:
        raise GeosslError(
            f"dense-ot needs a torchvision ResNet backbone (modules conv1 ... layer4), {type(backbone).__name__} "
            f"lacks {', '.join(missing)}; use --backbone resnet18/34/50."
        )
    for stage in _RESNET_STAGES:
        x = getattr(backbone, stage)(x)
    return x


class DenseProjectionHead(nn.Sequential):
    """DenseCL's dense projector: 1×1 conv → ReLU → 1×1 conv on a feature map (Wang et al. 2021, §3.2).

    Shapes:
        (B, in_dim, h, w) -> (B, out_dim, h, w).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128) -> None:
        super().__init__(nn.Conv2d(in_dim, hidden_dim, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden_dim, out_dim, 1))


class DenseOT(Method):
    """Dense OT contrastive learning: global NT-Xent + soft-dense loss with OT patch matching ([B] §3.3).

    One backbone pass over both views gives the layer-4 maps (B, D, h, w); their average pooling is the usual
    backbone feature (B, D). A global projector (D → 2048 → 128, BatchNorm, as SimCLR/MoCo v2) feeds NT-Xent; a
    dense projector (1×1 conv D → 2048 → 128, DenseCL) feeds the soft-dense loss. The patches are matched by
    ``matcher`` (:data:`geossl.losses.dense_ot.MATCHERS`) on the dense projections ([B] eq. 3.18) or, with
    ``match_on="backbone"``, on the backbone maps (original DenseCL). Loss ``(1 − w) L_global + w L_dense``
    (:class:`geossl.losses.dense_ot.DenseOTLoss`), w = 0.5 (DenseCL; [B]: "equal weights").

    Defaults: ``matcher="unbalanced"`` (ε = 0.05, λ = 0.05, ``reg_type="kl"``; the variant [B] proposes to pursue,
    second in its Table 3.5 behind argmax, which gives DenseCL with in-batch negatives); τ = 0.2 and SGD with
    lr 0.03 per 256 images, momentum 0.9, weight decay 1e-4 from DenseCL/MoCo v2 (not stated in [B]). The original
    DenseCL's negative queue and momentum encoder are not used ([B]'s in-batch form).

    Logs: ``global_loss``, ``dense_loss`` and ``target_mass`` (mean row mass of the dense targets: 1 for balanced
    matchers, below 1 where unbalanced OT leaves patches unmatched).

    Args:
        backbone: a torchvision ResNet from :func:`geossl.nn.backbones.build_backbone`.
        hidden_dim: hidden width of both projectors.
        projection_dim: output width of both projectors.
        temperature: τ of both terms.
        dense_weight: w.
        matcher: ``"argmax"``, ``"uniform"``, ``"exact"``, ``"entropic"`` or ``"unbalanced"``.
        image_negatives: other images' pooled vectors in the dense denominators.
        eps: ε of the entropic / unbalanced matchers ([B] used 10 and 1000 for entropic).
        reg_m: λ of the unbalanced matcher (0.05 in [B]).
        match_on: ``"projector"`` or ``"backbone"``.
        gather: negatives from all processes under DDP.
    """

    name = "dense-ot"
    optim_defaults: ClassVar[dict[str, Any]] = {"optimizer": "sgd", "lr": 0.03, "weight_decay": 1e-4}
    regularizer_defaults: ClassVar[dict[str, dict[str, Any]]] = SCALE_FREE_TREG

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        temperature: float = 0.2,
        dense_weight: float = 0.5,
        matcher: str = "unbalanced",
        image_negatives: bool = False,
        eps: float = 0.05,
        reg_m: float = 0.05,
        match_on: str = "projector",
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        if match_on not in MATCH_ON:
            raise GeosslError(f"match_on must be one of {', '.join(MATCH_ON)}; got {match_on!r}.")
        dim = feature_dim(backbone)
        # The global head without an output BatchNorm (unlike SimCLRProjectionHead since 2026-12-04): the configuration
        # the dense-ot row of benchmarks/results/transport_ssl_eurosat.md was measured with.
        self.projector = ProjectionHead((dim, hidden_dim, projection_dim), batch_norm=True)
        self.dense_projector = DenseProjectionHead(dim, hidden_dim, projection_dim)
        self.match_on = match_on
        self.criterion = DenseOTLoss(temperature, dense_weight, matcher, image_negatives, eps, reg_m, gather)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        check_views("dense-ot", views, local_crops=False)
        n = len(views[0])
        fmap = resnet_feature_map(self.backbone, torch.cat(views))  # (2N, D, h, w), one pass over both views
        h = fmap.mean((2, 3))
        g_a, g_b = self.projector(h).chunk(2)
        d_a, d_b = self.dense_projector(fmap).chunk(2)
        match = fmap.detach().chunk(2) if self.match_on == "backbone" else (None, None)
        loss = self.criterion(g_a, g_b, d_a, d_b, *match)
        terms = self.criterion.last_terms
        logs = {"global_loss": terms["global"], "dense_loss": terms["dense"], "target_mass": terms["target_mass"]}
        return StepOutput(loss=loss, features=h[:n].detach(), embeddings=g_a.detach(), logs=logs, branches=[g_a, g_b])
