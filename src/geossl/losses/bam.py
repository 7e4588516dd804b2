"""BAM: Balanced self-Attention Matching (Shalam & Korman, "Unsupervised Representation Learning by Balanced Self
Attention Matching", ECCV 2024, arXiv 2408.02014).

Instead of matching the embeddings of two views, BAM matches their *self-attention* vectors, the distributions of
similarities to the augmented images of the whole batch, to a globally balanced, entropy-regularised version of
them. With B images, V crops each (V_g global first), L2-normalised embeddings z (rows crop-major, V B of them) and
targets t = the first V_t crops (gathered over processes, crop-major: crop c of every process, then crop c + 1),
K_t = V_t B world columns::

    S = z t^T                                   (V B x K_t cosine similarities)
    pos_ab = column b is a crop of row a's image (the row's own crop included)
    log A = log_softmax_row( mask(S / tau, pos) )            source, with gradient; masked logits = finfo.min
    P     = Sinkhorn(exp(mask(S / eps, pos)))                target, no gradient; masked entries exactly 0
    L = (1 / V_g) sum_{v < V_g} (1 / (V - 1)) sum_{s != v} (1 / B) sum_i [ - sum_{j not in pos(i)} P^(v)_ij log A^(s)_ij ]

The target follows the authors' code (``bam/bam_loss.py``, SwAV-style scaling): ``Q = exp(S/eps - max)``,
``Q <- Q / sum Q``, then ``n_iters`` times "scale every target column to mass 1/(K_t - V_t), scale every query row to
mass 1/N_q", and finally every row normalised to 1. Here it runs in the log domain (no overflow of
``exp(S / eps)``, exact zeros at masked entries), with the same result: a uniform column mass (whatever its value,
1/(K_t - V_t) or 1/K_t) and the global normalisation are constant factors that the next row scaling cancels, so

    g_j <- - logsumexp_i(x_ij + f_i)   (columns: every query row of every process)
    f_i <- - logsumexp_j(x_ij + g_j)   (rows: local)               x = S / eps (masked: -inf)
    P_ij = exp(x_ij + g_j + f_i)        rows sum to 1

Column sums, and so column masses, are *global*: under DDP the column log-sum-exp is all-reduced over processes
(max, then sum of exponentials), the rows stay local, and the result equals the single-process one on the whole
batch. ``n_iters = 0`` gives the plain softmax target (the paper's "no balancing" ablation). Each process averages
its loss over its own images; with the targets gathered through :func:`geossl.dist.gather` (gradient summed over
processes) DDP's gradient averaging then equals the single-process gradient.

Distillation variant (authors' ``DistillBAMLoss``): the columns are the teacher's target crops, the Sinkhorn target
uses teacher-teacher similarities and the source softmax student-teacher similarities.
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

__all__ = ["BAMLoss", "bam_loss", "bam_similarity_loss", "bam_targets", "column_mass_cv", "positive_mask"]


def positive_mask(
    n_views: int, batch: int, n_targets: int, *, world_size: int = 1, rank: int = 0, device: torch.device | None = None
) -> torch.Tensor:
    """Same-image mask of BAM's similarity matrix.

    Rows are the ``n_views * batch`` local crops (crop-major: crop v of local image i is row ``v * batch + i``);
    columns are the ``n_targets * batch * world_size`` gathered target crops (crop c of global image g is column
    ``c * batch * world_size + g``, with global image ``g = rank * batch + i``).

    Args:
        n_views: crops per image in the rows, V.
        batch: local images per process, B.
        n_targets: target crops per image, V_t.
        world_size: number of processes whose targets are gathered.
        rank: this process' rank.
        device: device of the mask.

    Returns:
        Bool tensor (V B, V_t B world_size), True where the column is a crop of the row's image.
    """
    n_global_images = batch * world_size
    image_of_row = torch.arange(batch, device=device).repeat(n_views) + rank * batch  # (V B,)
    image_of_col = torch.arange(n_global_images, device=device).repeat(n_targets)  # (V_t B W,)
    return image_of_row[:, None] == image_of_col[None, :]


def _logsumexp_global(x: torch.Tensor, dim: int, reduce: bool) -> torch.Tensor:
    """``logsumexp`` along ``dim`` that tolerates all -inf slices, optionally summed over processes.

    With ``reduce``, the slices are the concatenation of every process' ``x`` along ``dim`` (all-reduce of the max,
    then of the sum of exponentials). A slice that is -inf everywhere returns -inf.
    """
    m = x.amax(dim=dim, keepdim=True)
    if reduce:
        torch_dist.all_reduce(m, op=torch_dist.ReduceOp.MAX)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s = torch.exp(x - m).sum(dim=dim, keepdim=True)
    if reduce:
        torch_dist.all_reduce(s, op=torch_dist.ReduceOp.SUM)
    return (m + torch.log(s)).squeeze(dim)


@torch.no_grad()
@float32_loss
def bam_targets(
    S: torch.Tensor,
    pos_mask: torch.Tensor | None,
    eps: float = 0.05,
    n_iters: int = 3,
    *,
    gather: bool = True,
) -> torch.Tensor:
    """BAM's balanced self-attention target: balanced Sinkhorn on ``exp(S / eps)`` with the positives removed.

    Log-domain form of the authors' scaling iterations (see the module docstring): ``n_iters`` times, every target
    column is scaled to equal mass (over the query rows of *every* process under DDP), then every query row to
    equal mass; finally every row is normalised to a distribution. Masked entries are exactly 0.

    Args:
        S: similarities of the local query rows to the (gathered) target columns, shape (N, K).
        pos_mask: bool (N, K), True for the entries to remove (same-image pairs), or None for no masking.
        eps: entropic regularisation epsilon (0.05 in the paper; smaller is sharper).
        n_iters: Sinkhorn iterations (3 in the paper); 0 gives the plain row softmax of ``S / eps``.
        gather: under DDP, balance the columns over the rows of every process (the authors' distributed Sinkhorn);
            otherwise each process balances its own rows. Ignored without a process group (world size 1, any
            device).

    Returns:
        P (N, K) in the dtype of ``S`` (at least float32), rows summing to 1, no gradient. A row whose every entry
        is masked is all zeros.
    """
    if S.dim() != 2:
        raise GeosslError(f"S must have shape (N, K), got {tuple(S.shape)}.")
    if pos_mask is not None and pos_mask.shape != S.shape:
        raise GeosslError(f"pos_mask has shape {tuple(pos_mask.shape)} but S has {tuple(S.shape)}; they must match.")
    if eps <= 0:
        raise GeosslError(f"eps must be > 0, got {eps}.")
    dtype = torch.promote_types(S.dtype, torch.float32)
    x = S.detach().to(dtype) / eps
    if pos_mask is not None:
        x = x.masked_fill(pos_mask, float("-inf"))
    reduce = gather and dist.is_distributed()
    f = torch.zeros(x.shape[0], 1, dtype=dtype, device=x.device)
    g = torch.zeros(1, x.shape[1], dtype=dtype, device=x.device)
    for _ in range(n_iters):
        lse = _logsumexp_global(x + f, 0, reduce)  # column step (global)
        g = torch.where(torch.isfinite(lse), -lse, torch.zeros_like(lse))[None, :]
        lse = _logsumexp_global(x + g, 1, False)  # row step (local rows)
        f = torch.where(torch.isfinite(lse), -lse, torch.zeros_like(lse))[:, None]
    # Final row normalisation (a no-op after a row step, the plain softmax when n_iters = 0).
    logits = x + g
    lse = _logsumexp_global(logits, 1, False)
    return torch.exp(logits - torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))[:, None])


@torch.no_grad()
def column_mass_cv(P: torch.Tensor, *, gather: bool = True) -> torch.Tensor:
    """Coefficient of variation (std / mean) of the column masses ``sum_i P_ij`` of a target matrix.

    0 for a perfectly balanced target; under DDP (``gather``) the column sums run over every process' rows.

    Args:
        P: target (N, K).
        gather: sum the columns over processes under DDP.

    Returns:
        Scalar tensor.
    """
    mass = P.detach().sum(dim=0)
    if gather and dist.is_distributed():
        torch_dist.all_reduce(mass, op=torch_dist.ReduceOp.SUM)
    return mass.std(unbiased=False) / mass.mean().clamp_min(torch.finfo(mass.dtype).tiny)


def _keep_top_k(P: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Authors' top-k option: keep the k columns of highest average target over the global views, renormalise."""
    if k <= 0 or k >= P[0].shape[1]:
        return P
    idx = torch.stack(P).mean(dim=0).topk(k, dim=1).indices
    keep = torch.zeros_like(P[0], dtype=torch.bool).scatter_(1, idx, True)
    out = []
    for p in P:
        p = torch.where(keep, p, torch.zeros_like(p))
        out.append(p / p.sum(dim=1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny))
    return out


@float32_loss
def bam_similarity_loss(
    source_sim: torch.Tensor,
    target_sim: torch.Tensor,
    pos_mask: torch.Tensor | None,
    *,
    n_views: int,
    n_global: int = 2,
    temperature: float = 0.1,
    eps: float = 0.05,
    n_iters: int = 3,
    top_k: int = 0,
    gather: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BAM loss from similarity matrices (the core of :func:`bam_loss`).

    Args:
        source_sim: similarities of every local crop to the target columns, (V B, K), rows crop-major; carries the
            gradient.
        target_sim: similarities used for the Sinkhorn target, (T B, K) with n_global <= T <= V, rows crop-major
            (``source_sim`` itself, or teacher-teacher similarities in the distillation variant); detached here.
        pos_mask: bool (V B, K) same-image mask (:func:`positive_mask`), or None for no masking.
        n_views: V.
        n_global: V_g, the crops whose rows give targets (the first ones).
        temperature: tau of the source softmax.
        eps: Sinkhorn epsilon.
        n_iters: Sinkhorn iterations.
        top_k: keep only the k target columns of highest average over the global views (0: all).
        gather: balance the target columns over every process under DDP.

    Returns:
        (loss, P): the scalar loss (mean over the local images) and the full target (T B, K), no gradient.
    """
    rows = source_sim.shape[0]
    if rows % n_views:
        raise GeosslError(f"source_sim has {rows} rows, not a multiple of n_views={n_views}.")
    batch = rows // n_views
    n_tgt_rows = target_sim.shape[0] // batch if batch else 0
    if target_sim.shape[1] != source_sim.shape[1] or target_sim.shape[0] % max(batch, 1) or not n_global <= n_tgt_rows <= n_views:
        raise GeosslError(
            f"target_sim has shape {tuple(target_sim.shape)} but source_sim has {tuple(source_sim.shape)}; it needs T * {batch} "
            f"rows with {n_global} <= T <= {n_views} and the same {source_sim.shape[1]} columns."
        )
    dtype = torch.promote_types(source_sim.dtype, torch.float32)
    P_all = bam_targets(target_sim, None if pos_mask is None else pos_mask[: target_sim.shape[0]], eps, n_iters, gather=gather)
    P = _keep_top_k(list(P_all[: n_global * batch].to(dtype).split(batch)), top_k)

    logits = source_sim.to(dtype) / temperature
    if pos_mask is not None:
        logits = logits.masked_fill(pos_mask, torch.finfo(dtype).min)
    log_a = F.log_softmax(logits, dim=1)
    if pos_mask is not None:  # zero (not finfo.min) where the target is exactly 0: no 0 * inf, no gradient
        log_a = log_a.masked_fill(pos_mask, 0.0)
    log_a = log_a.split(batch)

    loss = logits.new_zeros(())
    for v in range(n_global):
        sub = sum(-(P[v] * log_a[s]).sum(dim=1).mean() for s in range(n_views) if s != v)
        loss = loss + sub / (n_views - 1)
    return loss / n_global, P_all


@float32_loss
def bam_loss(
    embeddings: Sequence[torch.Tensor],
    teacher_embeddings: Sequence[torch.Tensor] | None = None,
    *,
    n_global: int = 2,
    n_targets: int = 2,
    eps: float = 0.05,
    temperature: float = 0.1,
    n_iters: int = 3,
    top_k: int = 0,
    mask_positives: bool = True,
    gather: bool = True,
) -> torch.Tensor:
    """BAM loss over multi-crop embeddings, functional form of :class:`BAMLoss` (see its docstring)."""
    return _bam_loss(embeddings, teacher_embeddings, n_global, n_targets, eps, temperature, n_iters, top_k, mask_positives, gather)[0]


def _bam_loss(
    embeddings: Sequence[torch.Tensor],
    teacher_embeddings: Sequence[torch.Tensor] | None,
    n_global: int,
    n_targets: int,
    eps: float,
    temperature: float,
    n_iters: int,
    top_k: int,
    mask_positives: bool,
    gather: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_params(n_global, n_targets, eps, temperature, n_iters, top_k)
    embeddings = list(embeddings)
    teacher = None if teacher_embeddings is None else list(teacher_embeddings)
    _check_embeddings(embeddings, teacher, n_global, n_targets)
    n_views, batch = len(embeddings), embeddings[0].shape[0]
    distributed = gather and dist.is_distributed()
    world, rank = (dist.world_size(), dist.rank()) if distributed else (1, 0)
    if mask_positives and batch * world < 2:
        raise GeosslError("BAM with mask_positives needs at least 2 images in the (global) batch: every other image is masked.")

    dtype = torch.promote_types(embeddings[0].dtype, torch.float32)
    z = F.normalize(torch.cat(embeddings).to(dtype), dim=1)
    if teacher is None:
        cols = z[: n_targets * batch]
    else:
        z_teacher = F.normalize(torch.cat(teacher).detach().to(dtype), dim=1)
        cols = z_teacher[: n_targets * batch]
    if distributed:
        # crop-major over processes: crop c of rank 0, of rank 1, ..., then crop c + 1 (authors' gather_sort_tensors)
        cols = torch.cat([dist.gather(c) for c in cols.split(batch)])
    source_sim = z @ cols.T
    target_sim = source_sim if teacher is None else z_teacher @ cols.T
    mask = positive_mask(n_views, batch, n_targets, world_size=world, rank=rank, device=z.device) if mask_positives else None
    return bam_similarity_loss(
        source_sim,
        target_sim,
        mask,
        n_views=n_views,
        n_global=n_global,
        temperature=temperature,
        eps=eps,
        n_iters=n_iters,
        top_k=top_k,
        gather=gather,
    )


def _check_params(n_global: int, n_targets: int, eps: float, temperature: float, n_iters: int, top_k: int) -> None:
    for name, v, low in (("n_global", n_global, 1), ("n_targets", n_targets, 1), ("n_iters", n_iters, 0), ("top_k", top_k, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise GeosslError(f"{name} must be an integer >= {low}, got {v!r}.")
    if not eps > 0:
        raise GeosslError(f"eps must be > 0, got {eps}.")
    if not temperature > 0:
        raise GeosslError(f"temperature must be > 0, got {temperature}.")


def _check_embeddings(
    embeddings: list[torch.Tensor], teacher: list[torch.Tensor] | None, n_global: int, n_targets: int
) -> None:
    needed = max(n_global, n_targets, 2)
    if len(embeddings) < needed:
        raise GeosslError(
            f"BAM got {len(embeddings)} crops but needs at least {needed} (n_global={n_global}, n_targets={n_targets}); "
            "pass one (B, D) tensor per crop, global crops first."
        )
    ref = embeddings[0]
    if ref.dim() != 2 or ref.shape[0] < 1:
        raise GeosslError(f"embeddings must have shape (B, D), got {tuple(ref.shape)} for embeddings[0].")
    for i, e in enumerate(embeddings):
        if e.shape != ref.shape:
            raise GeosslError(
                f"embeddings[{i}] has shape {tuple(e.shape)} but embeddings[0] has {tuple(ref.shape)}; every crop must embed the same B images in D dimensions."
            )
    if teacher is not None:
        if not max(n_global, n_targets) <= len(teacher) <= len(embeddings):
            raise GeosslError(
                f"teacher_embeddings has {len(teacher)} crops; pass between {max(n_global, n_targets)} and {len(embeddings)} (crops in the order of embeddings)."
            )
        for i, e in enumerate(teacher):
            if e.shape != ref.shape:
                raise GeosslError(f"teacher_embeddings[{i}] has shape {tuple(e.shape)}, expected {tuple(ref.shape)} like the student embeddings.")


class BAMLoss(nn.Module):
    """BAM loss: cross-entropy between self-attention rows and their balanced Sinkhorn version.

    Shalam & Korman, "Unsupervised Representation Learning by Balanced Self Attention Matching", ECCV 2024
    (arXiv 2408.02014); conventions of the authors' ``BAMLoss`` / ``DistillBAMLoss`` (3 iterations at eps = 0.05,
    tau = 0.1, the first 2 crops as targets, positive masking, per-crop averages), with the Sinkhorn in the log
    domain and running without a process group (world size 1, CPU). After each call, :attr:`last_column_mass_cv`
    holds the coefficient of variation of the target's column masses (0: perfectly balanced).

    Args:
        n_global: V_g, number of global crops (the first ones): their rows give the targets.
        n_targets: V_t, number of crops (the first ones) used as the columns, i.e. the "batch of keys".
        eps: entropic regularisation of the Sinkhorn target (``reg``).
        temperature: tau of the source softmax.
        n_iters: Sinkhorn iterations (0: unbalanced softmax target, an ablation).
        top_k: keep only the k target columns of highest average over the global views, then renormalise (0: off;
            128 in the authors' released scripts).
        mask_positives: remove every same-image entry from source and target (positive masking).
        gather: under DDP, gather the target crops of every process and balance over the global batch.

    Shapes:
        forward(embeddings: V x (B, D), teacher_embeddings: T x (B, D) or None) -> scalar. ``embeddings`` in crop
        order, global crops first; they are L2-normalised here. ``teacher_embeddings`` (distillation variant,
        ``max(n_global, n_targets) <= T <= V`` crops, same order) replace the target columns and the Sinkhorn rows.

    Example:
        >>> loss_fn = BAMLoss()
        >>> z = [torch.randn(8, 16) for _ in range(4)]
        >>> loss = loss_fn(z)
    """

    last_column_mass_cv: torch.Tensor | None

    def __init__(
        self,
        n_global: int = 2,
        n_targets: int = 2,
        eps: float = 0.05,
        temperature: float = 0.1,
        n_iters: int = 3,
        top_k: int = 0,
        mask_positives: bool = True,
        gather: bool = True,
    ) -> None:
        super().__init__()
        _check_params(n_global, n_targets, eps, temperature, n_iters, top_k)
        self.n_global = n_global
        self.n_targets = n_targets
        self.eps = float(eps)
        self.temperature = float(temperature)
        self.n_iters = n_iters
        self.top_k = top_k
        self.mask_positives = bool(mask_positives)
        self.gather = bool(gather)
        self.last_column_mass_cv = None

    @float32_loss
    def forward(self, embeddings: Sequence[torch.Tensor], teacher_embeddings: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        loss, P = _bam_loss(
            embeddings,
            teacher_embeddings,
            self.n_global,
            self.n_targets,
            self.eps,
            self.temperature,
            self.n_iters,
            self.top_k,
            self.mask_positives,
            self.gather,
        )
        self.last_column_mass_cv = column_mass_cv(P, gather=self.gather)
        return loss

    def extra_repr(self) -> str:
        return (
            f"n_global={self.n_global}, n_targets={self.n_targets}, eps={self.eps}, temperature={self.temperature}, "
            f"n_iters={self.n_iters}, top_k={self.top_k}, mask_positives={self.mask_positives}, gather={self.gather}"
        )
