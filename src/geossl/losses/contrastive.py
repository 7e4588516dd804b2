"""Contrastive (InfoNCE-family) losses.

The core primitive is :func:`info_nce`, a positive-mask InfoNCE (spec ``ssl_methods.md`` §0.2):
for L2-normalised embeddings and a boolean positive mask,

    ℓ(a) = −(1/|P(a)|) Σ_{p∈P(a)} log[ exp(s_ap/τ) / Σ_{k≠a} exp(s_ak/τ) ],   L = mean_a ℓ(a).

NT-Xent (SimCLR) is an instance of it (:func:`nt_xent`); SupCon (labels as the mask) and the multi-modal losses,
not built yet, would be others with different masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geossl import dist
from geossl.losses.precision import float32_loss


@float32_loss
def info_nce(
    z: torch.Tensor,
    pos_mask: torch.Tensor,
    temperature: float,
    *,
    anchors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Positive-mask InfoNCE over all pairs of a set of embeddings.

    Args:
        z: embeddings, shape (n, D); normalised inside.
        pos_mask: boolean (m, n) positive mask for the anchors (rows); the diagonal of the
            anchors' own entries must be False.
        temperature: softmax temperature τ > 0.
        anchors: optional long tensor (m,) with the row of ``z`` of each anchor; default: all
            rows (m = n). Anchors may be a subset of ``z`` (the local rows under DDP) while
            the candidates are all rows of ``z``.

    Returns:
        Scalar loss: mean over anchors with at least one positive.
    """
    z = F.normalize(z, dim=1)
    if anchors is None:
        anchors = torch.arange(z.shape[0], device=z.device)
    logits = z[anchors] @ z.T / temperature  # (m, n)
    # Exclude each anchor from its own denominator; finfo.min keeps log_softmax finite.
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[torch.arange(len(anchors), device=z.device), anchors] = True
    logits = logits.masked_fill(self_mask, torch.finfo(logits.dtype).min)
    log_prob = F.log_softmax(logits, dim=1)
    pos = pos_mask.to(log_prob.dtype)
    n_pos = pos.sum(dim=1)
    has_pos = n_pos > 0
    per_anchor = -(log_prob * pos).sum(dim=1)[has_pos] / n_pos[has_pos]
    return per_anchor.mean()


@float32_loss
def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.1, *, gather: bool = True) -> torch.Tensor:
    """NT-Xent loss of SimCLR (Chen et al., ICML 2020, eq. 1), functional form.

    Each of the 2N views is an anchor; its positive is the other view of the same image and its
    negatives are the other 2N − 2 views. Under DDP (``gather=True`` and a process group
    initialised) the candidates are the views of every process, with gradients, so the loss
    equals the single-process loss on the global batch.

    Args:
        z_a: embeddings of the first views, shape (N, D).
        z_b: embeddings of the second views, shape (N, D), row i pairs with ``z_a[i]``.
        temperature: τ; 0.1 in the paper for ImageNet, 0.5 for CIFAR.
        gather: use the negatives of all processes when distributed.

    Returns:
        Scalar loss, the mean over the 2N anchors (of the global batch when distributed,
        local anchors averaged per process, which DDP then averages).
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"z_a and z_b must both be (N, D) with the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    n = z_a.shape[0]
    if gather and dist.is_distributed():
        all_a, all_b = dist.gather(z_a), dist.gather(z_b)
        offset = dist.rank() * n
    else:
        all_a, all_b, offset = z_a, z_b, 0
    total = all_a.shape[0]
    z = torch.cat([all_a, all_b], dim=0)  # (2T, D): views a then views b
    local = torch.arange(offset, offset + n, device=z.device)
    anchors = torch.cat([local, local + total])
    positives = torch.cat([local + total, local])
    pos_mask = torch.zeros(2 * n, 2 * total, dtype=torch.bool, device=z.device)
    pos_mask[torch.arange(2 * n, device=z.device), positives] = True
    return info_nce(z, pos_mask, temperature, anchors=anchors)


class NTXentLoss(nn.Module):
    """NT-Xent (normalised temperature-scaled cross-entropy) loss of SimCLR.

    Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of Visual
    Representations", ICML 2020. Works in a plain PyTorch loop; gathers negatives across
    processes when ``torch.distributed`` is initialised (``gather=False`` turns that off).

    Args:
        temperature: τ (default 0.1; the paper uses 0.5 on CIFAR-10).
        gather: use the negatives of all processes under DDP.

    Shapes:
        forward(z_a (N, D), z_b (N, D)) -> scalar.

    Example:
        >>> loss_fn = NTXentLoss(temperature=0.1)
        >>> loss = loss_fn(torch.randn(8, 128), torch.randn(8, 128))
    """

    def __init__(self, temperature: float = 0.1, gather: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather = gather

    @float32_loss
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        return nt_xent(z_a, z_b, self.temperature, gather=self.gather)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather={self.gather}"
