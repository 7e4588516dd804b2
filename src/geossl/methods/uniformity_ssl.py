"""Alignment + uniformity methods: SSW-SSL, SW-SSL (Bonet et al., ICLR 2023) and the Wang–Isola baseline (ICML 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from geossl.errors import GeosslError
from geossl.losses.precision import full_precision
from geossl.losses.uniformity import (
    AlignUniformLoss,
    SSWUniformityLoss,
    SWUniformityLoss,
)
from geossl.methods._multicrop import check_views
from geossl.methods.base import Method, StepOutput
from geossl.nn.backbones import feature_dim


class SphereHead(nn.Sequential):
    """The thesis' embedding head: Linear(D → hidden) → ReLU → Linear(hidden → d, no bias); outputs are L2-normalised.

    Bonet's thesis §3.2 (after Wang & Isola's code): the ResNet's fc maps to 1024 features, then ReLU and a bias-free
    linear map to the sphere S^{d−1}.

    Shapes:
        (B, D) -> (B, d), unit rows.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 1024, out_dim: int = 3) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalised in float32: a bfloat16 row is off the sphere by up to 1e-2 (mixed precision)
        return F.normalize(full_precision(super().forward(x)), dim=1)


class _SphereAlignUniform(Method):
    """Two views → backbone → :class:`SphereHead` → a loss of (z_a, z_b) on the sphere."""

    #: SGD with momentum 0.9, lr 0.05 at batch 512 (0.025 per 256 images, the engine's scaling) and weight decay 1e-3:
    #: the thesis' CIFAR-10 setting for all three methods.
    optim_defaults: ClassVar[dict] = {"optimizer": "sgd", "lr": 0.025, "weight_decay": 1e-3}

    def __init__(self, backbone: nn.Module, criterion: nn.Module, hidden_dim: int, projection_dim: int) -> None:
        super().__init__(backbone)
        if isinstance(projection_dim, bool) or not isinstance(projection_dim, int) or projection_dim < 2:
            raise GeosslError(f"projection_dim must be an integer >= 2, got {projection_dim!r}")
        self.projector = SphereHead(feature_dim(backbone), hidden_dim, projection_dim)
        self.criterion = criterion

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        check_views(self.name, views, local_crops=False)
        h = self.backbone(torch.cat(views))
        z_a, z_b = self.projector(h).chunk(2)
        loss = self.criterion(z_a, z_b)
        with torch.no_grad():
            logs = {"alignment": float(((z_a - z_b) ** 2).sum(1).mean())}
        return StepOutput(
            loss=loss, features=h[: len(z_a)].detach(), embeddings=z_a.detach(), logs=logs, branches=[z_a, z_b]
        )


class SSWSSL(_SphereAlignUniform):
    """SSW-SSL: alignment + λ/2 (SSW₂²(z_a, ν) + SSW₂²(z_b, ν)), ν uniform on S^{d−1} (Bonet et al., ICLR 2023).

    Defaults follow Bonet's thesis (§3.2, Table 3.4): embeddings on S² (``projection_dim = 3``), λ = 20, L = 10
    Stiefel slices, head 1024 wide; SGD (see ``optim_defaults``). The authors' code uses λ = 6 and d = 128 in
    another configuration; pass ``projection_dim``/``lam``. The uniformity term costs O(L N (d + log N)) against
    O(N² d) for the Wang–Isola term (``benchmarks/transport_ssl_eurosat.py`` times both).

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: head hidden width.
        projection_dim: sphere dimension + 1 (d ≥ 3).
        lam: weight λ of the SSW term.
        n_projections: number L of slices.
        gather: under DDP, the uniformity of the global batch.
    """

    name = "ssw"

    def __init__(self, backbone: nn.Module, hidden_dim: int = 1024, projection_dim: int = 3, lam: float = 20.0,
                 n_projections: int = 10, gather: bool = True) -> None:
        if projection_dim < 3:
            raise GeosslError(
                f"SSW-SSL needs projection_dim >= 3 (the sphere S^(d-1) with d >= 3), got {projection_dim}; "
                "use method 'sw' on the circle"
            )
        super().__init__(backbone, SSWUniformityLoss(lam, n_projections, gather=gather), hidden_dim, projection_dim)


class SWSSL(_SphereAlignUniform):
    """SW-SSL: SSW-SSL with the Euclidean sliced Wasserstein to ν (thesis §3.2, λ = 1), exact per slice.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: head hidden width.
        projection_dim: embedding dimension d ≥ 2.
        lam: weight λ of the SW term.
        n_projections: number L of directions.
        gather: under DDP, the uniformity of the global batch.
    """

    name = "sw"

    def __init__(self, backbone: nn.Module, hidden_dim: int = 1024, projection_dim: int = 3, lam: float = 1.0,
                 n_projections: int = 10, gather: bool = True) -> None:
        super().__init__(backbone, SWUniformityLoss(lam, n_projections, gather=gather), hidden_dim, projection_dim)


class WangIsola(_SphereAlignUniform):
    """Wang & Isola (ICML 2020): ``L_align(α) + λ_u ½ (L_unif(z_a; t) + L_unif(z_b; t))``, the SSW-SSL baseline.

    Defaults: α = 2, t = 2, λ_u = 1 (the paper's), the same head and sphere dimension as :class:`SSWSSL` so that the
    two differ only in the uniformity term.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: head hidden width.
        projection_dim: embedding dimension d ≥ 2.
        alpha: alignment exponent α.
        t: uniformity temperature t.
        lam: weight λ_u of the uniformity term.
        gather: under DDP, the uniformity of the global batch.
    """

    name = "uniformity"

    def __init__(self, backbone: nn.Module, hidden_dim: int = 1024, projection_dim: int = 3, alpha: float = 2.0,
                 t: float = 2.0, lam: float = 1.0, gather: bool = True) -> None:
        super().__init__(backbone, AlignUniformLoss(alpha, t, lam, gather=gather), hidden_dim, projection_dim)
