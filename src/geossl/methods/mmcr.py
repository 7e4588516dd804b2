"""MMCR: maximum manifold capacity representations (Yerxa, Kuang, Simoncelli, Chung, NeurIPS 2023)."""

from __future__ import annotations

import torch
from torch import nn

from geossl.losses.mmcr import MMCRLoss
from geossl.methods._multicrop import check_views, project_views
from geossl.methods.base import SCALE_FREE_TREG, Method, StepOutput
from geossl.nn.backbones import feature_dim
from geossl.nn.heads import ProjectionHead


class MMCR(Method):
    """MMCR: maximise the nuclear norm of the per-image centroids of K normalised view embeddings.

    All K views go through the backbone and projector in one forward pass; the embeddings are arranged as
    (N, K, d) and fed to :class:`geossl.losses.mmcr.MMCRLoss` (global batch under DDP). K is the number of
    configured views (2 by default, spec ``ssl_methods.md`` §1.10); the paper uses up to 40 on CIFAR-10 and 8 on
    ImageNet.

    Defaults (authors' CIFAR/STL code, the small-image setting): projector D → 512 (BatchNorm, ReLU) → 128;
    λ = 0 (no local nuclear-norm term); Adam lr 1e-3, weight decay 1e-6, here AdamW (decoupled weight decay, the
    engine's adaptive optimiser) with the engine's linear lr scaling per 256 images. The ImageNet recipe
    (projector 8192-8192-512, momentum encoder, LARS lr 0.8 per 256) is not the default.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: projector hidden width.
        projection_dim: projector output width d.
        lambda_: weight of the local nuclear-norm term.
        gather: use the centroids of every process under DDP.
    """

    name = "mmcr"
    optim_defaults = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-6}
    regularizer_defaults = SCALE_FREE_TREG
    supports_local_crops = True

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 512,
        projection_dim: int = 128,
        lambda_: float = 0.0,
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        self.projector = ProjectionHead((feature_dim(backbone), hidden_dim, projection_dim), batch_norm=True)
        self.criterion = MMCRLoss(lambda_=lambda_, gather=gather)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        check_views("MMCR", views, local_crops=True)
        h, z = project_views(self.backbone, self.projector, views)  # local crops: one more view each, at their size
        loss = self.criterion(torch.stack(z, dim=1))  # (N, K, d)
        return StepOutput(loss=loss, features=h[0].detach(), embeddings=z[0].detach(), branches=z)
