"""SwAV loss and codes against lightly's ``SwaVLoss`` / ``sinkhorn`` (the authors' scaling-domain algorithm)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geossl.errors import GeosslError
from geossl.losses.swav import SwAVLoss, SwAVQueue, swav_codes

lightly_swav = pytest.importorskip("lightly.loss.swav_loss")


def scores(seed: int, n_views: int, batch: int, k: int, dim: int = 16, dtype=torch.float32) -> list[torch.Tensor]:
    """Cosine scores of normalised embeddings against normalised prototypes, as SwAV feeds them."""
    g = torch.Generator().manual_seed(seed)
    protos = F.normalize(torch.randn(k, dim, generator=g, dtype=dtype), dim=1)
    return [F.normalize(torch.randn(batch, dim, generator=g, dtype=dtype), dim=1) @ protos.T for _ in range(n_views)]


def sinkhorn_knopp_plain(s: torch.Tensor, eps: float, n_iters: int) -> torch.Tensor:
    """SwAV's Alg. 1 written out in float64: Q = exp(S/eps)^T (K x B), prototypes then samples, Q *= B."""
    Q = torch.exp(s.double() / eps).T
    Q = Q / Q.sum()
    K, B = Q.shape
    for _ in range(n_iters):
        Q = Q / Q.sum(dim=1, keepdim=True) / K
        Q = Q / Q.sum(dim=0, keepdim=True) / B
    return (Q * B).T


@pytest.mark.parametrize("seed,n_local,batch,k", [(0, 0, 16, 10), (1, 6, 8, 32), (2, 2, 32, 7), (3, 4, 5, 64)])
def test_loss_matches_lightly(seed: int, n_local: int, batch: int, k: int) -> None:
    s = scores(seed, 2 + n_local, batch, k)
    ref = lightly_swav.SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(s[:2], s[2:])
    ours = SwAVLoss(temperature=0.1, sinkhorn_eps=0.05, sinkhorn_iters=3)(s[:2], s[2:])
    assert abs(ours.item() - ref.item()) < 1e-5 * max(1.0, abs(ref.item()))


def test_loss_matches_lightly_with_queue_and_gradients() -> None:
    s = [x.requires_grad_() for x in scores(4, 5, 8, 24)]
    queue = [x.detach() for x in scores(5, 2, 40, 24)]
    ref = lightly_swav.SwaVLoss()(s[:2], s[2:], queue)
    (g_ref,) = torch.autograd.grad(ref.sum(), s[3])
    ours = SwAVLoss()(s[:2], s[2:], queue)
    (g_ours,) = torch.autograd.grad(ours, s[3])
    assert abs(ours.item() - ref.item()) < 1e-5
    assert torch.allclose(g_ours, g_ref, atol=1e-6)
    # the queue changes the codes, so the comparison above exercises it
    assert abs(SwAVLoss()(s[:2], s[2:]).item() - ours.item()) > 1e-4


def test_other_hyperparameters_match_lightly() -> None:
    s = scores(6, 4, 12, 20)
    ref = lightly_swav.SwaVLoss(temperature=0.2, sinkhorn_iterations=7, sinkhorn_epsilon=0.1)(s[:2], s[2:])
    ours = SwAVLoss(temperature=0.2, sinkhorn_eps=0.1, sinkhorn_iters=7)(s[:2], s[2:])
    assert abs(ours.item() - ref.item()) < 1e-5


@pytest.mark.parametrize("batch,k", [(16, 10), (8, 40), (64, 64)])
def test_codes_match_written_out_algorithm_and_lightly(batch: int, k: int) -> None:
    (s,) = scores(7, 1, batch, k, dtype=torch.float64)
    q = swav_codes(s, 0.05, 3)
    assert torch.allclose(q, sinkhorn_knopp_plain(s, 0.05, 3), atol=1e-12, rtol=0)
    assert torch.allclose(q, lightly_swav.sinkhorn(s, iterations=3, epsilon=0.05), atol=1e-10, rtol=0)
    # every sample's codes are a distribution (rows exact after SwAV's last half-step)
    assert torch.allclose(q.sum(1), torch.ones(batch, dtype=q.dtype), atol=1e-12)
    assert not q.requires_grad


