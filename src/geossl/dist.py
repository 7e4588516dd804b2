"""Distributed helpers: rank, world size and an all-gather that carries gradients.

``torch.distributed.all_gather`` returns tensors detached from the graph, so a contrastive loss
built on it only back-propagates into the local half of the batch. :func:`gather` uses the
autograd-aware collective (``torch.distributed.nn.functional.all_gather``) whose backward sums
the incoming gradients over processes and returns each process its own slice. Combined with
DDP's gradient averaging this gives exactly the single-process gradient of the global loss
(tested in ``tests/distributed``).
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
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


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
