"""Fine-tuning of the whole encoder with a linear head: the end-to-end protocol next to the frozen-feature ones.

The encoder is copied (the caller's weights are never changed), a linear head is put on its features, and both are
trained with SGD (momentum 0.9, nesterov), cross-entropy and a cosine learning-rate schedule with one warm-up epoch, on
light augmentations that suit any band count: random resized crops (scale 0.5-1) and horizontal and vertical flips
(overhead imagery has no canonical orientation). The head learns 10x faster than the encoder, the usual transfer
recipe (e.g. the SimCLR and BYOL fine-tuning protocols use a fresh head and a small encoder learning rate).
Evaluation on the test set uses the final weights; the top-1 of the best epoch on the test set is not reported,
because choosing it on the test set is optimistic (evaluation.md §0).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from geossl.errors import GeosslError
from geossl.eval.linear import stratified_subset
from geossl.nn.backbones import feature_dim


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random resized crop (area 0.5-1, aspect 3/4-4/3) and flips, on a (B, C, H, W) batch."""
    b, _, h, w = x.shape
    area = torch.empty(b).uniform_(0.5, 1.0, generator=generator)
    log_ratio = torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    ratio = torch.exp(log_ratio)
    cw = torch.sqrt(area * ratio).clamp(max=1.0)
    ch = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - cw)
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - ch)
    flip_x = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    flip_y = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = cw * flip_x, cx
    theta[:, 1, 1], theta[:, 1, 2] = ch * flip_y, cy
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@torch.no_grad()
def _accuracy(model: nn.Module, loader: DataLoader, preprocess: Callable, device: torch.device) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    model.eval()
    preds, labels, top5 = [], [], []
    for x, y in loader:
        logits = model(preprocess(x.to(device)))
        preds.append(logits.argmax(1).cpu())
        top5.append((logits.topk(min(5, logits.shape[1]), dim=1).indices.cpu() == y[:, None]).any(1))
        labels.append(y)
    p, y, t5 = torch.cat(preds), torch.cat(labels), torch.cat(top5)
    return 100 * (p == y).float().mean().item(), 100 * t5.float().mean().item(), p, y


def finetune(
    encoder: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    num_classes: int,
    *,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    epochs: int = 10,
    lr: float = 0.01,
    head_lr_scale: float = 10.0,
    weight_decay: float = 1e-4,
    batch_size: int = 128,
    label_fraction: float = 1.0,
    augment: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fine-tune a copy of ``encoder`` with a linear head and return its test accuracy.

    Args:
        encoder: module mapping images (B, C, H, W) to features (B, D), with ``feature_dim`` known to
            :func:`geossl.nn.backbones.feature_dim`. It is deep-copied, never modified.
        train_set: labelled dataset of ``(image (C, H, W) raw tensor, label)`` pairs.
        test_set: labelled dataset for the final accuracy.
        num_classes: number of classes of the head.
        preprocess: maps a raw batch to the encoder's input (the pretraining normalisation).
        epochs: training epochs (one of them warm-up).
        lr: encoder learning rate per 256 images (scaled by ``batch_size / 256``); the head gets ``head_lr_scale`` x.
        head_lr_scale: head learning rate / encoder learning rate.
        weight_decay: L2 weight decay of the weights (not of biases and norms).
        batch_size: training batch size.
        label_fraction: fine-tune on a stratified, seeded fraction of the training labels (e.g. 0.01, 0.1).
        augment: random resized crops and flips during training.
        seed: seed of the head, the label subset, the batch order and the augmentations.
        device: where to train (default: CUDA when available).
        progress: show a progress bar per epoch.

    Returns:
        ``{"top1", "top5", "n_train", "n_test", "epochs", "train_loss" (per epoch), "predictions", "labels"}``.
    """
    if epochs < 1 or not lr > 0 or batch_size < 1:
        raise GeosslError(f"fine-tuning needs epochs >= 1, lr > 0 and batch_size >= 1, got {epochs}, {lr}, {batch_size}")
    if not 0 < label_fraction <= 1:
        raise GeosslError(f"label_fraction must be in (0, 1], got {label_fraction}")
    if num_classes < 2:
        raise GeosslError(f"fine-tuning needs at least 2 classes, got {num_classes}")
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    backbone = copy.deepcopy(encoder).to(device)
    head = nn.Linear(feature_dim(encoder), num_classes).to(device)
    model = nn.Sequential(backbone, head)

    if label_fraction < 1:
        labels = torch.as_tensor([int(train_set[i][1]) for i in range(len(train_set))])
        train_set = Subset(train_set, stratified_subset(labels, label_fraction, seed).tolist())
    if len(train_set) < 2:
        raise GeosslError(f"fine-tuning needs at least 2 training images, got {len(train_set)}")
    loader = DataLoader(train_set, batch_size=min(batch_size, len(train_set)), shuffle=True, drop_last=len(train_set) > batch_size,
                        generator=torch.Generator().manual_seed(seed))
    test_loader = DataLoader(test_set, batch_size=256)

    decay = [p for p in backbone.parameters() if p.ndim > 1]
    no_decay = [p for p in backbone.parameters() if p.ndim <= 1]
    base_lr = lr * min(batch_size, len(train_set)) / 256
    opt = torch.optim.SGD([
        {"params": decay, "weight_decay": weight_decay, "lr": base_lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": base_lr},
        {"params": head.parameters(), "weight_decay": 0.0, "lr": base_lr * head_lr_scale},
    ], lr=base_lr, momentum=0.9, nesterov=True)
    total = epochs * len(loader)
    warmup = len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))

    history = []
    for epoch in range(epochs):
        model.train()
        running, seen = 0.0, 0
        batches = loader
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(loader, desc=f"fine-tune {epoch + 1}/{epochs}", leave=False)
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            x = preprocess(x)
            if augment:
                x = _augment(x, generator)
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise GeosslError(f"fine-tuning diverged at epoch {epoch + 1} (loss {loss.item()}); lower --finetune-lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item() * len(y)
            seen += len(y)
        history.append(running / max(1, seen))
    top1, top5, preds, labels = _accuracy(model, test_loader, preprocess, device)
    return {"top1": top1, "top5": top5, "n_train": len(train_set), "n_test": len(labels), "epochs": epochs,
            "train_loss": history, "predictions": preds, "labels": labels}
