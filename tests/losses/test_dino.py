"""DINO loss, center update and teacher-temperature schedule against lightly's ``DINOLoss``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geossl.errors import GeosslError
from geossl.losses.dino import DINOLoss, dino_loss, teacher_temperature

lightly_dino = pytest.importorskip("lightly.loss.dino_loss")


def outputs(seed: int, n_views: int, batch: int, k: int, scale: float = 3.0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(batch, k, generator=g) for _ in range(n_views)]


@pytest.mark.parametrize("n_student,batch,k", [(2, 8, 32), (8, 4, 64), (5, 16, 10)])
def test_loss_and_center_over_steps_match_lightly(n_student: int, batch: int, k: int) -> None:
    ref = lightly_dino.DINOLoss(output_dim=k, teacher_temp=0.04, student_temp=0.1, center_momentum=0.9)
    ours = DINOLoss(out_dim=k, teacher_temp=0.04, student_temp=0.1, center_momentum=0.9)
    for step in range(4):
        t = outputs(100 * step, 2, batch, k)
        s = [x.requires_grad_() for x in outputs(100 * step + 1, n_student, batch, k)]
        l_ref = ref(t, s)
        (g_ref,) = torch.autograd.grad(l_ref, s[-1])
        l_ours = ours(t, s)
        (g_ours,) = torch.autograd.grad(l_ours, s[-1])
        assert abs(l_ours.item() - l_ref.item()) < 1e-5 * max(1.0, abs(l_ref.item()))
        assert torch.allclose(g_ours, g_ref, atol=1e-6)
        # the center is updated after each loss, identically
        assert torch.allclose(ours.center.reshape(-1), ref.center.reshape(-1), atol=1e-6)
    # the center moved (so the comparison above was not between zeros)
    assert ours.center.abs().max() > 0.1


def test_teacher_temperature_warmup_matches_lightly_and_dino_schedule() -> None:
    ref = lightly_dino.DINOLoss(output_dim=16, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=30)
    ours = DINOLoss(out_dim=16, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_steps=30)
    # the authors' schedule: np.linspace(0.04, 0.07, 30) then 0.07
    schedule = np.concatenate([np.linspace(0.04, 0.07, 30), np.full(10, 0.07)])
    for epoch in (0, 1, 15, 29, 30, 39):
        assert ours.teacher_temperature(epoch) == pytest.approx(schedule[epoch], abs=1e-12)
    for epoch in (0, 7, 29, 35):
        t, s = outputs(epoch, 2, 6, 16), outputs(epoch + 50, 4, 6, 16)
        assert ours(t, s, step=epoch).item() == pytest.approx(ref(t, s, epoch=epoch).item(), abs=1e-5)
    assert teacher_temperature(5, 0, 0.04, 0.07) == 0.07
    assert ours.teacher_temperature() == 0.07


def test_explicit_teacher_temperature_matches_lightly() -> None:
    ref = lightly_dino.DINOLoss(output_dim=12)
    ours = DINOLoss(out_dim=12)
    t, s = outputs(1, 2, 5, 12), outputs(2, 6, 5, 12)
    assert ours(t, s, teacher_temp=0.055).item() == pytest.approx(ref(t, s, teacher_temp=0.055).item(), abs=1e-5)


def test_formula_written_out() -> None:
    """Loss = mean over the (t, s != t) pairs of the batch-mean cross-entropy, with the current center."""
    k, batch = 9, 7
    t, s = outputs(3, 2, batch, k), outputs(4, 5, batch, k)
    center = torch.randn(k, generator=torch.Generator().manual_seed(5))
    total, terms = 0.0, 0
    for i, ti in enumerate(t):
        p = torch.softmax((ti - center) / 0.05, dim=1)
        for j, sj in enumerate(s):
            if i == j:
                continue
            total += -(p * torch.log_softmax(sj / 0.1, dim=1)).sum(1).mean()
            terms += 1
    assert dino_loss(t, s, center, 0.05, 0.1).item() == pytest.approx((total / terms).item(), rel=1e-6)


def test_no_gradient_to_teacher_and_center_not_used_before_update() -> None:
    loss_fn = DINOLoss(out_dim=8)
    t = [x.requires_grad_() for x in outputs(5, 2, 4, 8)]
    s = [x.requires_grad_() for x in outputs(6, 3, 4, 8)]
    loss = loss_fn(t, s)
    loss.backward()
    assert all(x.grad is None for x in t) and all(x.grad is not None for x in s)
    # first call: center 0 during the loss, then c = 0.1 * mean of the teacher outputs
    expected = 0.1 * torch.stack([x.detach() for x in t]).mean(dim=(0, 1))
    assert torch.allclose(loss_fn.center[0], expected, atol=1e-7)


def test_bad_inputs_raise() -> None:
    with pytest.raises(GeosslError, match="out_dim"):
        DINOLoss(out_dim=0)
    with pytest.raises(GeosslError, match="teacher_temp"):
        DINOLoss(out_dim=4, teacher_temp=0)
    with pytest.raises(GeosslError, match="same B and K"):
        DINOLoss(out_dim=4)(outputs(0, 2, 3, 4), outputs(1, 3, 5, 4))
    with pytest.raises(GeosslError, match="two crops"):
        DINOLoss(out_dim=4)(outputs(0, 1, 3, 4), outputs(1, 1, 3, 4))


def test_float16_logits_stay_finite() -> None:
    t = [x.half() for x in outputs(7, 2, 4, 16, scale=30.0)]
    s = [x.half() for x in outputs(8, 4, 4, 16, scale=30.0)]
    loss = DINOLoss(out_dim=16)(t, s)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(DINOLoss(out_dim=16)([x.float() for x in t], [x.float() for x in s]).item(), rel=1e-5)
