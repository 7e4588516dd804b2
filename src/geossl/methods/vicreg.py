"""VICReg (Bardes, Ponce, LeCun, ICLR 2022)."""

from __future__ import annotations

import torch
from torch import nn

from geossl.losses.vicreg import VICRegLoss
from geossl.methods._multicrop import check_views, mean_over_view_pairs, project_views
from geossl.methods.base import Method, StepOutput
from geossl.nn.backbones import feature_dim
from geossl.nn.heads import ProjectionHead


class VICReg(Method):
    """VICReg: invariance between the views plus variance and covariance regularisation of each branch.

    ``z = expander(backbone(x))`` for both views in one forward pass; loss
    :class:`geossl.losses.vicreg.VICRegLoss` (variance and covariance over the global batch under DDP).

    Defaults (paper §4.1 and ``main_vicreg.py``, except the width): expander 2048-2048-2048 (Linear-BN-ReLU twice,
    then Linear), solo-learn's VICReg recipe for small images with a ResNet-18; the paper's is 8192-8192-8192 (pass
    ``hidden_dim=8192, projection_dim=8192``), which made a 64 px CPU step ~10x slower than the bare backbone;
    λ = μ = 25, ν = 1, ε = 1e-4 with the authors' code's scaling (``reference_scaling=True``, see the loss);
    the paper's LARS base lr 0.2 per 256 images and weight decay 1e-6 are replaced by solo-learn's 0.3 / 1e-4
    (``optim_defaults``). As for Barlow Twins, the 8192-wide expander dominates
    the cost of a step on small images; ``hidden_dim``/``projection_dim`` shrink it.

    Views: the shared two-view default (:meth:`~geossl.methods.base.Method.default_views`: crops of scale 0.2-1,
    colour jitter of strength 0.5, grayscale, no blur or solarisation); the paper's are BYOL's asymmetric pair (blur
    1.0 / 0.1, solarisation 0 / 0.2, :meth:`~geossl.methods.byol.BYOL.default_views`), which a ``views:`` list in
    the run's YAML config sets; with them one seed reached +18.3 kNN over random init in the zoo, against +17.9 and
    +18.2 with these (``benchmarks/results/zoo_eurosat.md``).

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: expander hidden width.
        projection_dim: expander output width.
        sim: λ, invariance weight.
        var: μ, variance weight.
        cov: ν, covariance weight.
        reference_scaling: the authors' code's scaling of the terms (False: the paper's formulas literally).
        gather: variance and covariance over the global batch under DDP.
    """

    name = "vicreg"
    #: solo-learn's small-image recipe (ResNet-18, CIFAR, 2048-wide expander) for LARS with trust coefficient 0.02.
    optim_defaults = {"optimizer": "lars", "lr": 0.3, "weight_decay": 1e-4}
    supports_local_crops = True

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 2048,
        sim: float = 25.0,
        var: float = 25.0,
        cov: float = 1.0,
        reference_scaling: bool = True,
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        self.projector = ProjectionHead(
            (feature_dim(backbone), hidden_dim, hidden_dim, projection_dim), batch_norm=True
        )
        self.criterion = VICRegLoss(sim=sim, var=var, cov=cov, gather=gather, reference_scaling=reference_scaling)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        """The loss of the two views; with local crops, its mean over the pairs with a global view."""
        check_views("VICReg", views, local_crops=True)
        h, z = project_views(self.backbone, self.projector, views)
        loss = mean_over_view_pairs(self.criterion, z)
        return StepOutput(loss=loss, features=h[0].detach(), embeddings=z[0].detach(), branches=z[:2])
