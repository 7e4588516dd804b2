"""Soft-dense OT contrastive loss ([B] §3.3, spec ssl_methods.md §2.3): hard-loss identity, target rows, unbalanced
matching on a scene with known crop geometry, entropic limit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch
import torch.nn.functional as F

from geossl.errors import GeosslError
from geossl.losses.dense_ot import (
    MATCHERS,
    DenseOTLoss,
    SoftDenseLoss,
    dense_targets,
    soft_dense_loss,
)

TAU = 0.2


def _patches(b: int, n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, d, generator=g, dtype=torch.float64), torch.randn(b, n, d, generator=g, dtype=torch.float64)


def _hard_dense_loss(za, zb, match, tau, image_negatives=False):
    """DenseCL's hard dense loss written out: -sum_i sum_j log softmax over the patches of B at t(j).

    ``match[i][j]`` is the matched patch t(j); with ``image_negatives`` the pooled view-B vectors of the other
    images join the denominator ([B] eq. 3.19).
    """
    B, n, _ = za.shape
    a = [[za[i, j] / za[i, j].norm() for j in range(n)] for i in range(B)]
    b = [[zb[i, k] / zb[i, k].norm() for k in range(n)] for i in range(B)]
    pooled = [zb[m].mean(0) / zb[m].mean(0).norm() for m in range(B)]
    total = 0.0
    for i in range(B):
        for j in range(n):
            num = math.exp(float(a[i][j] @ b[i][match[i][j]]) / tau)
            den = sum(math.exp(float(a[i][j] @ b[i][k]) / tau) for k in range(n))
            if image_negatives:
                den += sum(math.exp(float(a[i][j] @ pooled[m]) / tau) for m in range(B) if m != i)
            total -= math.log(num / den)
    return total


@pytest.mark.parametrize("image_negatives", [False, True])
def test_soft_dense_with_a_permutation_plan_equals_the_hard_dense_loss(image_negatives):
    za, zb = _patches(3, 6, 5, seed=0)  # random 6-patch examples (spec: identical values for both losses)
    g = torch.Generator().manual_seed(1)
    perms = [torch.randperm(6, generator=g) for _ in range(3)]
    targets = torch.stack([torch.eye(6, dtype=torch.float64)[p] for p in perms])  # (h w) * permutation plan
    soft = soft_dense_loss(za, zb, targets, TAU, image_negatives=image_negatives, reduction="sum")
    hard = _hard_dense_loss(za, zb, [p.tolist() for p in perms], TAU, image_negatives)
    assert float(soft) == pytest.approx(hard, rel=1e-12)
    mean = soft_dense_loss(za, zb, targets, TAU, image_negatives=image_negatives)
    assert float(mean) == pytest.approx(hard / 18, rel=1e-12)


def test_exact_and_argmax_matchers_give_the_hard_dense_loss():
    za, zb = _patches(2, 6, 5, seed=2)
    a, b = F.normalize(za, dim=-1), F.normalize(zb, dim=-1)
    cos = (a @ b.transpose(1, 2)).numpy()
    # exact OT with uniform marginals on a square problem = the assignment maximising the total cosine
    assignment = [scipy.optimize.linear_sum_assignment(-cos[i])[1].tolist() for i in range(2)]
    exact = dense_targets(za, zb, "exact")
    assert float(soft_dense_loss(za, zb, exact, TAU, reduction="sum")) == pytest.approx(
        _hard_dense_loss(za, zb, assignment, TAU), rel=1e-12
    )
    best = [cos[i].argmax(1).tolist() for i in range(2)]  # DenseCL's t(j) = argmax_k sim
    argmax = dense_targets(za, zb, "argmax")
    assert float(soft_dense_loss(za, zb, argmax, TAU, reduction="sum")) == pytest.approx(
        _hard_dense_loss(za, zb, best, TAU), rel=1e-12
    )


@pytest.mark.parametrize("matcher,eps", [("argmax", None), ("uniform", None), ("exact", None), ("entropic", 0.05),
                                         ("entropic", 1.0), ("entropic", 10.0)])
def test_balanced_target_rows_sum_to_one(matcher, eps):
    # (B, D, h, w) dense maps, as the method passes them
    g = torch.Generator().manual_seed(3)
    fa, fb = torch.randn(4, 8, 3, 3, generator=g, dtype=torch.float64), torch.randn(4, 8, 3, 3, generator=g, dtype=torch.float64)
    kw = {} if eps is None else {"eps": eps}
    targets = dense_targets(fa, fb, matcher, **kw)
    assert targets.shape == (4, 9, 9) and not targets.requires_grad
    assert torch.allclose(targets.sum(-1), torch.ones(4, 9, dtype=torch.float64), atol=1e-6)
    assert float(targets.min()) >= 0
    if matcher == "entropic":  # columns (patches of view B) receive mass 1 as well, up to the solver tolerance
        assert torch.allclose(targets.sum(-2), torch.ones(4, 9, dtype=torch.float64), atol=1e-5)


def _two_crops_of_a_scene(noise: float = 0.05, seed: int = 4):
    """A 6 x 8 grid of random patch features (the scene) and two 6 x 6 crops: view A = columns 0-5, view B =
    columns 2-7 (slightly perturbed). Patch (r, c) of A is patch (r, c - 2) of B for c >= 2; A's columns 0-1 and
    B's columns 4-5 are view-exclusive."""
    g = torch.Generator().manual_seed(seed)
    scene = F.normalize(torch.randn(1, 32, 6, 8, generator=g, dtype=torch.float64), dim=1)
    view_a = scene[..., 0:6]
    view_b = scene[..., 2:8] + noise * torch.randn(1, 32, 6, 6, generator=g, dtype=torch.float64)
    rows, cols = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    exclusive = torch.from_numpy((cols < 2).ravel())  # patches of A without a counterpart in B
    truth = torch.from_numpy((rows * 6 + cols - 2).ravel())  # matched patch of B, valid where not exclusive
    return view_a, view_b, exclusive, truth


