"""L_Sample and L_Feature on two CPU processes (gloo) with half the batch each: the loss and the DDP-averaged
gradients equal those of one process with the whole batch (float64, 1e-10)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from geossl import dist as gdist
from geossl.losses.ot_ssl import OTFeatureLoss, OTSampleLoss

from ..conftest import gloo_store

pytestmark = pytest.mark.distributed

N, D_IN, D_OUT = 8, 6, 5

#: name -> loss constructor; every process evaluates each of them on the gathered batch
LOSSES = {
    "sample-full": lambda: OTSampleLoss(eps=0.05, n_iters=5),
    "sample-cross": lambda: OTSampleLoss(eps=0.05, n_iters=5, layout="cross"),
    "feature-bt": lambda: OTFeatureLoss(eps=0.05, n_iters=5),
    "feature-raw": lambda: OTFeatureLoss(eps=0.05, n_iters=5, feature_norm="raw"),
}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, D_IN, generator=g, dtype=torch.float64), torch.randn(N, D_IN, generator=g, dtype=torch.float64)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(D_IN, D_OUT).double()


def _single_process(name: str) -> tuple[float, torch.Tensor, torch.Tensor]:
    x_a, x_b = _data()
    model = _model()
    loss = LOSSES[name]()(model(x_a), model(x_b))
    loss.backward()
    return loss.item(), model.weight.grad.clone(), model.bias.grad.clone()


def _worker(rank: int, world: int, store: str, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        x_a, x_b = _data()
        local = slice(rank * N // world, (rank + 1) * N // world)
        for name, make in LOSSES.items():
            model = nn.parallel.DistributedDataParallel(_model())
            loss = make()(model(x_a[local]), model(x_b[local]))
            loss.backward()
            # every process holds the loss of the global batch
            losses = [torch.zeros((), dtype=torch.float64) for _ in range(world)]
            dist.all_gather(losses, loss.detach())
            if rank == 0:
                out[name] = ([x.item() for x in losses], model.module.weight.grad.clone(), model.module.bias.grad.clone())
        if rank == 0:
            out["world"] = gdist.world_size()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results() -> dict:
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, gloo_store(), out), nprocs=2, join=True)
    return dict(out)


@pytest.mark.parametrize("name", list(LOSSES))
def test_two_process_loss_and_gradients_equal_single_process(two_process_results, name):
    assert two_process_results["world"] == 2
    losses, grad_w, grad_b = two_process_results[name]
    loss, ref_w, ref_b = _single_process(name)
    assert losses[0] == pytest.approx(loss, abs=1e-10) and losses[1] == pytest.approx(loss, abs=1e-10)
    assert torch.allclose(grad_w, ref_w, rtol=0, atol=1e-10)
    assert torch.allclose(grad_b, ref_b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", list(LOSSES))
def test_halves_of_the_batch_differ_from_the_whole(name):
    """The test above can fail: losses of the two halves alone do not add up to the global one."""
    x_a, x_b = _data()
    model = _model()
    with torch.no_grad():
        whole = float(LOSSES[name]()(model(x_a), model(x_b)))
        halves = [float(LOSSES[name]()(model(x_a[s]), model(x_b[s]))) for s in (slice(0, N // 2), slice(N // 2, N))]
    assert abs(whole - sum(halves)) > 1e-3 and abs(whole - sum(halves) / 2) > 1e-3
