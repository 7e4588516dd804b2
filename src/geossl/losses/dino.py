"""DINO: self-distillation with no labels (Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin, ICCV 2021).

The student predicts the centred and sharpened output of an EMA teacher (§3.1, eq. 2 and Alg. 1)::

    P_t(x) = softmax((g_t(x) - c) / tau_t),      P_s(x) = softmax(g_s(x) / tau_s)
    L = (1 / n_terms) sum_{u in global} sum_{v != u} mean_batch [ - P_t(x_u)^T log P_s(x_v) ]
    c <- m c + (1 - m) mean_{global crops, batch} g_t(x)                (after the loss, m = 0.9)

The teacher sees the global crops only, the student every crop (multi-crop); the pair of a crop with itself is
excluded, and ``n_terms`` counts the remaining pairs (authors' code, ``DINOLoss`` in ``main_dino.py``; lightly).
Centring prevents one dimension from dominating and sharpening (tau_t < tau_s) prevents the uniform collapse that
centring alone would cause (§5.3). Under DDP the center is the mean over the global batch: the sums and counts of
every process are all-reduced.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.losses.precision import float32_loss

__all__ = ["DINOLoss", "dino_loss", "teacher_temperature"]


def teacher_temperature(step: int, warmup_steps: int, start: float = 0.04, end: float = 0.07) -> float:
    """Teacher temperature with DINO's linear warm-up (paper App.: 0.04 -> 0.07 over the first 30 epochs).

    Same schedule as the authors' ``np.linspace(start, end, warmup_steps)`` followed by ``end``: ``start`` at
    step 0, ``end`` at step ``warmup_steps - 1`` and after. The unit of ``step`` is the caller's (DINO: epochs).

    Args:
        step: current step (>= 0).
        warmup_steps: length of the warm-up; 0 or 1 means no warm-up (always ``end``).
        start: temperature at step 0.
        end: temperature after the warm-up.
    """
    if warmup_steps <= 1 or step >= warmup_steps:
        return float(end)
    return float(start + (end - start) * max(step, 0) / (warmup_steps - 1))


@float32_loss
def dino_loss(
    teacher_out: Sequence[torch.Tensor] | torch.Tensor,
    student_out: Sequence[torch.Tensor] | torch.Tensor,
    center: torch.Tensor,
    teacher_temp: float,
    student_temp: float = 0.1,
) -> torch.Tensor:
    """DINO cross-entropy between centred, sharpened teacher outputs and student outputs (no center update).

    Args:
        teacher_out: teacher logits of the V_t global crops, V_t tensors (B, K) or one (V_t, B, K) tensor.
        student_out: student logits of all V_s crops, (B, K) each; ``student_out[v]`` for v < V_t must be the same
            crop as ``teacher_out[v]`` (that pair is excluded).
        center: center c, shape (K,) or broadcastable to (B, K).
        teacher_temp: tau_t (sharpening: smaller than ``student_temp``).
        student_temp: tau_s.

    Returns:
        Scalar loss (mean over pairs and the local batch). No gradient flows into the teacher outputs.
    """
    t = teacher_out if isinstance(teacher_out, torch.Tensor) else torch.stack(list(teacher_out))
    s = student_out if isinstance(student_out, torch.Tensor) else torch.stack(list(student_out))
    if t.dim() != 3 or s.dim() != 3 or t.shape[1:] != s.shape[1:]:
        raise GeosslError(
            f"teacher_out and student_out must be lists of (B, K) tensors with the same B and K, got stacked shapes "
            f"{tuple(t.shape)} and {tuple(s.shape)}."
        )
    n_t, n_s, batch = t.shape[0], s.shape[0], t.shape[1]
    n_terms = n_t * n_s - min(n_t, n_s)
    if n_terms == 0:
        raise GeosslError("DINO needs at least two crops (one teacher crop and another student crop); add a crop.")
    # float32 at least: logits / 0.04 overflow float16 (spec ssl_methods.md §1.9, known failure).
    dtype = torch.promote_types(s.dtype, torch.float32)
    p_t = F.softmax((t.detach().to(dtype) - center.to(dtype)) / teacher_temp, dim=-1)
    log_p_s = F.log_softmax(s.to(dtype) / student_temp, dim=-1)
    ce = -torch.einsum("tbk,sbk->ts", p_t, log_p_s)  # (V_t, V_s) summed over the batch
    same = torch.eye(n_t, n_s, dtype=torch.bool, device=ce.device)
    return ce.masked_fill(same, 0).sum() / (n_terms * batch)


class DINOLoss(nn.Module):
    """DINO loss with the center as a buffer updated by EMA after each call (Caron et al. 2021).

    Same conventions as the authors' code and ``lightly.loss.DINOLoss``. Defaults: student temperature 0.1,
    center momentum 0.9; teacher temperature 0.04 constant as in the authors' code, or the paper's linear warm-up
    0.04 -> 0.07 with ``teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_teacher_temp_steps=30`` (epochs) and
    ``forward(..., step=epoch)``. :class:`geossl.methods.dino.DINO` passes the temperature explicitly.

    Args:
        out_dim: output dimension K of the heads (65536 in the paper).
        student_temp: tau_s.
        teacher_temp: tau_t after the warm-up.
        warmup_teacher_temp: tau_t at step 0 of the warm-up.
        warmup_teacher_temp_steps: warm-up length (in the unit of ``step``); 0 disables it.
        center_momentum: m of the center EMA.
        gather: under DDP, center on the mean over every process' batch (all-reduce).

    Shapes:
        forward(teacher_out: V_t x (B, K), student_out: V_s x (B, K)) -> scalar; ``center`` is (1, K).

    Example:
        >>> loss_fn = DINOLoss(out_dim=64)
        >>> t = [torch.randn(8, 64) for _ in range(2)]
        >>> s = [torch.randn(8, 64, requires_grad=True) for _ in range(6)]
        >>> loss = loss_fn(t, s)
    """

    center: torch.Tensor

    def __init__(
        self,
        out_dim: int,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_steps: int = 0,
        center_momentum: float = 0.9,
        gather: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise GeosslError(f"out_dim must be a positive integer, got {out_dim!r}.")
        for name, v in (("student_temp", student_temp), ("teacher_temp", teacher_temp), ("warmup_teacher_temp", warmup_teacher_temp)):
            if not v > 0:
                raise GeosslError(f"{name} must be > 0, got {v}.")
        if not 0 <= center_momentum <= 1:
            raise GeosslError(f"center_momentum must be in [0, 1], got {center_momentum}.")
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_steps = int(warmup_teacher_temp_steps)
        self.center_momentum = center_momentum
        self.gather = gather
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_temperature(self, step: int | None = None) -> float:
        """tau_t at ``step`` of the warm-up (``teacher_temp`` when ``step`` is None)."""
        if step is None:
            return float(self.teacher_temp)
        return teacher_temperature(step, self.warmup_teacher_temp_steps, self.warmup_teacher_temp, self.teacher_temp)

    @float32_loss
    def forward(
        self,
        teacher_out: Sequence[torch.Tensor],
        student_out: Sequence[torch.Tensor],
        *,
        step: int | None = None,
        teacher_temp: float | None = None,
        update_center: bool = True,
    ) -> torch.Tensor:
        """Loss with the current center, then (by default) the center update.

        Args:
            teacher_out: teacher logits of the global crops, V_t tensors (B, K).
            student_out: student logits of all crops, V_s tensors (B, K), global crops first in the same order.
            step: step of the teacher-temperature warm-up (ignored when ``teacher_temp`` is given).
            teacher_temp: explicit tau_t.
            update_center: apply the EMA update of the center after computing the loss.
        """
        temp = float(teacher_temp) if teacher_temp is not None else self.teacher_temperature(step)
        loss = dino_loss(teacher_out, student_out, self.center, temp, self.student_temp)
        if update_center:
            self.update_center(teacher_out)
        return loss

    @torch.no_grad()
    def update_center(self, teacher_out: Sequence[torch.Tensor] | torch.Tensor) -> None:
        """``c <- m c + (1 - m) mean(teacher_out)``, the mean over crops and the (global) batch."""
        t = teacher_out if isinstance(teacher_out, torch.Tensor) else torch.stack(list(teacher_out))
        t = t.detach().reshape(-1, t.shape[-1]).to(self.center.dtype)
        # Sum and count reduced together (one collective), so unequal local batches still give the global mean.
        stats = torch.cat([t.sum(dim=0), t.new_tensor([t.shape[0]])])
        if self.gather and dist.is_distributed():
            torch_dist.all_reduce(stats, op=torch_dist.ReduceOp.SUM)
        batch_center = stats[:-1] / stats[-1]
        self.center.mul_(self.center_momentum).add_(batch_center[None, :], alpha=1 - self.center_momentum)

    def extra_repr(self) -> str:
        return (
            f"out_dim={self.center.shape[-1]}, student_temp={self.student_temp}, teacher_temp={self.teacher_temp}, "
            f"center_momentum={self.center_momentum}, gather={self.gather}"
        )
