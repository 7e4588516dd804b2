"""Band-wise augmentations for data that are not 8-bit RGB: multispectral optical bands and SAR backscatter.

Colour jitter, grayscale and solarisation are defined for RGB only; a jittered multispectral image "has no guarantee"
to be a plausible one of the same class (Berg, PhD thesis 2024, §4.2). These are their substitutes, from the table of
spec ``remote_sensing.md`` §2, as batched tensor ops with a per-sample draw and an optional ``torch.Generator``:

==================  ==========================================================  ==========
operation           parameters (spec default)                                   valid for
==================  ==========================================================  ==========
spectral_jitter     per-band gain ~ U(0.9, 1.1), offset ~ N(0, 0.02²)            optical
gaussian_noise      per-pixel N(0, σ²), σ ~ U(0.01, 0.05) per image               optical
band_dropout        each band zeroed with p = 0.1, at least one band kept         optical
sar_speckle         multiplicative Gamma(L, 1/L) noise on linear power, L 4-10    SAR (dB)
==================  ==========================================================  ==========

The optical operations act on normalised values (each band of mean 0 and std 1 over the training set), so their
amounts are in units of the band's std. The speckle acts on backscatter in dB, before normalisation.
"""

from __future__ import annotations

import math

import torch

#: 10 / ln 10: dB per natural-log unit of power, so that 10 log10(g) = DB_PER_NEPER · ln g.
DB_PER_NEPER = 10 / math.log(10)


def _rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def uniform(
    shape: tuple[int, ...], low: float, high: float, like: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draws from U(low, high) of ``shape``, on ``like``'s device and dtype (the per-image or per-band factors)."""
    return low + (high - low) * _rand(shape, like, generator)


def spectral_jitter(
    x: torch.Tensor, gain: tuple[float, float], offset_std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per-image, per-band affine jitter ``x · g + o``, g ~ U(gain), o ~ N(0, offset_std²).

    Args:
        x: normalised images (B, C, H, W).
        gain: range of the multiplicative factor.
        offset_std: std of the additive offset.
        generator: random generator (None: the global one).

    Returns:
        (B, C, H, W), ``x`` itself when both are off.
    """
    lo, hi = gain
    if hi <= lo and offset_std <= 0:
        return x
    b, c = x.shape[:2]
    g = uniform((b, c, 1, 1), lo, hi, x, generator)
    o = offset_std * torch.randn(b, c, 1, 1, generator=generator, device=x.device, dtype=x.dtype)
    return x * g + o


def gaussian_noise(
    x: torch.Tensor, sigma: tuple[float, float], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Additive white Gaussian noise, one σ per image drawn uniformly from ``sigma``.

    Args:
        x: normalised images (B, C, H, W).
        sigma: range of the noise std, in normalised units (spec default 0.01-0.05).
        generator: random generator (None: the global one).

    Returns:
        (B, C, H, W), ``x`` itself when ``sigma`` is (0, 0).
    """
    lo, hi = sigma
    if hi <= 0:
        return x
    std = uniform((x.shape[0], 1, 1, 1), lo, hi, x, generator)
    return x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def band_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each band of each image with probability ``p``; an image that would lose every band keeps its first.

    Args:
        x: normalised images (B, C, H, W); a zeroed band is at its training mean.
        p: drop probability per band.
        generator: random generator (None: the global one).

    Returns:
        (B, C, H, W), ``x`` itself when ``p`` is 0 or there is one band.
    """
    b, c = x.shape[:2]
    if p <= 0 or c < 2:
        return x
    keep = _rand((b, c, 1, 1), x, generator) >= p
    none_kept = ~keep.any(dim=1, keepdim=True)
    first = torch.zeros_like(keep)
    first[:, 0] = True
    return x * (keep | (none_kept & first))


def speckle_gain(
    shape: tuple[int, int, int, int], looks: torch.Tensor, generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Multiplicative speckle of an L-look intensity image: Gamma(L, 1/L), mean 1 and variance 1/L.

    Drawn exactly as the mean of L unit exponentials (the L looks), −(1/L) ln Π (1 − U_i), so it takes a
    ``torch.Generator``, which ``torch.distributions.Gamma`` does not; one log per pixel, and each image draws only
    its own L uniforms.

    Args:
        shape: (B, C, H, W).
        looks: integer number of looks per image, (B,), each >= 1.
        generator: random generator (None: the global one).
        device: device of the result.

    Returns:
        float32 gains (B, C, H, W), all > 0.
    """
    looks = looks.to(device=device)
    product = torch.ones(shape, device=device)
    for i in range(int(looks.max())):
        more = looks > i
        n = int(more.sum())
        # 1 - U lies in (0, 1]: the product stays positive (its underflow, below 1e-38 for L <= 10, has probability
        # under 1e-20 and is clamped away).
        factor = 1 - torch.rand((n, *shape[1:]), generator=generator, device=device)
        if n == shape[0]:
            product *= factor
        else:
            product[more] *= factor
    tiny = torch.finfo(torch.float32).tiny
    gain = -torch.log(product.clamp_min(tiny)) / looks.to(torch.float32).view(-1, 1, 1, 1)
    return gain.clamp_min(tiny)


def sar_speckle(
    x_db: torch.Tensor, p: float, looks: tuple[int, int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Speckle on SAR backscatter in dB: ``10 log10(10^(x/10) · g) = x + 10 log10(g)``, g ~ Gamma(L, 1/L).

    Multiplicative in linear power, hence additive in dB (spec ``remote_sensing.md`` §2, a library design choice).
    Each image is speckled with probability ``p``, its number of looks L drawn uniformly from the integers in
    ``looks``; fewer looks, stronger speckle (std of the linear gain 1/sqrt(L)). The gain has mean 1, so the mean
    linear power is kept; in dB the mean shift is 10 / ln 10 · (ψ(L) − ln L) < 0, −0.57 dB at L = 4.

    Args:
        x_db: backscatter in dB (B, C, H, W), before normalisation.
        p: probability of speckling an image.
        looks: inclusive range of the number of looks, integers >= 1 (spec default 4-10).
        generator: random generator (None: the global one).

    Returns:
        (B, C, H, W) in dB, ``x_db`` itself when ``p`` is 0.
    """
    if p <= 0:
        return x_db
    b, dev = x_db.shape[0], x_db.device
    chosen = _rand((b,), x_db, generator) < p
    n = int(chosen.sum())
    if n == 0:
        return x_db
    # Only the chosen images draw their looks and gains: the speckle is the costly part of a SAR view.
    n_looks = torch.randint(int(looks[0]), int(looks[1]) + 1, (n,), generator=generator, device=dev)
    gain = speckle_gain((n, *x_db.shape[1:]), n_looks, generator, dev)
    out = x_db.clone()
    out[chosen] += DB_PER_NEPER * torch.log(gain).to(x_db.dtype)
    return out
