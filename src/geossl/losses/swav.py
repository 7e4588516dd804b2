"""SwAV: swapped prediction of Sinkhorn codes (Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, NeurIPS 2020).

For every global crop s, the codes ``q_s`` (B, K) are the entropic OT plan between the batch and K prototypes with
equal prototype usage (equipartition), computed without gradient by a few Sinkhorn iterations on the prototype
scores (eq. 3 and Alg. 1 of the paper)::

    Q = diag(u) exp(S / eps) diag(v),   rows (samples) sum to 1, columns (prototypes) sum to B / K

Every other crop t (global or local, "multi-crop") must predict them from its own scores (eq. 1-2)::

    l(z_t, q_s) = - sum_k q_s^(k) log softmax_k(z_t^T c_k / tau)
    L = (1 / V_g) sum_{s in global} (1 / (V - 1)) sum_{t != s} mean_batch l(z_t, q_s)

The 1/(V - 1) and 1/V_g averages follow the authors' code (``main_swav.py``) and lightly; the paper writes plain
sums, which only rescales the loss. Under DDP the codes are computed over the global batch (the rows of every
process, plus the queued rows) by :func:`geossl.ot.distributed.distributed_sinkhorn`; each process then
averages the loss over its own samples and DDP's gradient averaging gives the single-process gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from geossl import dist
from geossl.errors import GeosslError
from geossl.losses.precision import float32_loss
from geossl.ot.distributed import distributed_sinkhorn
from geossl.ot.sinkhorn import sinkhorn

__all__ = ["SwAVLoss", "SwAVQueue", "swav_codes", "swav_loss"]


@torch.no_grad()
@float32_loss
def swav_codes(
    scores: torch.Tensor,
    eps: float = 0.05,
    n_iters: int = 3,
    *,
    queue_scores: torch.Tensor | None = None,
    gather: bool = True,
) -> torch.Tensor:
    """SwAV codes: equipartitioned soft assignments of samples to prototypes (Caron et al. 2020, Alg. 1).

    Runs SwAV's Sinkhorn-Knopp in the log domain on the cost ``-scores``: uniform prototype marginal 1/K, uniform
    sample marginal 1/N (N samples over all processes, queue included), prototypes normalised first and samples
    last, so that every returned row sums to exactly 1.

    Args:
        scores: prototype scores ``z^T c_k`` of the local batch, shape (B, K) (normalised z and prototypes).
        eps: entropic regularisation epsilon (0.05 in the paper; smaller is sharper).
        n_iters: Sinkhorn iterations (3 in the paper).
        queue_scores: optional scores of queued past embeddings, shape (L, K): they join the Sinkhorn problem (so
            that a small batch can still be spread over many prototypes) but get no codes back.
        gather: under DDP, solve one problem over the rows of every process (the paper's distributed Sinkhorn);
            otherwise each process balances its own rows.

    Returns:
        Codes (B, K), rows summing to 1, no gradient, dtype of ``scores``.
    """
    rows = scores.detach()
    if queue_scores is not None:
        rows = torch.cat([rows, queue_scores.detach().to(rows.dtype)])
    if gather:
        codes = distributed_sinkhorn(-rows, eps, n_iters=n_iters, last="rows", scale="rows")
    else:
        # Same iteration on one process: prototypes first = rows first on the transposed problem.
        codes = sinkhorn(None, None, -rows.T, eps, n_iters=n_iters, grad="detach").T * rows.shape[0]
    return codes[: scores.shape[0]]


@float32_loss
def swav_loss(
    global_scores: Sequence[torch.Tensor],
    local_scores: Sequence[torch.Tensor] = (),
    *,
    queue_scores: Sequence[torch.Tensor] | None = None,
    temperature: float = 0.1,
    eps: float = 0.05,
    n_iters: int = 3,
    gather: bool = True,
) -> torch.Tensor:
    """SwAV swapped-prediction loss over multi-crop views, functional form of :class:`SwAVLoss`.

    Args:
        global_scores: prototype scores of the V_g >= 1 global crops, each (B, K); they provide the codes.
        local_scores: prototype scores of the local crops, each (B, K); they only predict.
        queue_scores: optional queued scores, one (L, K) tensor per global crop.
        temperature: softmax temperature tau of the predictions (0.1).
        eps: Sinkhorn epsilon (0.05).
        n_iters: Sinkhorn iterations (3).
        gather: compute the codes over every process under DDP.

    Returns:
        Scalar loss (mean over the local batch; DDP's gradient averaging makes it the global mean).
    """
    global_scores, local_scores = list(global_scores), list(local_scores)
    _check_scores(global_scores, local_scores, queue_scores)
    views = global_scores + local_scores
    # Upcast so that float16 logits divided by tau = 0.1 cannot overflow (spec ssl_methods.md §1.8).
    dtype = torch.promote_types(views[0].dtype, torch.float32)
    log_probs = [F.log_softmax(s.to(dtype) / temperature, dim=1) for s in views]
    loss = views[0].new_zeros((), dtype=dtype)
    for i, s in enumerate(global_scores):
        q = swav_codes(s, eps, n_iters, queue_scores=None if queue_scores is None else queue_scores[i], gather=gather)
        q = q.to(dtype)
        sub = sum(-(q * log_probs[t]).sum(dim=1).mean() for t in range(len(views)) if t != i)
        loss = loss + sub / (len(views) - 1)
    return loss / len(global_scores)


def _check_scores(
    global_scores: list[torch.Tensor], local_scores: list[torch.Tensor], queue_scores: Sequence[torch.Tensor] | None
) -> None:
    if len(global_scores) == 0:
        raise GeosslError("global_scores is empty; pass the prototype scores of at least one global crop.")
    if len(global_scores) + len(local_scores) < 2:
        raise GeosslError("SwAV needs at least two crops in total; add a global or local crop's scores.")
    ref = global_scores[0]
    if ref.dim() != 2:
        raise GeosslError(f"scores must have shape (B, K), got {tuple(ref.shape)} for global_scores[0].")
    for name, group in (("global_scores", global_scores), ("local_scores", local_scores)):
        for i, s in enumerate(group):
            if s.shape != ref.shape:
                raise GeosslError(
                    f"{name}[{i}] has shape {tuple(s.shape)} but global_scores[0] has {tuple(ref.shape)}; every crop "
                    "must score the same B images against the same K prototypes."
                )
    if queue_scores is not None:
        if len(queue_scores) != len(global_scores):
            raise GeosslError(
                f"queue_scores has {len(queue_scores)} entries for {len(global_scores)} global crops; pass one per global crop."
            )
        for i, q in enumerate(queue_scores):
            if q.dim() != 2 or q.shape[1] != ref.shape[1]:
                raise GeosslError(f"queue_scores[{i}] must have shape (L, {ref.shape[1]}), got {tuple(q.shape)}.")


class SwAVLoss(nn.Module):
    """SwAV loss: swapped prediction of equipartitioned Sinkhorn codes, with multi-crop and an optional queue.

    Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments", NeurIPS 2020.
    Same conventions as the authors' code and ``lightly.loss.SwaVLoss`` (temperature 0.1, ``sinkhorn_epsilon``
    0.05, 3 ``sinkhorn_iterations``, prototypes normalised before samples, per-crop averages); the codes are
    computed in the log domain instead of SwAV's scaling domain (same result, no overflow of ``exp(S / eps)``).

    Args:
        temperature: tau of the predicted distribution softmax(z^T C / tau).
        sinkhorn_eps: epsilon of the Sinkhorn codes.
        sinkhorn_iters: number of Sinkhorn iterations.
        gather: under DDP, compute the codes over the global batch (every process' rows and queue rows).

    Shapes:
        forward(global_scores: V_g x (B, K), local_scores: V_l x (B, K) = (), queue_scores: V_g x (L, K) or None)
        -> scalar. Scores are ``normalize(z) @ normalize(C).T``.

    Example:
        >>> loss_fn = SwAVLoss()
        >>> s = [torch.nn.functional.normalize(torch.randn(8, 16), dim=1) for _ in range(4)]
        >>> loss = loss_fn(s[:2], s[2:])
    """

    def __init__(self, temperature: float = 0.1, sinkhorn_eps: float = 0.05, sinkhorn_iters: int = 3, gather: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise GeosslError(f"temperature must be > 0, got {temperature}.")
        if sinkhorn_eps <= 0:
            raise GeosslError(f"sinkhorn_eps must be > 0, got {sinkhorn_eps}.")
        if isinstance(sinkhorn_iters, bool) or not isinstance(sinkhorn_iters, int) or sinkhorn_iters < 1:
            raise GeosslError(f"sinkhorn_iters must be a positive integer, got {sinkhorn_iters!r}.")
        self.temperature = temperature
        self.sinkhorn_eps = sinkhorn_eps
        self.sinkhorn_iters = sinkhorn_iters
        self.gather = gather

    @float32_loss
    def forward(
        self,
        global_scores: Sequence[torch.Tensor],
        local_scores: Sequence[torch.Tensor] = (),
        queue_scores: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        return swav_loss(
            global_scores,
            local_scores,
            queue_scores=queue_scores,
            temperature=self.temperature,
            eps=self.sinkhorn_eps,
            n_iters=self.sinkhorn_iters,
            gather=self.gather,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, sinkhorn_eps={self.sinkhorn_eps}, sinkhorn_iters={self.sinkhorn_iters}, gather={self.gather}"


class SwAVQueue(nn.Module):
    """First-in first-out queue of past embeddings of the global crops (SwAV, §4.1 "small batches").

    With small batches, B samples cannot be spread over K prototypes evenly; SwAV then adds the embeddings of
    previous batches to the Sinkhorn problem (3840 of them for batches of 256, from epoch 15 on). They are scored
    against the *current* prototypes at each step, and get no codes back.

    Under DDP the queue is global and identical on every process: :meth:`push` all-gathers the embeddings of every
    process (in rank order, as the single-process batch), and :meth:`scores` returns only this process' share of
    the queued rows (rows ``rank::world_size``), so that the distributed Sinkhorn sees every queued embedding
    exactly once: the global problem is the single-process one. (The authors keep one queue per process instead;
    DDP's broadcast of module buffers from rank 0 would silently replace such local queues by copies of rank 0's.)

    Args:
        length: embeddings kept per global crop, in total over the processes (the paper's 3840).
        dim: embedding dimension D.
        n_views: number of global crops V_g.
        gather: gather the pushed embeddings over processes under DDP.

    Shapes:
        push(embeddings: V_g x (B, D)); scores(prototypes (K, D)) -> V_g x (L_local, K) once full, else None.
    """

    embeddings: torch.Tensor
    count: torch.Tensor

    def __init__(self, length: int, dim: int, n_views: int = 2, gather: bool = True) -> None:
        super().__init__()
        for name, v in (("length", length), ("dim", dim), ("n_views", n_views)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise GeosslError(f"{name} must be a positive integer, got {v!r}.")
        self.length = length
        self.gather = gather
        self.register_buffer("embeddings", torch.zeros(n_views, length, dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @property
    def full(self) -> bool:
        """Whether ``length`` embeddings were pushed (the authors' code uses the queue only from then on)."""
        return int(self.count) >= self.length

    @torch.no_grad()
    def push(self, embeddings: Sequence[torch.Tensor]) -> None:
        """Prepend the newest embeddings (one (B, D) tensor per global crop), dropping the oldest.

        Under DDP every process must call it with the same B (the embeddings are all-gathered).
        """
        if len(embeddings) != self.embeddings.shape[0]:
            raise GeosslError(f"push got {len(embeddings)} tensors for a queue of {self.embeddings.shape[0]} global crops.")
        new = torch.stack([e.detach().to(self.embeddings.dtype) for e in embeddings])
        if new.shape[-1] != self.embeddings.shape[-1]:
            raise GeosslError(f"push got embeddings of dim {new.shape[-1]}, the queue holds dim {self.embeddings.shape[-1]}.")
        if self.gather and dist.is_distributed():
            # (V, B, D) -> (V, world * B, D), rank r's rows at [r * B, (r + 1) * B) as in the global batch
            new = dist.gather(new.transpose(0, 1).contiguous()).transpose(0, 1)
        self.embeddings.copy_(torch.cat([new, self.embeddings], dim=1)[:, : self.length])
        self.count.add_(new.shape[1])

    @torch.no_grad()
    def scores(self, prototypes: torch.Tensor) -> list[torch.Tensor] | None:
        """Scores of this process' share of the queue against ``prototypes`` (K, D), per crop; None until full."""
        if not self.full:
            return None
        w = prototypes.detach().to(self.embeddings.dtype)
        rows = self.embeddings
        if self.gather and dist.is_distributed():
            rows = rows[:, dist.rank() :: dist.world_size()]
        return [e @ w.T for e in rows]
