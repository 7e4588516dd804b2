"""Two-view losses on two CPU processes (gloo) with half the batch each: the loss and the DDP-averaged gradients equal
those of one process with the whole batch (float64, 1e-10).

Covered: L_Sample, L_Feature and L_COOT (thesis §3.1), the dense OT loss with gathered image negatives (§3.3), T-REG and T-REGS (the MST of the global batch), SSW-SSL, SW-SSL and
Wang–Isola (uniformity of the global batch). Losses made only of global terms hold the global value on every process;
those with a per-process mean term (invariance, alignment) average to it over the processes.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from geossl import dist as gdist
from geossl.losses.dense_ot import SoftDenseLoss
from geossl.losses.ot_ssl import COOTLoss, OTFeatureLoss, OTSampleLoss
from geossl.losses.treg import TREG, TREGSLoss
from geossl.losses.uniformity import AlignUniformLoss, SSWUniformityLoss, SWUniformityLoss

from ..conftest import gloo_group, spawn_gloo

pytestmark = pytest.mark.distributed

N, D_IN, D_OUT = 8, 6, 5


def _on_sphere(loss):
    return lambda a, b: loss(F.normalize(a, dim=1), F.normalize(b, dim=1))


#: name -> loss constructor; every process evaluates each of them on its half of the batch
LOSSES = {
    "sample-full": lambda: OTSampleLoss(eps=0.05, n_iters=5),
    "sample-cross": lambda: OTSampleLoss(eps=0.05, n_iters=5, layout="cross"),
    "feature-bt": lambda: OTFeatureLoss(eps=0.05, n_iters=5),
    "feature-raw": lambda: OTFeatureLoss(eps=0.05, n_iters=5, feature_norm="raw"),
    "coot": lambda: COOTLoss(eps=0.05, n_iters=3),
    # dense-ot with image-level negatives gathered from every process; the 5 outputs form a 5-channel 1x1 patch grid
    "dense-image-negatives": lambda: (lambda a, b: SoftDenseLoss(image_negatives=True, matcher="entropic")(
        a.view(-1, D_OUT, 1, 1), b.view(-1, D_OUT, 1, 1))),
    "t-reg": lambda: (lambda a, b: TREG(gamma=1.0, lam=0.1)(a) + TREG(gamma=1.0, lam=0.1)(b)),
    "t-regs": lambda: TREGSLoss(beta=10.0, gamma=0.2, lam=0.01),
    # the slices are seeded, hence the same on both processes
    "ssw": lambda: _on_sphere(SSWUniformityLoss(lam=20.0, seed=3)),
    "sw": lambda: _on_sphere(SWUniformityLoss(lam=1.0, seed=3)),
    "uniformity": lambda: _on_sphere(AlignUniformLoss()),
}
#: losses whose value is the global one on every process (no per-process mean term)
GLOBAL_ON_EVERY_RANK = {"sample-full", "sample-cross", "feature-bt", "feature-raw", "coot", "t-reg"}


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
    with gloo_group(rank, world, store):
        x_a, x_b = _data()
        local = slice(rank * N // world, (rank + 1) * N // world)
        for name, make in LOSSES.items():
            model = nn.parallel.DistributedDataParallel(_model())
            loss = make()(model(x_a[local]), model(x_b[local]))
            loss.backward()
            losses = [torch.zeros((), dtype=torch.float64) for _ in range(world)]
            dist.all_gather(losses, loss.detach())
            if rank == 0:
                out[name] = ([x.item() for x in losses], model.module.weight.grad.clone(), model.module.bias.grad.clone())
        if rank == 0:
            out["world"] = gdist.world_size()


@pytest.fixture(scope="module")
def two_process_results() -> dict:
    out = mp.Manager().dict()
    spawn_gloo(_worker, 2, out)
    return dict(out)


@pytest.mark.parametrize("name", list(LOSSES))
def test_two_process_loss_and_gradients_equal_single_process(two_process_results, name):
    assert two_process_results["world"] == 2
    losses, grad_w, grad_b = two_process_results[name]
    loss, ref_w, ref_b = _single_process(name)
    assert sum(losses) / len(losses) == pytest.approx(loss, abs=1e-10)
    if name in GLOBAL_ON_EVERY_RANK:
        assert losses[0] == pytest.approx(loss, abs=1e-10) and losses[1] == pytest.approx(loss, abs=1e-10)
    assert torch.allclose(grad_w, ref_w, rtol=0, atol=1e-10)
    assert torch.allclose(grad_b, ref_b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", list(LOSSES))
def test_halves_of_the_batch_differ_from_the_whole(name):
    """The test above can fail: the loss of each half alone (no gather) does not give the global one."""
    x_a, x_b = _data()
    model = _model()
    with torch.no_grad():
        whole = float(LOSSES[name]()(model(x_a), model(x_b)))
        halves = [float(LOSSES[name]()(model(x_a[s]), model(x_b[s]))) for s in (slice(0, N // 2), slice(N // 2, N))]
    assert abs(whole - sum(halves) / 2) > 1e-3
