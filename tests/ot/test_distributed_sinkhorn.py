"""Distributed log-domain Sinkhorn: rows split over gloo processes give the rows of the single-process plan."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from geossl.errors import GeosslError
from geossl.ot.distributed import distributed_sinkhorn
from geossl.ot.sinkhorn import sinkhorn

from ..conftest import gloo_group, spawn_gloo

N, K = 16, 7


def problem(seed: int, n: int = N, k: int = K, uniform_b: bool = False, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(n, k, generator=g, dtype=dtype)
    b = torch.rand(k, generator=g, dtype=dtype) + 0.1
    return M, (None if uniform_b else b / b.sum())


def reference(M: torch.Tensor, b, reg: float, n_iters: int, last: str) -> torch.Tensor:
    """The single-process plan of geossl.ot.sinkhorn; SwAV's order is the transposed problem (columns first)."""
    if last == "columns":
        return sinkhorn(None, b, M, reg, n_iters=n_iters)
    return sinkhorn(b, None, M.T, reg, n_iters=n_iters).T


# ---------------------------------------------------------------------------------------------- one process


@pytest.mark.parametrize("reg", [0.01, 0.05, 1.0])
@pytest.mark.parametrize("uniform_b", [True, False])
@pytest.mark.parametrize("n_iters", [1, 3, 20])
def test_single_process_equals_sinkhorn(reg: float, uniform_b: bool, n_iters: int) -> None:
    M, b = problem(int(reg * 100) + n_iters, uniform_b=uniform_b)
    P = distributed_sinkhorn(M, reg, b=b, n_iters=n_iters)
    assert torch.allclose(P, sinkhorn(None, b, M, reg, n_iters=n_iters), atol=1e-14, rtol=0)


def test_rows_order_and_scale() -> None:
    M, b = problem(1)
    P = distributed_sinkhorn(M, 0.05, b=b, n_iters=3, last="rows", scale="rows")
    assert torch.allclose(P, N * reference(M, b, 0.05, 3, "rows"), atol=1e-13, rtol=0)
    assert torch.allclose(P.sum(1), torch.ones(N, dtype=P.dtype), atol=1e-13)  # SwAV codes
    # the two orders are different algorithms after few iterations
    assert (P - N * distributed_sinkhorn(M, 0.05, b=b, n_iters=3)).abs().max() > 1e-3


def test_balanced_columns() -> None:
    M, b = problem(2)
    P = distributed_sinkhorn(M, 0.05, b=b, n_iters=3)
    assert torch.allclose(P.sum(0), b, atol=1e-14)  # columns exact after every iteration (order "columns")
    P = distributed_sinkhorn(M, 0.05, b=b, n_iters=500, last="rows")
    assert torch.allclose(P.sum(0), b, atol=1e-10)  # and at convergence in SwAV's order
    assert torch.allclose(P.sum(1), torch.full((N,), 1 / N, dtype=P.dtype), atol=1e-14)


def test_no_gradient_and_dtype() -> None:
    M, _ = problem(3, dtype=torch.float32)
    M.requires_grad_()
    P = distributed_sinkhorn(M, 0.05)
    assert not P.requires_grad and P.dtype == torch.float32
    P16 = distributed_sinkhorn(M.detach().half(), 0.05)
    assert P16.dtype == torch.float16 and torch.isfinite(P16).all()
    # float32 at small reg: no underflow (the scaling domain would divide by zero here)
    P = distributed_sinkhorn(M.detach(), 0.005, n_iters=3, last="rows", scale="rows")
    assert not torch.exp(-M.detach() / 0.005).min() > 0
    assert torch.isfinite(P).all() and torch.allclose(P.sum(1), torch.ones(N), atol=1e-4)


def test_bad_inputs_raise() -> None:
    M, _ = problem(4)
    with pytest.raises(GeosslError, match="M_local"):
        distributed_sinkhorn(M[0], 0.05)
    with pytest.raises(GeosslError, match="M_local"):
        distributed_sinkhorn(M[:0], 0.05)
    with pytest.raises(GeosslError, match="reg"):
        distributed_sinkhorn(M, 0.0)
    with pytest.raises(GeosslError, match="n_iters"):
        distributed_sinkhorn(M, 0.05, n_iters=0)
    with pytest.raises(GeosslError, match="last"):
        distributed_sinkhorn(M, 0.05, last="cols")
    with pytest.raises(GeosslError, match="scale"):
        distributed_sinkhorn(M, 0.05, scale="codes")
    with pytest.raises(GeosslError, match="b must sum to 1"):
        distributed_sinkhorn(M, 0.05, b=torch.ones(K, dtype=M.dtype))
    with pytest.raises(GeosslError, match="NaN"):
        distributed_sinkhorn(M.clone().fill_(float("nan")), 0.05)


# ---------------------------------------------------------------------------------------------- two processes

# (name, row split, reg, n_iters, uniform b, order): even and uneven splits, non-uniform b, small reg.
CASES = [
    ("even", (8, 8), 0.05, 3, True, "columns"),
    ("even_b", (8, 8), 0.05, 3, False, "columns"),
    ("uneven_b", (5, 11), 0.05, 3, False, "columns"),
    ("uneven_many_iters", (11, 5), 0.5, 50, False, "columns"),
    ("small_reg", (5, 11), 0.005, 10, False, "columns"),
    ("swav_order", (5, 11), 0.05, 3, False, "rows"),
    ("empty_rank", (0, 16), 0.05, 3, False, "columns"),
]


def _worker(rank: int, world: int, store: str, out: dict) -> None:
    with gloo_group(rank, world, store):
        for i, (name, split, reg, n_iters, uniform_b, last) in enumerate(CASES):
            M, b = problem(10 + i, uniform_b=uniform_b)
            start = sum(split[:rank])
            rows = M[start : start + split[rank]]
            out[(name, rank)] = distributed_sinkhorn(rows, reg, b=b, n_iters=n_iters, last=last)
            out[(name, rank, "rows")] = distributed_sinkhorn(rows, reg, b=b, n_iters=n_iters, last=last, scale="rows")
        # mismatched K is an input error on every process (no hang)
        try:
            distributed_sinkhorn(torch.zeros(3, K + rank, dtype=torch.float64), 0.05)
        except GeosslError as e:
            out[("k_error", rank)] = str(e)


@pytest.mark.distributed
def test_two_processes_give_the_rows_of_the_single_process_plan() -> None:
    out = mp.Manager().dict()
    spawn_gloo(_worker, 2, out)
    for i, (name, split, reg, n_iters, uniform_b, last) in enumerate(CASES):
        M, b = problem(10 + i, uniform_b=uniform_b)
        P = reference(M, b, reg, n_iters, last)
        got = torch.cat([out[(name, 0)], out[(name, 1)]])
        assert got.shape == (N, K), name
        assert torch.allclose(got, P, atol=1e-10, rtol=0), f"{name}: {(got - P).abs().max():.3g}"
        rows = torch.cat([out[(name, 0, "rows")], out[(name, 1, "rows")]])
        assert torch.allclose(rows, N * P, atol=1e-10 * N, rtol=0), name
    # the split matters: solving each half alone gives a different plan (the test above can fail)
    M, b = problem(12, uniform_b=False)
    halves = torch.cat([distributed_sinkhorn(M[:5], 0.05, b=b) * 5 / N, distributed_sinkhorn(M[5:], 0.05, b=b) * 11 / N])
    assert (halves - reference(M, b, 0.05, 3, "columns")).abs().max() > 1e-3
    assert "same number of columns" in out[("k_error", 0)] and "same number of columns" in out[("k_error", 1)]
