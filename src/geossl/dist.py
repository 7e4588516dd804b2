"""Distributed helpers: rank, world size and an all-gather that carries gradients.

``torch.distributed.all_gather`` returns tensors detached from the graph, so a contrastive loss
built on it only back-propagates into the local part of the batch. :func:`gather` wraps it in an
autograd function whose backward sums the incoming gradients over processes (all-reduce) and
returns each process its own slice: every process holds ∂(Σ_r L_r)/∂z_local, and DDP's gradient
averaging then yields exactly the single-process gradient of the global mean loss (tested in
``tests/distributed``). A backward that does not sum (only the local term) is a known peer bug.
"""

from __future__ import annotations

import torch
import torch.distributed as torch_dist


def is_distributed() -> bool:
    """True when a process group is initialised and has more than one process."""
    return torch_dist.is_available() and torch_dist.is_initialized() and torch_dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return torch_dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """Rank of this process (0 without a process group)."""
    return torch_dist.get_rank() if is_distributed() else 0


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0, keeping gradients.

    Args:
        tensor: local tensor of shape (n, ...); n must be the same on every process.

    Returns:
        Tensor of shape (world_size * n, ...), rank r's block at rows ``[r*n, (r+1)*n)``.
        Without a process group the input is returned unchanged.
    """
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; all-reduce (sum) and slice backward."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(tensor) for _ in range(torch_dist.get_world_size())]
        torch_dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        torch_dist.all_reduce(grad, op=torch_dist.ReduceOp.SUM)
        start = torch_dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_sizes_consistent(n: int) -> bool:
    """Check that every process holds the same number of rows (a requirement of :func:`gather`)."""
    if not is_distributed():
        return True
    sizes = torch.tensor([n], dtype=torch.long)
    if torch_dist.get_backend() == "nccl":
        sizes = sizes.cuda()
    gathered = [torch.zeros_like(sizes) for _ in range(world_size())]
    torch_dist.all_gather(gathered, sizes)
    return all(int(s) == n for s in gathered)
