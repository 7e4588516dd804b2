"""Exponential moving averages of weights (momentum teachers: MoCo, BYOL, DINO).

Update rule ``θ' ← m θ' + (1 − m) θ`` after each optimiser step, with the cosine momentum
schedule of BYOL (Grill et al. 2020): ``m_k = 1 − (1 − m_0)(cos(π k / K) + 1) / 2``.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(step: int, total_steps: int, base: float = 0.996, final: float = 1.0) -> float:
    """Momentum at ``step`` of ``total_steps``, rising from ``base`` to ``final`` on a half cosine."""
    if total_steps <= 0:
        return final
    progress = min(max(step / total_steps, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """In place ``teacher ← momentum · teacher + (1 − momentum) · student`` (parameters and float buffers)."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers()):
        if t.dtype.is_floating_point:
            t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
        else:
            t.copy_(s)


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen deep copy of ``student`` to be updated by :func:`ema_update`."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
