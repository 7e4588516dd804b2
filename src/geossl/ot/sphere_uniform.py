"""Sliced Wasserstein between a point cloud and the uniform law on the sphere, in closed form.

Every 1-D projection ``⟨θ, u⟩`` of ``u ~ Unif(S^{d−1})`` has the same law (rotation invariance): ``T = 2B − 1`` with
``B ~ Beta((d−1)/2, (d−1)/2)``, density ``f(t) = c_d (1 − t²)^{(d−3)/2}`` on [−1, 1], ``c_d = Γ(d/2) / (√π Γ((d−1)/2))``.
So the Euclidean sliced Wasserstein of SW-SSL (Bonet's thesis §3.2, the Euclidean counterpart of SSW-SSL) needs no
samples of the target: for n sorted projections ``x_(1) ≤ … ≤ x_(n)`` and the quantiles ``a_i = F^{-1}(i/n)``,

    W₂²(x, T) = Σ_i ∫_{(i−1)/n}^{i/n} (x_(i) − F^{-1}(s))² ds = (1/n) Σ x_(i)² − 2 Σ x_(i) P_i + 1/d,

with the partial first moments ``P_i = ∫_{a_{i−1}}^{a_i} t f(t) dt = c_d/(d−1) [(1 − a_{i−1}²)^{(d−1)/2} − (1 − a_i²)^{(d−1)/2}]``
and ``E[T²] = 1/d``. This is exact (no Monte-Carlo over target samples); only the L directions are random. The
quantiles depend on (n, d) only and are computed once with SciPy's inverse regularised incomplete beta.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from geossl.errors import GeosslError

__all__ = ["sliced_wasserstein_to_uniform_sphere"]


@functools.lru_cache(maxsize=64)
def _partial_moments(n: int, d: int) -> np.ndarray:
    """``P_i`` for i = 1..n (float64), see the module docstring."""
    from scipy.special import betaincinv, gammaln

    half = (d - 1) / 2
    a = 2 * betaincinv(half, half, np.arange(n + 1) / n) - 1
    a[0], a[-1] = -1.0, 1.0
    c = math.exp(gammaln(d / 2) - gammaln(half) - 0.5 * math.log(math.pi))
    g = np.clip(1 - a * a, 0, None) ** half
    return c / (d - 1) * (g[:-1] - g[1:])


def sliced_wasserstein_to_uniform_sphere(
    X: Tensor,
    n_projections: int = 50,
    seed: int | None = None,
    projections: Tensor | None = None,
    squared: bool = False,
) -> Tensor:
    r"""Euclidean sliced :math:`SW_2` between the points ``X`` and :math:`\mathrm{Unif}(S^{d-1})`, exact per slice.

    Args:
        X: (n, d) points, d ≥ 2 (any norm: the target is the unit sphere; uniform weights 1/n).
        n_projections: number L of random directions (ignored when ``projections`` is given).
        seed: seed of a local generator for the directions (global RNG untouched); None uses the global RNG.
        projections: (d, L) unit directions overriding the random draw (POT's orientation).
        squared: return :math:`SW_2^2 = \frac1L \sum_l W_2^2` without the square root (the SW-SSL loss term).

    Returns:
        Scalar tensor, dtype/device of ``X``, differentiable with respect to ``X``.
    """
    if not isinstance(X, Tensor) or X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 2:
        raise GeosslError(f"X must be an (n, d) tensor with n >= 1 and d >= 2, got {getattr(X, 'shape', type(X).__name__)}")
    n, d = X.shape
    cdt = torch.float64 if X.dtype == torch.float64 else torch.float32
    Xc = X.to(cdt)
    if projections is None:
        if isinstance(n_projections, bool) or not isinstance(n_projections, int) or n_projections < 1:
            raise GeosslError(f"n_projections must be a positive integer, got {n_projections!r}")
        g = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        theta = torch.randn(d, n_projections, generator=g, dtype=torch.float64).to(device=X.device, dtype=cdt)
        theta = theta / theta.norm(dim=0, keepdim=True)
    else:
        if not isinstance(projections, Tensor) or projections.ndim != 2 or projections.shape[0] != d:
            raise GeosslError(f"projections must have shape (d={d}, L), got {getattr(projections, 'shape', None)}")
        theta = projections.to(device=X.device, dtype=cdt)
    xs, _ = torch.sort((Xc @ theta).T, dim=1)  # (L, n)
    moments = torch.as_tensor(_partial_moments(n, d), dtype=cdt, device=X.device)
    w = (xs * xs).mean(1) - 2 * (xs * moments).sum(1) + 1.0 / d
    out = w.mean().clamp_min(0)
    return (out if squared else out.sqrt()).to(X.dtype)
