"""MMCR: maximum manifold capacity representations (Yerxa, Kuang, Simoncelli, Chung, NeurIPS 2023).

For N images with K views each, the view embeddings are normalised to the unit sphere, z_i^k ← z_i^k / ‖z_i^k‖,
and averaged per image into centroids c_i = (1/K) Σ_k z_i^k (rows of C, N × d). The loss (paper eq. 3, spec
``ssl_methods.md`` §1.10) maximises the nuclear norm of the centroid matrix::

    L = − ‖C‖_* + (λ/N) Σ_i ‖Z_i‖_*        Z_i = (K × d) matrix of the views of image i

The second ("local") term is optional; λ = 0 in every configuration of the authors' code, lightly uses 5e-3.
‖C‖_* ≤ sqrt(min(N, d)) ‖C‖_F ≤ sqrt(min(N, d) · N): the bound is met when every centroid has unit norm (all views
of an image coincide) and the centroids are orthogonal.

Distributed: C is built from the GLOBAL batch gathered with gradients (the authors' code gathers without
gradients, so each process only back-propagates into its own rows); every process evaluates the same value and
DDP's averaging gives the single-process gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.losses.precision import float32_loss

__all__ = ["MMCRLoss", "mmcr_loss"]


@float32_loss
def mmcr_loss(z: torch.Tensor, lambda_: float = 0.0, *, gather: bool = True) -> torch.Tensor:
    """MMCR loss, functional form.

    Args:
        z: view embeddings, shape (N, K, d): image i, view k; normalised inside.
        lambda_: weight λ of the mean nuclear norm of each image's (K × d) view matrix.
        gather: under DDP, the centroid matrix holds the images of every process (with gradients).

    Returns:
        Scalar ``−‖C‖_* + λ · mean_i ‖Z_i‖_*`` of the global batch.
    """
    if z.dim() != 3:
        raise GeosslError(f"z must be (N, K, d): images, views, features; got shape {tuple(z.shape)}")
    if gather and dist.is_distributed():
        z = dist.gather(z)
    z = F.normalize(z, dim=-1)
    centroids = z.mean(dim=1)  # (N, d)
    # svdvals' backward is U Vᵀ: unique while no singular value is 0 (repeated ones are fine, unlike for U, V).
    loss = -torch.linalg.svdvals(centroids).sum()
    if lambda_ != 0:
        loss = loss + lambda_ * torch.linalg.svdvals(z).sum() / z.shape[0]
    return loss


class MMCRLoss(nn.Module):
    """Maximum manifold capacity loss: minus the nuclear norm of the per-image centroids of the views.

    Yerxa, Kuang, Simoncelli, Chung, "Learning Efficient Coding of Natural Images with Maximum Manifold Capacity
    Representations", NeurIPS 2023. Differences from ``lightly.loss.MMCRLoss``: lightly takes the online and
    momentum outputs (N, k, d) separately, concatenates them along the views and does not normalise; this loss
    takes all K views stacked (N, K, d) and normalises them, as the authors' code. Both equal on normalised input.

    Args:
        lambda_: weight of the local nuclear-norm term (0 in the authors' code; lightly's default is 5e-3).
        gather: under DDP, use the centroids of every process.

    Shapes:
        forward(z (N, K, d)) -> scalar.

    Example:
        >>> loss_fn = MMCRLoss()
        >>> z_a, z_b = torch.randn(16, 128), torch.randn(16, 128)
        >>> loss = loss_fn(torch.stack([z_a, z_b], dim=1))
    """

    def __init__(self, lambda_: float = 0.0, gather: bool = True) -> None:
        super().__init__()
        if lambda_ < 0:
            raise GeosslError(f"lambda_ must be >= 0, got {lambda_}")
        self.lambda_ = float(lambda_)
        self.gather = gather

    @float32_loss
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return mmcr_loss(z, self.lambda_, gather=self.gather)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, gather={self.gather}"
