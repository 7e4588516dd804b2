"""SwAV (Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, NeurIPS 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geossl.augment.views import ViewConfig
from geossl.errors import GeosslError
from geossl.losses.precision import full_precision
from geossl.losses.swav import SwAVLoss, SwAVQueue
from geossl.methods._multicrop import (
    default_local_crops,
    multicrop_forward,
    multicrop_views,
    scale_grad,
    training_fraction_reached,
)
from geossl.methods.base import Method, StepOutput
from geossl.nn.backbones import feature_dim
from geossl.nn.heads import ProjectionHead

#: Number of global crops: the first two views give the codes ("crops_for_assign = [0, 1]" in the authors' code).
N_GLOBAL = 2


class SwAVPrototypes(nn.Module):
    """K prototype vectors c_k on the unit sphere, scored against normalised embeddings (SwAV §3.1).

    The prototypes are a bias-free linear layer whose rows are re-normalised after each optimiser step
    (:meth:`normalize`), so ``scores = z @ C.T`` are cosine similarities.

    Shapes:
        forward(z (B, D), grad_scale=1.0) -> scores (B, K).
    """

    def __init__(self, dim: int, n_prototypes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_prototypes, dim))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's initialisation, as the authors' code
        self.normalize()

    @torch.no_grad()
    def normalize(self) -> None:
        """Project every prototype back onto the unit sphere."""
        self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, z: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
        # float32 under mixed precision: the scores are divided by tau = 0.1 (geossl.losses.precision)
        with torch.autocast(z.device.type, enabled=False):
            return full_precision(z) @ scale_grad(self.weight, grad_scale).T


class SwAV(Method):
    """SwAV: multi-crop views, an MLP projector, prototypes and swapped prediction of Sinkhorn codes.

    Pipeline (paper §3): backbone → projector D → 2048 → 128 (BatchNorm, ReLU) → L2 normalisation → scores against
    K normalised prototypes; the codes of each global crop (equipartitioned by 3 Sinkhorn iterations at
    eps = 0.05, computed over the global batch under DDP) are predicted by softmax(scores / 0.1) of every other
    crop (:class:`geossl.losses.swav.SwAVLoss`). Views: 2 global crops (scale 0.14-1) and, on images of at least
    96 px, 6 local crops (scale 0.05-0.14) at 96/224 of the image size (:meth:`default_views`); the backbone runs
    once per resolution.

    Defaults and why:

    - Local crops only on images of at least 96 px (:func:`~geossl.methods._multicrop.default_local_crops`). At
      64 px (24-px local crops), 40 CPU minutes on EuroSAT, two crops gave kNN +10.5 and +9.6 over random init (two
      seeds) against +7.3 with 2 + 6 (``benchmarks/results/zoo_eurosat.md``), and +10.9, +11.1 and +12.1 with the
      blur σ scaled to the image size in 12 epochs (seeds 0-2); lightly's CIFAR-10 benchmark also trains SwAV with
      two crops. ``--local-crops 6`` restores the paper's views.
    - ``n_prototypes = 512`` instead of the paper's 3000 (ImageNet, 1000 classes): the paper's ablation finds
      the number of prototypes has little influence as long as there are "enough", and for the small datasets and
      batches of CPU runs (EuroSAT: 10 classes) 3000 prototypes would each receive a few hundredths of a sample per
      batch; 512 is lightly's choice in its CIFAR-10 benchmark and examples.
    - Prototypes get no gradient during the first ``freeze_prototypes`` fraction of the optimiser steps (paper: the
      first epoch, ``freeze_prototypes_niters`` in the authors' code; 0.01 is one epoch of the engine's default
      100-epoch schedule) and are re-normalised after every step (:meth:`on_optimizer_step`).
    - Queue off (``queue_length = 0``): the paper adds 3840 past embeddings for batches of 256 from epoch 15 on
      (``queue_start = 0.15`` of the steps here); set ``queue_length`` (global, over all processes) to enable it.
      Measured on EuroSAT in an 8-epoch (504-step) run it collapses SwAV (the codes are balanced over the queue,
      not the batch, and queued embeddings lag a fast-moving encoder: loss back to log K, RankMe 2;
      ``benchmarks/diagnostics``), so it is for long runs, as in the paper.
    - Optimiser: AdamW, lr 3e-4 per 256 images, weight decay 1e-6, *not* the paper's LARS (the authors' batch-256
      script: LARS lr 0.6, trust 0.001). Measured on EuroSAT, ResNet-18, 2 epochs: with LARS 0.6 at the engine's
      trust coefficient (0.02, solo-learn's) the loss falls to log K within ten steps and the encoder collapses
      (RankMe 3, kNN 42.61, below random init 52.35); every LARS variant tried (lr 0.03, prototypes frozen
      throughout, two crops, K = 64, ε = 0.1) does the same, because the loss starts above log K on a random
      encoder and flat predictions are the cheapest way down. AdamW 3e-4 (as for BAM, which shares the failure)
      keeps RankMe near 60 and reaches kNN 57.63 / linear 64.61 (``benchmarks/diagnostics/README.md``). Pass
      ``--optimizer lars --lr 0.6`` for the paper's setting.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        temperature: tau of the predictions.
        sinkhorn_eps: epsilon of the Sinkhorn codes.
        sinkhorn_iters: Sinkhorn iterations.
        hidden_dim: projector hidden width.
        projection_dim: embedding dimension (prototype dimension).
        n_prototypes: number of prototypes K.
        freeze_prototypes: fraction of the training steps during which the prototypes are frozen.
        queue_length: queued past embeddings per global crop, over all processes (0: no queue).
        queue_start: fraction of the training steps after which embeddings are queued (used once the queue is full).
        gather: under DDP, compute the codes over the global batch.
    """

    name = "swav"
    supports_local_crops = True
    optim_defaults = {"optimizer": "adamw", "lr": 3e-4, "weight_decay": 1e-6}

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.1,
        sinkhorn_eps: float = 0.05,
        sinkhorn_iters: int = 3,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        n_prototypes: int = 512,
        freeze_prototypes: float = 0.01,
        queue_length: int = 0,
        queue_start: float = 0.15,
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        if isinstance(n_prototypes, bool) or not isinstance(n_prototypes, int) or n_prototypes < 2:
            raise GeosslError(f"n_prototypes must be an integer >= 2, got {n_prototypes!r}.")
        if isinstance(queue_length, bool) or not isinstance(queue_length, int) or queue_length < 0:
            raise GeosslError(f"queue_length must be a non-negative integer, got {queue_length!r}.")
        self.projector = ProjectionHead((feature_dim(backbone), hidden_dim, projection_dim), batch_norm=True)
        self.prototypes = SwAVPrototypes(projection_dim, n_prototypes)
        self.criterion = SwAVLoss(temperature, sinkhorn_eps, sinkhorn_iters, gather=gather)
        self.queue = SwAVQueue(queue_length, projection_dim, N_GLOBAL, gather=gather) if queue_length > 0 else None
        self.freeze_prototypes = float(freeze_prototypes)
        self.queue_start = float(queue_start)
        self._step, self._total_steps = 0, 0

    @classmethod
    def default_views(cls, image_size: int, overhead: bool, n_local: int | None = None) -> list[ViewConfig]:
        """SwAV multi-crop: 2 global crops (scale 0.14-1) + ``n_local`` local crops (scale 0.05-0.14).

        Paper: 2 x 224 + 6 x 96 px; local crops here are 96/224 of ``image_size`` (multiple of 8, >= 16 px).
        ``n_local = None``: the paper's 6 on images of at least 96 px, none below
        (:func:`~geossl.methods._multicrop.default_local_crops`: at 64 px, 24-px local crops, two crops did better).
        Colour distortion of strength 1 and Gaussian blur with probability 0.5 on every crop (authors' code), σ the
        paper's 0.1-2.0 px scaled by ``image_size`` / 224.
        """
        if n_local is None:
            n_local = default_local_crops(image_size)
        return multicrop_views(
            image_size,
            overhead,
            n_local=n_local,
            global_scale=(0.14, 1.0),
            local_scale=(0.05, 0.14),
            global_blur=(0.5, 0.5),
            local_blur=0.5,
            color_strength=1.0,
        )

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        if len(views) < N_GLOBAL:
            raise GeosslError(f"SwAV needs at least {N_GLOBAL} views (the global crops first), got {len(views)}.")
        feats = multicrop_forward(self.backbone, views)
        z = F.normalize(full_precision(self.projector(torch.cat(feats))), dim=1)
        frozen = not training_fraction_reached(self._step, self._total_steps, self.freeze_prototypes)
        scores = self.prototypes(z, grad_scale=0.0 if frozen else 1.0).split([v.shape[0] for v in views])
        z_global = z[: sum(v.shape[0] for v in views[:N_GLOBAL])].split([v.shape[0] for v in views[:N_GLOBAL]])

        queue_scores = None
        queue_started = training_fraction_reached(self._step, self._total_steps, self.queue_start)
        use_queue = self.queue is not None and queue_started
        if use_queue:
            queue_scores = self.queue.scores(self.prototypes.weight)
        loss = self.criterion(scores[:N_GLOBAL], scores[N_GLOBAL:], queue_scores)
        if use_queue:
            self.queue.push(z_global)

        # Collapse monitor: share of prototypes that are the nearest one of some sample (the codes are balanced by
        # construction, the raw scores are not).
        used = scores[0].detach().argmax(dim=1).unique().numel() / scores[0].shape[1]
        logs = {
            "prototypes_used": float(used),
            "prototypes_frozen": float(frozen),
            "queue_used": float(queue_scores is not None),
        }
        return StepOutput(loss=loss, features=feats[0].detach(), embeddings=z_global[0].detach(), logs=logs)

    def on_optimizer_step(self, step: int, total_steps: int) -> None:
        """Re-normalise the prototypes (paper §3.1) and record the step for freezing and the queue."""
        self._step, self._total_steps = int(step), int(total_steps)
        self.prototypes.normalize()
