"""Alignment plus uniformity on the sphere: Wang–Isola, SSW-SSL and SW-SSL.

Contrastive losses split into an alignment term (positives close) and a uniformity term (embeddings spread over the
sphere) [Wang & Isola, ICML 2020]. The pairwise uniformity costs O(N² d). SSW-SSL (Bonet, Chapel, Drumetz, Courty,
"Spherical Sliced-Wasserstein", ICLR 2023; Bonet's thesis §3.2 eq. 3.17) replaces it by the spherical sliced
Wasserstein to ν = Unif(S^{d−1}), closed form per slice, O(L N (d + log N))::

    L_SSW-SSL = (1/N) Σ_i ‖z^A_i − z^B_i‖² + (λ/2) (SSW₂²(z^A, ν) + SSW₂²(z^B, ν))          z on S^{d−1}

SW-SSL uses the Euclidean sliced Wasserstein to ν instead (also closed form here, see
:mod:`geossl.ot.sphere_uniform`), and the Wang–Isola baseline ``L_align(α) + λ_u ½ (L_unif(z^A) + L_unif(z^B))`` with
``L_unif = log mean_{i<j} exp(−t ‖z_i − z_j‖²)``.

Under DDP the uniformity terms act on the batch gathered from every process (``gather=True``): each process computes
the same global term (the projections are drawn from a generator seeded identically on every process when ``seed`` is
set, otherwise from each process's RNG, an unbiased estimate either way) and the autograd-aware gather gives DDP the
single-process gradient. The alignment terms are per-process means, averaged by DDP.
"""

from __future__ import annotations

import torch
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.losses.precision import float32_loss
from geossl.ot.sliced import spherical_sliced_wasserstein_to_uniform
from geossl.ot.sphere_uniform import sliced_wasserstein_to_uniform_sphere

__all__ = [
    "AlignUniformLoss",
    "SSWUniformityLoss",
    "SWUniformityLoss",
    "alignment_loss",
    "ssw_uniformity",
    "sw_uniformity",
    "wang_isola_uniformity",
]


def _check_pair(z_a: torch.Tensor, z_b: torch.Tensor) -> None:
    if not isinstance(z_a, torch.Tensor) or z_a.ndim != 2 or z_a.shape[0] < 2:
        raise GeosslError(f"z_a must be a (batch >= 2, dim) tensor, got {getattr(z_a, 'shape', type(z_a).__name__)}")
    if not isinstance(z_b, torch.Tensor) or z_b.shape != z_a.shape:
        raise GeosslError(f"z_a and z_b must have the same shape, got {tuple(z_a.shape)} and {tuple(getattr(z_b, 'shape', ()))}")


