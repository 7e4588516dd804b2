"""Two CPU processes (gloo) with half the batch each give the single-process loss and gradients."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from geossl import dist as gdist
from geossl.losses import NTXentLoss

from ..conftest import gloo_group, spawn_gloo

pytestmark = pytest.mark.distributed

N, D_IN, D_OUT, TAU = 8, 6, 5, 0.3


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D_IN, generator=g, dtype=torch.float64), torch.randn(N, D_IN, generator=g, dtype=torch.float64)


def _model():
    torch.manual_seed(0)
    return nn.Linear(D_IN, D_OUT).double()


def _worker(rank: int, world: int, store: str, out: dict) -> None:
    with gloo_group(rank, world, store):
        x_a, x_b = _data()
        local = slice(rank * N // world, (rank + 1) * N // world)
        model = nn.parallel.DistributedDataParallel(_model())
        z_a, z_b = model(x_a[local]), model(x_b[local])
        loss = NTXentLoss(temperature=TAU)(z_a, z_b)
        loss.backward()
        # Per-process losses average to the global loss (each holds the mean over its anchors).
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0:
            out["loss"] = (total / world).item()
            out["grad_w"] = model.module.weight.grad.clone()
            out["grad_b"] = model.module.bias.grad.clone()
            out["world"] = gdist.world_size()


def test_two_process_loss_and_gradients_equal_single_process():
    x_a, x_b = _data()
    model = _model()
    loss = NTXentLoss(temperature=TAU)(model(x_a), model(x_b))
    loss.backward()

    manager = mp.Manager()
    out = manager.dict()
    spawn_gloo(_worker, 2, out)
    assert out["world"] == 2
    assert out["loss"] == pytest.approx(loss.item(), abs=1e-12)
    assert torch.allclose(out["grad_w"], model.weight.grad, atol=1e-12)
    assert torch.allclose(out["grad_b"], model.bias.grad, atol=1e-12)


def test_without_gather_the_gradients_differ():
    """The test above can fail: with gathering off, each process sees only local negatives."""
    x_a, x_b = _data()
    model = _model()
    full = NTXentLoss(temperature=TAU)(model(x_a), model(x_b))
    halves = [NTXentLoss(temperature=TAU)(model(x_a[s]), model(x_b[s])) for s in (slice(0, N // 2), slice(N // 2, N))]
    assert abs(sum(h.item() for h in halves) / 2 - full.item()) > 1e-3
