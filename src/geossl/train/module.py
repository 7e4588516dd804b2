"""The LightningModule that trains any :class:`geossl.methods.Method`.

It adds to the method: device-side view generation, the optimiser and warm-up/cosine schedule,
an online linear probe on detached features, an online kNN evaluation every epoch (the metric
that selects the best checkpoint), collapse monitors and a NaN guard.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch

from geossl.augment.views import MultiViewAugment, Normalization, ViewAugment, ViewConfig
from geossl.errors import GeosslError
from geossl.eval.features import extract_features
from geossl.eval.knn import knn_classify
from geossl.eval.monitors import per_dim_std, rankme
from geossl.geometry.mst import intrinsic_dim_mst
from geossl.eval.online import OnlineLinearProbe
from geossl.methods.regularizers import build_regularizer
from geossl.methods.registry import get_method
from geossl.nn.backbones import build_backbone, feature_dim, use_small_stem
from geossl.train.config import PretrainConfig
from geossl.train.optim import build_optimizer, lr_multipliers, parameter_groups

#: Learning rate of the online probe's parameter group (its own, without weight decay).
PROBE_LR = {"lars": 0.1, "sgd": 0.1, "adamw": 1e-3}


def build_method(config: PretrainConfig, data_info: dict[str, Any]):
    """The method of ``config`` with a fresh backbone for data described by ``data_info``."""
    method_cls = get_method(config.method)
    small = use_small_stem(config.small_stem, int(data_info["image_size"][0]))
    backbone = build_backbone(config.backbone, in_chans=int(data_info["num_bands"]), small_stem=small)
    return method_cls(backbone, **config.method_args)  # the constructor's own defaults are the method's defaults


def normalization_from_info(data_info: dict[str, Any]) -> Normalization:
    return Normalization(list(data_info["mean"]), list(data_info["std"]), float(data_info["value_scale"]))


class PretrainModule(L.LightningModule):
    """Self-supervised pretraining of one method.

    Args:
        config: the resolved :class:`PretrainConfig` as a dict (stored in the checkpoint).
        data_info: what the model must know of the data: ``num_bands``, ``image_size``,
            ``mean``, ``std``, ``value_scale``, ``rgb``, ``classes`` (or None), ``name``,
            ``split_description``.
    """

    def __init__(self, config: dict[str, Any], data_info: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config, "data_info": data_info})
        self.config = PretrainConfig.from_dict(config)
        self.data_info = data_info
        self.method = build_method(self.config, data_info)
        self.regularizer = build_regularizer(self.config.regularizer, self.config.regularizer_args) if self.config.regularizer else None
        if self.config.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.normalization = normalization_from_info(data_info)
        rgb = bool(data_info.get("rgb", False))
        self.views = MultiViewAugment([ViewAugment(ViewConfig.from_dict(v), self.normalization, rgb) for v in self.config.views or []])
        classes = data_info.get("classes")
        self.probe = OnlineLinearProbe(feature_dim(self.method.backbone), len(classes)) if classes else None
        self.eval_sets: tuple[Any, Any] | None = None  # (kNN bank, held-out split), set by the runner
        self._last_embeddings: torch.Tensor | None = None
        self._collapse_warned = False
        self._last_optimizer_step = -1

    # -- training ------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        views = self.views(images)
        if self.config.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        out = self.method.training_step(views)
        if not torch.isfinite(out.loss):
            self._diverged(f"the loss became {out.loss.item()}")
        batch_size = images.shape[0]
        self.log("train/loss", out.loss.detach(), prog_bar=True, on_step=True, on_epoch=True, batch_size=batch_size)
        for name, value in out.logs.items():
            self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=batch_size)
        loss = out.loss
        if self.regularizer is not None:
            if not out.branches:
                raise GeosslError(
                    f"method '{self.config.method}' does not expose its per-view embeddings, so --regularizer "
                    f"{self.config.regularizer} cannot be added to it; drop --regularizer"
                )
            reg = sum(self.regularizer(z) for z in out.branches)
            self.log("train/regularizer", reg.detach(), on_step=True, on_epoch=True, batch_size=batch_size)
            loss = loss + reg
        if self.probe is not None and (labels >= 0).any():
            probe_loss, probe_acc = self.probe(out.features, labels)
            self.log("train/probe_top1", probe_acc, on_step=False, on_epoch=True, batch_size=batch_size)
            loss = loss + probe_loss
        self._last_embeddings = out.embeddings
        return loss

    def _diverged(self, what: str) -> None:
        """Stop training with a one-line error naming the step and what to try."""
        lr = self.optimizers().param_groups[0]["lr"] if self._trainer is not None else float("nan")
        raise GeosslError(
            f"{what} at step {self.global_step} (epoch {self.current_epoch}, lr {lr:.3g}); "
            "lower --lr, lengthen the warm-up, use --precision 32-true, or check the data for NaN values"
        )

    def on_train_start(self) -> None:
        self._last_optimizer_step = self.global_step  # also right after a resume

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # global_step counts optimiser steps: with gradient accumulation, EMA teachers and queues move once per step
        if self.global_step != self._last_optimizer_step:
            self._last_optimizer_step = self.global_step
            self.method.on_optimizer_step(self.global_step, int(self.trainer.estimated_stepping_batches))

    def on_train_epoch_end(self) -> None:
        if self._last_embeddings is not None and self._last_embeddings.shape[0] > 1:
            z = self._last_embeddings.float()
            self.log("monitor/rankme", rankme(z))
            std = per_dim_std(z)
            self.log("monitor/per_dim_std", std)
            # Spec evaluation.md §10: healthy ≈ 1/sqrt(D); warn (once) below a tenth of that.
            if std < 0.1 / z.shape[1] ** 0.5 and not self._collapse_warned:
                self._collapse_warned = True
                warnings.warn(
                    f"embeddings look collapsed at epoch {self.current_epoch}: per-dimension std {std:.2e} < 0.1/sqrt({z.shape[1]}); "
                    "check the learning rate and the method's hyperparameters",
                    stacklevel=1,
                )
        every = max(1, self.config.online_eval_every)
        last_epoch = self.current_epoch + 1 == self.trainer.max_epochs
        if self.config.online_eval and self.eval_sets is not None and ((self.current_epoch + 1) % every == 0 or last_epoch):
            self._online_evaluation()

    @torch.no_grad()
    def _online_evaluation(self) -> None:
        bank, held_out = self.eval_sets
        kw = dict(preprocess=self.normalization, batch_size=max(256, self.config.batch_size), device=self.device, progress=False)
        bank_f, bank_y = extract_features(self.method.backbone, bank, **kw)
        test_f, test_y = extract_features(self.method.backbone, held_out, **kw)
        if not (torch.isfinite(bank_f).all() and torch.isfinite(test_f).all()):
            self._diverged("the network produced NaN or infinite features")
        knn = knn_classify(bank_f, bank_y, test_f, test_y, k=self.config.knn_k, temperature=self.config.knn_temperature)
        self.log("val/knn_top1", float(knn["top1"]), prog_bar=True)
        self.log("val/rankme", rankme(test_f))
        # Intrinsic dimension of the features from MST growth (Steele 1988), the T-REGS paper's diagnostic
        self.log("val/mst_dim", intrinsic_dim_mst(test_f[:2048].float()) if len(test_f) >= 16 else float("nan"))
        if self.probe is not None:
            logits = self.probe.linear(test_f.to(self.device))
            acc = (logits.argmax(1).cpu() == test_y).float().mean().item() * 100
            self.log("val/probe_top1", acc)

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.config
        world = self.trainer.world_size if self._trainer is not None else 1
        groups = parameter_groups(
            self.method, cfg.weight_decay or 0.0, constant_lr=getattr(self.method, "constant_lr_modules", ()), lr_scales=self.method.lr_scales()
        )
        if self.probe is not None:
            groups.append({"params": list(self.probe.parameters()), "weight_decay": 0.0, "lars_exclude": True, "lr": PROBE_LR[cfg.optimizer]})
        optimizer = build_optimizer(cfg.optimizer, groups, lr=cfg.effective_lr(world), momentum=cfg.momentum)
        total = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total // max(1, cfg.epochs))
        warmup = int(round(cfg.resolved_warmup_epochs() * steps_per_epoch))
        # groups and optimizer.param_groups are in the same order (build_optimizer only drops our flags)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multipliers(groups, total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
