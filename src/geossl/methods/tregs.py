"""T-REGS: invariance plus minimum-spanning-tree regularisation (Mordacq, Loiseaux, Kalogeiton, Oudot, NeurIPS 2025)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geossl.losses.treg import TREGSLoss
from geossl.methods._multicrop import check_views
from geossl.methods.base import Method, StepOutput
from geossl.nn.backbones import feature_dim
from geossl.nn.heads import ProjectionHead


class TREGS(Method):
    """``L_MSE + T-REGS``: the invariance MSE between two views plus T-REG (MST length and sphere term) on each.

    ``z = projector(backbone(x))`` for both views in one forward pass; loss :class:`geossl.losses.treg.TREGSLoss`
    on the raw (unnormalised) projector outputs,
    ``β MSE(z_a, z_b) + γ L_E(z_a) + λ L_S(z_a) + γ L_E(z_b) + λ L_S(z_b)``.

    Defaults: β = 10, γ = 0.2, λ = 8e-4 (paper Table 4, best ImageNet-1k setting; γ/λ = 1, no sphere term, or
    invariance alone collapse). The paper does not state its projector in the material we have; we use VICReg's
    small-image expander (2048-2048-2048, BatchNorm, ReLU) and its LARS recipe (lr 0.3 per 256 images, weight decay
    1e-4, trust coefficient 0.02), because T-REGS replaces VICReg's variance/covariance terms in the same setting.
    The logs carry the mean embedding radius (T-REG alone settles at ``1 + γĒ/(2λ)``) and the mean pairwise cosine of
    the first view (a regular simplex has −1/(n − 1)).

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: projector hidden width.
        projection_dim: projector output width.
        beta: invariance weight β.
        gamma: MST weight γ.
        lam: sphere weight λ.
        gather: under DDP, build the MSTs on the global batch.
    """

    name = "t-regs"
    optim_defaults = {"optimizer": "lars", "lr": 0.3, "weight_decay": 1e-4}

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 2048,
        beta: float = 10.0,
        gamma: float = 0.2,
        lam: float = 8e-4,
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        self.projector = ProjectionHead(
            (feature_dim(backbone), hidden_dim, hidden_dim, projection_dim), batch_norm=True
        )
        self.criterion = TREGSLoss(beta=beta, gamma=gamma, lam=lam, gather=gather)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        check_views("T-REGS", views, local_crops=False)
        h = self.backbone(torch.cat(views))
        z_a, z_b = self.projector(h).chunk(2)
        loss = self.criterion(z_a, z_b)
        with torch.no_grad():
            u = F.normalize(z_a.float(), dim=1)
            n = u.shape[0]
            mean_cos = ((u @ u.T).sum() - n) / max(1, n * (n - 1))
            logs = {"radius": float(z_a.norm(dim=1).mean()), "mean_pairwise_cos": float(mean_cos)}
        return StepOutput(
            loss=loss, features=h[: len(z_a)].detach(), embeddings=z_a.detach(), logs=logs, branches=[z_a, z_b]
        )
