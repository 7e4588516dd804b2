"""BAM: Balanced self-Attention Matching (Shalam & Korman, ECCV 2024, arXiv 2408.02014)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from geossl.augment.views import ViewConfig
from geossl.errors import GeosslError
from geossl.losses.bam import BAMLoss
from geossl.methods._multicrop import multicrop_forward, multicrop_views
from geossl.methods.base import SCALE_FREE_TREG, Method, StepOutput
from geossl.nn.backbones import feature_dim
from geossl.nn.ema import cosine_momentum, ema_update, make_teacher
from geossl.nn.heads import ProjectionHead

#: Number of global crops (the first two views); they are also the target crops (``target_crops_number = 2``).
N_GLOBAL = 2


class BAM(Method):
    """BAM: match each crop's self-attention over the batch to the Sinkhorn-balanced attention of the global crops.

    Pipeline (paper §3, authors' ``main_pretrain.py``): multi-crop views → backbone (once per resolution) →
    projector → L2 normalisation → :class:`geossl.losses.bam.BAMLoss`: similarities of every crop to the two global
    crops of every image of the (global) batch, a softmax at tau = 0.1 as the source and, as the target, its balanced
    version (3 Sinkhorn iterations at eps = 0.05, every target crop receiving the same total attention), with every
    same-image entry masked. Distillation variant (the default, ``teacher_momentum = 0.995`` as in the authors'
    released scripts; ``None`` gives the single-network form): an EMA teacher (backbone + projector, cosine momentum
    to 1, updated in :meth:`on_optimizer_step`) sees every crop and gives the target columns and the Sinkhorn rows
    (teacher-teacher similarities), the student's similarities to the teacher's columns give the source, as in
    ``DistillBAMLoss``.

    Defaults and why:

    - Views: 2 global crops (scale 0.25-1) + 6 local crops (scale 0.05-0.25, 96/224 of the image size), the
      released scripts' multi-crop; blur 1.0 / 0.1 on the global crops and 0.5 on the local ones (σ 0.1-2.0 px scaled
      by the image size / 224, since 2026-12-05; the transport table's BAM rows ran unscaled) and colour jitter
      (0.4, 0.4, 0.4, 0.1) = strength 0.5, as the authors' ``DataAugmentationDINO``, without its solarisation of the
      second global crop (p 0.2; ``ViewConfig.solarize``, not measured with BAM).
    - Projector: 3 linear layers D → 2048 → 2048 → 256 with BatchNorm and ReLU (:class:`ProjectionHead`). The
      paper's 4096 → 4096 GELU head without BatchNorm is its ViT recipe; for a ResNet we use the BatchNorm MLP of the
      library's other multi-crop ResNet methods (SwAV, 2048 hidden), which is also the authors' code default
      (``proj_use_bn``), at a width that fits small CPU/GPU runs; 256 outputs as DINO's bottleneck.
    - Optimiser and target: the released recipe (``scripts/pretrain/vit_*.slurm``): AdamW, lr 3e-4 per 256 images,
      weight decay 0.04 (the scripts raise it to 0.4 on a cosine; kept constant here), gradient clipping at norm 0.3,
      an EMA teacher (``teacher_momentum = 0.995`` → 1) and ``top_k = 128`` target columns per image. Measured on
      EuroSAT with a ResNet-18 (``benchmarks/diagnostics/README.md``): the SwAV-style LARS 0.6 (with
      this engine's trust coefficient 0.02) collapses within a dozen steps (mean cosine 0.51 → 0.999, RankMe 151 →
      1.8); AdamW 3e-4 without the teacher still drifts to collapse with multi-crop (mean cosine 0.99 after 25
      steps, loss back at log K), while AdamW with the teacher and top-k learns (loss 6.22 → 5.85, mean cosine
      falling). The paper itself does not describe top-k.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        hidden_dim: projector hidden width.
        projection_dim: embedding dimension.
        eps: epsilon of the balancing Sinkhorn (``reg``).
        temperature: tau of the source softmax.
        n_iters: Sinkhorn iterations.
        top_k: keep the k largest target columns per image (0: all; 128 in the released scripts).
        mask_positives: mask every same-image entry (positive masking).
        teacher_momentum: initial momentum of the EMA teacher (0.995 in the released scripts), raised to 1 on a cosine
            schedule; None for single-network BAM (the paper's base form).
        gather: under DDP, gather the target crops of every process and balance over the global batch.
    """

    name = "bam"
    supports_local_crops = True
    #: The released recipe: AdamW 3e-4 per 256 images, wd 0.04, gradient norm clipped at 0.3 (see the class docstring).
    optim_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adamw", "lr": 3e-4, "weight_decay": 0.04, "gradient_clip": 0.3
    }
    regularizer_defaults: ClassVar[dict[str, dict[str, Any]]] = SCALE_FREE_TREG

    def __init__(
        self,
        backbone: nn.Module,
        hidden_dim: int = 2048,
        projection_dim: int = 256,
        eps: float = 0.05,
        temperature: float = 0.1,
        n_iters: int = 3,
        top_k: int = 128,
        mask_positives: bool = True,
        teacher_momentum: float | None = 0.995,
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        if teacher_momentum is not None and not 0 <= teacher_momentum <= 1:
            raise GeosslError(f"teacher_momentum must be None or in [0, 1], got {teacher_momentum}.")
        self.projector = ProjectionHead(
            (feature_dim(backbone), hidden_dim, hidden_dim, projection_dim), batch_norm=True
        )
        self.criterion = BAMLoss(
            n_global=N_GLOBAL,
            n_targets=N_GLOBAL,
            eps=eps,
            temperature=temperature,
            n_iters=n_iters,
            top_k=top_k,
            mask_positives=mask_positives,
            gather=gather,
        )
        self.teacher_momentum = None if teacher_momentum is None else float(teacher_momentum)
        if self.teacher_momentum is not None:
            self.teacher_backbone = make_teacher(backbone)
            self.teacher_projector = make_teacher(self.projector)

    @classmethod
    def default_views(cls, image_size: int, overhead: bool, n_local: int = 6) -> list[ViewConfig]:
        """BAM multi-crop: 2 global crops (scale 0.25-1) + ``n_local`` local crops (scale 0.05-0.25).

        Released scripts: 2 x 224 + 6 x 96 px; local crops here are 96/224 of ``image_size`` (multiple of 8, >= 16 px).
        """
        return multicrop_views(
            image_size,
            overhead,
            n_local=n_local,
            global_scale=(0.25, 1.0),
            local_scale=(0.05, 0.25),
            global_blur=(1.0, 0.1),
            local_blur=0.5,
            color_strength=0.5,
        )

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        if len(views) < N_GLOBAL:
            raise GeosslError(f"BAM needs at least {N_GLOBAL} views (the global crops first), got {len(views)}.")
        sizes = [v.shape[0] for v in views]
        feats = multicrop_forward(self.backbone, views)
        z = self.projector(torch.cat(feats)).split(sizes)
        teacher = None
        if self.teacher_momentum is not None:
            with torch.no_grad():
                teacher_h = torch.cat(multicrop_forward(self.teacher_backbone, views))
                teacher = list(self.teacher_projector(teacher_h).split(sizes))
        loss = self.criterion(list(z), teacher)
        logs = {"target_column_mass_cv": float(self.criterion.last_column_mass_cv)}
        return StepOutput(
            loss=loss,
            features=feats[0].detach(),
            embeddings=F.normalize(z[0].detach(), dim=1),
            logs=logs,
            branches=list(z[:N_GLOBAL]),
        )

    def on_optimizer_step(self, step: int, total_steps: int) -> None:
        """EMA update of the teacher (distillation variant only), momentum ``teacher_momentum`` → 1 (cosine)."""
        if self.teacher_momentum is None:
            return
        m = cosine_momentum(step, total_steps, base=self.teacher_momentum, final=1.0)
        ema_update(self.teacher_backbone, self.backbone, m)
        ema_update(self.teacher_projector, self.projector, m)
