"""Tidy results: pivoted tables, report.md / report.html assembly, side-by-side comparison, and the new plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geossl.errors import GeosslError
from geossl.eval.plots import plot_knn_vs_k, plot_per_class_accuracy
from geossl.eval.report import (
    assemble_report,
    compare_results,
    find_results,
    format_tidy_results,
    pivot_results,
    write_report,
)


def _row(encoder, protocol, setting, metric, value, ci95=None, n_train=100, n_test=50):
    return {"encoder": encoder, "protocol": protocol, "setting": setting, "metric": metric, "value": value,
            "ci95": ci95, "n_train": n_train, "n_test": n_test}


TIDY = [
    _row("simclr", "knn", "cosine, k=20, T=0.07", "top1", 71.25),
    _row("simclr", "knn", "cosine, k=20, T=0.07", "top5", 98.0),
    _row("simclr", "linear", "L-BFGS, 100% labels", "top1", 80.5),
    _row("simclr", "linear", "L-BFGS, 100% labels", "top5", 99.0),
    _row("simclr", "linear", "L-BFGS, 100% labels", "weight_decay", 1e-4),
    _row("simclr", "fewshot", "5-way 1-shot", "accuracy", 55.0, ci95=0.8, n_train=None),
    _row("simclr", "clustering", "k-means, k=10", "nmi", 0.5, n_train=None),
    _row("simclr", "clustering", "k-means, k=10", "ari", 0.3, n_train=None),
    _row("random init", "knn", "cosine, k=20, T=0.07", "top1", 50.0),
    _row("random init", "knn", "cosine, k=20, T=0.07", "top5", 90.0),
]


def test_pivot_groups_protocols_by_their_metrics():
    tables = pivot_results(TIDY)
    assert [len(t) for t in tables] == [3, 1, 1]
    knn, lin, rand = tables[0]
    assert knn["protocol"] == "knn (cosine, k=20, T=0.07)" and knn["top1"] == 71.25 and "weight_decay" not in knn
    assert lin["weight_decay"] == 1e-4 and rand["encoder"] == "random init"
    assert tables[1][0] == {"encoder": "simclr", "protocol": "fewshot (5-way 1-shot)", "accuracy": 55.0, "ci95": 0.8,
                            "n_test": 50}
    text = format_tidy_results(TIDY)
    blocks = text.split("\n\n")
    assert len(blocks) == 3
    assert blocks[0].splitlines()[0].split() == ["encoder", "protocol", "top1", "top5", "weight_decay", "n_train",
                                                 "n_test"]
    assert blocks[1].splitlines()[0].split() == ["encoder", "protocol", "accuracy", "ci95", "n_test"]


def _evaluation(folder, rows=TIDY, with_png=True):
    figures = []
    if with_png:
        figures.append(("k-NN accuracy against k",
                        plot_knn_vs_k({0.07: ([1, 10, 20], [60.0, 70.0, 71.25])}, folder / "knn_vs_k.png")))
    write_report(folder, title="Eval", results=rows, info={"dataset": "toy"}, figures=figures,
                 notes=["kNN: top1 in percent."])
    return folder


def test_write_report_keeps_tidy_rows_and_pivots_the_markdown(tmp_path):
    out = _evaluation(tmp_path / "e")
    payload = json.loads((out / "results.json").read_text())
    assert payload["results"][0] == TIDY[0] and payload["notes"] == ["kNN: top1 in percent."]
    assert payload["figures"] == [{"caption": "k-NN accuracy against k", "file": "knn_vs_k.png"}]
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header == "encoder,protocol,setting,metric,value,ci95,n_train,n_test"
    md = (out / "report.md").read_text()
    assert "| simclr | linear (L-BFGS, 100% labels) | 80.50 | 99.00 | 1.00e-04 | 100 | 50 |" in md
    assert "![k-NN accuracy against k](knn_vs_k.png)" in md and "kNN: top1 in percent." in md


def test_assemble_report_inlines_figures_and_escapes_text(tmp_path):
    rows = [*TIDY, _row("<b>evil</b>", "knn", "k=1", "top1", 1.0), _row("<b>evil</b>", "knn", "k=1", "top5", 2.0)]
    out = _evaluation(tmp_path / "e", rows)
    md, page = assemble_report(tmp_path / "e")  # found through the folder
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("<table>") == 4  # setup + 3 results tables
    assert html.count('src="data:image/png;base64,') == 1 and "knn_vs_k.png\"" not in html
    assert "&lt;b&gt;evil&lt;/b&gt;" in html and "<b>evil</b>" not in html
    assert md.read_text().startswith("# Eval")
    # a deleted figure is dropped from the rebuilt report rather than linked
    (out / "knn_vs_k.png").unlink()
    md, page = assemble_report(out / "results.json")
    assert "data:image/png" not in page.read_text() and "knn_vs_k" not in md.read_text()


def test_find_results_in_run_dirs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(GeosslError, match="no evaluation results"):
        find_results(run)
    _evaluation(run / "eval-a", with_png=False)
    assert find_results(run) == run / "eval-a" / "results.json"
    _evaluation(run / "eval-b", with_png=False)
    with pytest.raises(GeosslError, match="2 evaluations"):
        find_results(run)
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(GeosslError, match="is a file"):
        find_results(tmp_path / "x.txt")


def test_compare_matches_rows_across_runs(tmp_path):
    a = _evaluation(tmp_path / "a", with_png=False)
    other = [r for r in TIDY if r["protocol"] != "fewshot"] + [_row("byol", "retrieval", "cosine", "recall@1", 0.9)]
    other = [{**r, "encoder": "byol" if r["encoder"] == "simclr" else r["encoder"]} for r in other]
    b = _evaluation(tmp_path / "b", other, with_png=False)
    lines = compare_results([a, b]).splitlines()
    assert lines[0] == "| protocol | metric | a | b |"
    assert lines[2] == "| encoder |  | simclr | byol |"
    body = [line.split(" | ")[0].lstrip("| ") for line in lines[4:]]
    # protocols in evaluation order, the baseline last
    assert body.index("retrieval (cosine)") > body.index("clustering (k-means, k=10)") > body.index("fewshot (5-way 1-shot)")
    assert body[-1].startswith("random init: knn")
    assert "| fewshot (5-way 1-shot) | accuracy | 55.00 ± 0.80 | - |" in lines
    wide = [{"encoder": "x", "protocol": "knn", "top1": 1.0}]
    write_report(tmp_path / "old", title="old", results=wide, info={})
    with pytest.raises(GeosslError, match="re-run"):
        compare_results([a, tmp_path / "old"])


def test_new_plots_render_and_reject_bad_input(tmp_path):
    acc = {"linear": torch.tensor([90.0, float("nan"), 40.0]), "knn": np.array([80.0, 10.0, 35.0])}
    png = plot_per_class_accuracy(acc, ["a", "b", "c"], tmp_path / "pc.png", support=[10, 0, 5])
    assert png.stat().st_size > 5000
    with pytest.raises(GeosslError, match="one accuracy per class"):
        plot_per_class_accuracy({"x": [1.0, 2.0]}, ["a", "b", "c"], tmp_path / "bad.png")
    with pytest.raises(GeosslError, match="at least one"):
        plot_per_class_accuracy({}, ["a"], tmp_path / "bad.png")
    assert plot_knn_vs_k({0.07: ([20], [55.0])}, tmp_path / "k.png").is_file()  # a single k still plots
    with pytest.raises(GeosslError, match="2 k values"):
        plot_knn_vs_k({0.07: ([1, 2], [3.0])}, tmp_path / "k.png")
