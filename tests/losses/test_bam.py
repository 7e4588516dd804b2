"""BAM loss (Shalam & Korman 2024): balanced targets against the plain scaling algorithm, masks, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geossl.errors import GeosslError
from geossl.losses import BAMLoss
from geossl.losses.bam import (
    _keep_top_k,
    bam_loss,
    bam_similarity_loss,
    bam_targets,
    column_mass_cv,
    positive_mask,
)

B, D, V, VT = 6, 8, 4, 2


def crops(seed: int, n_views: int = V, batch: int = B, dtype=torch.float64) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, D, generator=g, dtype=dtype) for _ in range(n_views)]


def similarities(seed: int, n_views: int = V, n_targets: int = VT, batch: int = B) -> torch.Tensor:
    z = F.normalize(torch.cat(crops(seed, n_views, batch)), dim=1)
    return z @ z[: n_targets * batch].T


def plain_scaling(S: torch.Tensor, pos: torch.Tensor | None, eps: float, n_iters: int, n_targets: int) -> torch.Tensor:
    """The spec's / authors' algorithm written out in float64 in the scaling domain."""
    x = S.double() / eps
    if pos is not None:
        x = x.masked_fill(pos, torch.finfo(torch.float64).min)
    Q = torch.exp(x - x.max())
    Q = Q / Q.sum()
    n_q, k_t = Q.shape
    n_masked = n_targets if pos is not None else 0
    for _ in range(n_iters):
        Q = Q / Q.sum(dim=0, keepdim=True) / (k_t - n_masked)  # every target column to mass 1 / (K_t - V_t)
        Q = Q / Q.sum(dim=1, keepdim=True) / n_q  # every query row to mass 1 / N_q
    return Q / Q.sum(dim=1, keepdim=True)


def explicit_loss(source_sim, P_global, pos, n_views, n_global=2, tau=0.1):
    """L = (1/V_g) sum_v (1/(V-1)) sum_{s != v} mean_i [- sum_{j unmasked} P^(v)_ij log A^(s)_ij], P constant."""
    batch = source_sim.shape[0] // n_views
    log_a = F.log_softmax((source_sim / tau).masked_fill(pos, float("-inf")), dim=1)
    log_a = torch.where(pos, torch.zeros_like(log_a), log_a).split(batch)
    loss = 0
    for v in range(n_global):
        loss = loss + sum(-(P_global[v] * log_a[s]).sum(1).mean() for s in range(n_views) if s != v) / (n_views - 1)
    return loss / n_global


def test_positive_mask_layout() -> None:
    mask = positive_mask(3, 2, 2, world_size=2, rank=1)
    assert mask.shape == (6, 8)
    # row (crop v, local image i) is global image 2 + i; columns: crop c of global image g at c * 4 + g
    for v in range(3):
        for i in range(2):
            assert mask[v * 2 + i].nonzero().flatten().tolist() == [2 + i, 4 + 2 + i]


@pytest.mark.parametrize("n_iters", [0, 1, 3, 10])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("n_targets", [1, 2, 3])
def test_log_domain_equals_plain_scaling(n_iters: int, masked: bool, n_targets: int) -> None:
    S = similarities(0, n_targets=n_targets)
    pos = positive_mask(V, B, n_targets) if masked else None
    P = bam_targets(S, pos, eps=0.05, n_iters=n_iters)
    assert torch.allclose(P, plain_scaling(S, pos, 0.05, n_iters, n_targets), atol=1e-10, rtol=0)


def test_targets_rows_and_masked_columns() -> None:
    S = similarities(1)
    pos = positive_mask(V, B, VT)
    P = bam_targets(S, pos)
    assert torch.allclose(P.sum(dim=1), torch.ones(V * B, dtype=P.dtype), atol=1e-12)
    assert torch.equal(P[pos], torch.zeros_like(P[pos]))  # exactly zero on same-image columns
    assert (P[~pos] > 0).all()


def test_column_masses_balanced() -> None:
    S = similarities(2, batch=16)
    pos = positive_mask(V, 16, VT)
    cv = {n: column_mass_cv(bam_targets(S, pos, eps=0.05, n_iters=n)).item() for n in (0, 3, 10, 30, 2000)}
    # the plain softmax target is far from balanced (CV 0.50 here); 3 iterations halve the spread (0.25), more
    # iterations keep reducing it (not necessarily at the first one: 0.55 after 1 here) ...
    assert cv[0] > 0.4 and cv[3] < 0.6 * cv[0] and cv[3] > cv[10] > cv[30]
    assert cv[30] < 0.01
    # ... and exactly at convergence: every target column gets N_q / K_t of mass
    assert cv[2000] < 1e-9
    P = bam_targets(S, pos, eps=0.05, n_iters=2000)
    assert torch.allclose(P.sum(0), torch.full((VT * 16,), V / VT, dtype=P.dtype), atol=1e-8)


def test_masked_entries_contribute_nothing() -> None:
    S = similarities(3).requires_grad_(True)
    pos = positive_mask(V, B, VT)
    loss, _ = bam_similarity_loss(S, S, pos, n_views=V)
    (grad,) = torch.autograd.grad(loss, S)
    assert torch.equal(grad[pos], torch.zeros_like(grad[pos]))
    # changing the same-image similarities (in source and target) leaves the loss unchanged
    S2 = S.detach().clone()
    S2[pos] = torch.rand(int(pos.sum()), dtype=S2.dtype) * 2 - 1
    loss2, _ = bam_similarity_loss(S2, S2, pos, n_views=V)
    assert loss2.item() == loss.item()


def test_no_gradient_through_targets() -> None:
    z = [c.requires_grad_(True) for c in crops(4)]
    loss = bam_loss(z)
    grads = torch.autograd.grad(loss, z)

    zn = F.normalize(torch.cat(z), dim=1)
    S = zn @ zn[: VT * B].T
    P = bam_targets(S, positive_mask(V, B, VT))
    assert not P.requires_grad and P.grad_fn is None
    ref = explicit_loss(S, P[: 2 * B].split(B), positive_mask(V, B, VT), V)
    ref_grads = torch.autograd.grad(ref, z)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-12, rtol=0)


@pytest.mark.parametrize("masked", [True, False])
def test_identical_embeddings_give_constant_loss(masked: bool) -> None:
    n_unmasked = VT * B - (VT if masked else 0)
    for seed in range(3):
        same = torch.randn(D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).expand(B, D)
        loss = bam_loss([same] * V, mask_positives=masked)
        assert loss.item() == pytest.approx(math.log(n_unmasked), abs=1e-10)


def test_top_k_keeps_k_columns() -> None:
    S = similarities(5, batch=8)
    pos = positive_mask(V, 8, VT)
    P = bam_targets(S, pos)[: 2 * 8].split(8)
    for k in (1, 3, 5):
        kept = _keep_top_k(list(P), k)
        for p in kept:
            assert ((p > 0).sum(dim=1) == k).all()
            assert torch.allclose(p.sum(dim=1), torch.ones(8, dtype=p.dtype), atol=1e-12)
            assert torch.equal(p[pos[:8]], torch.zeros_like(p[pos[:8]]))
        # the same columns are kept for both global views (top-k of their average)
        assert torch.equal(kept[0] > 0, kept[1] > 0)
    # through the loss: same as the explicit cross-entropy with the top-k target
    loss, _ = bam_similarity_loss(S, S, pos, n_views=V, top_k=3)
    assert loss.item() == pytest.approx(explicit_loss(S, _keep_top_k(list(P), 3), pos, V).item(), abs=1e-12)
    assert _keep_top_k(list(P), 0) == list(P) and _keep_top_k(list(P), 1000) == list(P)


def test_distillation_variant() -> None:
    z = [c.requires_grad_(True) for c in crops(6)]
    # a teacher equal to the student gives the same value, but no gradient through the target columns
    loss = bam_loss(z, [c.detach() for c in z])
    assert loss.item() == pytest.approx(bam_loss(z).item(), abs=1e-12)
    zn = F.normalize(torch.cat(z), dim=1)
    cols = zn[: VT * B].detach()
    P = bam_targets(zn @ cols.T, positive_mask(V, B, VT))
    ref = explicit_loss(zn @ cols.T, P[: 2 * B].split(B), positive_mask(V, B, VT), V)
    for g, r in zip(torch.autograd.grad(loss, z), torch.autograd.grad(ref, z)):
        assert torch.allclose(g, r, atol=1e-12, rtol=0)
    # a teacher with only its global crops: Sinkhorn over the teacher's 2 B rows
    teacher = [c.detach() + 0.1 for c in z[:2]]
    assert torch.isfinite(bam_loss(z, teacher))


def test_module_records_column_mass_cv_and_float32_small_eps() -> None:
    loss_fn = BAMLoss(eps=0.005)
    z = crops(7, dtype=torch.float32)
    loss = loss_fn(z)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss_fn.last_column_mass_cv is not None and 0 <= float(loss_fn.last_column_mass_cv) < 1
    with torch.no_grad():  # exp(S / 0.005) overflows float32 in the scaling domain
        assert not torch.isfinite(torch.exp(torch.ones(1) / 0.005)).all()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: BAMLoss(n_global=3)(crops(0, n_views=2)), "needs at least 3"),
        (lambda: bam_loss(crops(0, n_views=1)), "needs at least 2"),
        (lambda: bam_loss([torch.randn(4, 3), torch.randn(5, 3)]), r"embeddings\[1\] has shape"),
        (lambda: bam_loss([torch.randn(4, 3), torch.randn(4, 2)]), r"embeddings\[1\] has shape"),
        (lambda: bam_loss([torch.randn(4), torch.randn(4)]), "must have shape"),
        (lambda: bam_loss(crops(0), [torch.randn(B, D)]), "teacher_embeddings has 1"),
        (lambda: bam_loss(crops(0), [torch.randn(B, 3)] * 2), r"teacher_embeddings\[0\]"),
        (lambda: bam_loss(crops(0, batch=1)), "at least 2 images"),
        (lambda: BAMLoss(temperature=0), "temperature"),
        (lambda: BAMLoss(eps=-1.0), "eps"),
        (lambda: BAMLoss(n_iters=1.5), "n_iters"),
        (lambda: bam_loss(crops(0), top_k=-1), "top_k"),
        (lambda: bam_targets(torch.zeros(3, 4), torch.zeros(3, 5, dtype=torch.bool)), "pos_mask"),
    ],
)
def test_bad_input_raises_one_line(call, match: str) -> None:
    with pytest.raises(GeosslError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
