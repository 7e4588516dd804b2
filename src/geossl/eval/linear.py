"""Linear probe on frozen features: multinomial logistic regression fitted by L-BFGS (``evaluation.md`` §2, preset
``lbfgs``).

This is the deterministic CPU protocol of the library: features are standardised with the statistics of the data the
classifier is fitted on, and a multinomial logistic regression is fitted full-batch with ``torch.optim.LBFGS``
(strong-Wolfe line search). The objective, for n samples, weights W (C, D) and bias b (C,), is::

    L(W, b) = (1/n) Σ_i CE(W x_i + b, y_i) + (λ/2) ‖W‖²          (the bias is not penalised)

which is scikit-learn's ``LogisticRegression(C=...)`` objective ``C Σ_i CE_i + ½‖W‖²`` divided by C·n, so
**λ = 1 / (C · n)**, i.e. ``C = 1 / (weight_decay · n_train)``. λ = 0 is the unregularised fit (stopped after
``max_iter`` iterations when the data are separable).

The weight decay is chosen by top-1 accuracy on a validation split: the given one, or a seeded stratified 10 % of the
training set, after which the classifier is refitted on the whole training set with the chosen λ. The weight decays are
fitted from the strongest to the weakest, each warm-started from the previous solution (a regularisation path, as in
scikit-learn's ``LogisticRegressionCV``): weakly regularised fits start near their optimum and need few iterations.
Ties in validation accuracy go to the strongest weight decay.

Precision and threads: float64 up to 4·10⁶ feature entries (N·D), float32 above. float64 keeps small problems (the
tests against scikit-learn) at the exact optimum; on large ones float32 stops within ~1e-7 of the optimal loss with the
same accuracy, 4-5× faster. Problems up to 10⁸ multiply-adds per matmul (N·D·C) run on one thread (see
:data:`SINGLE_THREAD_MAX_MACS`). 16,200 × 512 features, 10 classes, five weight decays: 2.5-7 s on 2 shared CPU
cores (~11-17 s in float64 with 2 threads).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from geossl.errors import GeosslError
from geossl.eval._checks import (
    as_features,
    as_labels,
    check_nonempty,
    check_same_dim,
    check_same_length,
    infer_num_classes,
    topk_accuracy,
)

#: Above this many feature entries (N * D) the probe is fitted in float32 (half the memory, twice the matmul speed).
FLOAT64_MAX_ENTRIES = 4_000_000
#: Up to this many multiply-adds per logits matmul (N * D * C) the fit runs on one thread. L-BFGS makes hundreds of
#: small sequential calls, where thread synchronisation dominates as soon as the cores are shared: on 2 busy cores,
#: one thread was 10-30x faster on digits (1,347 x 64 x 10) and 2-3x faster on 16,200 x 512 x 10 (8.3e7).
SINGLE_THREAD_MAX_MACS = 100_000_000


@contextmanager
def _at_most_threads(n: int) -> Iterator[None]:
    """Temporarily cap torch's intra-op threads at ``n`` (restored on exit)."""
    old = torch.get_num_threads()
    if n >= old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def stratified_split(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded stratified split of sample indices into (kept, held-out).

    Each class with at least two samples contributes ``max(1, round(fraction · n_c))`` held-out samples; singleton
    classes stay in the kept part.

    Args:
        labels: class indices (N,).
        fraction: share of each class to hold out.
        seed: seed of the per-class permutations.

    Returns:
        Sorted index tensors (kept (N - V,), held-out (V,)).
    """
    gen = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    held = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if idx.numel() < 2:
            continue
        n_held = max(1, round(fraction * idx.numel()))
        held.append(idx[torch.randperm(idx.numel(), generator=gen)[:n_held]])
    held_idx = torch.sort(torch.cat(held)).values if held else torch.empty(0, dtype=torch.long)
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[held_idx] = False
    return torch.nonzero(mask).flatten(), held_idx


def stratified_subset(labels: Tensor | Any, fraction: float, seed: int = 0) -> Tensor:
    """Seeded stratified subset of sample indices, for the limited-label probes (``evaluation.md`` §3).

    Each class keeps ``max(1, round(fraction · n_c))`` of its n_c samples, drawn by a seeded permutation; the subset
    depends only on the labels and the seed, so every method evaluated on the same data and seed sees the same
    images. ``fraction = 1`` keeps everything.

    Args:
        labels: class indices (N,).
        fraction: share of each class to keep, in (0, 1].
        seed: seed of the per-class permutations.

    Returns:
        Sorted indices (n,) of the kept samples.

    Raises:
        GeosslError: when ``fraction`` is not in (0, 1].
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise GeosslError(f"a label fraction must be in (0, 1], e.g. 0.01 for 1 % of the labels, got {fraction}.")
    y = as_labels(labels, "labels").cpu()
    if fraction >= 1.0:
        return torch.arange(y.numel())
    gen = torch.Generator().manual_seed(seed)
    kept = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        n_keep = max(1, round(float(fraction) * idx.numel()))
        kept.append(idx[torch.randperm(idx.numel(), generator=gen)[:n_keep]])
    return torch.sort(torch.cat(kept)).values if kept else torch.empty(0, dtype=torch.long)


class _Standardizer:
    """Per-feature standardisation x ↦ (x − μ) / σ with the statistics of the fitted data (σ = 1 for constant
    features, which would otherwise divide by zero)."""

    def __init__(self, x: Tensor) -> None:
        self.mean = x.mean(dim=0)
        std = x.std(dim=0, correction=0)
        self.std = torch.where(std > 1e-12 * x.abs().amax(dim=0).clamp_min(1.0), std, torch.ones_like(std))

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _fit(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    weight_decay: float,
    max_iter: int,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Fit multinomial logistic regression on standardised features.

    Args:
        x: standardised features (N, D).
        y: labels (N,).
        num_classes: C.
        weight_decay: λ of the (λ/2)‖W‖² penalty.
        max_iter: L-BFGS iterations.
        init: warm start (W (C, D), b (C,)); zeros otherwise.

    Returns:
        Weights (C, D) and bias (C,), detached.
    """
    if init is None:
        w = torch.zeros(num_classes, x.shape[1], dtype=x.dtype)
        b = torch.zeros(num_classes, dtype=x.dtype)
    else:
        w, b = (t.detach().clone() for t in init)
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7 if x.dtype == torch.float64 else 1e-5,
                            tolerance_change=1e-12 if x.dtype == torch.float64 else 1e-9)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(torch.addmm(b, x, w.T), y) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _fit_sgd(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    weight_decay: float,
    lr: float,
    epochs: int,
    seed: int,
    batch_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Mini-batch SGD (momentum 0.9, cosine schedule) of the same objective as :func:`_fit`, from zeros, seeded."""
    w = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, requires_grad=True)
    b = torch.zeros(num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=lr, momentum=0.9)
    steps_per_epoch = max(1, -(-len(y) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch_size):
            opt.zero_grad()
            loss = F.cross_entropy(torch.addmm(b, x[idx], w.T), y[idx]) + 0.5 * weight_decay * w.pow(2).sum()
            loss.backward()
            opt.step()
            sched.step()
    return w.detach(), b.detach()


def _scores(x: Tensor, params: tuple[Tensor, Tensor]) -> Tensor:
    w, b = params
    return torch.addmm(b, x, w.T)


def _per_class_accuracy(pred: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Accuracy in percent per class (C,), float64; NaN for classes absent from ``labels``."""
    total = torch.bincount(labels, minlength=num_classes).double()
    correct = torch.bincount(labels[pred == labels], minlength=num_classes).double()
    return torch.where(total > 0, 100.0 * correct / total.clamp_min(1), torch.full_like(total, float("nan")))


def _test_result(scores: Tensor, y_te: Tensor, n_classes: int, **chosen: Any) -> dict[str, Any]:
    """The probe's returned dict from its test logits (see :func:`linear_probe`) and the chosen hyperparameters."""
    pred = scores.argmax(dim=1)
    return {
        "top1": topk_accuracy(scores, y_te, 1),
        "top5": topk_accuracy(scores, y_te, 5),
        "predictions": pred,
        **chosen,
        "per_class_accuracy": _per_class_accuracy(pred, y_te, n_classes),
        "scores": scores.detach().float(),
    }


def linear_probe(
    train_features: Tensor | Any,
    train_labels: Tensor | Any,
    test_features: Tensor | Any,
    test_labels: Tensor | Any,
    *,
    val_features: Tensor | Any | None = None,
    val_labels: Tensor | Any | None = None,
    weight_decays: Sequence[float] = (0.0, 1e-5, 1e-4, 1e-3, 1e-2),
    max_iter: int = 200,
    seed: int = 0,
    solver: str = "lbfgs",
    sgd_lrs: Sequence[float] = (0.01, 0.1, 1.0),
    sgd_epochs: int = 30,
) -> dict[str, Any]:
    """Linear probe (multinomial logistic regression) on frozen features, preset ``lbfgs`` (default) or ``sgd`` of
    ``evaluation.md`` §2.

    Args:
        train_features: (N, D) features that fit the classifier (torch or NumPy).
        train_labels: (N,) labels in 0..C-1.
        test_features: (M, D) features to score.
        test_labels: (M,) labels.
        val_features: optional (V, D) features that choose the weight decay; without them a seeded stratified 10 %
            of the training set is held out for the choice and the classifier is then refitted on all of it.
        val_labels: (V,) labels, given together with ``val_features``.
        weight_decays: candidate λ of the (λ/2)‖W‖² penalty on the mean cross-entropy; λ = 1/(C·n) in terms of
            scikit-learn's ``C``. A single value skips the validation split.
        max_iter: L-BFGS iterations per fit.
        seed: seed of the held-out split (and of the SGD batch order; L-BFGS itself has no randomness).
        solver: ``"lbfgs"`` (full batch, deterministic, the default) or ``"sgd"``: mini-batch SGD with momentum 0.9 and
            a cosine schedule, the learning rate chosen from ``sgd_lrs`` together with the weight decay on the
            validation split (the usual SSL-paper protocol).
        sgd_lrs: candidate learning rates of the SGD solver (standardised features).
        sgd_epochs: epochs of each SGD fit.

    Returns:
        ``{"top1", "top5"}`` test accuracies in percent, ``"predictions"`` (M,) long, ``"weight_decay"`` the chosen λ,
        ``"val_top1"`` the validation accuracy of the chosen λ in percent (``None`` when nothing was chosen), and
        ``"per_class_accuracy"`` (C,) float64 percent with NaN for classes absent from the test set, and ``"scores"``
        (M, C) the test logits.

    Raises:
        GeosslError: on mismatched lengths or dimensions, invalid labels, non-finite features, an empty split, no or
            negative weight decays, or only one of ``val_features`` / ``val_labels``.
    """
    if (val_features is None) != (val_labels is None):
        raise GeosslError("pass both val_features and val_labels, or neither.")
    wds = sorted({float(w) for w in weight_decays}, reverse=True)
    if not wds or wds[-1] < 0:
        raise GeosslError(f"weight_decays must be a non-empty list of values >= 0, got {list(weight_decays)}.")
    if max_iter < 1:
        raise GeosslError(f"max_iter must be >= 1, got {max_iter}.")
    if solver not in ("lbfgs", "sgd"):
        raise GeosslError(f"solver must be 'lbfgs' or 'sgd', got {solver!r}.")
    if solver == "sgd" and (not sgd_lrs or any(not lr > 0 for lr in sgd_lrs) or sgd_epochs < 1):
        raise GeosslError(f"the sgd solver needs positive learning rates and sgd_epochs >= 1, got {list(sgd_lrs)} and {sgd_epochs}.")

    x_tr = as_features(train_features, "train_features").cpu()
    y_tr = as_labels(train_labels, "train_labels").cpu()
    x_te = as_features(test_features, "test_features").cpu()
    y_te = as_labels(test_labels, "test_labels").cpu()
    check_same_length(x_tr, y_tr, "train_features", "train_labels")
    check_same_length(x_te, y_te, "test_features", "test_labels")
    check_nonempty(x_tr, "train_features")
    check_nonempty(x_te, "test_features")
    check_same_dim(x_tr, x_te, "train_features", "test_features")
    all_labels = [y_tr, y_te]
    x_va = y_va = None
    if val_features is not None:
        x_va = as_features(val_features, "val_features").cpu()
        y_va = as_labels(val_labels, "val_labels").cpu()
        check_same_length(x_va, y_va, "val_features", "val_labels")
        check_nonempty(x_va, "val_features")
        check_same_dim(x_tr, x_va, "train_features", "val_features")
        all_labels.append(y_va)
    n_classes = infer_num_classes(*all_labels)
    dtype = torch.float64 if x_tr.numel() <= FLOAT64_MAX_ENTRIES else torch.float32
    small = x_tr.numel() * n_classes <= SINGLE_THREAD_MAX_MACS
    # Autograd on even when called from a no_grad / inference_mode context (e.g. a Lightning validation hook); tensors
    # created in inference mode cannot enter autograd, so those are cloned into normal tensors.
    with _at_most_threads(1 if small else torch.get_num_threads()), torch.inference_mode(False), torch.enable_grad():
        x_tr, y_tr, x_te, y_te = (t.clone() if t.is_inference() else t for t in (x_tr, y_tr, x_te, y_te))
        if x_va is not None and y_va is not None:
            x_va, y_va = (t.clone() if t.is_inference() else t for t in (x_va, y_va))
        if solver == "sgd":
            return _probe_sgd(x_tr, y_tr, x_te, y_te, x_va, y_va, n_classes, wds, list(sgd_lrs), sgd_epochs, seed, dtype)
        return _probe(x_tr, y_tr, x_te, y_te, x_va, y_va, n_classes, wds, max_iter, seed, dtype)


def _probe_sgd(
    x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor, x_va: Tensor | None, y_va: Tensor | None, n_classes: int,
    wds: list[float], lrs: list[float], epochs: int, seed: int, dtype: torch.dtype,
) -> dict[str, Any]:
    """SGD probe: (lr, λ) chosen on the validation split (given, or a held-out 10 % then a refit), then test scores."""
    chosen, val_top1, params, refit = (lrs[0], wds[0]), None, None, False
    x_fit, y_fit = x_tr, y_tr
    if x_va is None and len(wds) * len(lrs) > 1:
        fit_idx, held_idx = stratified_split(y_tr, 0.1, seed)
        if held_idx.numel() > 0:
            x_fit, y_fit, x_va, y_va = x_tr[fit_idx], y_tr[fit_idx], x_tr[held_idx], y_tr[held_idx]
            refit = True
    if x_va is not None and y_va is not None:
        std = _Standardizer(x_fit.to(dtype))
        xf, xv = std(x_fit.to(dtype)), std(x_va.to(dtype))
        best = -1.0
        for wd in wds:
            for lr in lrs:
                p = _fit_sgd(xf, y_fit, n_classes, wd, lr, epochs, seed)
                acc = topk_accuracy(_scores(xv, p), y_va, 1)
                if acc > best:
                    best, chosen, params = acc, (lr, wd), p
        val_top1 = best
    std = _Standardizer(x_tr.to(dtype))
    if params is None or refit:
        params = _fit_sgd(std(x_tr.to(dtype)), y_tr, n_classes, chosen[1], chosen[0], epochs, seed)
    return _test_result(_scores(std(x_te.to(dtype)), params), y_te, n_classes, weight_decay=chosen[1], lr=chosen[0],
                        val_top1=val_top1)


def _probe(
    x_tr: Tensor,
    y_tr: Tensor,
    x_te: Tensor,
    y_te: Tensor,
    x_va: Tensor | None,
    y_va: Tensor | None,
    n_classes: int,
    wds: list[float],
    max_iter: int,
    seed: int,
    dtype: torch.dtype,
) -> dict[str, Any]:
    """Body of :func:`linear_probe` on validated CPU tensors; ``x_va`` is None when no validation split is given."""
    # 1. Choose λ on a validation split: the given one (fit on all of train), or a held-out 10 % of train followed by
    #    a refit on all of it. A regularisation path, strongest first, each fit warm-started from the previous one.
    chosen, val_top1, params = wds[0], None, None
    refit = False
    x_fit, y_fit = x_tr, y_tr
    if x_va is None and len(wds) > 1:
        fit_idx, held_idx = stratified_split(y_tr, 0.1, seed)
        if held_idx.numel() > 0:  # only singleton classes: nothing to hold out, keep the strongest λ
            x_fit, y_fit, x_va, y_va = x_tr[fit_idx], y_tr[fit_idx], x_tr[held_idx], y_tr[held_idx]
            refit = True
    if x_va is not None and y_va is not None:
        std = _Standardizer(x_fit.to(dtype))
        xf, xv = std(x_fit.to(dtype)), std(x_va.to(dtype))
        best, best_params = -1.0, None
        for wd in wds:
            params = _fit(xf, y_fit, n_classes, wd, max_iter, init=params)
            acc = topk_accuracy(_scores(xv, params), y_va, 1)
            if acc > best:  # strict: ties keep the stronger weight decay, fitted first
                best, chosen, best_params = acc, wd, params
        val_top1, params = best, best_params

    # 2. Final classifier on the whole training set (skipped when it was already fitted on it).
    std = _Standardizer(x_tr.to(dtype))
    if params is None or refit:
        params = _fit(std(x_tr.to(dtype)), y_tr, n_classes, chosen, max_iter, init=params)

    return _test_result(_scores(std(x_te.to(dtype)), params), y_te, n_classes, weight_decay=chosen, val_top1=val_top1)
