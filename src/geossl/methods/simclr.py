"""SimCLR (Chen, Kornblith, Norouzi, Hinton, ICML 2020)."""

from __future__ import annotations

import torch
from torch import nn

from geossl.losses.contrastive import NTXentLoss
from geossl.methods._multicrop import check_views, mean_over_view_pairs, project_views
from geossl.methods.base import SCALE_FREE_TREG, Method, StepOutput
from geossl.nn.backbones import feature_dim
from geossl.nn.heads import SimCLRProjectionHead


class SimCLR(Method):
    """SimCLR: two augmented views, an MLP projector and the NT-Xent loss.

    Defaults: projector D → 2048 → 128 with BatchNorm (paper: 2048-2048-128), LARS with
    weight decay 1e-6 and a cosine schedule with warm-up (paper §B.1); lr 0.4 · batch/256 with
    trust coefficient 0.02, solo-learn's SimCLR recipe for small batches (the paper's 0.3 · B/256
    with η = 0.001 is tuned for batches of 4096).
    Temperature 0.2: between the paper's 0.1 (ImageNet, batch 4096) and 0.5 (CIFAR, App. B.9),
    the value of the SSW reference reproduction on small images [B §3.2], and better suited to
    the small batches of CPU runs.

    Both views go through the backbone in one forward pass, so BatchNorm sees the 2N views
    together (as SimCLR's global BN) and the step costs exactly a backbone forward+backward.
    Local crops (multi-crop, ``--local-crops N``) are taken after the two global views.

    Views: the shared two-view default (:meth:`~geossl.methods.base.Method.default_views`), the paper's CIFAR-10
    views (App. B.9: colour jitter of strength 0.5, no blur) with crops of scale 0.2-1 instead of 0.08-1.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        temperature: τ of NT-Xent.
        hidden_dim: projector hidden width.
        projection_dim: output width of the projector.
        gather: use negatives from all processes under DDP.
    """

    name = "simclr"
    optim_defaults = {"optimizer": "lars", "lr": 0.4, "weight_decay": 1e-6}
    regularizer_defaults = SCALE_FREE_TREG
    supports_local_crops = True

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.2,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        self.projector = SimCLRProjectionHead(feature_dim(backbone), hidden_dim, projection_dim)
        self.criterion = NTXentLoss(temperature=temperature, gather=gather)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        """NT-Xent of the two views; with local crops, its mean over the pairs with a global view (SwAV §4.1)."""
        check_views("SimCLR", views, local_crops=True)
        h, z = project_views(self.backbone, self.projector, views)
        loss = mean_over_view_pairs(self.criterion, z)
        return StepOutput(loss=loss, features=h[0].detach(), embeddings=z[0].detach(), branches=z[:2])