def test_unbalanced_gives_view_exclusive_patches_much_less_mass():
    view_a, view_b, exclusive, truth = _two_crops_of_a_scene()
    mass = {}
    for matcher in MATCHERS:
        targets = dense_targets(view_a, view_b, matcher)[0]
        rows = targets.sum(-1)
        mass[matcher] = (float(rows[exclusive].mean()), float(rows[~exclusive].mean()))
        if matcher != "uniform":  # every matcher but uniform finds the ground-truth counterparts of the overlap
            accuracy = (targets[~exclusive].argmax(-1) == truth[~exclusive]).double().mean()
            assert float(accuracy) == 1.0, matcher
    for matcher in ("argmax", "uniform", "exact", "entropic"):
        assert mass[matcher][0] == pytest.approx(1.0, abs=1e-6)  # exclusive patches keep full weight
    exclusive_mass, matched_mass = mass["unbalanced"]
    assert matched_mass <= 1.0 + 1e-12
    assert exclusive_mass < 0.05 * matched_mass
    assert exclusive_mass < 0.05 * mass["argmax"][0]


def test_unbalanced_targets_are_pots_plan_with_rows_above_one_clipped():
    ot = pytest.importorskip("ot")
    # three patches of view B are copies of patch 0 of view A, so row 0 receives more than its marginal
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(6, 16, generator=g, dtype=torch.float64), dim=-1)
    b = F.normalize(a[[0, 0, 0, 1, 2, 3]] + 0.05 * torch.randn(6, 16, generator=g, dtype=torch.float64), dim=-1)
    cost = (1 - a @ b.T).clamp_min(0).numpy()
    plan = ot.unbalanced.sinkhorn_unbalanced(np.full(6, 1 / 6), np.full(6, 1 / 6), cost, 0.05, 0.05, reg_type="kl",
                                             numItermax=10000, stopThr=1e-12)
    rows = 6 * plan
    assert rows.sum(1).max() > 1.01 and rows.sum(1).min() < 0.5  # the case worth testing
    expected = rows / np.maximum(rows.sum(1, keepdims=True), 1.0)  # clipped at 1, never scaled up
    targets = dense_targets(a[None], b[None], "unbalanced", eps=0.05, reg_m=0.05, tol=1e-12)[0]
    assert np.abs(targets.numpy() - expected).max() < 1e-8


