"""Barlow Twins redundancy-reduction loss (Zbontar, Jing, Misra, LeCun, Deny, ICML 2021).

With every feature standardised over the batch (mean 0, std 1), the cross-correlation matrix of the two
views' embeddings is ``C = Ẑ_Aᵀ Ẑ_B / N`` (D × D) and (paper eq. 1, spec ``ssl_methods.md`` §1.6)::

    L_BT = Σ_i (1 − C_ii)² + λ Σ_i Σ_{j≠i} C_ij²

Distributed: the batch statistics and C must be those of the GLOBAL batch. The embeddings are gathered
with gradients (:func:`geossl.dist.gather`) and every process evaluates the same global loss; the gather's
backward sums the gradients over processes and DDP divides by the world size, so each parameter receives
exactly the single-process gradient (tested in ``tests/distributed/test_classic_ddp.py``). A plain
all-reduce of C without autograd leaves the gradient scaled by 1/world_size, a known peer bug.
"""

from __future__ import annotations

import torch
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.losses.precision import float32_loss

__all__ = [
    "BarlowTwinsLoss",
    "barlow_twins_loss",
    "cross_correlation",
    "cross_product_norms",
    "off_diagonal",
]


def off_diagonal(m: torch.Tensor) -> torch.Tensor:
    """The n² − n off-diagonal entries of a square (n, n) matrix, flattened (a view, no copy)."""
    n, n2 = m.shape
    if n != n2:
        raise GeosslError(f"off_diagonal needs a square matrix, got {tuple(m.shape)}")
    # Row-major: after dropping the last element, rows of length n + 1 each start with a diagonal entry.
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def _standardize(z: torch.Tensor, center: bool, eps: float) -> torch.Tensor:
    if center:
        z = z - z.mean(dim=0)
    # Biased variance + eps: the official code's BatchNorm1d(affine=False) in training mode.
    return z * torch.rsqrt(z.pow(2).mean(dim=0) + eps)


def cross_correlation(z_a: torch.Tensor, z_b: torch.Tensor, center: bool = True, eps: float = 1e-5) -> torch.Tensor:
    """Batch cross-correlation matrix of two embedding sets.

    Args:
        z_a: embeddings (N, D) of the first views.
        z_b: embeddings (N, D) of the second views, row i pairs with ``z_a[i]``.
        center: subtract each feature's batch mean first (the paper); without it C is the cosine
            between raw feature columns, eq. (2.6) of the thesis as printed.
        eps: added to each feature's second moment before the square root.

    Returns:
        C of shape (D, D), ``C_ij = Σ_b ẑ^A_bi ẑ^B_bj / N`` with ẑ the standardised features.
    """
    n = z_a.shape[0]
    return _standardize(z_a, center, eps).T @ _standardize(z_b, center, eps) / n


def cross_product_norms(a: torch.Tensor, b: torch.Tensor, use_gram: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal and squared Frobenius norm of the (D, D) product ``M = aᵀ b``, without forming M when N < D/2.

    ``‖aᵀb‖²_F = tr(bᵀa aᵀb) = tr(a aᵀ b bᵀ) = Σ_nm (a aᵀ)_nm (b bᵀ)_nm``: the two (N, N) Gram matrices cost
    2N²D multiply-adds against N·D² for M, and O(N²) memory instead of O(D²). With Barlow Twins' projector of the
    paper (D = 8192) and a per-process batch of 256, M is a 256 MiB matrix that this route never builds. The
    off-diagonal sum ``‖M‖²_F − Σ_i M_ii²`` then loses about 1e-7·‖M‖²_F to cancellation in float32, far below the
    loss' own rounding.

    Args:
        a: (N, D).
        b: (N, D).
        use_gram: force the Gram route (True) or the (D, D) product (False); None picks the cheaper, Gram when
            2N < D.

    Returns:
        ``(diag (D,), frobenius_sq scalar)``.
    """
    n, d = a.shape
    diag = (a * b).sum(dim=0)
    if use_gram if use_gram is not None else 2 * n < d:
        gram_a = a @ a.T
        gram_b = gram_a if b is a else b @ b.T
        return diag, (gram_a * gram_b).sum()
    return diag, (a.T @ b).pow(2).sum()


@float32_loss
def barlow_twins_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    lambda_: float = 5e-3,
    *,
    center: bool = True,
    eps: float = 1e-5,
    gather: bool = True,
) -> torch.Tensor:
    """Barlow Twins loss, functional form (see :class:`BarlowTwinsLoss`).

    Args:
        z_a: embeddings (N, D) of the first views.
        z_b: embeddings (N, D) of the second views.
        lambda_: weight λ of the redundancy-reduction (off-diagonal) term.
        center: standardise with the batch mean removed (paper); False applies the uncentred eq. (2.6).
        eps: numerical guard of the standardisation (1e-5, BatchNorm's default as in the official code).
        gather: under DDP, compute C over the global batch (with gradients).

    Returns:
        Scalar loss of the global batch (identical on every process).
    """
    if z_a.dim() != 2 or z_a.shape != z_b.shape:
        raise GeosslError(f"z_a and z_b must both be (N, D) with the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if gather and dist.is_distributed():
        z_a, z_b = dist.gather(z_a), dist.gather(z_b)
    n = z_a.shape[0]
    a = _standardize(z_a, center, eps)
    b = _standardize(z_b, center, eps)
    # C = aᵀb / N, through its diagonal and Frobenius norm only (see cross_product_norms).
    diag, frobenius_sq = cross_product_norms(a, b)
    c_diag = diag / n
    on_diag = (c_diag - 1).pow(2).sum()
    off_diag = frobenius_sq / n**2 - c_diag.pow(2).sum()
    return on_diag + lambda_ * off_diag


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins loss: push the views' cross-correlation matrix to the identity.

    Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
    ICML 2021 (Algorithm 1). Equals ``lightly.loss.BarlowTwinsLoss`` on one process; under DDP the
    standardisation uses the global batch statistics (as the official code with SyncBatchNorm), whereas lightly
    standardises each process' batch separately.

    Args:
        lambda_: λ; the paper's text gives 5e-3 (lightly's default), the official code 5.1e-3.
        gather: under DDP, use the global batch (with gradients).
        center: remove the batch mean of each feature (paper; spec ``center=True``).
        eps: numerical guard of the per-feature standardisation.

    Shapes:
        forward(z_a (N, D), z_b (N, D)) -> scalar.

    Example:
        >>> loss_fn = BarlowTwinsLoss(lambda_=5e-3)
        >>> loss = loss_fn(torch.randn(32, 64), torch.randn(32, 64))
    """

    def __init__(self, lambda_: float = 5e-3, gather: bool = True, center: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        if lambda_ < 0:
            raise GeosslError(f"lambda_ must be >= 0, got {lambda_}")
        if eps < 0:
            raise GeosslError(f"eps must be >= 0, got {eps}")
        self.lambda_ = float(lambda_)
        self.gather = gather
        self.center = center
        self.eps = float(eps)

    @float32_loss
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return barlow_twins_loss(z_a, z_b, self.lambda_, center=self.center, eps=self.eps, gather=self.gather)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, gather={self.gather}, center={self.center}"
