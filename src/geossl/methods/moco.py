"""MoCo v2 (Chen, Fan, Girshick, He 2020) and MoCo v3 (Chen, Xie, He, ICCV 2021)."""

from __future__ import annotations

import torch
from torch import nn

from geossl.errors import GeosslError
from geossl.losses.moco import MoCoLoss, MoCoV3Loss
from geossl.methods._multicrop import check_views
from geossl.methods.base import SCALE_FREE_TREG, Method, StepOutput, batch_norm_groups
from geossl.nn.backbones import feature_dim
from geossl.nn.ema import cosine_momentum, ema_update, make_teacher
from geossl.nn.heads import ProjectionHead, mlp_dims


def _check_momentum(momentum: float) -> None:
    if not 0 <= momentum <= 1:
        raise GeosslError(f"momentum must be in [0, 1], got {momentum}")


class MoCoV2(Method):
    """MoCo v2: a query encoder, an EMA key encoder and InfoNCE against a queue of past keys.

    Query x_a → backbone → MLP head → q; key x_b → momentum backbone → momentum head → k (no gradient); loss
    :class:`geossl.losses.moco.MoCoLoss`. After each optimiser step the key encoder is updated by EMA
    (m = 0.999) and the step's keys, gathered over processes, are enqueued (MoCo's order).

    Defaults (MoCo v2 paper unless stated): τ 0.2, m 0.999, MLP head D → 2048 → 128 without BatchNorm; SGD lr
    0.03 per 256 images, momentum 0.9, weight decay 1e-4, cosine schedule. Queue K = 3072, the remote-sensing
    setting of [B §4.1] (batch 512), instead of the ImageNet 65 536: on small datasets (the built-in EuroSAT
    sample has 1 500 images) a 65 536-key queue would be stale for tens of epochs and start as random vectors.

    Shuffle-BN (paper §3.3): each GPU normalises its own sub-batch and the keys are computed on a shuffled
    batch, so a query and its positive key do not share BatchNorm statistics (otherwise the model "cheats"
    through them). Emulated within each process: the queries are encoded in ``bn_splits`` consecutive groups
    and the keys in ``bn_splits`` groups of a random permutation (8 groups: the paper's 8 GPUs, also MoCo's
    CIFAR demo). This costs several smaller backbone calls (same FLOPs); ``bn_splits=1`` gives a single pass.

    Views: the shared two-view default (:meth:`~geossl.methods.base.Method.default_views`: crops of scale 0.2-1,
    colour jitter of strength 0.5, grayscale, no blur or solarisation); the paper's add a Gaussian blur with
    probability 0.5, which a ``views:`` list in the run's YAML config sets. Measured on EuroSAT at 64 px (zoo, seed
    0, 19 epochs, σ scaled to 0.1-0.57 px): kNN / linear top-1 68.56 / 73.20 with the blur, 69.89 / 73.41 without.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        temperature: τ.
        queue_size: number of negative keys K.
        momentum: EMA momentum m of the key encoder (constant).
        hidden_dim: head hidden width.
        projection_dim: head output width (key dimension).
        bn_splits: BatchNorm groups of the shuffle-BN emulation (1: off).
        gather: enqueue the keys of all processes under DDP.
    """

    name = "moco-v2"
    #: SGD 0.3 per 256 images: solo-learn's MoCo v2+ recipe for small images (the paper's 0.03 is ImageNet's).
    optim_defaults = {"optimizer": "sgd", "lr": 0.3, "weight_decay": 1e-4}
    regularizer_defaults = SCALE_FREE_TREG

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.2,
        queue_size: int = 3072,
        momentum: float = 0.999,
        hidden_dim: int = 2048,
        projection_dim: int = 128,
        bn_splits: int = 8,
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        _check_momentum(momentum)
        if bn_splits < 1:
            raise GeosslError(f"bn_splits must be >= 1, got {bn_splits}")
        self.projector = ProjectionHead((feature_dim(backbone), hidden_dim, projection_dim), batch_norm=False)
        self.teacher_backbone = make_teacher(backbone)
        self.teacher_projector = make_teacher(self.projector)
        self.criterion = MoCoLoss(temperature=temperature, queue_size=queue_size, dim=projection_dim, gather=gather)
        self.momentum = float(momentum)
        self.bn_splits = int(bn_splits)
        self._keys: torch.Tensor | None = None

    def _encode_queries(self, x: torch.Tensor) -> torch.Tensor:
        groups = batch_norm_groups(self.bn_splits, x.shape[0])
        if groups == 1:
            return self.backbone(x)
        return torch.cat([self.backbone(chunk) for chunk in x.tensor_split(groups)])

    @torch.no_grad()
    def _encode_keys(self, x: torch.Tensor) -> torch.Tensor:
        groups = batch_norm_groups(self.bn_splits, x.shape[0])
        if groups == 1:
            return self.teacher_projector(self.teacher_backbone(x))
        perm = torch.randperm(x.shape[0], device=x.device)
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        shuffled = x[perm].contiguous(memory_format=fmt)
        k = torch.cat([self.teacher_projector(self.teacher_backbone(chunk)) for chunk in shuffled.tensor_split(groups)])
        return torch.empty_like(k).index_copy_(0, perm, k)  # undo the shuffle

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        check_views("MoCo v2", views, local_crops=False)
        x_q, x_k = views
        h = self._encode_queries(x_q)
        q = self.projector(h)
        k = self._encode_keys(x_k)
        loss = self.criterion(q, k)
        self._keys = k
        return StepOutput(loss=loss, features=h.detach(), embeddings=q.detach(), branches=[q])

    def on_optimizer_step(self, step: int, total_steps: int) -> None:
        """EMA update of the key encoder, then enqueue the last step's keys."""
        ema_update(self.teacher_backbone, self.backbone, self.momentum)
        ema_update(self.teacher_projector, self.projector, self.momentum)
        if self._keys is not None:
            self.criterion.enqueue(self._keys)
            self._keys = None


