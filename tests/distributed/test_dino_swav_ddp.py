"""Two CPU processes (gloo) with half the batch each reproduce single-process SwAV and DINO.

SwAV: the codes (distributed Sinkhorn over the global batch), the loss, the gradients and the queue, over three
steps (the queue fills during the first two and joins the Sinkhorn problem in the third). DINO: the loss, the
gradients and the center (all-reduced batch mean) over three steps.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from geossl.losses.dino import DINOLoss
from geossl.losses.swav import SwAVLoss, SwAVQueue, swav_codes

from ..conftest import gloo_group, spawn_gloo

pytestmark = pytest.mark.distributed

N, D_IN, D, K, STEPS, N_VIEWS = 8, 6, 5, 4, 3, 4  # 2 global + 2 local views
K_DINO = 7


def _views(step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return [torch.randn(N, D_IN, generator=g, dtype=torch.float64) for _ in range(N_VIEWS)]


class SwAVToy(nn.Module):
    """Linear projector + prototypes: scores of every view, and the normalised embeddings of the global views."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(D_IN, D).double()
        self.prototypes = nn.Parameter(torch.randn(K, D, dtype=torch.float64))

    def forward(self, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        z = [F.normalize(self.proj(v), dim=1) for v in views]
        protos = F.normalize(self.prototypes, dim=1)
        return [x @ protos.T for x in z], z[:2]


def _dino_student() -> nn.Module:
    torch.manual_seed(1)
    return nn.Linear(D_IN, K_DINO).double()


def _dino_teacher_out(views: list[torch.Tensor]) -> list[torch.Tensor]:
    torch.manual_seed(2)
    teacher = nn.Linear(D_IN, K_DINO).double()
    with torch.no_grad():
        return [3 * teacher(v) for v in views[:2]]


def run(rank: int | None, world: int, out: dict) -> None:
    """The training loop of both methods; ``rank=None`` runs it on one process with the whole batch."""
    local = slice(None) if rank is None else slice(rank * N // world, (rank + 1) * N // world)
    key = "single" if rank is None else rank

    swav = SwAVToy()
    model = swav if rank is None else nn.parallel.DistributedDataParallel(swav)
    loss_fn, queue = SwAVLoss(), SwAVQueue(length=2 * N, dim=D, n_views=2)
    for step in range(STEPS):
        views = [v[local] for v in _views(step)]
        scores, z_global = model(views)
        queue_scores = queue.scores(swav.prototypes.detach() / swav.prototypes.detach().norm(dim=1, keepdim=True))
        loss = loss_fn(scores[:2], scores[2:], queue_scores)
        swav.zero_grad()
        loss.backward()
        queue.push(z_global)
        out[("swav", key, step)] = {
            "loss": _global_mean(loss, rank, world),
            "codes": swav_codes(scores[0], queue_scores=None if queue_scores is None else queue_scores[0]),
            "grad_proj": swav.proj.weight.grad.clone(),
            "grad_protos": swav.prototypes.grad.clone(),
            "queue_used": queue_scores is not None,
            "queue": queue.embeddings.clone(),
        }

    student = _dino_student()
    model = student if rank is None else nn.parallel.DistributedDataParallel(student)
    dino = DINOLoss(out_dim=K_DINO).double()  # float64 center for 1e-10 comparisons
    for step in range(STEPS):
        views = [v[local] for v in _views(10 + step)]
        loss = dino(_dino_teacher_out(views), [model(v) for v in views], teacher_temp=0.05)
        student.zero_grad()
        loss.backward()
        out[("dino", key, step)] = {
            "loss": _global_mean(loss, rank, world),
            "grad": student.weight.grad.clone(),
            "center": dino.center.clone(),
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


def test_swav_codes_loss_gradients_and_queue(results: dict) -> None:
    for step in range(STEPS):
        one, r0, r1 = (results[("swav", k, step)] for k in ("single", 0, 1))
        assert r0["queue_used"] == r1["queue_used"] == one["queue_used"] == (step == STEPS - 1)
        codes = torch.cat([r0["codes"], r1["codes"]])
        assert torch.allclose(codes, one["codes"], atol=1e-10, rtol=0), step
        assert r0["loss"] == pytest.approx(one["loss"], abs=1e-10)
        for name in ("grad_proj", "grad_protos"):  # DDP averaged: identical on both processes
            assert torch.allclose(r0[name], one[name], atol=1e-10), (step, name)
            assert torch.allclose(r1[name], one[name], atol=1e-10), (step, name)
        # the queue is global: the same rows, in the same order, on every process
        assert torch.allclose(r0["queue"], one["queue"], atol=1e-12) and torch.allclose(r1["queue"], one["queue"], atol=1e-12)


def test_swav_codes_need_the_global_batch(results: dict) -> None:
    """The comparison above can fail: codes balanced within each half differ from the global ones."""
    scores, _ = SwAVToy()(_views(0))
    halves = torch.cat([swav_codes(scores[0][: N // 2]), swav_codes(scores[0][N // 2 :])])
    assert (halves - results[("swav", "single", 0)]["codes"]).abs().max() > 1e-3


def test_dino_loss_gradients_and_center(results: dict) -> None:
    for step in range(STEPS):
        one, r0, r1 = (results[("dino", k, step)] for k in ("single", 0, 1))
        assert r0["loss"] == pytest.approx(one["loss"], abs=1e-10)
        assert torch.allclose(r0["grad"], one["grad"], atol=1e-10) and torch.allclose(r1["grad"], one["grad"], atol=1e-10)
        assert torch.allclose(r0["center"], one["center"], atol=1e-12) and torch.allclose(r1["center"], one["center"], atol=1e-12)
    # a center from half the batch differs (the all-reduce matters)
    views = [v[: N // 2] for v in _views(10)]
    half = DINOLoss(out_dim=K_DINO).double()
    half.update_center(_dino_teacher_out(views))
    assert (half.center - results[("dino", "single", 0)]["center"]).abs().max() > 1e-3
