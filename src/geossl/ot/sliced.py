"""One-dimensional, sliced and spherical sliced optimal-transport distances.

Pure PyTorch, differentiable, device/dtype preserving. Names and value conventions follow POT
(``ot.wasserstein_1d``, ``ot.sliced_wasserstein_distance``, ``ot.sliced_wasserstein_sphere``,
``ot.sliced_wasserstein_sphere_unif``), which is used as the test oracle only.

References:
    Bonneel, Rabin, Peyré & Pfister, "Sliced and Radon Wasserstein barycenters of measures", JMIV 2015.
    Delon, Salomon & Sobolevski, "Fast transport optimization for Monge costs on the circle", SIAM J. Appl.
    Math. 2010.
    Bonet, Berg, Courty, Septier, Drumetz & Pham, "Spherical Sliced-Wasserstein", ICLR 2023.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from geossl.errors import GeosslError

__all__ = [
    "get_projections_sphere",
    "projection_sphere_to_circle",
    "sliced_wasserstein",
    "spherical_sliced_wasserstein",
    "spherical_sliced_wasserstein_to_uniform",
    "w2_unif_circle",
    "wasserstein_1d",
    "wasserstein_circle",
]

_SPHERE_TOL = 1e-4
_GOLDEN_ITERS = 64


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _check_finite(name: str, x: Tensor | None) -> None:
    if x is not None and bool(torch.isnan(x).any()):
        raise GeosslError(
            f"{name} contains NaN values; remove or impute them before computing the distance."
        )


def _check_p(p: float) -> None:
    if (
        not isinstance(p, (int, float))
        or isinstance(p, bool)
        or not math.isfinite(p)
        or p < 1
    ):
        raise GeosslError(f"p must be a number >= 1, got {p!r}.")


def _check_n_projections(n_projections: int) -> None:
    if (
        not isinstance(n_projections, int)
        or isinstance(n_projections, bool)
        or n_projections < 1
    ):
        raise GeosslError(
            f"n_projections must be an integer >= 1, got {n_projections!r}."
        )


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _check_cloud(name: str, X: Tensor) -> None:
    if not isinstance(X, Tensor):
        raise GeosslError(
            f"{name} must be a torch.Tensor of shape (n, d), got {type(X).__name__}."
        )
    if X.dim() != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise GeosslError(
            f"{name} must have shape (n, d) with n, d >= 1, got {tuple(X.shape)}."
        )
    if not X.is_floating_point():
        raise GeosslError(f"{name} must be a floating-point tensor, got {X.dtype}.")
    _check_finite(name, X)


def _check_sphere(name: str, X: Tensor) -> None:
    # 1e-4 as in POT, loosened for low-precision dtypes (a normalised bfloat16 row is only ~1e-2 accurate).
    tol = max(_SPHERE_TOL, 4 * torch.finfo(X.dtype).eps)
    dev = (X.detach().to(_compute_dtype(X.dtype)).pow(2).sum(-1) - 1).abs()
    if bool((dev > tol).any()):
        raise GeosslError(
            f"{name} is not on the unit sphere (max | ||x||^2 - 1 | = {float(dev.max()):.3g} > {tol:g});"
            f" normalise the rows first, e.g. torch.nn.functional.normalize({name}, dim=-1)."
        )


def _check_weights(name: str, w: Tensor | None, n: int) -> None:
    if w is None:
        return
    if not isinstance(w, Tensor) or w.dim() != 1 or w.shape[0] != n:
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise GeosslError(f"{name} must be a 1-D tensor of length {n}, got {shape}.")
    _check_finite(name, w)
    if bool((w < 0).any()):
        raise GeosslError(f"{name} must be non-negative.")


def _generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


# --------------------------------------------------------------------------------------------------
# 1-D OT on the line
# --------------------------------------------------------------------------------------------------


def _as_batched(values: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """(n, ...) values and optional (n,) or (n, ...) weights -> (B, n) values and weights."""
    n = values.shape[0]
    v = values.reshape(n, -1)
    if weights is None:
        w = torch.full_like(v, 1.0 / n)
    else:
        w = weights.to(v.dtype)
        if w.dim() == 1:
            w = w[:, None].expand_as(v)
        else:
            w = w.reshape(n, -1).expand_as(v)
    return v.t(), w.t()


def wasserstein_1d(
    u_values: Tensor,
    v_values: Tensor,
    u_weights: Tensor | None = None,
    v_weights: Tensor | None = None,
    p: float = 1,
) -> Tensor:
    r"""1-D optimal-transport cost :math:`W_p^p` between (batched) empirical measures.

    :math:`W_p^p(\mu, \nu) = \int_0^1 |F_\mu^{-1}(t) - F_\nu^{-1}(t)|^p\,dt`, computed exactly by merging the
    two cumulative-weight grids (Peyré & Cuturi 2019, Rem. 2.30). Same convention as ``ot.wasserstein_1d``:
    the value is **not** raised to the power 1/p.

    Args:
        u_values: (n, ...) atom locations of the first measures (batched over the trailing dims).
        v_values: (m, ...) atom locations of the second measures; trailing dims equal to ``u_values``'.
        u_weights: (n,) or (n, ...) non-negative weights (uniform 1/n when None).
        v_weights: (m,) or (m, ...) non-negative weights (uniform 1/m when None).
        p: order of the ground cost ``|x - y|^p``, ``p >= 1``.

    Returns:
        Tensor of shape ``u_values.shape[1:]`` (a scalar for 1-D inputs) in the input dtype/device.
        Differentiable with respect to values and weights.
    """
    _check_p(p)
    for name, t in (("u_values", u_values), ("v_values", v_values)):
        if not isinstance(t, Tensor) or t.dim() < 1 or t.shape[0] < 1:
            raise GeosslError(f"{name} must be a tensor of shape (n, ...) with n >= 1.")
        _check_finite(name, t)
    if u_values.shape[1:] != v_values.shape[1:]:
        raise GeosslError(
            f"u_values and v_values must share their trailing (batch) dims, got {tuple(u_values.shape)}"
            f" and {tuple(v_values.shape)}."
        )
    for name, w, vals in (
        ("u_weights", u_weights, u_values),
        ("v_weights", v_weights, v_values),
    ):
        if w is not None:
            _check_finite(name, w)
            if w.shape != vals.shape and w.shape != vals.shape[:1]:
                raise GeosslError(
                    f"{name} must have shape {tuple(vals.shape[:1])} or {tuple(vals.shape)}."
                )
            if bool((w < 0).any()):
                raise GeosslError(f"{name} must be non-negative.")
    out_dtype = u_values.dtype
    cdt = _compute_dtype(out_dtype)
    batch_shape = u_values.shape[1:]
    u, uw = _as_batched(
        u_values.to(cdt), None if u_weights is None else u_weights.to(cdt)
    )
    v, vw = _as_batched(
        v_values.to(cdt), None if v_weights is None else v_weights.to(cdt)
    )
    res = _w1d_sorted_free(u, uw, v, vw, p)
    return res.reshape(batch_shape).to(out_dtype)


def _w1d_sorted_free(u: Tensor, uw: Tensor, v: Tensor, vw: Tensor, p: float) -> Tensor:
    """Batched W_p^p for (B, n)/(B, m) values and weights (unsorted) -> (B,)."""
    u_sorted, ui = torch.sort(u, dim=-1)
    v_sorted, vi = torch.sort(v, dim=-1)
    uc = torch.cumsum(torch.gather(uw, -1, ui), -1)
    vc = torch.cumsum(torch.gather(vw, -1, vi), -1)
    qs, _ = torch.sort(torch.cat([uc, vc], -1), dim=-1)
    qs0 = torch.cat([torch.zeros_like(qs[..., :1]), qs], -1)
    delta = qs0[..., 1:] - qs0[..., :-1]
    # Both quantile functions are constant on each interval (q_{k-1}, q_k]: evaluate at midpoints.
    mid = (0.5 * (qs0[..., 1:] + qs0[..., :-1])).detach().contiguous()
    iu = torch.searchsorted(uc.detach().contiguous(), mid).clamp_(max=u.shape[-1] - 1)
    iv = torch.searchsorted(vc.detach().contiguous(), mid).clamp_(max=v.shape[-1] - 1)
    diff = (torch.gather(u_sorted, -1, iu) - torch.gather(v_sorted, -1, iv)).abs()
    return (delta * (diff if p == 1 else diff.pow(p))).sum(-1)


# --------------------------------------------------------------------------------------------------
# Sliced Wasserstein
# --------------------------------------------------------------------------------------------------


def _random_directions(
    d: int, n_projections: int, seed: int | None, like: Tensor
) -> Tensor:
    z = torch.randn(d, n_projections, generator=_generator(seed), dtype=torch.float64)
    z = z / z.norm(dim=0, keepdim=True)
    return z.to(device=like.device, dtype=like.dtype)


def sliced_wasserstein(
    X: Tensor,
    Y: Tensor,
    n_projections: int = 50,
    p: float = 2,
    seed: int | None = None,
    a: Tensor | None = None,
    b: Tensor | None = None,
    projections: Tensor | None = None,
) -> Tensor:
    r"""Monte-Carlo sliced Wasserstein distance (Bonneel et al. 2015).

    :math:`SW_p(\mu, \nu) = \big(\frac1L \sum_l W_p^p(\langle\theta_l, \cdot\rangle_\#\mu,
    \langle\theta_l, \cdot\rangle_\#\nu)\big)^{1/p}`, :math:`\theta_l \sim \mathrm{Unif}(S^{d-1})`.
    Same value as ``ot.sliced_wasserstein_distance(X, Y, a, b, n_projections, p, projections)`` (with the
    p-th root). Cost O(L (n + m) (d + log(n + m))).

    Args:
        X: (n, d) source samples.
        Y: (m, d) target samples.
        n_projections: number L of random directions (ignored when ``projections`` is given).
        p: order, ``p >= 1``.
        seed: seed of a local ``torch.Generator`` for the directions (the global RNG is untouched);
            None draws from the global RNG.
        a: (n,) source weights (uniform when None).
        b: (m,) target weights (uniform when None).
        projections: (d, L) directions overriding the random draw (same orientation as POT's ``projections``).

    Returns:
        Scalar tensor, dtype/device of ``X``; differentiable with respect to ``X``, ``Y``, ``a``, ``b``.
    """
    _check_cloud("X", X)
    _check_cloud("Y", Y)
    _check_p(p)
    if X.shape[1] != Y.shape[1]:
        raise GeosslError(
            f"X and Y must have the same dimension d, got {X.shape[1]} and {Y.shape[1]}."
        )
    _check_weights("a", a, X.shape[0])
    _check_weights("b", b, Y.shape[0])
    out_dtype = X.dtype
    cdt = _compute_dtype(out_dtype)
    Xc, Yc = X.to(cdt), Y.to(device=X.device, dtype=cdt)
    d = X.shape[1]
    if projections is None:
        _check_n_projections(n_projections)
        theta = _random_directions(d, n_projections, seed, Xc)
    else:
        if (
            not isinstance(projections, Tensor)
            or projections.dim() != 2
            or projections.shape[0] != d
        ):
            raise GeosslError(
                f"projections must have shape (d={d}, L), got {getattr(projections, 'shape', None)}."
            )
        _check_finite("projections", projections)
        theta = projections.to(device=X.device, dtype=cdt)
    xp = (Xc @ theta).t()  # (L, n)
    yp = (Yc @ theta).t()  # (L, m)
    aw = (
        torch.full_like(xp, 1.0 / X.shape[0])
        if a is None
        else a.to(xp)[None].expand_as(xp)
    )
    bw = (
        torch.full_like(yp, 1.0 / Y.shape[0])
        if b is None
        else b.to(yp)[None].expand_as(yp)
    )
    w = _w1d_sorted_free(xp, aw, yp, bw, p)
    return w.mean().pow(1.0 / p).to(out_dtype)


# --------------------------------------------------------------------------------------------------
# Circle OT and spherical sliced Wasserstein
# --------------------------------------------------------------------------------------------------


def get_projections_sphere(
    d: int,
    n_projections: int,
    seed: int | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Random Stiefel matrices U_l ∈ V_{d,2} (Q factors of Gaussian d×2 matrices), as in Bonet et al. 2023.

    Args:
        d: ambient dimension (``d >= 2``).
        n_projections: number L of matrices.
        seed: seed of a local ``torch.Generator`` (global RNG untouched); None uses the global RNG.
        device: output device.
        dtype: output dtype.

    Returns:
        (L, d, 2) tensor with ``U_lᵀ U_l = I_2``.
    """
    _check_n_projections(n_projections)
    if d < 2:
        raise GeosslError(
            f"the spherical sliced distances need points in dimension d >= 2, got d={d}."
        )
    z = torch.randn(
        n_projections, d, 2, generator=_generator(seed), dtype=torch.float64
    )
    q, _ = torch.linalg.qr(z)
    return q.to(device=device, dtype=dtype)


def projection_sphere_to_circle(X: Tensor, projections: Tensor) -> Tensor:
    r"""Project points of :math:`S^{d-1}` on great circles and return their coordinates in [0, 1).

    :math:`P^U(x) = U^\top x / \|U^\top x\|`, coordinate ``t = (π + atan2(-y_2, -y_1)) / (2π)``.

    Args:
        X: (n, d) points on the sphere.
        projections: (L, d, 2) Stiefel matrices.

    Returns:
        (L, n) coordinates in [0, 1).
    """
    y = torch.einsum("ldk,nd->lnk", projections, X)
    # The coordinate only depends on the direction of y: no need to normalise; guard y = 0 for the gradient.
    eps = torch.finfo(y.dtype).tiny
    y = y + (y.detach().pow(2).sum(-1, keepdim=True) < eps).to(y.dtype) * eps
    t = (math.pi + torch.atan2(-y[..., 1], -y[..., 0])) / (2 * math.pi)
    return torch.remainder(t, 1.0)


def _circle_cost(
    theta: Tensor, u: Tensor, uc: Tensor, v: Tensor, vc: Tensor, p: float
) -> Tensor:
    r"""Cost :math:`\int_0^1 |F_u^{-1}(s) - (F_v - \theta)^{-1}(s)|^p ds` on the unrolled circle.

    Args:
        theta: (B, K) shifts.
        u: (B, n) sorted values in [0, 1); uc: (B, n) their cumulative weights.
        v: (B, m) sorted values in [0, 1); vc: (B, m) their cumulative weights.

    Returns:
        (B, K) costs.
    """
    B, K = theta.shape
    n, m = u.shape[-1], v.shape[-1]
    th = theta.detach()
    grid = torch.cat(
        [
            torch.zeros(B, K, 1, dtype=u.dtype, device=u.device),
            uc[:, None, :].expand(B, K, n),
            torch.remainder(vc[:, None, :] - th[..., None], 1.0),
            torch.ones(B, K, 1, dtype=u.dtype, device=u.device),
        ],
        -1,
    )
    grid, _ = torch.sort(grid, dim=-1)
    delta = grid[..., 1:] - grid[..., :-1]
    mid = (0.5 * (grid[..., 1:] + grid[..., :-1])).detach()
    iu = torch.searchsorted(
        uc.detach()[:, None, :].expand(B, K, n).contiguous(), mid.contiguous()
    )
    qu = torch.gather(u[:, None, :].expand(B, K, n), -1, iu.clamp(max=n - 1))
    q = mid + th[..., None]
    k = torch.floor(q)
    iv = torch.searchsorted(
        vc.detach()[:, None, :].expand(B, K, m).contiguous(), (q - k).contiguous()
    )
    qv = torch.gather(v[:, None, :].expand(B, K, m), -1, iv.clamp(max=m - 1)) + k
    diff = (qu - qv).abs()
    return (delta * (diff if p == 1 else diff.pow(p))).sum(-1)


def wasserstein_circle(
    u_values: Tensor,
    v_values: Tensor,
    u_weights: Tensor | None = None,
    v_weights: Tensor | None = None,
    p: float = 1,
) -> Tensor:
    r"""Batched :math:`W_p^p` on the circle :math:`\mathbb{R}/\mathbb{Z}` (circumference 1, geodesic cost).

    Uses :math:`W_p^p = \inf_\theta \int_0^1 |F_u^{-1}(s) - (F_v - \theta)^{-1}(s)|^p ds`, convex in θ
    (Delon, Salomon & Sobolevski 2010): θ* is found by a fixed-length golden-section search on [-1, 1]
    (no host synchronisation), then the cost is evaluated differentiably at the detached θ* (envelope theorem).
    Matches ``ot.wasserstein_circle`` (POT returns :math:`W_p^p`, no root).

    Args:
        u_values: (n, B) or (n,) coordinates (taken modulo 1).
        v_values: (m, B) or (m,) coordinates.
        u_weights: (n,) or (n, B) weights (uniform when None).
        v_weights: (m,) or (m, B) weights (uniform when None).
        p: order, ``p >= 1``.

    Returns:
        (B,) tensor (scalar for 1-D inputs).
    """
    _check_p(p)
    for name, t in (
        ("u_values", u_values),
        ("v_values", v_values),
        ("u_weights", u_weights),
        ("v_weights", v_weights),
    ):
        if t is not None and (
            not isinstance(t, Tensor) or t.dim() not in (1, 2) or t.shape[0] < 1
        ):
            raise GeosslError(
                f"{name} must be a tensor of shape (n,) or (n, B) with n >= 1."
            )
        _check_finite(name, t)
    squeeze = u_values.dim() == 1
    u, uw = _as_batched(torch.remainder(u_values, 1.0), u_weights)
    v, vw = _as_batched(torch.remainder(v_values, 1.0), v_weights)
    if u.shape[0] != v.shape[0]:
        raise GeosslError("u_values and v_values must have the same number of batches.")
    res = _circle_wpp(u, uw, v, vw, p)
    return res[0] if squeeze else res


def _circle_wpp(u: Tensor, uw: Tensor, v: Tensor, vw: Tensor, p: float) -> Tensor:
    """(B, n)/(B, m) unsorted coordinates in [0, 1) and weights -> (B,) circle W_p^p."""
    u, ui = torch.sort(u, dim=-1)
    v, vi = torch.sort(v, dim=-1)
    uc = torch.cumsum(torch.gather(uw, -1, ui), -1)
    vc = torch.cumsum(torch.gather(vw, -1, vi), -1)
    B = u.shape[0]
    with torch.no_grad():
        ud, ucd, vd, vcd = u.detach(), uc.detach(), v.detach(), vc.detach()
        r = (math.sqrt(5.0) - 1) / 2
        lo = torch.full((B,), -1.0, dtype=u.dtype, device=u.device)
        hi = torch.full((B,), 1.0, dtype=u.dtype, device=u.device)
        c = hi - r * (hi - lo)
        dd = lo + r * (hi - lo)
        f = _circle_cost(torch.stack([c, dd], -1), ud, ucd, vd, vcd, p)
        fc, fd = f[:, 0], f[:, 1]
        for _ in range(_GOLDEN_ITERS):
            left = fc <= fd  # minimum in [lo, dd]
            hi = torch.where(left, dd, hi)
            lo = torch.where(left, lo, c)
            new_c = hi - r * (hi - lo)
            new_d = lo + r * (hi - lo)
            x_new = torch.where(left, new_c, new_d)
            f_new = _circle_cost(x_new[:, None], ud, ucd, vd, vcd, p)[:, 0]
            c, dd, fc, fd = (
                torch.where(left, new_c, dd),
                torch.where(left, c, new_d),
                torch.where(left, f_new, fd),
                torch.where(left, fc, f_new),
            )
        theta = torch.where(fc <= fd, c, dd)
    return _circle_cost(theta[:, None], u, uc, v, vc, p)[:, 0]


def w2_unif_circle(t: Tensor) -> Tensor:
    r"""Closed-form :math:`W_2^2(\mu_n, \mathrm{Unif}(S^1))` for uniform empirical measures (Bonet et al. 2023).

    :math:`W_2^2 = \frac1n\sum t_i^2 - (\frac1n\sum t_i)^2 + \sum_i \frac{n + 1 - 2i}{n^2} t_{(i)} + \frac1{12}`.

    Args:
        t: (L, n) coordinates in [0, 1).

    Returns:
        (L,) values.
    """
    n = t.shape[-1]
    ts, _ = torch.sort(torch.remainder(t, 1.0), dim=-1)
    i = torch.arange(1, n + 1, dtype=t.dtype, device=t.device)
    coef = (n + 1 - 2 * i) / n**2
    mean = ts.mean(-1)
    return ts.pow(2).mean(-1) - mean.pow(2) + (coef * ts).sum(-1) + 1.0 / 12


def _sphere_projections(
    X: Tensor,
    n_projections: int,
    seed: int | None,
    projections: Tensor | None,
    cdt: torch.dtype,
) -> Tensor:
    d = X.shape[1]
    if projections is None:
        return get_projections_sphere(
            d, n_projections, seed, device=X.device, dtype=cdt
        )
    if (
        not isinstance(projections, Tensor)
        or projections.dim() != 3
        or projections.shape[1:] != (d, 2)
    ):
        raise GeosslError(
            f"projections must have shape (L, d={d}, 2), got {getattr(projections, 'shape', None)}."
        )
    _check_finite("projections", projections)
    return projections.to(device=X.device, dtype=cdt)


def spherical_sliced_wasserstein(
    X: Tensor,
    Y: Tensor,
    n_projections: int = 50,
    p: float = 2,
    seed: int | None = None,
    projections: Tensor | None = None,
) -> Tensor:
    r"""Spherical sliced Wasserstein distance between two point clouds on :math:`S^{d-1}` (Bonet et al. 2023).

    :math:`SSW_p(\mu, \nu) = \big(\frac1L\sum_l W_p^p(P^{U_l}_\#\mu, P^{U_l}_\#\nu)\big)^{1/p}` with
    :math:`U_l \in V_{d,2}` and :math:`W_p` on the circle of circumference 1. Same value as
    ``ot.sliced_wasserstein_sphere(X, Y, p=p, projections=projections)`` (with the p-th root).

    Args:
        X: (n, d) points on the unit sphere (``| ||x||² - 1 | <= 1e-4``).
        Y: (m, d) points on the unit sphere.
        n_projections: number L of Stiefel slices (ignored when ``projections`` is given).
        p: order, ``p >= 1``.
        seed: seed of a local ``torch.Generator`` (global RNG untouched); None uses the global RNG.
        projections: (L, d, 2) Stiefel matrices overriding the random draw (POT orientation).

    Returns:
        Scalar tensor, dtype/device of ``X``; differentiable with respect to ``X`` and ``Y``.
    """
    _check_cloud("X", X)
    _check_cloud("Y", Y)
    _check_p(p)
    if X.shape[1] != Y.shape[1]:
        raise GeosslError(
            f"X and Y must have the same dimension d, got {X.shape[1]} and {Y.shape[1]}."
        )
    if projections is None:
        _check_n_projections(n_projections)
    _check_sphere("X", X)
    _check_sphere("Y", Y)
    out_dtype = X.dtype
    cdt = _compute_dtype(out_dtype)
    Xc, Yc = X.to(cdt), Y.to(device=X.device, dtype=cdt)
    U = _sphere_projections(Xc, n_projections, seed, projections, cdt)
    tx = projection_sphere_to_circle(Xc, U)  # (L, n)
    ty = projection_sphere_to_circle(Yc, U)  # (L, m)
    w = _circle_wpp(
        tx,
        torch.full_like(tx, 1.0 / X.shape[0]),
        ty,
        torch.full_like(ty, 1.0 / Y.shape[0]),
        p,
    )
    return w.mean().pow(1.0 / p).to(out_dtype)


def spherical_sliced_wasserstein_to_uniform(
    X: Tensor,
    n_projections: int = 50,
    seed: int | None = None,
    projections: Tensor | None = None,
    squared: bool = False,
) -> Tensor:
    r"""Spherical sliced :math:`SSW_2` between a point cloud and :math:`\mathrm{Unif}(S^{d-1})`, closed form.

    Every slice pushes the uniform law on the sphere to the uniform law on the circle, so each term is the
    closed form :func:`w2_unif_circle` (Bonet et al. 2023); returns :math:`(\frac1L\sum_l W_2^2)^{1/2}`, the
    value of ``ot.sliced_wasserstein_sphere_unif``. Cost O(L n (d + log n)). Only p = 2.

    Args:
        X: (n, d) points on the unit sphere (``| ||x||² - 1 | <= 1e-4``).
        n_projections: number L of Stiefel slices (ignored when ``projections`` is given).
        seed: seed of a local ``torch.Generator`` (global RNG untouched); None uses the global RNG.
        projections: (L, d, 2) Stiefel matrices overriding the random draw (POT orientation).
        squared: return :math:`SSW_2^2` (no square root), the SSW-SSL loss term; its gradient stays finite at 0.

    Returns:
        Scalar tensor, dtype/device of ``X``; differentiable with respect to ``X``.
    """
    _check_cloud("X", X)
    if projections is None:
        _check_n_projections(n_projections)
    _check_sphere("X", X)
    out_dtype = X.dtype
    cdt = _compute_dtype(out_dtype)
    Xc = X.to(cdt)
    U = _sphere_projections(Xc, n_projections, seed, projections, cdt)
    w = w2_unif_circle(projection_sphere_to_circle(Xc, U)).mean().clamp_min(0)
    return (w if squared else w.sqrt()).to(out_dtype)
