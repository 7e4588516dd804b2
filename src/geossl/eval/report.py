"""Evaluation reports: a Markdown page with tables and figures, plus machine-readable results.

``write_report`` writes, into one directory::

    report.md            title, info table, results table, figures (relative links)
    results.json         {"title", "info", "results"}
    results.csv          one row per evaluation (encoder × protocol), one column per field
    loss_curve.png       when a metrics.csv is given
    confusion_matrix.png when (true, pred, class_names) is given
    embedding.png        when (features, labels, class_names) is given

Report files are regenerated on each call (they are derived outputs, not run state).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from geossl.errors import GeosslError

# Columns shown first when present, in this order; other fields follow in first-seen order.
_PREFERRED_COLUMNS = ("encoder", "protocol", "top1", "top5", "n_train", "n_test")


def _plain(value: Any) -> Any:
    """JSON/CSV-friendly version of a value: tensors and arrays to lists or scalars, NaN to None."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    elif hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # NumPy arrays and scalars
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _fmt(value: Any) -> str:
    """Human-readable cell: floats with 2 decimals, thousands separators for ints, '-' for missing."""
    value = _plain(value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    if isinstance(value, list):  # e.g. an image size (64, 64) or a band list; long per-sample lists are summarised
        return ", ".join(_fmt(v) for v in value) if len(value) <= 16 else f"[{len(value)} values]"
    return str(value)


def _scalar_columns(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns of the results table: every field that is a scalar in some row (per-sample tensors are left out)."""
    seen: list[str] = []
    for r in results:
        for k, v in r.items():
            if k not in seen and not isinstance(_plain(v), (list, dict)):
                seen.append(k)
    return [c for c in _PREFERRED_COLUMNS if c in seen] + [c for c in seen if c not in _PREFERRED_COLUMNS]


def _check_results(results: Any) -> list[Mapping[str, Any]]:
    if isinstance(results, Mapping) or not all(isinstance(r, Mapping) for r in results):
        raise GeosslError("results must be a list of dicts, one per evaluation, e.g. [{'encoder': ..., 'protocol': "
                          "..., 'top1': ...}].")
    return list(results)


def format_results_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of evaluation results for the terminal.

    Args:
        results: one dict per evaluation; scalar fields become columns (missing cells print as '-'), list/tensor
            fields (e.g. predictions) are left out.

    Returns:
        The table as a string with aligned columns (numbers right-aligned), no trailing newline.
    """
    rows = _check_results(results)
    cols = _scalar_columns(rows)
    if not cols:
        return "(no results)"
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    numeric = [all(isinstance(_plain(r.get(c)), (int, float)) or r.get(c) is None for r in rows) for c in cols]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(row) for row in cells)])


def rich_results_table(results: Sequence[Mapping[str, Any]], title: str | None = None) -> Any:
    """The same table as a ``rich.table.Table`` (for the CLI's coloured output)."""
    from rich.table import Table

    rows = _check_results(results)
    cols = _scalar_columns(rows)
    table = Table(title=title)
    for c in cols:
        numeric = all(isinstance(_plain(r.get(c)), (int, float)) or r.get(c) is None for r in rows)
        table.add_column(c, justify="right" if numeric else "left")
    for r in rows:
        table.add_row(*(_fmt(r.get(c)) for c in cols))
    return table


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    out = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
           "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def _default_info(info: Mapping[str, Any]) -> dict[str, Any]:
    from geossl import __version__

    full = dict(info)
    keys = {str(k).lower() for k in full}
    if "date" not in keys:
        full["date"] = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    if not keys & {"geossl", "geossl version", "version"}:
        full["geossl version"] = __version__
    return full


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    results: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any],
    metrics_csv: str | os.PathLike[str] | None = None,
    confusion: tuple[Any, Any, Sequence[str]] | None = None,
    embedding: tuple[Any, Any, Sequence[str]] | None = None,
) -> Path:
    """Write ``report.md``, ``results.json``, ``results.csv`` and the figures into ``out_dir``.

    Args:
        out_dir: report directory (created if needed), e.g. ``runs/<name>/eval``.
        title: report title.
        results: one dict per evaluation, e.g. ``{"encoder": "simclr (epoch 20)", "protocol": "knn (k=20, T=0.07)",
            "top1": 71.2, "top5": 98.0, "n_train": 16200, "n_test": 5400}``; accuracies in percent.
        info: run description shown as a two-column table (checkpoint, dataset, split, image size, bands, backbone,
            feature dim, ...); ``date`` and ``geossl version`` are added when absent.
        metrics_csv: Lightning metrics.csv of the pre-training run → ``loss_curve.png``.
        confusion: ``(true (M,), pred (M,), class_names)`` → ``confusion_matrix.png``.
        embedding: ``(features (N, D), labels (N,), class_names)`` → ``embedding.png`` (t-SNE or PCA).

    Returns:
        The path of ``report.md``.

    Raises:
        GeosslError: when ``results`` is not a list of dicts, or the confusion / embedding inputs are inconsistent
            (mismatched lengths, labels without class names).
    """
    from geossl.eval.plots import plot_confusion_matrix, plot_embedding_2d, plot_loss_curve

    rows = _check_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full_info = _default_info(info)

    figures: list[tuple[str, Path]] = []
    if metrics_csv is not None:
        figures.append(("Training curves", plot_loss_curve(metrics_csv, out / "loss_curve.png")))
    if confusion is not None:
        if len(confusion) != 3:
            raise GeosslError("confusion must be a tuple (true_labels, predicted_labels, class_names).")
        figures.append(("Confusion matrix", plot_confusion_matrix(*confusion, out / "confusion_matrix.png")))
    if embedding is not None:
        if len(embedding) != 3:
            raise GeosslError("embedding must be a tuple (features, labels, class_names).")
        figures.append(("Embedding", plot_embedding_2d(*embedding, out / "embedding.png")))

    cols = _scalar_columns(rows)
    numeric = [all(isinstance(_plain(r.get(c)), (int, float)) or r.get(c) is None for r in rows) for c in cols]
    md = [f"# {title}", "", "## Setup", "",
          _md_table(["item", "value"], [[str(k), _fmt(v)] for k, v in full_info.items()], [False, False]), "",
          "## Results", ""]
    if cols:
        md.append(_md_table(cols, [[_fmt(r.get(c)) for c in cols] for r in rows], numeric))
        md.append("")
        md.append("Accuracies in percent. Machine-readable: [results.json](results.json), "
                  "[results.csv](results.csv).")
    else:
        md.append("No results.")
    for caption, path in figures:
        md += ["", f"## {caption}", "", f"![{caption}]({path.name})"]
    report = out / "report.md"
    report.write_text("\n".join(md) + "\n", encoding="utf-8")

    payload = {"title": title, "info": _plain(full_info), "results": [_plain(dict(r)) for r in rows]}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(cols)
        for r in rows:
            writer.writerow(["" if _plain(r.get(c)) is None else _plain(r.get(c)) for c in cols])
    return report
