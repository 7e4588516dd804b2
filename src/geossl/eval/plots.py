"""Report figures: training curves, confusion matrix and 2-D embedding map (PNG, matplotlib Agg).

Figures are built with :class:`matplotlib.figure.Figure` directly rather than ``pyplot``: no global state, no GUI
backend is ever selected, and plotting from a training callback or a thread is safe.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from geossl.errors import GeosslError, unknown_name_error
from geossl.eval._checks import as_features, as_labels, check_same_length

DPI = 120
#: Candidate names of the per-step training loss in a Lightning CSVLogger ``metrics.csv``, in order of preference.
LOSS_COLUMNS = ("train/loss", "train/loss_step", "train_loss", "train_loss_step", "loss")
_EMBEDDING_METHODS = ("auto", "tsne", "pca")


def _save(fig: Figure, out_png: str | os.PathLike[str]) -> Path:
    path = Path(out_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def _read_metrics_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of a (sparse) Lightning metrics.csv as float arrays, empty cells as NaN."""
    if not path.is_file():
        raise GeosslError(f"metrics file {path} does not exist; pass the metrics.csv written by the run's CSVLogger.")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise GeosslError(f"metrics file {path} has no rows; train for at least one logging step first.")

    def num(v: str | None) -> float:
        try:
            return float(v) if v not in (None, "") else math.nan
        except ValueError:
            return math.nan

    return {c: np.array([num(r.get(c)) for r in rows]) for c in rows[0]}


def _ema(y: np.ndarray, span: int) -> np.ndarray:
    """Bias-corrected exponential moving average (TensorBoard-style smoothing)."""
    alpha = 2.0 / (span + 1.0)
    out, acc, norm = np.empty_like(y), 0.0, 0.0
    for i, v in enumerate(y):
        acc = (1 - alpha) * acc + alpha * v
        norm = (1 - alpha) * norm + alpha
        out[i] = acc / norm
    return out


def _accuracy_columns(cols: dict[str, np.ndarray]) -> list[str]:
    names = [c for c in cols if c not in ("step", "epoch") and "loss" not in c.lower()
             and ("top1" in c.lower() or "acc" in c.lower())]
    return [c for c in names if np.isfinite(cols[c]).any()]


