"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce, LeCun, ICLR 2022).

For embeddings Z, Z' (n × d) of the two views (paper eqs. 1-6, spec ``ssl_methods.md`` §1.7)::

    s(Z, Z') = (1/n) Σ_i ‖z_i − z'_i‖²                              invariance
    v(Z)     = (1/d) Σ_j max(0, γ − sqrt(Var(z^j) + ε))             variance hinge on the std
    c(Z)     = (1/d) Σ_{i≠j} Cov(Z)_ij²,  Cov with 1/(n − 1)       covariance
    L = λ s(Z, Z') + μ [v(Z) + v(Z')] + ν [c(Z) + c(Z')]

``reference_scaling=True`` (default) is the scaling of the authors' code (``main_vicreg.py``), for which
λ = μ = 25, ν = 1 were tuned: s is the element-wise mean squared error (the formula above divided by d, as in
the paper's own Algorithm 1) and the two variance terms are averaged (factor ½). ``False`` evaluates the
formulas above literally; with d = 8192 its invariance term is 8192 times larger, so the paper's weights do
not transfer to it.

Distributed: the invariance term is per pair (local mean, averaged by DDP); the variance and covariance terms
are batch statistics and are computed over the global batch gathered with gradients, every process evaluating
the same value, so DDP's averaged gradient equals the single-process one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.losses.barlow_twins import cross_product_norms
from geossl.losses.precision import float32_loss

__all__ = ["VICRegLoss", "covariance_term", "invariance_term", "variance_term", "vicreg_loss"]


def invariance_term(z_a: torch.Tensor, z_b: torch.Tensor, reference_scaling: bool = True) -> torch.Tensor:
    """Invariance s(Z, Z'): mean squared distance between paired embeddings (N, D) → scalar.

    ``reference_scaling`` divides by D (element-wise MSE, the authors' code).
    """
    if reference_scaling:
        return F.mse_loss(z_a, z_b)
    return (z_a - z_b).pow(2).sum(dim=1).mean()


def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """Variance v(Z): mean over the D features of the hinge ``max(0, γ − sqrt(Var + ε))``, z (N, D) → scalar.

    Var is the unbiased batch variance. Its maximum, ``γ − sqrt(ε)``, is reached by a collapsed batch.
    """
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Covariance c(Z): sum of the squared off-diagonal covariances divided by D, z (N, D) → scalar.

    Computed as ``(‖Cov‖²_F − Σ_i Var_i²) / D`` through the (N, N) Gram matrix when N < D/2, without forming the
    (D, D) covariance (:func:`geossl.losses.barlow_twins.cross_product_norms`).
    """
    n, d = z.shape
    z = z - z.mean(dim=0)
    diag, frobenius_sq = cross_product_norms(z, z)
    return (frobenius_sq - diag.pow(2).sum()) / ((n - 1) ** 2 * d)


@float32_loss
def vicreg_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    sim: float = 25.0,
    var: float = 25.0,
    cov: float = 1.0,
    eps: float = 1e-4,
    *,
    gamma: float = 1.0,
    reference_scaling: bool = True,
    gather: bool = True,
) -> torch.Tensor:
    """VICReg loss, functional form (see :class:`VICRegLoss`).

    Args:
        z_a: embeddings (N, D) of the first views (expander outputs).
        z_b: embeddings (N, D) of the second views.
        sim: λ, weight of the invariance term.
        var: μ, weight of the variance term.
        cov: ν, weight of the covariance term.
        eps: ε inside the square root of the variance.
        gamma: γ, target standard deviation.
        reference_scaling: the authors' code's scaling (see the module docstring).
        gather: under DDP, variance and covariance over the global batch (with gradients).

    Returns:
        Scalar loss.
    """
    if z_a.dim() != 2 or z_a.shape != z_b.shape:
        raise GeosslError(f"z_a and z_b must both be (N, D) with the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if gather and dist.is_distributed():
        all_a, all_b = dist.gather(z_a), dist.gather(z_b)
    else:
        all_a, all_b = z_a, z_b
    if all_a.shape[0] < 2:
        raise GeosslError(f"VICReg needs at least 2 samples for its batch variance, got {all_a.shape[0]}; use a larger batch")
    inv = invariance_term(z_a, z_b, reference_scaling)
    v = variance_term(all_a, gamma, eps) + variance_term(all_b, gamma, eps)
    if reference_scaling:
        v = v / 2
    c = covariance_term(all_a) + covariance_term(all_b)
    return sim * inv + var * v + cov * c


class VICRegLoss(nn.Module):
    """VICReg loss: invariance between views, variance and covariance regularisation of each branch.

    Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
    Learning", ICLR 2022. With the default ``reference_scaling=True`` it equals ``lightly.loss.VICRegLoss``
    (and the authors' ``main_vicreg.py``).

    Args:
        sim: λ (25).
        var: μ (25).
        cov: ν (1).
        eps: ε (1e-4).
        gather: under DDP, variance and covariance over the global batch.
        gamma: γ, target std (1).
        reference_scaling: element-wise MSE and ½ on the variance terms, as the authors' code; False: the
            paper's formulas literally (spec ``ssl_methods.md`` §1.7).

    Shapes:
        forward(z_a (N, D), z_b (N, D)) -> scalar.

    Example:
        >>> loss_fn = VICRegLoss()
        >>> loss = loss_fn(torch.randn(32, 64), torch.randn(32, 64))
    """

    def __init__(
        self,
        sim: float = 25.0,
        var: float = 25.0,
        cov: float = 1.0,
        eps: float = 1e-4,
        gather: bool = True,
        gamma: float = 1.0,
        reference_scaling: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("sim", sim), ("var", var), ("cov", cov), ("eps", eps), ("gamma", gamma)):
            if value < 0:
                raise GeosslError(f"{name} must be >= 0, got {value}")
        self.sim, self.var, self.cov = float(sim), float(var), float(cov)
        self.eps, self.gamma = float(eps), float(gamma)
        self.gather = gather
        self.reference_scaling = reference_scaling

    @float32_loss
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return vicreg_loss(
            z_a,
            z_b,
            self.sim,
            self.var,
            self.cov,
            self.eps,
            gamma=self.gamma,
            reference_scaling=self.reference_scaling,
            gather=self.gather,
        )

    def extra_repr(self) -> str:
        return f"sim={self.sim}, var={self.var}, cov={self.cov}, eps={self.eps}, reference_scaling={self.reference_scaling}"
