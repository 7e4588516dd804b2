"""Online evaluation during self-supervised pre-training (``evaluation.md`` §4).

The online linear probe (Garrido et al. 2023, as cited in ``evaluation.md`` §4; also solo-learn's online classifier) is a linear classifier trained jointly with the
SSL objective on **detached** backbone features: its running accuracy is a cheap proxy for the offline linear probe,
and because the features are detached the probe never shapes the representation. It is meant to sit in its own
optimiser parameter group without weight decay (:meth:`OnlineLinearProbe.param_group`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geossl.errors import GeosslError


class OnlineLinearProbe(nn.Module):
    """Linear classifier on detached features, trained alongside the SSL loss.

    Samples labelled -1 (unlabeled) are ignored; a batch without labels gives a zero loss (still attached to the
    probe's parameters, so distributed training sees every parameter used) and a NaN accuracy, which callers should
    not log.

    Args:
        dim: feature dimension D (backbone output, before the projector).
        num_classes: C.
        lr: learning rate of the probe's parameter group; ``None`` inherits the optimiser's default.

    Example:
        >>> probe = OnlineLinearProbe(512, 10, lr=0.1)
        >>> opt = torch.optim.SGD([{"params": backbone.parameters()}, probe.param_group()], lr=0.05)
        >>> probe_loss, probe_acc = probe(features, labels)   # features: backbone output (B, D)
        >>> (ssl_loss + probe_loss).backward()
    """

    def __init__(self, dim: int, num_classes: int, lr: float | None = None) -> None:
        super().__init__()
        if dim < 1 or num_classes < 2:
            raise GeosslError(f"OnlineLinearProbe needs dim >= 1 and num_classes >= 2, got dim={dim}, "
                              f"num_classes={num_classes}.")
        self.num_classes = num_classes
        self.lr = lr
        self.linear = nn.Linear(dim, num_classes)

    def param_group(self) -> dict[str, Any]:
        """The probe's optimiser parameter group: its own learning rate and no weight decay (no coupling with the
        backbone's regularisation)."""
        group: dict[str, Any] = {"params": list(self.parameters()), "weight_decay": 0.0}
        if self.lr is not None:
            group["lr"] = self.lr
        return group

    def forward(self, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-entropy and accuracy of the probe on a batch.

        Args:
            features: backbone features (B, D); detached here, so no gradient reaches the backbone.
            labels: (B,) long, -1 for unlabeled samples.

        Returns:
            ``(loss, accuracy)``: scalar cross-entropy over the labelled samples (0 when there are none) and scalar
            top-1 accuracy in percent (NaN when there are none), detached.
        """
        if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
            raise GeosslError(f"OnlineLinearProbe expects features (B, D) and labels (B,), got "
                              f"{tuple(features.shape)} and {tuple(labels.shape)}.")
        labels = labels.long()
        if labels.numel() and int(labels.max()) >= self.num_classes:
            raise GeosslError(f"label {int(labels.max())} is out of range for an online probe with "
                              f"{self.num_classes} classes; set num_classes to the dataset's class count.")
        logits = self.linear(features.detach())
        labelled = labels >= 0
        if not labelled.any():
            # Zero loss still connected to the parameters (DDP expects every parameter to receive a gradient).
            return logits.sum() * 0.0, torch.tensor(float("nan"), device=logits.device)
        loss = F.cross_entropy(logits[labelled], labels[labelled])
        with torch.no_grad():
            acc = 100.0 * (logits[labelled].argmax(dim=1) == labels[labelled]).float().mean()
        return loss, acc


def knn_accuracy_on_split(
    encoder: nn.Module,
    train_dataset: Any,
    test_dataset: Any,
    *,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    k: int = 20,
    temperature: float = 0.07,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Extract features of two labelled datasets with ``encoder`` and run the weighted k-NN protocol.

    The per-epoch online k-NN of ``evaluation.md`` §4 in one call (e.g. from a training callback). Unlabeled samples
    (label -1) of the bank are dropped; those of the test split are not scored.

    Args:
        encoder: maps a preprocessed batch (B, C, H, W) to features (B, D).
        train_dataset: yields ``(image (C, H, W), label)``; the k-NN bank.
        test_dataset: yields ``(image, label)``; the queries.
        preprocess: batch normalisation applied on device, see :func:`geossl.eval.features.extract_features`.
        k: neighbours (DINO default 20).
        temperature: vote temperature (DINO default 0.07).
        batch_size: extraction batch size.
        device: extraction device (default: the encoder's).
        progress: show progress bars.

    Returns:
        The dict of :func:`geossl.eval.knn.knn_classify` plus ``n_train`` and ``n_test`` (labelled samples used).
    """
    from geossl.eval.features import extract_features
    from geossl.eval.knn import knn_classify

    tr_f, tr_y = extract_features(encoder, train_dataset, preprocess=preprocess, batch_size=batch_size,
                                  device=device, progress=progress)
    te_f, te_y = extract_features(encoder, test_dataset, preprocess=preprocess, batch_size=batch_size,
                                  device=device, progress=progress)
    tr_keep, te_keep = tr_y >= 0, te_y >= 0
    if not tr_keep.any() or not te_keep.any():
        raise GeosslError("online k-NN needs labelled train and test samples; the datasets have none (labels -1).")
    out = knn_classify(tr_f[tr_keep], tr_y[tr_keep], te_f[te_keep], te_y[te_keep], k=k, temperature=temperature)
    out.update(n_train=int(tr_keep.sum()), n_test=int(te_keep.sum()))
    return out
