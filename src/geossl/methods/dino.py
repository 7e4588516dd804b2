"""DINO (Caron, Touvron, Misra, Jégou, Mairal, Bojanowski, Joulin, ICCV 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geossl.augment.views import ViewConfig
from geossl.errors import GeosslError
from geossl.losses.dino import DINOLoss, teacher_temperature
from geossl.losses.precision import full_precision
from geossl.methods._multicrop import (
    default_local_crops,
    multicrop_forward,
    multicrop_views,
    scale_grad,
    training_fraction_reached,
)
from geossl.methods.base import Method, StepOutput
from geossl.nn.backbones import feature_dim
from geossl.nn.ema import cosine_momentum, ema_update, make_teacher
from geossl.nn.heads import mlp_dims

#: Number of global crops, the only ones the teacher sees (first two views).
N_GLOBAL = 2


class DINOHead(nn.Module):
    """DINO projection head (paper §3.1 and App.; ``DINOHead`` in the authors' code).

    MLP of ``layers`` linear layers (3 in the paper; hidden 2048, GELU, optional BatchNorm) to a bottleneck of 256,
    L2 normalisation, then a weight-normalised linear layer without bias to K outputs: ``W_k = g_k v_k / ||v_k||``
    with ``g = 1`` fixed when ``norm_last_layer`` (the authors' default, which stabilises training).

    Args:
        in_dim: backbone feature dimension D.
        out_dim: number of outputs K.
        hidden_dim: MLP width.
        bottleneck_dim: dimension of the normalised bottleneck.
        batch_norm: BatchNorm in the MLP (``use_bn_in_head``, off by default in the authors' code).
        norm_last_layer: keep the weight-norm gains fixed at 1.
        layers: linear layers of the MLP, the bottleneck layer included (the authors' ``nlayers``, >= 2).

    Shapes:
        forward(x (B, D), last_layer_grad=1.0) -> (logits (B, K), bottleneck (B, bottleneck_dim), unit norm).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 4096,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        batch_norm: bool = False,
        norm_last_layer: bool = True,
        layers: int = 3,
    ) -> None:
        super().__init__()
        dims = mlp_dims(in_dim, hidden_dim, bottleneck_dim, layers, "head_layers")
        modules: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-2], dims[1:-1]):
            modules.append(nn.Linear(d_in, d_out))
            if batch_norm:
                modules.append(nn.BatchNorm1d(d_out))
            modules.append(nn.GELU())
        modules.append(nn.Linear(dims[-2], dims[-1]))
        self.mlp = nn.Sequential(*modules)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # Last layer: nn.Linear's default initialisation for v (created after the truncated-normal init in the
        # authors' code), gains at 1.
        self.last_v = nn.Parameter(nn.Linear(bottleneck_dim, out_dim, bias=False).weight.detach().clone())
        self.last_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not norm_last_layer)

    def forward(self, x: torch.Tensor, last_layer_grad: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        z = F.normalize(full_precision(self.mlp(x)), dim=-1)
        weight = scale_grad(self.last_g, last_layer_grad) * F.normalize(scale_grad(self.last_v, last_layer_grad), dim=1)
        # float32 under mixed precision: the teacher's logits are divided by tau_t = 0.04 (geossl.losses.precision)
        with torch.autocast(z.device.type, enabled=False):
            return z @ weight.T, z


class DINO(Method):
    """DINO: self-distillation of an EMA teacher into a student over multi-crop views.

    The student (backbone + :class:`DINOHead`) sees every crop; the teacher, an EMA of the student that never
    requires gradients and runs under ``no_grad``, sees the 2 global crops. The loss
    (:class:`geossl.losses.dino.DINOLoss`) is the cross-entropy between the centred, sharpened teacher output and
    the student output of every other crop; the center is an EMA (0.9) of the teacher's batch mean, all-reduced
    under DDP. The backbone runs once per resolution (DINO's ``MultiCropWrapper``).

    Defaults and why. Since 2026-12-05 the head, teacher momentum and optimiser are lightly's CIFAR-10 benchmark
    recipe for a ResNet-18 (its ``DINOModel``), and small images get no local crops: on EuroSAT at 64 px in 40 CPU
    minutes (``benchmarks/results/zoo_eurosat.md``) this recipe reached kNN +13.9 and +11.9 over random init in 10
    epochs (seeds 0 and 1) once the blur's σ was scaled to the image size
    (:func:`~geossl.augment.views.paper_blur_sigma`; with the unscaled 0.1-2 px: +10.0 and +9.0, two seeds), the
    previous defaults (3-layer head, K = 4096, momentum 0.996, SGD 0.03 / wd 1e-4, 2 + 6 crops, unscaled blur) +2.5
    in 7, and those defaults with two crops +7.3 in 10. The paper's ImageNet setting is
    ``--set head_layers=3 --set out_dim=65536 --set momentum=0.996 --local-crops 10`` with its own optimiser (below).

    - Head: ``head_layers = 2`` (hidden 2048, BatchNorm, GELU) to the 256-d bottleneck, ``out_dim = 2048`` (the
      paper: 3 layers, K = 65 536; its ablation gains little from K = 4096 to 65 536, and at 65 536 the last layer
      alone would hold 16.8 M weights, more than a ResNet-18, twice with the teacher).
    - Local crops: none below 96 px, 6 from 96 px (:func:`~geossl.methods._multicrop.default_local_crops`; paper:
      10). At 64 px the local crops are 24 px; two crops did better than 2 + 6 in the same time (+7.3 against +2.5).
    - Teacher temperature 0.04 throughout, the authors' code default ("start with 0.04, increase slightly if
      needed"); the paper's 0.04 -> 0.07 warm-up over the first 30 epochs is ``teacher_temp=0.07`` (warm-up over
      ``warmup_teacher_temp_fraction = 0.3`` of the steps). At 0.07 a ResNet-18's teacher was nearly uniform within
      one EuroSAT epoch (entropy 8.03 of log K = 8.32, val kNN falling 47.3 -> 46.0; diagnostics, "DINO"). Student
      temperature 0.1; center momentum 0.9; teacher momentum 0.99 -> 1 on a cosine schedule (lightly's CIFAR-10
      value, held constant there; the paper: 0.996; :mod:`geossl.nn.ema`).
    - Last layer frozen during the first ``freeze_last_layer = 0.01`` of the steps (paper: first epoch).
    - Optimiser: SGD (momentum 0.9) lr 0.12 per 256 images, weight decay 5e-4 (lightly's CIFAR-10 benchmark: 0.06
      per 128); gradient clipping at 3.0 as the paper. The authors' ResNet-50 recipe is SGD 0.03, wd 1e-4 (the
      default until 2026-12-05). The paper's ViT recipe (AdamW 5e-4, wd 0.04 -> 0.4) and solo-learn's ResNet-18 one
      (LARS 0.3, wd 1e-6) both drive a ResNet-18 to the uniform collapse on EuroSAT within 30 steps (loss up to
      log K, teacher entropy 8.2 of 8.3; ``benchmarks/diagnostics/README.md``, "DINO").
    - ``batch_norm = True`` (the authors' ``use_bn_in_head``, off in their ViT runs): a ResNet's ReLU features
      give nearly parallel bottleneck embeddings at initialisation (mean cosine 0.75), whose centred teacher
      output is nearly flat; BatchNorm in the head MLP spreads them (0.37) and, with SGD, keeps RankMe of the
      bottleneck above 80 over the first 30 steps where every variant without it fell (diagnostics, "DINO").

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        out_dim: output dimension K.
        hidden_dim: head MLP width.
        bottleneck_dim: head bottleneck dimension.
        batch_norm: BatchNorm in the head MLP.
        norm_last_layer: fix the last layer's weight-norm gains at 1.
        head_layers: linear layers of the head MLP up to the bottleneck (3 in the paper, 2 in lightly's CIFAR-10
            benchmark).
        student_temp: tau_s.
        teacher_temp: tau_t after the warm-up.
        warmup_teacher_temp: tau_t at the start.
        warmup_teacher_temp_fraction: fraction of the steps of the linear tau_t warm-up.
        center_momentum: momentum of the center EMA.
        momentum: initial teacher EMA momentum (cosine schedule to 1).
        freeze_last_layer: fraction of the steps during which the head's last layer gets no gradient.
        gather: under DDP, center on the mean over every process.
    """

    name = "dino"
    supports_local_crops = True
    #: SGD 0.12 per 256, wd 5e-4: lightly's CIFAR-10 recipe (the authors' ResNet-50 one, 0.03 / 1e-4, learned slower
    #: here; LARS 0.3 and AdamW 5e-4 collapse a ResNet-18, see the class docstring). Gradient clipping 3.0 as the paper.
    optim_defaults = {"optimizer": "sgd", "lr": 0.12, "weight_decay": 5e-4, "gradient_clip": 3.0}

    def __init__(
        self,
        backbone: nn.Module,
        out_dim: int = 2048,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        batch_norm: bool = True,
        norm_last_layer: bool = True,
        head_layers: int = 2,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_fraction: float = 0.3,
        center_momentum: float = 0.9,
        momentum: float = 0.99,
        freeze_last_layer: float = 0.01,
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        if not 0 <= momentum <= 1:
            raise GeosslError(f"momentum must be in [0, 1], got {momentum}.")
        self.head = DINOHead(
            feature_dim(backbone), out_dim, hidden_dim, bottleneck_dim, batch_norm, norm_last_layer, head_layers
        )
        self.teacher_backbone = make_teacher(backbone)
        self.teacher_head = make_teacher(self.head)
        self.criterion = DINOLoss(
            out_dim,
            student_temp=student_temp,
            teacher_temp=teacher_temp,
            warmup_teacher_temp=warmup_teacher_temp,
            center_momentum=center_momentum,
            gather=gather,
        )
        self.warmup_teacher_temp_fraction = float(warmup_teacher_temp_fraction)
        self.freeze_last_layer = float(freeze_last_layer)
        self.momentum = float(momentum)
        self._step, self._total_steps = 0, 0

    @classmethod
    def default_views(cls, image_size: int, overhead: bool, n_local: int | None = None) -> list[ViewConfig]:
        """DINO multi-crop: 2 global crops (scale 0.4-1) + ``n_local`` local crops (scale 0.05-0.4).

        ``n_local = None``: 6 local crops on images of at least 96 px, none below
        (:func:`~geossl.methods._multicrop.default_local_crops`; at 64 px the local crops are 24 px and two crops
        did better, see the class docstring). Without local crops the global crops take scale 0.14-1, as the
        authors recommend when multi-crop is disabled (help of ``--global_crops_scale`` in their ``main_dino.py``):
        with local crops the small scales (0.05-0.4) are theirs, without them the global crops must cover them.
        Paper: 2 x 224 + 10 x 96 px (authors' code default: 8 local crops); 6 here as SwAV, to bound CPU cost.
        Local crops are 96/224 of ``image_size`` (multiple of 8, >= 16 px). Blur probabilities 1.0 and 0.1 on the
        two global crops and 0.5 on the local ones, σ the paper's 0.1-2.0 px scaled by ``image_size`` / 224; colour
        jitter of strength 0.5, (0.4, 0.4, 0.4, 0.1) against the paper's (0.4, 0.4, 0.2, 0.1), and no solarisation
        (the paper: p 0.2 on the second global crop). The zoo's DINO rows ran with these views; BYOL's
        (:meth:`~geossl.methods.byol.BYOL.default_views`) show how to set the paper's in a ``views:`` list.
        """
        if n_local is None:
            n_local = default_local_crops(image_size)
        return multicrop_views(
            image_size,
            overhead,
            n_local=n_local,
            global_scale=(0.4, 1.0) if n_local > 0 else (0.14, 1.0),
            local_scale=(0.05, 0.4),
            global_blur=(1.0, 0.1),
            local_blur=0.5,
            color_strength=0.5,
        )

    def current_teacher_temp(self) -> float:
        """tau_t at the current step (linear warm-up over a fraction of the training, then constant)."""
        warmup = round(self.warmup_teacher_temp_fraction * self._total_steps)
        if self._total_steps <= 0 and self.warmup_teacher_temp_fraction > 0:
            return float(self.criterion.warmup_teacher_temp)  # before the first step: start of the warm-up
        return teacher_temperature(self._step, warmup, self.criterion.warmup_teacher_temp, self.criterion.teacher_temp)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        if len(views) < N_GLOBAL:
            raise GeosslError(f"DINO needs at least {N_GLOBAL} views (the global crops first), got {len(views)}.")
        sizes = [v.shape[0] for v in views]
        feats = multicrop_forward(self.backbone, views)
        frozen = not training_fraction_reached(self._step, self._total_steps, self.freeze_last_layer)
        student_logits, student_z = self.head(torch.cat(feats), last_layer_grad=0.0 if frozen else 1.0)
        with torch.no_grad():
            teacher_logits, _ = self.teacher_head(torch.cat(multicrop_forward(self.teacher_backbone, views[:N_GLOBAL])))
            teacher_out = teacher_logits.split(sizes[:N_GLOBAL])
            p_t = F.softmax((teacher_logits - self.criterion.center) / self.current_teacher_temp(), dim=-1)
            entropy = -(p_t * torch.log(p_t.clamp_min(1e-30))).sum(-1).mean()
        temp = self.current_teacher_temp()
        loss = self.criterion(teacher_out, student_logits.split(sizes), teacher_temp=temp)
        logs = {"teacher_temp": temp, "teacher_entropy": float(entropy), "last_layer_frozen": float(frozen)}
        return StepOutput(loss=loss, features=feats[0].detach(), embeddings=student_z[: sizes[0]].detach(), logs=logs)

    def on_optimizer_step(self, step: int, total_steps: int) -> None:
        """EMA update of the teacher with the cosine momentum m₀ -> 1 (paper §3.1, BYOL's schedule; m₀ = 0.99 by
        default, the paper's 0.996)."""
        self._step, self._total_steps = int(step), int(total_steps)
        m = cosine_momentum(step, total_steps, base=self.momentum, final=1.0)
        ema_update(self.teacher_backbone, self.backbone, m)
        ema_update(self.teacher_head, self.head, m)
