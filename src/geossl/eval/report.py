"""Evaluation reports: a Markdown page with tables and figures, plus machine-readable results.

``write_report`` writes, into one directory::

    report.md            title, info table, results table, figures (relative links)
    results.json         {"title", "info", "results"}
    results.csv          one row per evaluation (encoder × protocol), one column per field
    loss_curve.png       when a metrics.csv is given
    confusion_matrix.png when (true, pred, class_names) is given
    embedding.png        when (features, labels, class_names) is given
    (other figures)      rendered by the caller and passed as ``figures``

Results come in one of two shapes. *Wide* rows have one column per metric (``{"encoder", "protocol", "top1",
"top5", ...}``). *Tidy* rows (what ``geossl evaluate`` writes) have one row per measured number::

    {"encoder": "simclr (epoch 20)", "protocol": "knn", "setting": "cosine, k=20, T=0.07", "metric": "top1",
     "value": 71.2, "ci95": None, "n_train": 16200, "n_test": 5400}

results.json and results.csv keep the tidy rows as they are; the terminal and report.md show them pivoted, one table
per group of protocols with the same metrics (:func:`pivot_results`). :func:`assemble_report` rebuilds report.md and
a self-contained report.html (figures inline as base64 data URIs) from a folder written by :func:`write_report`, and
:func:`compare_results` puts several such folders side by side.

Report files are regenerated on each call (they are derived outputs, not run state).
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
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
#: Keys of a tidy result row (one measured number per row).
TIDY_COLUMNS = ("encoder", "protocol", "setting", "metric", "value", "ci95", "n_train", "n_test")
#: Order of the protocols in comparisons (that of ``geossl evaluate``).
_PROTOCOL_ORDER = ("knn", "linear", "fewshot", "clustering", "retrieval", "hierarchy", "representation")
#: Fields of a tidy row that identify one evaluation (the others are metric values or sizes).
_GROUP_KEYS = ("encoder", "protocol", "setting")


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


def is_tidy(results: Sequence[Mapping[str, Any]]) -> bool:
    """True when every row is a tidy ``{..., "metric", "value"}`` row (and there is at least one)."""
    return bool(results) and all("metric" in r and "value" in r for r in results)


def _display_protocol(row: Mapping[str, Any]) -> str:
    setting = row.get("setting")
    return f"{row['protocol']} ({setting})" if setting else str(row["protocol"])


def pivot_results(results: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """Tidy rows → wide tables: one row per (encoder, protocol, setting) with one column per metric.

    Rows are grouped into tables by their first two metrics (kNN and the linear probe both start with ``top1``,
    ``top5``, so they land in one table, the probe's extra ``weight_decay`` column reading ``-`` for kNN); tables and
    rows keep their first-seen order. The protocol column reads
    ``"protocol (setting)"``; a metric's 95 % confidence interval becomes a column ``ci95`` (``"METRIC ci95"`` when
    a table has several metrics with one); ``n_train`` and ``n_test`` come last.

    Args:
        results: tidy rows (see the module docstring).

    Returns:
        A list of tables, each a list of wide row dicts.
    """
    rows = _check_results(results)
    wide: dict[tuple[Any, ...], dict[str, Any]] = {}
    metrics: dict[tuple[Any, ...], list[str]] = {}
    for r in rows:
        key = tuple(str(r.get(k)) for k in _GROUP_KEYS)
        if key not in wide:
            wide[key] = {"encoder": r.get("encoder"), "protocol": _display_protocol(r)}
            metrics[key] = []
        w, m = wide[key], str(r["metric"])
        w[m] = r.get("value")
        metrics[key].append(m)
        if r.get("ci95") is not None:
            w[f"{m} ci95"] = r["ci95"]
        for size in ("n_train", "n_test"):
            if r.get(size) is not None:
                w.setdefault("_sizes", {})[size] = r[size]
    tables: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for key, w in wide.items():
        sizes = w.pop("_sizes", {})
        w.update(sizes)
        tables.setdefault(tuple(metrics[key][:2]), []).append(w)
    out = []
    for table in tables.values():
        ci_cols = {k for w in table for k in w if k.endswith(" ci95")}
        if len(ci_cols) == 1:
            (col,) = ci_cols
            for w in table:
                if col in w:
                    w["ci95"] = w.pop(col)
        out.append(table)
    return out


def _pivot_columns(table: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns of a pivoted table: first-seen order, sample counts last."""
    cols = _scalar_columns(table)
    ordered = [c for r in table for c in r if c in cols]
    ordered = list(dict.fromkeys(ordered))
    return [c for c in ordered if c not in ("n_train", "n_test")] + [c for c in ("n_train", "n_test") if c in ordered]


