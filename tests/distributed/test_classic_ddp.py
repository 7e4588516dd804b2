"""Barlow Twins, VICReg, MMCR, MoCo v3 and the MoCo v2 queue: two gloo processes with half the batch each give the
single-process losses, gradients (averaged by DDP) and queue contents.

One ``mp.spawn`` computes everything (module fixture) so that the processes start once.
"""


import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from geossl import dist as gdist
from geossl.losses.barlow_twins import BarlowTwinsLoss
from geossl.losses.mmcr import MMCRLoss
from geossl.losses.moco import MoCoLoss, MoCoV3Loss
from geossl.losses.vicreg import VICRegLoss

from ..conftest import gloo_group, spawn_gloo

pytestmark = pytest.mark.distributed

N, K_VIEWS, D_IN, D_OUT, WORLD = 8, 3, 6, 5, 2
QUEUE, MOCO_STEPS = 12, 4
TOL = 1e-10


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D_IN, generator=g, dtype=torch.float64), torch.randn(N, D_IN, generator=g, dtype=torch.float64)


def _views(seed: int = 10):
    return torch.randn(N, K_VIEWS, D_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _model(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(D_IN, D_OUT).double()


def _moco_loss(gather: bool = True) -> MoCoLoss:
    torch.manual_seed(1)  # same initial random queue on every process
    return MoCoLoss(temperature=0.2, queue_size=QUEUE, dim=D_OUT, gather=gather).double()


def _pair_losses():
    return {
        "bt": lambda a, b: BarlowTwinsLoss(lambda_=5e-3)(a, b),
        "bt_nogather": lambda a, b: BarlowTwinsLoss(lambda_=5e-3, gather=False)(a, b),
        "vicreg": lambda a, b: VICRegLoss()(a, b),
        "vicreg_paper": lambda a, b: VICRegLoss(reference_scaling=False)(a, b),
    }


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


def _mean_over_processes(loss: torch.Tensor) -> float:
    total = loss.detach().clone()
    dist.all_reduce(total)
    return (total / dist.get_world_size()).item()


def _worker(rank: int, world: int, store: str, out: dict) -> None:
    with gloo_group(rank, world, store):
        local = slice(rank * N // world, (rank + 1) * N // world)
        x_a, x_b = _data()
        res: dict = {"world": gdist.world_size()}

        for name, fn in _pair_losses().items():
            model = nn.parallel.DistributedDataParallel(_model())
            loss = fn(model(x_a[local]), model(x_b[local]))
            loss.backward()
            res[name] = (_mean_over_processes(loss), _grads(model.module))

        model = nn.parallel.DistributedDataParallel(_model())
        loss = MMCRLoss(lambda_=5e-3)(model(_views()[local]))
        loss.backward()
        res["mmcr"] = (_mean_over_processes(loss), _grads(model.module))

        student, teacher = nn.parallel.DistributedDataParallel(_model()), _model(seed=5)
        with torch.no_grad():
            k_a, k_b = teacher(x_a[local]), teacher(x_b[local])
        loss = MoCoV3Loss(temperature=0.2)(student(x_a[local]), student(x_b[local]), k_a, k_b)
        loss.backward()
        res["mocov3"] = (_mean_over_processes(loss), _grads(student.module))

        for gather in (True, False):
            criterion = _moco_loss(gather)
            student = nn.parallel.DistributedDataParallel(_model())
            losses, first_grads = [], None
            for step in range(MOCO_STEPS):
                q_in, k_in = _data(seed=100 + step)
                student.zero_grad()
                with torch.no_grad():
                    keys = teacher(k_in[local])
                loss = criterion(student(q_in[local]), keys)
                loss.backward()
                criterion.enqueue(keys)
                losses.append(_mean_over_processes(loss))
                first_grads = first_grads or _grads(student.module)
            res[f"mocov2_gather{gather}"] = (losses, first_grads, criterion.queue.keys.clone(), int(criterion.queue.ptr))
        out[rank] = res


@pytest.fixture(scope="module")
def ranks():
    manager = mp.Manager()
    out = manager.dict()
    spawn_gloo(_worker, WORLD, out)
    result = dict(out)
    assert result[0]["world"] == WORLD and result[1]["world"] == WORLD
    return result


def _single_process(fn):
    model = _model()
    loss = fn(model)
    loss.backward()
    return loss.item(), _grads(model)


def _assert_same(got, expected, tol=TOL):
    loss, grads = got
    ref_loss, ref_grads = expected
    assert loss == pytest.approx(ref_loss, abs=tol, rel=0)
    for g, r in zip(grads, ref_grads, strict=True):
        assert torch.allclose(g, r, atol=tol, rtol=0), (g - r).abs().max()


@pytest.mark.parametrize("name", ["bt", "vicreg", "vicreg_paper"])
def test_batch_statistic_losses_equal_single_process(ranks, name):
    x_a, x_b = _data()
    fn = _pair_losses()[name]
    expected = _single_process(lambda m: fn(m(x_a), m(x_b)))
    for rank in range(WORLD):
        _assert_same(ranks[rank][name], expected)


def test_barlow_twins_without_gather_differs(ranks):
    """The test above can fail: per-process statistics give another loss and gradient."""
    x_a, x_b = _data()
    expected = _single_process(lambda m: BarlowTwinsLoss(lambda_=5e-3)(m(x_a), m(x_b)))
    loss, grads = ranks[0]["bt_nogather"]
    assert abs(loss - expected[0]) > 1e-3
    assert not torch.allclose(grads[0], expected[1][0], atol=1e-6)


def test_mmcr_equals_single_process(ranks):
    expected = _single_process(lambda m: MMCRLoss(lambda_=5e-3)(m(_views())))
    for rank in range(WORLD):
        _assert_same(ranks[rank]["mmcr"], expected)


def test_moco_v3_equals_single_process(ranks):
    x_a, x_b = _data()
    teacher = _model(seed=5)
    with torch.no_grad():
        k_a, k_b = teacher(x_a), teacher(x_b)
    expected = _single_process(lambda m: MoCoV3Loss(temperature=0.2)(m(x_a), m(x_b), k_a, k_b))
    for rank in range(WORLD):
        _assert_same(ranks[rank]["mocov3"], expected)


def _single_process_moco_v2():
    criterion, student, teacher = _moco_loss(), _model(), _model(seed=5)
    losses, first_grads = [], None
    for step in range(MOCO_STEPS):
        q_in, k_in = _data(seed=100 + step)
        student.zero_grad()
        with torch.no_grad():
            keys = teacher(k_in)
        loss = criterion(student(q_in), keys)
        loss.backward()
        criterion.enqueue(keys)
        losses.append(loss.item())
        first_grads = first_grads or _grads(student)
    return losses, first_grads, criterion.queue.keys.clone(), int(criterion.queue.ptr)


def test_moco_v2_queue_is_gathered_and_equal_on_every_rank(ranks):
    ref_losses, ref_grads, ref_queue, ref_ptr = _single_process_moco_v2()
    # QUEUE = 1.5 x the global batch: the ring wrapped around within the 4 steps.
    assert MOCO_STEPS * N > QUEUE
    for rank in range(WORLD):
        losses, grads, queue, ptr = ranks[rank]["mocov2_gatherTrue"]
        assert torch.allclose(queue, ref_queue, atol=TOL, rtol=0)
        assert ptr == ref_ptr
        assert losses == pytest.approx(ref_losses, abs=TOL, rel=0)
        for g, r in zip(grads, ref_grads, strict=True):
            assert torch.allclose(g, r, atol=TOL, rtol=0)
    assert torch.equal(ranks[0]["mocov2_gatherTrue"][2], ranks[1]["mocov2_gatherTrue"][2])


def test_moco_v2_queue_without_gather_differs(ranks):
    """The test above can fail: enqueuing local keys only gives each rank its own, different queue."""
    _, _, ref_queue, _ = _single_process_moco_v2()
    q0, q1 = ranks[0]["mocov2_gatherFalse"][2], ranks[1]["mocov2_gatherFalse"][2]
    assert not torch.allclose(q0, q1) and not torch.allclose(q0, ref_queue)
