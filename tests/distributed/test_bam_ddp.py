"""Two CPU processes (gloo) with half the batch each reproduce single-process BAM.

The targets are gathered over processes and the Sinkhorn balances the columns over the query rows of every process
(all-reduced column log-sum-exp), so the loss, the balanced targets, their column-mass spread and the DDP-averaged
gradients equal those of one process with the whole batch; for BAM, the distillation variant (fixed teacher) and
top-k. Each process averages its loss over its own images: DDP's gradient averaging then gives the single-process
gradient because :func:`geossl.dist.gather` sums the target columns' gradients over processes.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from geossl.losses.bam import BAMLoss, _bam_loss

from ..conftest import gloo_group, spawn_gloo

pytestmark = pytest.mark.distributed

N, D_IN, D, STEPS, N_VIEWS = 8, 6, 5, 2, 4  # 2 global + 2 local views
#: name -> (BAMLoss kwargs, distillation)
CONFIGS = {"bam": ({}, False), "distill": ({}, True), "top-k": ({"top_k": 5}, False)}


def _views(step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return [torch.randn(N, D_IN, generator=g, dtype=torch.float64) for _ in range(N_VIEWS)]


class Projector(nn.Module):
    """Linear projector applied to every view."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.proj = nn.Linear(D_IN, D).double()

    def forward(self, views: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.proj(v) for v in views]


def _kwargs(cfg: dict) -> dict:
    base = {"n_global": 2, "n_targets": 2, "eps": 0.05, "temperature": 0.1, "n_iters": 3, "top_k": 0, "mask_positives": True}
    return {**base, **cfg}


def run(rank: int | None, world: int, out: dict) -> None:
    """The training loop; ``rank=None`` runs it on one process with the whole batch."""
    local = slice(None) if rank is None else slice(rank * N // world, (rank + 1) * N // world)
    key = "single" if rank is None else rank
    teacher = Projector(seed=1)
    for name, (cfg, distill) in CONFIGS.items():
        student = Projector()
        model = student if rank is None else nn.parallel.DistributedDataParallel(student)
        loss_fn = BAMLoss(**cfg)
        for step in range(STEPS):
            views = [v[local] for v in _views(step)]
            z = model(views)
            with torch.no_grad():
                t = teacher(views) if distill else None
            loss = loss_fn(z, t)
            student.zero_grad()
            loss.backward()
            with torch.no_grad():
                _, P = _bam_loss(z, t, **_kwargs(cfg), gather=True)
                local_loss = BAMLoss(**cfg, gather=False)(z, t)
            out[(name, key, step)] = {
                "loss": _global_mean(loss, rank, world),
                "local_loss": _global_mean(local_loss, rank, world),
                "targets": P,
                "cv": float(loss_fn.last_column_mass_cv),
                "grad_w": student.proj.weight.grad.clone(),
                "grad_b": student.proj.bias.grad.clone(),
            }


def _global_mean(loss: torch.Tensor, rank: int | None, world: int) -> float:
    """Each process holds the mean over its half: their average is the global mean."""
    total = loss.detach().clone()
    if rank is not None:
        dist.all_reduce(total)
        total /= world
    return total.item()


def _worker(rank: int, world: int, store: str, out: dict) -> None:
    with gloo_group(rank, world, store):
        run(rank, world, out)


@pytest.fixture(scope="module")
def results() -> dict:
    manager = mp.Manager()
    out = manager.dict()
    spawn_gloo(_worker, 2, out)
    run(None, 1, out)
    return dict(out)


def _rows_in_single_order(r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
    """Rank rows (crop-major over the local half) -> single-process rows (crop-major over the whole batch)."""
    half = N // 2
    return torch.cat([torch.cat([r0[v * half : (v + 1) * half], r1[v * half : (v + 1) * half]]) for v in range(r0.shape[0] // half)])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_loss_targets_and_gradients_match_single_process(results: dict, name: str) -> None:
    for step in range(STEPS):
        one, r0, r1 = (results[(name, k, step)] for k in ("single", 0, 1))
        assert r0["loss"] == pytest.approx(one["loss"], abs=1e-10) and r1["loss"] == pytest.approx(one["loss"], abs=1e-10)
        targets = _rows_in_single_order(r0["targets"], r1["targets"])
        assert targets.shape == one["targets"].shape
        assert torch.allclose(targets, one["targets"], atol=1e-10, rtol=0), (name, step)
        assert r0["cv"] == pytest.approx(one["cv"], abs=1e-10) and r1["cv"] == pytest.approx(one["cv"], abs=1e-10)
        for g in ("grad_w", "grad_b"):  # DDP averaged: identical on both processes
            assert torch.allclose(r0[g], one[g], atol=1e-10, rtol=0), (name, step, g)
            assert torch.allclose(r1[g], one[g], atol=1e-10, rtol=0), (name, step, g)


def test_balancing_needs_the_global_batch(results: dict) -> None:
    """The comparison above can fail: targets gathered and balanced within each half give another loss."""
    for step in range(STEPS):
        one, r0 = (results[("bam", k, step)] for k in ("single", 0))
        assert abs(r0["local_loss"] - one["loss"]) > 1e-3
        # without a process group, gather=False is the same computation as gather=True
        assert one["local_loss"] == pytest.approx(one["loss"], abs=1e-12)