def test_codes_are_balanced_over_prototypes() -> None:
    (s,) = scores(8, 1, 64, 16, dtype=torch.float64)
    target = 64 / 16  # equipartition: every prototype receives B/K samples' worth of mass
    softmax_dev = (F.softmax(s / 0.05, dim=1).sum(0) - target).abs().max()
    devs = [(swav_codes(s, 0.05, n).sum(0) - target).abs().max() for n in (1, 3, 10, 500)]
    # 3 iterations only move the usage part of the way (here 1.7 of 4 against 3.2 for the raw softmax) ...
    assert softmax_dev > 1.0 and devs[1] < 0.6 * softmax_dev
    assert devs[0] > devs[1] > devs[2]
    # ... and the codes are exactly balanced at convergence
    assert devs[3] < 1e-8


def test_queue_joins_the_problem_without_codes() -> None:
    (s,) = scores(9, 1, 6, 12, dtype=torch.float64)
    (qs,) = scores(10, 1, 30, 12, dtype=torch.float64)
    q = swav_codes(s, 0.05, 3, queue_scores=qs)
    full = sinkhorn_knopp_plain(torch.cat([s, qs]), 0.05, 3)
    assert q.shape == (6, 12)
    assert torch.allclose(q, full[:6], atol=1e-12)


def test_gather_false_gives_the_same_codes_on_one_process() -> None:
    (s,) = scores(11, 1, 10, 9, dtype=torch.float64)
    assert torch.allclose(swav_codes(s, gather=False), swav_codes(s, gather=True), atol=1e-13)


def test_small_eps_float32_stays_finite() -> None:
    (s,) = scores(12, 1, 32, 300)
    q = swav_codes(s * 1.0, eps=0.005, n_iters=3)  # exp(1/0.005) overflows float32 in the scaling domain
    assert torch.isfinite(q).all()
    with torch.no_grad():
        assert not torch.isfinite(torch.exp(s / 0.005)).all()


def test_queue_fifo_and_scores() -> None:
    queue = SwAVQueue(length=5, dim=3, n_views=2)
    protos = torch.eye(3)
    assert queue.scores(protos) is None and not queue.full
    batches = [[torch.full((2, 3), float(10 * i + v)) for v in range(2)] for i in range(3)]
    for b in batches:
        queue.push(b)
    assert queue.full
    # newest first, oldest dropped: rows of batch 2, batch 1, first row of batch 0
    expected_v1 = torch.tensor([21, 21, 11, 11, 1], dtype=torch.float32)
    assert torch.equal(queue.embeddings[1, :, 0], expected_v1)
    sc = queue.scores(protos)
    assert len(sc) == 2 and sc[0].shape == (5, 3)
    assert torch.equal(sc[1], queue.embeddings[1] @ protos.T)


def test_bad_inputs_raise() -> None:
    s = scores(13, 3, 4, 5)
    with pytest.raises(GeosslError, match="global_scores"):
        SwAVLoss()([], s)
    with pytest.raises(GeosslError, match="local_scores"):
        SwAVLoss()(s[:2], [torch.zeros(3, 5)])
    with pytest.raises(GeosslError, match="queue_scores"):
        SwAVLoss()(s[:2], s[2:], [torch.zeros(4, 5)])
    with pytest.raises(GeosslError, match="two crops"):
        SwAVLoss()(s[:1])
    with pytest.raises(GeosslError, match="temperature"):
        SwAVLoss(temperature=0)
    with pytest.raises(GeosslError, match="sinkhorn_iters"):
        SwAVLoss(sinkhorn_iters=0)