@pytest.mark.parametrize("eps", [10.0, 1000.0])
def test_entropic_with_large_eps_is_practically_uniform(eps):
    za, zb = _patches(2, 6, 5, seed=5)
    targets = dense_targets(za, zb, "entropic", eps=eps)
    # costs lie in [0, 2], so P_jk / (a_j b_k) lies within e^(+-2/eps) of 1 at convergence
    deviation = float((targets * 6 - 1).abs().max())
    assert deviation <= math.exp(2 / eps) - 1
    uniform = dense_targets(za, zb, "uniform")
    l_ent = float(soft_dense_loss(za, zb, targets, TAU))
    l_uni = float(soft_dense_loss(za, zb, uniform, TAU))
    assert l_ent == pytest.approx(l_uni, rel=0.25 if eps == 10 else 2e-3)
    assert deviation > 0  # not the uniform matcher itself


def _nt_xent_plain(za, zb, tau):
    """SimCLR's NT-Xent written as a cross-entropy over the 2N - 1 other views."""
    z = F.normalize(torch.cat([za, zb]), dim=1)
    n = za.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = [k for k in range(2 * n) if k != i]
        den = sum(math.exp(float(z[i] @ z[k]) / tau) for k in others)
        total -= math.log(math.exp(float(z[i] @ z[j]) / tau) / den)
    return total / (2 * n)


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_dense_ot_loss_mixes_global_nt_xent_and_the_dense_term(weight):
    g = torch.Generator().manual_seed(6)
    ga, gb = torch.randn(4, 8, generator=g, dtype=torch.float64), torch.randn(4, 8, generator=g, dtype=torch.float64)
    da, db = torch.randn(4, 8, 2, 3, generator=g, dtype=torch.float64), torch.randn(4, 8, 2, 3, generator=g, dtype=torch.float64)
    loss_fn = DenseOTLoss(temperature=TAU, dense_weight=weight, matcher="argmax")
    got = float(loss_fn(ga, gb, da, db))
    best = F.normalize(da.flatten(2).transpose(1, 2), dim=-1) @ F.normalize(db.flatten(2), dim=1)
    match = best.argmax(-1).tolist()
    hard = _hard_dense_loss(da.flatten(2).transpose(1, 2), db.flatten(2).transpose(1, 2), match, TAU) / 24
    expected = (1 - weight) * _nt_xent_plain(ga, gb, TAU) + weight * hard
    assert got == pytest.approx(expected, rel=1e-10)
    assert set(loss_fn.last_terms) == {"global", "dense", "target_mass"}


def test_targets_are_detached_and_gradients_finite_in_float32():
    g = torch.Generator().manual_seed(7)
    da = torch.randn(4, 16, 3, 3, generator=g, requires_grad=True)
    db = torch.randn(4, 16, 3, 3, generator=g, requires_grad=True)
    for matcher in MATCHERS:
        loss_fn = SoftDenseLoss(matcher=matcher, image_negatives=True)
        loss = loss_fn(da, db)
        grad_a, grad_b = torch.autograd.grad(loss, (da, db))
        assert torch.isfinite(loss) and torch.isfinite(grad_a).all() and torch.isfinite(grad_b).all()
        # the gradient is that of the cross-entropy with the targets held constant
        targets = dense_targets(da, db, matcher)
        ref = soft_dense_loss(da, db, targets, image_negatives=True)
        ref_a, ref_b = torch.autograd.grad(ref, (da, db))
        assert torch.allclose(grad_a, ref_a, atol=1e-6) and torch.allclose(grad_b, ref_b, atol=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: SoftDenseLoss(matcher="hungarian"),
        lambda: SoftDenseLoss(temperature=0),
        lambda: DenseOTLoss(dense_weight=1.5),
        lambda: dense_targets(torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 2)),
        lambda: dense_targets(torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3), "unbalanced", reg_m=0),
        lambda: soft_dense_loss(torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3), torch.ones(2, 9, 8)),
        lambda: SoftDenseLoss()(torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)),
    ],
)
def test_bad_arguments_raise_geossl_error(call):
    with pytest.raises(GeosslError):
        call()