class MoCoV3(Method):
    """MoCo v3: query and momentum encoders, a predictor on the query branch, symmetric in-batch InfoNCE.

    Both views go through the backbone in one forward pass (and through the momentum encoder in one no-grad
    pass); ``q = predictor(projector(backbone(x)))``, ``k = projector'(backbone'(x))`` and the loss is
    ``ctr(q_a, k_b) + ctr(q_b, k_a)`` (:class:`geossl.losses.moco.MoCoV3Loss`), keys gathered over processes.

    Defaults: the authors' ResNet recipe for the heads (their code, ``MoCo_ResNet`` in facebookresearch/moco-v3, and
    solo-learn's ResNet branch): projector 2-layer MLP (hidden 4096, output 256, BatchNorm, last BatchNorm without
    affine), predictor 2-layer MLP (hidden 4096, output 256, no last BatchNorm); τ 0.2 (the paper's ViT value and
    solo-learn's; the authors' ResNet-50 uses 1.0); momentum 0.99 → 1 on a cosine schedule; solo-learn's ResNet-18
    optimiser, LARS 0.3, wd 1e-6 (``optim_defaults``). The spec (``ssl_methods.md`` §1.3) lists the paper's ViT
    projector, 3 layers (``projector_layers=3``): at 64 px its 4096 × 4096 middle layer adds about 15% to a ResNet-18's
    FLOPs, and on EuroSAT (zoo, 9 epochs, mean of seeds 0-2) the 2-layer projector reached 69.67 / 73.49 kNN / linear
    top-1 against the 3-layer one's 64.14 / 70.93, ahead on every seed. The paper's ViT optimiser is AdamW lr 1.5e-4,
    weight decay 0.1.

    Views: the shared two-view default (:meth:`~geossl.methods.base.Method.default_views`: crops of scale 0.2-1,
    colour jitter of strength 0.5, grayscale, no blur or solarisation); the paper's are BYOL's asymmetric pair (blur
    1.0 / 0.1, solarisation 0 / 0.2, crops of scale 0.08-1, jitter (0.4, 0.4, 0.2, 0.1)), which a ``views:`` list in
    the run's YAML config sets. Measured on EuroSAT at 64 px (zoo, 9 epochs, with the 3-layer projector): kNN / linear
    top-1 64.70 / 70.22 with the paper's views on seed 0, 64.14 / 70.93 with the shared pair (mean of seeds 0-2,
    62.89-65.57 kNN): within the seed spread, so the shared pair is kept.

    Args:
        backbone: module mapping images (B, C, H, W) to features (B, D) with ``feature_dim``.
        temperature: τ.
        momentum: initial EMA momentum (cosine schedule to 1).
        hidden_dim: hidden width of projector and predictor.
        projection_dim: output width of projector and predictor.
        projector_layers: number of linear layers of the projector (2: the authors' ResNet recipe, 3: their ViT one).
        gather: use the keys of all processes under DDP.
    """

    name = "moco-v3"
    #: LARS 0.3, wd 1e-6: solo-learn's MoCo v3 recipe for a ResNet-18 on small images (AdamW 1.5e-4 / wd 0.1 is the
    #: paper's ViT recipe; pass --optimizer adamw --lr 1.5e-4 --weight-decay 0.1 for it).
    optim_defaults = {"optimizer": "lars", "lr": 0.3, "weight_decay": 1e-6}
    regularizer_defaults = SCALE_FREE_TREG

    def __init__(
        self,
        backbone: nn.Module,
        temperature: float = 0.2,
        momentum: float = 0.99,
        hidden_dim: int = 4096,
        projection_dim: int = 256,
        projector_layers: int = 2,
        gather: bool = True,
    ) -> None:
        super().__init__(backbone)
        _check_momentum(momentum)
        dims = mlp_dims(feature_dim(backbone), hidden_dim, projection_dim, projector_layers, "projector_layers")
        self.projector = ProjectionHead(dims, batch_norm=True, last_batch_norm=True)
        self.predictor = ProjectionHead((projection_dim, hidden_dim, projection_dim), batch_norm=True)
        self.teacher_backbone = make_teacher(backbone)
        self.teacher_projector = make_teacher(self.projector)
        self.criterion = MoCoV3Loss(temperature=temperature, gather=gather)
        self.momentum = float(momentum)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:
        check_views("MoCo v3", views, local_crops=False)
        x = torch.cat(views)
        h = self.backbone(x)
        z = self.projector(h)
        q_a, q_b = self.predictor(z).chunk(2)
        with torch.no_grad():
            k_a, k_b = self.teacher_projector(self.teacher_backbone(x)).chunk(2)
        loss = self.criterion(q_a, q_b, k_a, k_b)
        n = views[0].shape[0]
        return StepOutput(loss=loss, features=h[:n].detach(), embeddings=z[:n].detach(), branches=list(z.chunk(2)))

    def on_optimizer_step(self, step: int, total_steps: int) -> None:
        """EMA update of the momentum encoder, momentum 0.99 → 1 (cosine)."""
        m = cosine_momentum(step, total_steps, base=self.momentum, final=1.0)
        ema_update(self.teacher_backbone, self.backbone, m)
        ema_update(self.teacher_projector, self.projector, m)