def format_tidy_results(results: Sequence[Mapping[str, Any]]) -> str:
    """The terminal view of tidy results: :func:`format_results_table` of each table of :func:`pivot_results`,
    separated by blank lines."""
    return "\n\n".join(format_results_table(t, columns=_pivot_columns(t)) for t in pivot_results(results))


def format_results_table(results: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Plain-text table of evaluation results for the terminal.

    Args:
        results: one dict per evaluation; scalar fields become columns (missing cells print as '-'), list/tensor
            fields (e.g. predictions) are left out.
        columns: the columns to show, in order (default: every scalar field, the usual ones first).

    Returns:
        The table as a string with aligned columns (numbers right-aligned), no trailing newline.
    """
    rows = _check_results(results)
    cols = list(columns) if columns is not None else _scalar_columns(rows)
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
    figures: Sequence[tuple[str, str | os.PathLike[str]]] = (),
    notes: Sequence[str] = (),
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
        figures: further ``(caption, PNG path)`` figures already rendered into ``out_dir``, shown after the training
            curves in the given order.
        notes: sentences printed under the results table (units, protocol details).

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

    all_figures: list[tuple[str, Path]] = []
    if metrics_csv is not None:
        all_figures.append(("Training curves", plot_loss_curve(metrics_csv, out / "loss_curve.png")))
    all_figures += [(str(caption), Path(p)) for caption, p in figures]
    if confusion is not None:
        if len(confusion) != 3:
            raise GeosslError("confusion must be a tuple (true_labels, predicted_labels, class_names).")
        all_figures.append(("Confusion matrix", plot_confusion_matrix(*confusion, out / "confusion_matrix.png")))
    if embedding is not None:
        if len(embedding) != 3:
            raise GeosslError("embedding must be a tuple (features, labels, class_names).")
        all_figures.append(("Embedding", plot_embedding_2d(*embedding, out / "embedding.png")))

    figure_list = [{"caption": caption, "file": path.name} for caption, path in all_figures]
    report = out / "report.md"
    report.write_text(render_markdown(title, full_info, rows, figure_list, notes), encoding="utf-8")
    payload = {"title": title, "info": _plain(full_info), "results": [_plain(dict(r)) for r in rows],
               "figures": figure_list, "notes": list(notes)}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    cols = [c for c in TIDY_COLUMNS if any(c in r for r in rows)] if is_tidy(rows) else _scalar_columns(rows)
    if is_tidy(rows):
        cols += [c for c in _scalar_columns(rows) if c not in cols]
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(cols)
        for r in rows:
            writer.writerow(["" if _plain(r.get(c)) is None else _plain(r.get(c)) for c in cols])
    return report


def _results_tables(rows: Sequence[Mapping[str, Any]]) -> list[tuple[list[str], list[list[str]], list[bool]]]:
    """(header, cells, right-aligned) of each results table: pivoted for tidy rows, else one wide table."""
    tidy = is_tidy(rows)
    tables = pivot_results(rows) if tidy else [list(rows)]
    out = []
    for table in tables:
        cols = _pivot_columns(table) if tidy else _scalar_columns(table)
        if not cols:
            continue
        numeric = [all(isinstance(_plain(r.get(c)), (int, float)) or r.get(c) is None for r in table) for c in cols]
        out.append((cols, [[_fmt(r.get(c)) for c in cols] for r in table], numeric))
    return out


def render_markdown(
    title: str,
    info: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    figures: Sequence[Mapping[str, str]] = (),
    notes: Sequence[str] = (),
) -> str:
    """The text of report.md: title, setup table, results tables, notes and figure links (relative)."""
    rows = _check_results(results)
    md = [f"# {title}", "", "## Setup", "",
          _md_table(["item", "value"], [[str(k), _fmt(v)] for k, v in info.items()], [False, False]), "",
          "## Results", ""]
    tables = _results_tables(rows)
    for header, cells, numeric in tables:
        md += [_md_table(header, cells, numeric), ""]
    if tables:
        md += [*(str(n) for n in notes)] + ([""] if notes else [])
        md.append("Machine-readable: [results.json](results.json), [results.csv](results.csv)." if is_tidy(rows)
                  else "Accuracies in percent. Machine-readable: [results.json](results.json), "
                       "[results.csv](results.csv).")
    else:
        md.append("No results.")
    for fig in figures:
        md += ["", f"## {fig['caption']}", "", f"![{fig['caption']}]({fig['file']})"]
    return "\n".join(md) + "\n"


# ------------------------------------------------------------------------------------------------ report and compare


def find_results(path: str | os.PathLike[str]) -> Path:
    """The ``results.json`` written by an evaluation of ``path``.

    ``path`` may be the results.json itself, the folder holding it (a run directory evaluated on its own data, or an
    ``--out`` folder), or a run directory with exactly one evaluation sub-folder (``eval-*/results.json``).

    Raises:
        GeosslError: when ``path`` does not exist, holds no evaluation results, or holds several (listed, to pick one).
    """
    p = Path(path)
    if not p.exists():
        raise GeosslError(f"'{p}' does not exist; pass a run directory or an evaluation folder.")
    if p.is_file():
        if p.name == "results.json":
            return p
        raise GeosslError(f"'{p}' is a file; pass a run directory or an evaluation folder holding results.json.")
    if (p / "results.json").is_file():
        return p / "results.json"
    found = sorted(q for q in p.glob("*/results.json") if q.parent.name != "features")
    if len(found) == 1:
        return found[0]
    if not found:
        raise GeosslError(f"'{p}' has no evaluation results (results.json); run `geossl evaluate {p}` first.")
    raise GeosslError(f"'{p}' has {len(found)} evaluations ({', '.join(str(q.parent) for q in found)}); pass one of "
                      "these folders.")


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The payload of :func:`find_results` (``title``, ``info``, ``results``, ``figures``, ``notes``) with
    ``folder`` set to the folder holding it."""
    f = find_results(path)
    try:
        payload = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise GeosslError(f"cannot read {f}: {e}; re-run `geossl evaluate` to rewrite it.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
        raise GeosslError(f"{f} is not a geossl results file (no 'results' list); re-run `geossl evaluate`.")
    payload.setdefault("title", "geossl evaluation")
    payload.setdefault("info", {})
    payload.setdefault("notes", [])
    if "figures" not in payload:  # results written before the figure list existed: known names, in report order
        known = [("Training curves", "loss_curve.png"), ("k-NN accuracy against k", "knn_vs_k.png"),
                 ("Per-class accuracy", "per_class_accuracy.png"), ("Confusion matrix", "confusion_matrix.png"),
                 ("Embedding", "embedding.png")]
        payload["figures"] = [{"caption": c, "file": n} for c, n in known if (f.parent / n).is_file()]
    payload["folder"] = str(f.parent)
    return payload


_HTML_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: .3em .7em; }
th { background: #f6f8fa; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; border: 1px solid #eee; }
p.note { color: #555; font-size: .92em; }
"""


def render_html(
    title: str,
    info: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    figures: Sequence[Mapping[str, str]],
    folder: str | os.PathLike[str],
    notes: Sequence[str] = (),
) -> str:
    """A single self-contained HTML page: setup and results as HTML tables, figures inline as base64 PNG data URIs
    (figures missing from ``folder`` are listed as missing, not linked)."""
    rows = _check_results(results)
    esc = html.escape

    def table(header: Sequence[str], cells: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f'<td class="num">{esc(c)}</td>' if r else f"<td>{esc(c)}</td>"
                                        for c, r in zip(row, right)) + "</tr>" for row in cells)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(title)}</title><style>{_HTML_STYLE}</style></head><body>", f"<h1>{esc(title)}</h1>",
             "<h2>Setup</h2>", table(["item", "value"], [[str(k), _fmt(v)] for k, v in info.items()], [False, False]),
             "<h2>Results</h2>"]
    tables = _results_tables(rows)
    parts += [table(*t) for t in tables] or ["<p>No results.</p>"]
    parts += [f'<p class="note">{esc(str(n))}</p>' for n in notes]
    for fig in figures:
        parts.append(f"<h2>{esc(fig['caption'])}</h2>")
        png = Path(folder) / fig["file"]
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(f'<img alt="{esc(fig["caption"])}" src="data:image/png;base64,{data}">')
        else:
            parts.append(f'<p class="note">({esc(fig["file"])} is missing; re-run geossl evaluate)</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def assemble_report(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Rebuild ``report.md`` and a self-contained ``report.html`` from an evaluation folder's results.json and PNGs.

    Args:
        path: a run directory or evaluation folder (see :func:`find_results`).

    Returns:
        ``(report.md, report.html)`` paths, in the folder holding results.json.

    Raises:
        GeosslError: when no (or ambiguous) evaluation results are found.
    """
    payload = load_results(path)
    folder = Path(payload["folder"])
    figures = [f for f in payload["figures"] if (folder / f["file"]).is_file()]
    md = folder / "report.md"
    md.write_text(render_markdown(payload["title"], payload["info"], payload["results"], figures, payload["notes"]),
                  encoding="utf-8")
    page = folder / "report.html"
    page.write_text(render_html(payload["title"], payload["info"], payload["results"], figures, folder,
                                payload["notes"]), encoding="utf-8")
    return md, page


def compare_results(paths: Sequence[str | os.PathLike[str]]) -> str:
    """Side-by-side Markdown table of several evaluations: one column per run, one row per protocol and metric.

    Rows are matched on (protocol, setting, metric), separately for the random-init baseline; a run without a row
    shows ``-``. Values with a confidence interval read ``value ± ci95``. The first rows give each run's encoder
    and dataset.

    Args:
        paths: run directories or evaluation folders (see :func:`find_results`), at least one.

    Returns:
        The Markdown table (no trailing newline).

    Raises:
        GeosslError: when a path has no evaluation results, or its results are not tidy rows.
    """
    if not paths:
        raise GeosslError("compare needs at least one run directory.")
    payloads = [load_results(p) for p in paths]
    names = [Path(p).name or str(p) for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    table: dict[tuple[int, int, str, str], dict[int, str]] = {}
    encoders: list[str] = []
    for i, payload in enumerate(payloads):
        rows = payload["results"]
        if not is_tidy(rows):
            raise GeosslError(f"{payload['folder']}/results.json has no per-metric rows; re-run `geossl evaluate` "
                              "with this version to compare it.")
        trained = [str(r.get("encoder")) for r in rows if str(r.get("encoder")) != "random init"]
        encoders.append(trained[0] if trained else "random init")
        for r in rows:
            baseline = str(r.get("encoder")) == "random init"
            order = _PROTOCOL_ORDER.index(r["protocol"]) if r["protocol"] in _PROTOCOL_ORDER else len(_PROTOCOL_ORDER)
            key = (int(baseline), order, ("random init: " if baseline else "") + _display_protocol(r), str(r["metric"]))
            cell = _fmt(r.get("value"))
            if r.get("ci95") is not None:
                cell += f" ± {_fmt(r['ci95'])}"
            table.setdefault(key, {})[i] = cell
    header = ["protocol", "metric", *names]
    lines = [["encoder", "", *encoders],
             ["dataset", "", *(str(p["info"].get("dataset", "-")) for p in payloads)]]
    # trained encoders before the baseline, protocols in their usual order, rows in first-seen order within them
    ordered = sorted(table.items(), key=lambda item: item[0][:2])
    lines += [[proto, metric, *(cells.get(i, "-") for i in range(len(payloads)))]
              for (_, _, proto, metric), cells in ordered]
    return _md_table(header, lines, [False, False, *([True] * len(payloads))])