def _check_positive(name: str, value: float, allow_zero: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise GeosslError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")


@float32_loss(unit_rows=True)
def alignment_loss(z_a: torch.Tensor, z_b: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """``mean_i ‖z^A_i − z^B_i‖₂^α`` (Wang & Isola's L_align; α = 2 is SSW-SSL's alignment term).

    Args:
        z_a: embeddings (N, d), row i the positive of ``z_b[i]``.
        z_b: embeddings (N, d).
        alpha: exponent α > 0.

    Returns:
        Scalar.
    """
    diff = z_a - z_b
    if alpha == 2:
        return (diff * diff).sum(1).mean()  # no norm: its gradient is NaN for identical pairs
    return diff.norm(dim=1).pow(alpha).mean()


@float32_loss(unit_rows=True)
def wang_isola_uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """``log mean_{i<j} exp(−t ‖z_i − z_j‖²)`` (Wang & Isola 2020, L_unif), differentiable, O(N² d).

    Args:
        z: embeddings (N, d), N ≥ 2, normally on the unit sphere.
        t: temperature t > 0.

    Returns:
        Scalar (≤ 0; 0 for a collapsed batch).
    """
    sq = torch.pdist(z, p=2).pow(2)
    return torch.logsumexp(-t * sq, dim=0) - torch.log(torch.tensor(float(sq.numel()), dtype=z.dtype, device=z.device))


@float32_loss(unit_rows=True)
def ssw_uniformity(z: torch.Tensor, n_projections: int = 10, seed: int | None = None) -> torch.Tensor:
    """``SSW₂²(z, Unif(S^{d−1}))``, the mean over L slices of the closed-form circle W₂² (no square root).

    Args:
        z: points on the unit sphere (N, d), d ≥ 3 (use :func:`sw_uniformity` on the circle).
        n_projections: number L of Stiefel slices.
        seed: seed of the slices (None: the global RNG).

    Returns:
        Scalar.
    """
    return spherical_sliced_wasserstein_to_uniform(z, n_projections=n_projections, seed=seed, squared=True)


@float32_loss(unit_rows=True)
def sw_uniformity(z: torch.Tensor, n_projections: int = 10, seed: int | None = None) -> torch.Tensor:
    """``SW₂²(z, Unif(S^{d−1}))`` with the Euclidean slices, exact per slice (no target samples).

    Args:
        z: points (N, d), d ≥ 2.
        n_projections: number L of random directions.
        seed: seed of the directions (None: the global RNG).

    Returns:
        Scalar.
    """
    return sliced_wasserstein_to_uniform_sphere(z, n_projections=n_projections, seed=seed, squared=True)


class _AlignPlusUniformity(nn.Module):
    """Shared skeleton: alignment of the pair plus a weighted uniformity term on each (gathered) view."""

    def __init__(self, lam: float, gather: bool) -> None:
        super().__init__()
        _check_positive("lam", lam)
        self.lam, self.gather = float(lam), bool(gather)

    def uniformity(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def align(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return alignment_loss(z_a, z_b)

    @float32_loss(unit_rows=True)
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        _check_pair(z_a, z_b)
        g_a, g_b = (dist.gather(z_a), dist.gather(z_b)) if self.gather else (z_a, z_b)
        return self.align(z_a, z_b) + self.lam / 2 * (self.uniformity(g_a) + self.uniformity(g_b))


class SSWUniformityLoss(_AlignPlusUniformity):
    """SSW-SSL: ``(1/N) Σ ‖z^A_i − z^B_i‖² + (λ/2)(SSW₂²(z^A, ν) + SSW₂²(z^B, ν))`` (Bonet et al., ICLR 2023).

    Args:
        lam: weight λ of the uniformity term (20 in the thesis for d = 3; the authors' code uses 6).
        n_projections: Stiefel slices L (the thesis uses 3 and 10).
        seed: seed of the slices, identical on every process (None: fresh slices from the global RNG each call).
        gather: under DDP, the uniformity of the global batch.

    Shapes:
        forward(z_a (N, d), z_b (N, d)) -> scalar; z on the unit sphere, d ≥ 3.
    """

    def __init__(self, lam: float = 20.0, n_projections: int = 10, seed: int | None = None, gather: bool = True) -> None:
        super().__init__(lam, gather)
        self.n_projections, self.seed = int(n_projections), seed

    def uniformity(self, z: torch.Tensor) -> torch.Tensor:
        return ssw_uniformity(z, self.n_projections, self.seed)


class SWUniformityLoss(_AlignPlusUniformity):
    """SW-SSL: SSW-SSL with the Euclidean sliced Wasserstein to ν (thesis §3.2, λ = 1), exact per slice.

    Args:
        lam: weight λ of the uniformity term.
        n_projections: random directions L.
        seed: seed of the directions, identical on every process (None: the global RNG).
        gather: under DDP, the uniformity of the global batch.

    Shapes:
        forward(z_a (N, d), z_b (N, d)) -> scalar.
    """

    def __init__(self, lam: float = 1.0, n_projections: int = 10, seed: int | None = None, gather: bool = True) -> None:
        super().__init__(lam, gather)
        self.n_projections, self.seed = int(n_projections), seed

    def uniformity(self, z: torch.Tensor) -> torch.Tensor:
        return sw_uniformity(z, self.n_projections, self.seed)


class AlignUniformLoss(_AlignPlusUniformity):
    """Wang & Isola: ``L_align(α) + λ_u ½ (L_unif(z^A; t) + L_unif(z^B; t))``, α = 2, t = 2, λ_u = 1.

    Args:
        alpha: alignment exponent α.
        t: uniformity temperature t.
        lam: weight λ_u of the uniformity term.
        gather: under DDP, the uniformity of the global batch.

    Shapes:
        forward(z_a (N, d), z_b (N, d)) -> scalar; z normally on the unit sphere.
    """

    def __init__(self, alpha: float = 2.0, t: float = 2.0, lam: float = 1.0, gather: bool = True) -> None:
        super().__init__(lam, gather)
        _check_positive("alpha", alpha, allow_zero=False)
        _check_positive("t", t, allow_zero=False)
        self.alpha, self.t = float(alpha), float(t)

    def align(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return alignment_loss(z_a, z_b, self.alpha)

    def uniformity(self, z: torch.Tensor) -> torch.Tensor:
        return wang_isola_uniformity(z, self.t)
