"""MoCo losses: InfoNCE against a queue of keys (v1/v2) and the symmetric in-batch loss of v3.

MoCo v1/v2 (He et al., CVPR 2020; Chen et al., arXiv 2003.04297), eq. 1 of the paper, for a normalised query q,
its positive key k₊ (momentum encoder, other view) and the K keys of a FIFO queue::

    L_q = − log [ exp(q·k₊/τ) / ( exp(q·k₊/τ) + Σ_{i=1..K} exp(q·k_i/τ) ) ]

The queue holds the keys of past batches, so the number of negatives is decoupled from the batch size. Under DDP
the keys of EVERY process are gathered before being enqueued (:meth:`MemoryQueue.enqueue`), as in the authors'
``concat_all_gather``: every rank then holds the same queue, equal to the single-process queue of the global batch
(a queue filled with local keys only is a known peer bug).

MoCo v3 (Chen, Xie, He, ICCV 2021, Algorithm 1): no queue; the keys are the momentum encoder's embeddings of the
other view of the batch, gathered over processes, and ``ctr(q, k) = 2τ · CE(q kᵀ/τ, labels = own index)`` is
symmetrised: ``L = ctr(q₁, k₂) + ctr(q₂, k₁)``.

Keys are constants in both losses (stop-gradient: they come from the momentum encoder).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.losses.precision import float32_loss, full_precision

__all__ = ["MemoryQueue", "MoCoLoss", "MoCoV3Loss", "moco_loss", "moco_v3_contrastive", "moco_v3_loss"]


class MemoryQueue(nn.Module):
    """Fixed-size FIFO queue of key embeddings with a ring pointer (MoCo's dictionary).

    Initialised with random unit vectors, as in the authors' code (they act as negatives until real keys
    replace them). The buffers are persistent, so a checkpoint restores the queue.

    Args:
        size: number of keys K.
        dim: key dimension D.

    Attributes:
        keys: (K, D) buffer; ``keys[ptr]`` is the oldest entry, overwritten next.
        ptr: 0-d long buffer, the next slot to write.
    """

    keys: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1:
            raise GeosslError(f"queue size must be >= 1, got {size}")
        if dim < 1:
            raise GeosslError(f"queue dim must be >= 1, got {dim}")
        self.size, self.dim = int(size), int(dim)
        self.register_buffer("keys", F.normalize(torch.randn(self.size, self.dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, gather: bool = True) -> None:
        """Write ``keys`` (n, D) over the oldest entries.

        Args:
            keys: new keys (n, D); stored as given (normalise them first).
            gather: under DDP, enqueue the keys of all processes in rank order (every rank must call this).

        The pointer wraps around, so K need not be a multiple of the batch (when it is, the slots are the
        authors' ``queue[ptr:ptr + n]``). With n > K only the newest K keys are kept.
        """
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise GeosslError(f"keys must be (n, {self.dim}), got {tuple(keys.shape)}")
        keys = keys.detach()
        if gather and dist.is_distributed():
            keys = dist.gather(keys)
        n = keys.shape[0]
        skip = max(0, n - self.size)
        keys = keys[skip:]
        # Slots computed on the device from the pointer buffer: no host synchronisation per step.
        slots = (self.ptr + skip + torch.arange(keys.shape[0], device=self.keys.device)) % self.size
        self.keys.index_copy_(0, slots, keys.to(self.keys.dtype))
        self.ptr.copy_((self.ptr + n) % self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"


@float32_loss
def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo InfoNCE of queries against their positive keys and a bank of negative keys.

    Args:
        q: queries (N, D), with gradient; normalised inside.
        k: positive keys (N, D), row i for ``q[i]``; normalised inside, no gradient.
        queue: negative keys (K, D), already normalised.
        temperature: τ.

    Returns:
        Scalar, mean over the N queries of the (1 + K)-way cross-entropy with the positive at index 0.
    """
    if q.dim() != 2 or q.shape != k.shape:
        raise GeosslError(f"q and k must both be (N, D) with the same shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    l_pos = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
    l_neg = q @ queue.to(q.dtype).T  # (N, K)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


class MoCoLoss(nn.Module):
    """MoCo v1/v2 loss: InfoNCE with a queue of negatives from past batches.

    He, Fan, Wu, Xie, Girshick, "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020;
    Chen, Fan, Girshick, He, "Improved Baselines with Momentum Contrastive Learning", 2020. Equals
    ``lightly.loss.NTXentLoss(memory_bank_size=(K, D))`` (same queue).

    ``forward`` does not modify the queue (autograd still needs it for the backward pass). Call
    :meth:`enqueue` with the step's keys after the backward pass, as the methods do in
    ``on_optimizer_step``; this is also MoCo's order: optimiser step, momentum update, enqueue.

    Args:
        temperature: τ; 0.07 in MoCo v1, 0.2 in MoCo v2.
        queue_size: K; 65 536 in the papers (ImageNet).
        dim: key dimension D (the projector's output).
        gather: under DDP, enqueue the keys of all processes.

    Shapes:
        forward(q (N, D), k (N, D)) -> scalar; enqueue(k (N, D)).

    Example:
        >>> loss_fn = MoCoLoss(temperature=0.2, queue_size=4096, dim=128)
        >>> q, k = torch.randn(8, 128, requires_grad=True), torch.randn(8, 128)
        >>> loss_fn(q, k).backward()
        >>> loss_fn.enqueue(k)
    """

    def __init__(self, temperature: float = 0.2, queue_size: int = 65536, dim: int = 128, gather: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise GeosslError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.gather = gather
        self.queue = MemoryQueue(queue_size, dim)

    @float32_loss
    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return moco_loss(q, k, self.queue.keys, self.temperature)

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor) -> None:
        """Normalise the keys (N, D) and push them (gathered over processes) into the queue."""
        self.queue.enqueue(F.normalize(full_precision(k.detach()), dim=1), gather=self.gather)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather={self.gather}"


@float32_loss
def moco_v3_contrastive(q: torch.Tensor, k: torch.Tensor, temperature: float = 0.2, gather: bool = True) -> torch.Tensor:
    """One direction of the MoCo v3 loss, ``ctr(q, k) = 2τ · CE(q kᵀ/τ, own index)`` (Algorithm 1).

    Args:
        q: queries (N, D) of the local batch, with gradient; normalised inside.
        k: keys (N, D) of the other view, no gradient; normalised inside.
        temperature: τ.
        gather: under DDP, the candidates are the keys of every process (the positive of local query i is
            global key ``rank · N + i``).

    Returns:
        Scalar, mean over the local queries (DDP's averaging gives the global mean).
    """
    if q.dim() != 2 or q.shape != k.shape:
        raise GeosslError(f"q and k must both be (N, D) with the same shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    offset = 0
    if gather and dist.is_distributed():
        k = dist.gather(k)
        offset = dist.rank() * q.shape[0]
    logits = q @ k.T / temperature
    labels = torch.arange(offset, offset + q.shape[0], device=q.device)
    return 2 * temperature * F.cross_entropy(logits, labels)


@float32_loss
def moco_v3_loss(
    q_a: torch.Tensor, q_b: torch.Tensor, k_a: torch.Tensor, k_b: torch.Tensor, temperature: float = 0.2, gather: bool = True
) -> torch.Tensor:
    """Symmetric MoCo v3 loss ``ctr(q_a, k_b) + ctr(q_b, k_a)``; all inputs (N, D), keys without gradient."""
    return moco_v3_contrastive(q_a, k_b, temperature, gather) + moco_v3_contrastive(q_b, k_a, temperature, gather)


class MoCoV3Loss(nn.Module):
    """MoCo v3 loss: symmetric InfoNCE of the queries against the momentum keys of the batch.

    Chen, Xie, He, "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021.

    Args:
        temperature: τ; 0.2 in the ViT recipe (the authors' ResNet-50 recipe uses 1.0).
        gather: under DDP, use the keys of all processes as candidates.

    Shapes:
        forward(q_a (N, D), q_b (N, D), k_a (N, D), k_b (N, D)) -> scalar.

    Example:
        >>> loss_fn = MoCoV3Loss(temperature=0.2)
        >>> q_a, q_b, k_a, k_b = torch.randn(4, 8, 256).unbind()
        >>> loss = loss_fn(q_a, q_b, k_a, k_b)
    """

    def __init__(self, temperature: float = 0.2, gather: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise GeosslError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.gather = gather

    @float32_loss
    def forward(self, q_a: torch.Tensor, q_b: torch.Tensor, k_a: torch.Tensor, k_b: torch.Tensor) -> torch.Tensor:
        return moco_v3_loss(q_a, q_b, k_a, k_b, self.temperature, self.gather)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather={self.gather}"
