"""Tests of geossl.ot.sliced: parity with POT (test oracle only) on shared projections, gradients, properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geossl.errors import GeosslError
from geossl.ot.sliced import (
    get_projections_sphere,
    projection_sphere_to_circle,
    sliced_wasserstein,
    spherical_sliced_wasserstein,
    spherical_sliced_wasserstein_to_uniform,
    w2_unif_circle,
    wasserstein_1d,
    wasserstein_circle,
)

ot = pytest.importorskip("ot")

TOL = 1e-6
SEEDS = range(20)


def _sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _simplex(rng: np.random.Generator, n: int) -> np.ndarray:
    w = rng.random(n) + 0.05
    return w / w.sum()


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


# ------------------------------------------------------------------------------------------------ POT parity


@pytest.mark.parametrize("seed", SEEDS)
def test_wasserstein_1d_matches_pot(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = (int(k) for k in rng.integers(1, 25, 2))
    p = [1, 2, 1.5, 3][seed % 4]
    u, v = rng.normal(size=(n, 3)), rng.normal(size=(m, 3)) + rng.normal()
    a, b = _simplex(rng, n), _simplex(rng, m)
    # unweighted, batched over the trailing dim
    ref = ot.wasserstein_1d(u, v, p=p)
    got = wasserstein_1d(_t(u), _t(v), p=p)
    assert got.shape == (3,) and got.dtype == torch.float64
    assert np.abs(got.numpy() - ref).max() < TOL
    # weighted (1-D weights broadcast over the batch)
    ref = ot.wasserstein_1d(u, v, a, b, p=p)
    got = wasserstein_1d(_t(u), _t(v), _t(a), _t(b), p=p)
    assert np.abs(got.numpy() - ref).max() < TOL
    # per-batch (n, 3) weights
    A, B = (
        np.stack([_simplex(rng, n) for _ in range(3)], 1),
        np.stack([_simplex(rng, m) for _ in range(3)], 1),
    )
    ref = ot.wasserstein_1d(u, v, A, B, p=p)
    got = wasserstein_1d(_t(u), _t(v), _t(A), _t(B), p=p)
    assert np.abs(got.numpy() - ref).max() < TOL
    # single (unbatched) problem
    ref = ot.wasserstein_1d(u[:, 0], v[:, 0], a, b, p=p)
    got = wasserstein_1d(_t(u[:, 0]), _t(v[:, 0]), _t(a), _t(b), p=p)
    assert got.dim() == 0 and abs(got.item() - float(ref)) < TOL


@pytest.mark.parametrize("seed", SEEDS)
def test_sliced_wasserstein_matches_pot(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n, m = (int(k) for k in rng.integers(2, 30, 2))
    d, L = int(rng.integers(1, 6)), int(rng.integers(1, 12))
    p = [2, 1, 3][seed % 3]
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.5
    P = rng.normal(size=(d, L))
    P /= np.linalg.norm(P, axis=0, keepdims=True)
    ref = ot.sliced_wasserstein_distance(X, Y, n_projections=L, p=p, projections=P)
    got = sliced_wasserstein(_t(X), _t(Y), p=p, projections=_t(P))
    assert abs(got.item() - float(ref)) < TOL
    a, b = _simplex(rng, n), _simplex(rng, m)
    ref = ot.sliced_wasserstein_distance(X, Y, a, b, n_projections=L, p=p, projections=P)
    got = sliced_wasserstein(_t(X), _t(Y), p=p, a=_t(a), b=_t(b), projections=_t(P))
    assert abs(got.item() - float(ref)) < TOL


@pytest.mark.parametrize("seed", SEEDS)
def test_spherical_sliced_wasserstein_matches_pot(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    n, m = (int(k) for k in rng.integers(2, 20, 2))
    d, L = int(rng.integers(2, 6)), int(rng.integers(1, 6))
    p = [2, 1, 3, 1.5][seed % 4]
    X, Y = _sphere(rng, n, d), _sphere(rng, m, d)
    U = get_projections_sphere(d, L, seed=seed, dtype=torch.float64)
    ref = ot.sliced_wasserstein_sphere(X, Y, n_projections=L, p=p, projections=U.numpy())
    got = spherical_sliced_wasserstein(_t(X), _t(Y), p=p, projections=U)
    assert abs(got.item() - float(ref)) < TOL


@pytest.mark.parametrize("seed", SEEDS)
def test_wasserstein_circle_matches_pot(seed: int) -> None:
    rng = np.random.default_rng(400 + seed)
    n, m = (int(k) for k in rng.integers(1, 15, 2))
    p = [1, 2, 1.5][seed % 3]
    u, v = rng.random((n, 2)), rng.random((m, 2))
    a, b = _simplex(rng, n), _simplex(rng, m)
    ref = ot.wasserstein_circle(u, v, a, b, p=p)
    got = wasserstein_circle(_t(u), _t(v), _t(a), _t(b), p=p)
    assert got.shape == (2,) and np.abs(got.numpy() - ref).max() < TOL


@pytest.mark.parametrize("seed", SEEDS)
def test_ssw_to_uniform_matches_pot(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    n, d, L = (
        int(rng.integers(1, 60)),
        int(rng.integers(2, 7)),
        int(rng.integers(1, 30)),
    )
    X = _sphere(rng, n, d)
    U = get_projections_sphere(d, L, seed=seed, dtype=torch.float64)
    ref = ot.sliced_wasserstein_sphere_unif(X, n_projections=L, projections=U.numpy())
    got = spherical_sliced_wasserstein_to_uniform(_t(X), projections=U)
    assert abs(got.item() - float(ref)) < TOL


# ------------------------------------------------------------------------------------------------ properties


def test_wasserstein_1d_identities() -> None:
    x = torch.randn(17, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert wasserstein_1d(x, x, p=2).item() == pytest.approx(0.0, abs=1e-14)
    for p in (1, 2, 3):
        assert wasserstein_1d(x, x + 0.7, p=p).item() ** (1 / p) == pytest.approx(0.7, abs=1e-12)


def test_projections_are_stiefel_and_coordinates_in_unit_interval() -> None:
    U = get_projections_sphere(5, 7, seed=3, dtype=torch.float64)
    assert U.shape == (7, 5, 2)
    assert torch.allclose(
        U.transpose(1, 2) @ U,
        torch.eye(2, dtype=torch.float64).expand(7, 2, 2),
        atol=1e-12,
    )
    X = torch.nn.functional.normalize(torch.randn(11, 5, dtype=torch.float64), dim=-1)
    t = projection_sphere_to_circle(X, U)
    assert t.shape == (7, 11) and bool((t >= 0).all()) and bool((t < 1).all())


def test_ssw_self_distance_is_zero() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.nn.functional.normalize(torch.randn(13, 4, dtype=torch.float64, generator=g), dim=-1)
    for p in (1, 2):
        # W_p^p is piecewise linear in the circle shift, found to ~1e-13: compare the p-th power.
        assert spherical_sliced_wasserstein(X, X, n_projections=5, p=p, seed=0).item() ** p < 1e-12
    assert sliced_wasserstein(X, X, n_projections=5, seed=0).item() < 1e-10


def test_ssw_gradcheck() -> None:
    g = torch.Generator().manual_seed(2)
    X = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64, generator=g), dim=-1)
    Y = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64, generator=g), dim=-1)
    U = get_projections_sphere(3, 3, seed=0, dtype=torch.float64)
    X.requires_grad_(True)
    Y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, y: spherical_sliced_wasserstein(x, y, p=2, projections=U), (X, Y))
    assert torch.autograd.gradcheck(lambda x: spherical_sliced_wasserstein_to_uniform(x, projections=U), (X,))


def test_sliced_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    X = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    Y = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: sliced_wasserstein(x, y, n_projections=4, seed=0), (X, Y))


def test_ssw_to_uniform_small_for_uniform_samples_and_decreasing() -> None:
    g = torch.Generator().manual_seed(4)
    vals = []
    for n in (100, 1000, 10000):
        X = torch.nn.functional.normalize(torch.randn(n, 3, dtype=torch.float64, generator=g), dim=-1)
        vals.append(spherical_sliced_wasserstein_to_uniform(X, n_projections=50, seed=0).item() ** 2)
    assert vals[0] > vals[1] > vals[2]
    assert vals[2] < 1e-4


def test_ssw_to_uniform_collapsed_cloud() -> None:
    x = torch.nn.functional.normalize(torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64), dim=-1)
    X = x.expand(64, 3).clone()
    # A Dirac gives W_2^2 = 1/12 on every slice.
    assert spherical_sliced_wasserstein_to_uniform(X, n_projections=20, seed=1).item() == pytest.approx(
        (1 / 12) ** 0.5, abs=1e-12
    )
    assert w2_unif_circle(torch.tensor([[0.25]], dtype=torch.float64)).item() == pytest.approx(1 / 12)


def test_seeded_reproducible_and_global_rng_untouched() -> None:
    g = torch.Generator().manual_seed(5)
    X = torch.nn.functional.normalize(torch.randn(20, 4, dtype=torch.float64, generator=g), dim=-1)
    Y = torch.nn.functional.normalize(torch.randn(15, 4, dtype=torch.float64, generator=g), dim=-1)
    state = torch.get_rng_state()
    for fn in (
        lambda s: sliced_wasserstein(X, Y, n_projections=5, seed=s),
        lambda s: spherical_sliced_wasserstein(X, Y, n_projections=5, seed=s),
        lambda s: spherical_sliced_wasserstein_to_uniform(X, n_projections=5, seed=s),
    ):
        assert fn(0).item() == fn(0).item()
        assert fn(0).item() != fn(1).item()
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtype_and_device_preserved(dtype: torch.dtype) -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        g = torch.Generator().manual_seed(6)
        X = torch.nn.functional.normalize(torch.randn(10, 3, generator=g), dim=-1).to(device=device, dtype=dtype)
        Y = torch.nn.functional.normalize(torch.randn(8, 3, generator=g), dim=-1).to(device=device, dtype=dtype)
        outs = [
            wasserstein_1d(X[:, 0], Y[:, 0]),
            sliced_wasserstein(X, Y, n_projections=4, seed=0),
            spherical_sliced_wasserstein(X, Y, n_projections=4, seed=0),
            spherical_sliced_wasserstein_to_uniform(X, n_projections=4, seed=0),
        ]
        for out in outs:
            assert out.dtype == dtype and out.device.type == device and torch.isfinite(out.float()).all()


def test_bad_inputs_raise() -> None:
    X = torch.nn.functional.normalize(torch.randn(6, 3, dtype=torch.float64), dim=-1)
    Y = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=-1)
    with pytest.raises(GeosslError, match="X is not on the unit sphere"):
        spherical_sliced_wasserstein(2 * X, Y)
    with pytest.raises(GeosslError, match="Y is not on the unit sphere"):
        spherical_sliced_wasserstein(X, 2 * Y)
    with pytest.raises(GeosslError, match="X is not on the unit sphere"):
        spherical_sliced_wasserstein_to_uniform(X * 1.01)
    with pytest.raises(GeosslError, match="same dimension"):
        spherical_sliced_wasserstein(X, Y[:, :2] / Y[:, :2].norm(dim=-1, keepdim=True))
    with pytest.raises(GeosslError, match="same dimension"):
        sliced_wasserstein(X, torch.randn(5, 4, dtype=torch.float64))
    with pytest.raises(GeosslError, match="n_projections"):
        sliced_wasserstein(X, Y, n_projections=0)
    with pytest.raises(GeosslError, match="n_projections"):
        spherical_sliced_wasserstein(X, Y, n_projections=0)
    with pytest.raises(GeosslError, match="n_projections"):
        spherical_sliced_wasserstein_to_uniform(X, n_projections=-3)
    with pytest.raises(GeosslError, match="p must be"):
        sliced_wasserstein(X, Y, p=0.5)
    with pytest.raises(GeosslError, match="p must be"):
        spherical_sliced_wasserstein(X, Y, p=0)
    with pytest.raises(GeosslError, match="p must be"):
        wasserstein_1d(X[:, 0], Y[:, 0], p=0.9)
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(GeosslError, match="NaN"):
        spherical_sliced_wasserstein(bad, Y)
    with pytest.raises(GeosslError, match="NaN"):
        spherical_sliced_wasserstein_to_uniform(bad)
    with pytest.raises(GeosslError, match="NaN"):
        sliced_wasserstein(X, bad)
    with pytest.raises(GeosslError, match="NaN"):
        wasserstein_1d(bad[:, 0], Y[:, 0])
    with pytest.raises(GeosslError, match="u_values and v_values"):
        wasserstein_1d(torch.randn(4, 2), torch.randn(4, 3))
    with pytest.raises(GeosslError, match="projections must have shape"):
        spherical_sliced_wasserstein(X, Y, projections=torch.randn(4, 2, 2))
    with pytest.raises(GeosslError, match="projections must have shape"):
        sliced_wasserstein(X, Y, projections=torch.randn(2, 4))
    with pytest.raises(GeosslError, match="a must be"):
        sliced_wasserstein(X, Y, a=torch.ones(3))
    assert issubclass(GeosslError, ValueError)
