"""T-REG and T-REGS: minimum-spanning-tree regularisation (Mordacq, Loiseaux, Kalogeiton, Oudot, NeurIPS 2025).

"T-REGS: Minimum Spanning Tree Regularization for Self-Supervised Learning" (arXiv 2510.23484). Maximising the length
of the minimum spanning tree (MST) of a batch of embeddings both prevents dimensional collapse (for n ≤ d + 1 points in
a ball the longest MST is a regular simplex: all pairwise cosines −1/(n − 1)) and spreads points uniformly (for n ≫ d
the normalised MST length is a Rényi entropy maximised by the uniform density, Costa & Hero 2004)::

    L_E  = −(1/n) E(MST(Z))                         E = Σ_{(a,b) ∈ MST} ‖z_a − z_b‖₂
    L_S  = (1/n) Σ_i (‖z_i‖₂ − 1)²                   soft sphere constraint (without it L_E expands Z without bound)
    T-REG(Z) = γ L_E + λ L_S
    T-REGS(Z, Z') = β MSE(Z, Z') + T-REG(Z) + T-REG(Z')

Z is the raw (unnormalised) projector output. The MST is found on detached distances (:func:`geossl.geometry.mst.
mst_edges`); its length is differentiable, each edge pushing its two ends apart with unit force (Carrière et al.,
ICML 2021). The equilibrium radius of T-REG alone is ``1 + γĒ/(2λ)``, Ē the MST length per point at unit radius
(≈ √2 for a simplex): about 175 at the paper's γ/λ = 250, which the invariance term of T-REGS counteracts; the mean
radius is logged so this stays visible.

Under DDP the MST is built on the batch gathered from every process (``gather=True``, the default), so the
regulariser sees the global batch, as a single process with the whole batch would; each process returns the same
global value and the autograd-aware gather makes DDP's averaged gradient equal the single-process one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.geometry.mst import mst_length
from geossl.losses.precision import float32_loss

__all__ = ["TREG", "TREGSLoss", "mst_loss", "sphere_loss", "treg", "tregs_loss"]


def _check_embeddings(z: torch.Tensor, name: str = "z") -> None:
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise GeosslError(f"{name} must be a (batch, dim) tensor of embeddings, got {shape}")
    if z.shape[0] < 2:
        raise GeosslError(f"T-REG needs at least 2 embeddings per batch to build a spanning tree, got {z.shape[0]}")


def _check_weight(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise GeosslError(f"{name} must be a non-negative number, got {value!r}")


@float32_loss
def mst_loss(z: torch.Tensor) -> torch.Tensor:
    """``L_E = −E(MST(z)) / n``: minus the MST length per point (paper eq. for L_E).

    Args:
        z: embeddings, shape (n, d).

    Returns:
        Scalar.
    """
    return -mst_length(z) / z.shape[0]


@float32_loss
def sphere_loss(z: torch.Tensor) -> torch.Tensor:
    """``L_S = mean_i (‖z_i‖ − 1)²``: the soft constraint that keeps T-REG's expansion on the unit sphere.

    Args:
        z: embeddings, shape (n, d).

    Returns:
        Scalar.
    """
    return ((z.norm(dim=1) - 1) ** 2).mean()


@float32_loss
def treg(z: torch.Tensor, gamma: float = 0.2, lam: float = 8e-4, *, gather: bool = True, normalize: bool = False) -> torch.Tensor:
    """T-REG ``γ L_E(z) + λ L_S(z)`` on one view's embeddings.

    Args:
        z: embeddings of the local batch, shape (n, d).
        gamma: weight γ of the MST term.
        lam: weight λ of the sphere term.
        gather: under DDP, regularise the batch gathered from every process.
        normalize: apply T-REG to the L2-normalised embeddings (the sphere term is then 0). For methods whose loss
            ignores the scale of z (BYOL, SimSiam, SimCLR): on raw z the paper's weights hold the embeddings at a
            radius of about γ·c / (2λ) ≈ 150 (c: MST edge length per point on the unit sphere), where such a loss's
            gradient is ~150 times weaker than T-REG's (measured: BYOL + T-REG, mean ‖z‖ 148 after 3 epochs).

    Returns:
        Scalar (the same value on every process when gathered).
    """
    _check_embeddings(z)
    _check_weight("gamma", gamma)
    _check_weight("lam", lam)
    if gather:
        z = dist.gather(z)
    if normalize:
        z = F.normalize(z, dim=1)
    return gamma * mst_loss(z) + lam * sphere_loss(z)


@float32_loss
def tregs_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    beta: float = 10.0,
    gamma: float = 0.2,
    lam: float = 8e-4,
    *,
    gather: bool = True,
) -> torch.Tensor:
    """``L_MSE + T-REGS``: ``β · MSE(z_a, z_b) + T-REG(z_a) + T-REG(z_b)`` (paper §3, Table 4 defaults).

    The invariance term is ``F.mse_loss`` (mean over batch and dimensions, VICReg's convention); it has no batch
    statistics, so under DDP the per-process means are averaged by DDP itself.

    Args:
        z_a: embeddings of the first view, shape (n, d).
        z_b: embeddings of the second view, same shape.
        beta: weight β of the invariance term.
        gamma: weight γ of the MST terms.
        lam: weight λ of the sphere terms.
        gather: under DDP, build the MSTs on the global batch.

    Returns:
        Scalar.
    """
    _check_embeddings(z_a, "z_a")
    if z_b.shape != z_a.shape:
        raise GeosslError(f"z_a and z_b must have the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    _check_weight("beta", beta)
    return beta * F.mse_loss(z_a, z_b) + treg(z_a, gamma, lam, gather=gather) + treg(z_b, gamma, lam, gather=gather)


class TREG(nn.Module):
    """T-REG regulariser ``γ L_E + λ L_S`` (Mordacq et al., NeurIPS 2025), usable with any method.

    ``geossl pretrain --method byol --regularizer t-reg`` adds it to every view's projector output. Defaults are the
    paper's best L_MSE + T-REGS setting (Table 4: γ = 0.2, λ = 8e-4, with β = 10 on the invariance term); when
    adding T-REG to a method whose loss has another scale, tune γ against it (``--reg-set gamma=...``).

    Args:
        gamma: weight γ of the MST term.
        lam: weight λ of the sphere term.
        gather: under DDP, regularise the global batch.
        normalize: regularise the L2-normalised embeddings (see :func:`treg`); for scale-free losses such as BYOL's.
            The default of `--regularizer t-reg` follows the method (its ``regularizer_defaults``): True for the
            methods whose loss reads z only through z/‖z‖ (BYOL, SimSiam, SimCLR, MoCo, MMCR, BAM, dense-ot).

    Shapes:
        forward(z (n, d)) -> scalar.
    """

    def __init__(self, gamma: float = 0.2, lam: float = 8e-4, gather: bool = True, normalize: bool = False) -> None:
        super().__init__()
        _check_weight("gamma", gamma)
        _check_weight("lam", lam)
        self.gamma, self.lam, self.gather, self.normalize = float(gamma), float(lam), bool(gather), bool(normalize)

    @float32_loss
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return treg(z, self.gamma, self.lam, gather=self.gather, normalize=self.normalize)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, lam={self.lam}, normalize={self.normalize}"


class TREGSLoss(nn.Module):
    """``L_MSE + T-REGS`` (Mordacq et al., NeurIPS 2025): invariance MSE plus T-REG on each view.

    Args:
        beta: weight β of the invariance MSE (10).
        gamma: weight γ of the MST terms (0.2).
        lam: weight λ of the sphere terms (8e-4).
        gather: under DDP, build the MSTs on the global batch.

    Shapes:
        forward(z_a (n, d), z_b (n, d)) -> scalar.

    Example:
        >>> loss = TREGSLoss()
        >>> z_a, z_b = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss(z_a, z_b).shape
        torch.Size([])
    """

    def __init__(self, beta: float = 10.0, gamma: float = 0.2, lam: float = 8e-4, gather: bool = True) -> None:
        super().__init__()
        for name, value in (("beta", beta), ("gamma", gamma), ("lam", lam)):
            _check_weight(name, value)
        self.beta, self.gamma, self.lam, self.gather = float(beta), float(gamma), float(lam), bool(gather)

    @float32_loss
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return tregs_loss(z_a, z_b, self.beta, self.gamma, self.lam, gather=self.gather)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, gamma={self.gamma}, lam={self.lam}"