def plot_loss_curve(metrics_csv_path: str | os.PathLike[str], out_png: str | os.PathLike[str]) -> Path:
    """Training loss against step and, when logged, accuracies (e.g. online k-NN top-1) against epoch.

    Reads a Lightning ``CSVLogger`` metrics.csv: columns ``step``, ``epoch`` and sparse metric columns (each row holds
    only what was logged at that point). The per-step loss is the first of :data:`LOSS_COLUMNS` present (raw values
    faint, smoothed curve on top), with its ``_epoch`` mean as markers when logged; every column whose name contains
    ``top1`` or ``acc`` (e.g. ``val/knn_top1``) is averaged per epoch and drawn in a second panel.

    Args:
        metrics_csv_path: path of metrics.csv.
        out_png: output PNG path (parent folders are created).

    Returns:
        The PNG path.

    Raises:
        GeosslError: when the file is missing or empty, or has no loss column.
    """
    cols = _read_metrics_csv(Path(metrics_csv_path))
    loss_col = next((c for c in LOSS_COLUMNS if c in cols and np.isfinite(cols[c]).any()), None)
    if loss_col is None:
        loss_col = next((c for c in cols if c.lower().endswith("loss") and np.isfinite(cols[c]).any()), None)
    if loss_col is None:
        raise GeosslError(f"no training-loss column in {metrics_csv_path} (looked for {', '.join(LOSS_COLUMNS)}); "
                          "log the loss as 'train/loss'.")
    n_rows = len(cols[loss_col])
    step = cols.get("step", np.arange(n_rows, dtype=float))
    epoch = cols.get("epoch", np.full(n_rows, math.nan))
    acc_cols = _accuracy_columns(cols)

    fig = Figure(figsize=(11.5, 4.2) if acc_cols else (6.5, 4.2), layout="constrained")
    axes = fig.subplots(1, 2 if acc_cols else 1, squeeze=False)[0]
    ax = axes[0]
    ok = np.isfinite(cols[loss_col]) & np.isfinite(step)
    x, y = step[ok], cols[loss_col][ok]
    if len(y) > 50:
        ax.plot(x, y, color="tab:blue", alpha=0.25, lw=0.8, label=f"{loss_col} (per step)")
        ax.plot(x, _ema(y, max(5, len(y) // 40)), color="tab:blue", lw=1.8, label="smoothed")
    else:
        ax.plot(x, y, color="tab:blue", lw=1.5, marker="o" if len(y) < 15 else None, ms=3, label=loss_col)
    epoch_col = f"{loss_col}_epoch" if f"{loss_col}_epoch" in cols else ("train/loss_epoch" if "train/loss_epoch"
                                                                         in cols else None)
    if epoch_col is not None:
        ok_e = np.isfinite(cols[epoch_col]) & np.isfinite(step)
        if ok_e.any():
            ax.plot(step[ok_e], cols[epoch_col][ok_e], color="tab:orange", marker="o", ms=4, lw=1.2,
                    label="epoch mean")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers

    if acc_cols:
        ax2 = axes[1]
        top = 0.0
        for c in acc_cols:
            ok_a = np.isfinite(cols[c]) & np.isfinite(epoch)
            if not ok_a.any():
                continue
            epochs = np.unique(epoch[ok_a])
            means = [cols[c][ok_a & (epoch == e)].mean() for e in epochs]
            ax2.plot(epochs, means, marker="o", ms=4, lw=1.5, label=c)
            top = max(top, float(np.nanmax(means)))
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("accuracy (%)" if top > 1.0 else "accuracy")  # some runs log fractions, geossl logs percent
        ax2.set_title("Online evaluation")
        ax2.grid(alpha=0.3)
        ax2.legend(loc="best", fontsize=9)  # "lower right" hid rising curves of low accuracy
        ax2.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, out_png)


def _check_class_names(labels: torch.Tensor, class_names: Sequence[str], what: str) -> list[str]:
    names = [str(c) for c in class_names]
    if labels.numel() and int(labels.max()) >= len(names):
        raise GeosslError(f"{what} contain class index {int(labels.max())} but only {len(names)} class names were "
                          "given; pass one name per class.")
    return names


def plot_confusion_matrix(
    true: torch.Tensor | Any,
    pred: torch.Tensor | Any,
    class_names: Sequence[str],
    out_png: str | os.PathLike[str],
) -> Path:
    """Row-normalised confusion matrix: cell (i, j) is the percentage of true class i predicted as j.

    Args:
        true: true labels (M,) in 0..C-1.
        pred: predicted labels (M,) in 0..C-1.
        class_names: C names, in class-index order.
        out_png: output PNG path.

    Returns:
        The PNG path.

    Raises:
        GeosslError: when ``true`` and ``pred`` differ in length or a label has no class name.
    """
    y = as_labels(true, "true labels").cpu()
    p = as_labels(pred, "predicted labels").cpu()
    check_same_length(y, p, "true labels", "predicted labels")
    if y.numel() == 0:
        raise GeosslError("cannot plot a confusion matrix of zero samples.")
    names = _check_class_names(torch.cat([y, p]), class_names, "labels")
    c = len(names)
    counts = torch.bincount(y * c + p, minlength=c * c).reshape(c, c).double().numpy()
    row = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(row > 0, 100.0 * counts / row, np.nan)

    # Cells big enough for their numbers up to 30 classes; above that no numbers, so smaller cells.
    side = min(max(5.0, (0.55 if c <= 30 else 0.3) * c + 2.5), 24.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#eeeeee")  # grey rows: classes absent from the set
    im = ax.imshow(np.ma.masked_invalid(pct), cmap=cmap, vmin=0, vmax=100)
    if c <= 30:  # beyond that the numbers no longer fit in the cells
        fontsize = 9 if c <= 12 else 7
        for i in range(c):
            for j in range(c):
                if counts[i, j] > 0:
                    text = f"{pct[i, j]:.0f}" if pct[i, j] >= 0.5 else "<1"  # a non-empty cell never reads 0
                    ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                            color="white" if pct[i, j] > 55 else "black")
    ax.set_xticks(range(c), names, rotation=45, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(c), names, fontsize=9)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = 100.0 * float((y == p).double().mean())
    ax.set_title(f"Confusion matrix (% of each true class)\ntop-1 {acc:.1f}% on {y.numel():,} samples", fontsize=11)
    fig.colorbar(im, ax=ax, shrink=0.8, label="% of true class")
    return _save(fig, out_png)


def _project_2d(x: torch.Tensor, method: str, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates (n, 2) and the name of the method used."""
    use_tsne = method == "tsne"
    if method == "auto":
        try:
            import sklearn.manifold  # noqa: F401  (optional: t-SNE when scikit-learn is installed)
            use_tsne = x.shape[0] >= 10
        except ImportError:
            use_tsne = False
    x = x.double()
    with torch.random.fork_rng(devices=[]):  # pca_lowrank is randomised; seed it without touching the global RNG
        torch.manual_seed(seed)
        if use_tsne:
            try:
                from sklearn.manifold import TSNE
            except ImportError as e:
                raise GeosslError("method='tsne' needs scikit-learn; install it or use method='pca'.") from e
            # PCA to 50 dimensions first: the usual t-SNE preprocessing, much faster on wide features.
            q = min(50, *x.shape)  # pca_lowrank needs q <= min(n, d): small sets keep fewer components
            if x.shape[1] > q:
                u, s, _ = torch.pca_lowrank(x, q=q, center=True)
                x = u * s
            perplexity = float(min(30.0, (x.shape[0] - 1) / 3))
            xy = TSNE(n_components=2, init="pca", learning_rate="auto", perplexity=perplexity,
                      random_state=seed).fit_transform(x.numpy())
            return xy, "t-SNE"
        u, s, _ = torch.pca_lowrank(x, q=min(2, *x.shape), center=True)
        xy = (u * s).numpy()
        if xy.shape[1] < 2:
            xy = np.concatenate([xy, np.zeros((xy.shape[0], 2 - xy.shape[1]))], axis=1)
        return xy, "PCA"


def plot_embedding_2d(
    features: torch.Tensor | Any,
    labels: torch.Tensor | Any,
    class_names: Sequence[str],
    out_png: str | os.PathLike[str],
    method: str = "auto",
    *,
    max_points: int = 3000,
    seed: int = 0,
) -> Path:
    """2-D map of embeddings coloured by class: t-SNE (scikit-learn) or PCA (``torch.pca_lowrank``).

    Args:
        features: (N, D) features.
        labels: (N,) labels in 0..C-1; -1 is drawn in grey as "unlabeled".
        class_names: C names in class-index order.
        out_png: output PNG path.
        method: ``"auto"`` (t-SNE when scikit-learn is importable, else PCA), ``"tsne"`` or ``"pca"``.
        max_points: a seeded random subset of at most this many points is drawn (t-SNE is quadratic-ish).
        seed: seed of the subset, t-SNE and the randomised PCA.

    Returns:
        The PNG path; the title names the method and the number of points.

    Raises:
        GeosslError: on mismatched lengths, labels without a class name, or an unknown method.
    """
    if method not in _EMBEDDING_METHODS:
        raise unknown_name_error("embedding method", method, _EMBEDDING_METHODS)
    x = as_features(features, "features").cpu()
    y = as_labels(labels, "labels", allow_unlabeled=True).cpu()
    check_same_length(x, y, "features", "labels")
    if x.shape[0] < 2:
        raise GeosslError(f"need at least 2 points for an embedding plot, got {x.shape[0]}.")
    names = _check_class_names(y, class_names, "labels")
    n_total = x.shape[0]
    if n_total > max_points:
        keep = torch.sort(torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:max_points]).values
        x, y = x[keep], y[keep]
    xy, used = _project_2d(x, method, seed)

    c = len(names)
    cmap = matplotlib.colormaps["tab10" if c <= 10 else "tab20" if c <= 20 else "turbo"]
    colours = [cmap(i) if c <= 20 else cmap(i / max(1, c - 1)) for i in range(c)]
    fig = Figure(figsize=(8.5 if c <= 20 else 10.5, 6.5), layout="constrained")
    ax = fig.subplots()
    for k in range(-1, c):
        m = (y == k).numpy()
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=7, alpha=0.75, linewidths=0,
                       color="#9e9e9e" if k < 0 else colours[k], label="unlabeled" if k < 0 else names[k])
    subset = f" (random subset of {n_total:,})" if n_total > x.shape[0] else ""
    ax.set_title(f"{used} of {x.shape[0]:,} embeddings{subset}")
    ax.set_xlabel(f"{used} 1")
    ax.set_ylabel(f"{used} 2")
    if used == "t-SNE":  # t-SNE coordinates carry no units
        ax.set_xticks([])
        ax.set_yticks([])
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9 if c <= 20 else 7, markerscale=2.5,
              frameon=False, ncol=1 if c <= 25 else 2, title="class")
    return _save(fig, out_png)


def plot_per_class_accuracy(
    per_class: Mapping[str, Any],
    class_names: Sequence[str],
    out_png: str | os.PathLike[str],
    *,
    support: Any | None = None,
) -> Path:
    """Horizontal bar chart of the accuracy of each class (recall, %), one bar per classifier and class.

    Args:
        per_class: ``{classifier name: accuracies (C,) in percent}``, e.g. ``{"linear": ..., "knn (k=20)": ...}``;
            NaN (a class absent from the evaluation set) is drawn as "n/a".
        class_names: C names in class-index order (drawn top to bottom).
        out_png: output PNG path.
        support: optional (C,) number of evaluation samples per class, shown next to the class names.

    Returns:
        The PNG path.

    Raises:
        GeosslError: when no classifier is given or an accuracy vector does not have one entry per class.
    """
    names = [str(c) for c in class_names]
    c = len(names)
    if not per_class or c == 0:
        raise GeosslError("plot_per_class_accuracy needs at least one classifier and one class.")
    series = {}
    for label, acc in per_class.items():
        a = np.asarray(torch.as_tensor(acc).double().cpu().numpy(), dtype=float).ravel()
        if a.shape[0] != c:
            raise GeosslError(f"per-class accuracies of '{label}' have {a.shape[0]} entries for {c} classes; pass one "
                              "accuracy per class.")
        series[str(label)] = a
    if support is not None:
        n = np.asarray(torch.as_tensor(support).cpu().numpy()).ravel()
        names = [f"{name} (n={int(v):,})" for name, v in zip(names, n)]
    s = len(series)
    bar = 0.8 / s
    fig = Figure(figsize=(8.0, 0.25 * c * (0.6 + 0.4 * s) + 1.8), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab10"]
    y0 = np.arange(c)
    for j, (label, a) in enumerate(series.items()):
        ys = y0 - 0.4 + bar * (j + 0.5)
        mean = float(np.nanmean(a)) if np.isfinite(a).any() else math.nan
        ax.barh(ys, np.nan_to_num(a, nan=0.0), height=bar * 0.92, color=cmap(j % 10),
                label=f"{label} (mean {mean:.1f}%)")
        if s * c <= 60:  # beyond that the numbers no longer fit next to the bars
            for yy, v in zip(ys, a):
                ax.text((v if np.isfinite(v) else 0.0) + 1.0, yy, f"{v:.0f}" if np.isfinite(v) else "n/a",
                        va="center", ha="left", fontsize=7 if s > 2 or c > 20 else 8)
    ax.set_yticks(y0, names, fontsize=9 if c <= 20 else 7)
    ax.set_ylim(c - 0.5, -0.5)  # class 0 on top, as in the confusion matrix
    ax.set_xlim(0, 108)
    ax.set_xticks(range(0, 101, 20))
    ax.set_xlabel("accuracy of the class (% of its samples)")
    ax.set_title("Per-class accuracy")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(s, 2), fontsize=9, frameon=False)
    return _save(fig, out_png)


def plot_knn_vs_k(
    curves: Mapping[float, tuple[Sequence[int], Sequence[float]]],
    out_png: str | os.PathLike[str],
    *,
    metric_name: str = "top-1",
) -> Path:
    """k-NN accuracy against the number of neighbours k (log scale), one line per vote temperature T.

    Args:
        curves: ``{T: (ks, accuracies in percent)}``.
        out_png: output PNG path.
        metric_name: label of the accuracy axis.

    Returns:
        The PNG path.

    Raises:
        GeosslError: when no curve is given or a curve's ks and accuracies differ in length.
    """
    if not curves:
        raise GeosslError("plot_knn_vs_k needs at least one (ks, accuracies) curve.")
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    all_k: set[int] = set()
    lo, hi = math.inf, -math.inf
    best: tuple[float, int, float] | None = None
    for j, (t, (ks, accs)) in enumerate(sorted(curves.items())):
        ks, accs = [int(k) for k in ks], [float(a) for a in accs]
        if len(ks) != len(accs) or not ks:
            raise GeosslError(f"the k-NN curve for T={t} has {len(ks)} k values and {len(accs)} accuracies.")
        order = np.argsort(ks)
        x, y = np.array(ks)[order], np.array(accs)[order]
        ax.plot(x, y, marker="o", ms=5, lw=1.6, label=f"T = {t:g}", color=matplotlib.colormaps["tab10"](j % 10))
        i = int(np.argmax(y))
        if best is None or y[i] > best[0]:
            best = (float(y[i]), int(x[i]), float(t))
        all_k.update(ks)
        lo, hi = min(lo, float(y.min())), max(hi, float(y.max()))
    ax.set_xscale("log")
    ticks = sorted(all_k)
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    else:
        ax.set_xlim(ticks[0] / 1.25, ticks[-1] * 1.25)
    pad = max(2.0, 0.15 * (hi - lo))
    bottom, top = max(0.0, lo - pad), min(100.0, hi + pad)
    top = max(top, bottom + 1.0)
    ax.set_ylim(bottom, top + 0.04 * (top - bottom))
    ax.set_yticks([v for v in ax.get_yticks() if bottom <= v <= min(top, 100.0)])
    title = "k-NN accuracy against k"
    if best is not None:  # the best cell of the sweep: a star, and its numbers in the title
        ax.plot([best[1]], [best[0]], marker="*", ms=14, color="gold", markeredgecolor="black", zorder=5,
                linestyle="none")
        title += f"\nbest {metric_name} {best[0]:.2f}% at k = {best[1]}, T = {best[2]:g}"
    ax.set_xlabel("k (neighbours)")
    ax.set_ylabel(f"{metric_name} accuracy (%)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(title="vote temperature", fontsize=9)
    return _save(fig, out_png)
