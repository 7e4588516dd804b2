"""Report writer and plots: files written, links resolve, inputs validated."""

from __future__ import annotations

import csv
import json
import math
import re
import sys

import matplotlib.image
import pytest
import torch

from geossl.errors import GeosslError
from geossl.eval import (
    format_results_table,
    plot_confusion_matrix,
    plot_embedding_2d,
    plot_loss_curve,
    rich_results_table,
    write_report,
)
from geossl.eval.plots import _project_2d

NAMES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway"]
RESULTS = [
    {"encoder": "simclr (epoch 20)", "protocol": "knn (k=20, T=0.07)", "top1": 71.234, "top5": 98.0,
     "n_train": 16200, "n_test": 5400},
    {"encoder": "simclr (epoch 20)", "protocol": "linear (lbfgs)", "top1": 80.5, "top5": float("nan"),
     "n_train": 16200, "n_test": 5400, "weight_decay": 1e-4, "predictions": torch.zeros(5, dtype=torch.long)},
]


def _metrics_csv(path, with_accuracy=True):
    """A sparse CSVLogger file: per-step loss rows, per-epoch loss and k-NN rows."""
    cols = ["epoch", "step", "train/loss", "train/loss_epoch"] + (["val/knn_top1"] if with_accuracy else [])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        step = 0
        for ep in range(3):
            for _ in range(30):
                step += 1
                w.writerow({"epoch": ep, "step": step, "train/loss": 5 * math.exp(-step / 40) + 1})
            w.writerow({"epoch": ep, "step": step, "train/loss_epoch": 2.0 - ep * 0.3})
            if with_accuracy:
                w.writerow({"epoch": ep, "step": step, "val/knn_top1": 40 + 10 * ep})
    return path


def _is_png(path) -> bool:
    img = matplotlib.image.imread(path)
    return img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_write_report_files_and_links(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    feats = torch.randn(4, 16, generator=g)[y] * 3 + torch.randn(200, 16, generator=g)
    pred = torch.where(torch.rand(200, generator=g) < 0.8, y, (y + 1) % 4)
    info = {"checkpoint": "runs/x/last.ckpt", "dataset": "EuroSAT", "image size": (64, 64), "feature dim": 16}
    report = write_report(tmp_path / "eval", title="Test report", results=RESULTS, info=info,
                          metrics_csv=_metrics_csv(tmp_path / "metrics.csv"), confusion=(y, pred, NAMES),
                          embedding=(feats, y, NAMES))
    out = tmp_path / "eval"
    assert report == out / "report.md"
    md = report.read_text()
    assert md.startswith("# Test report")
    for needle in ("EuroSAT", "64, 64", "geossl version", "knn (k=20, T=0.07)", "71.23", "16,200"):
        assert needle in md
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert {"loss_curve.png", "confusion_matrix.png", "embedding.png", "results.json", "results.csv"} <= set(links)
    for link in links:
        assert (out / link).is_file()
    for png in ("loss_curve.png", "confusion_matrix.png", "embedding.png"):
        assert _is_png(out / png)

    payload = json.loads((out / "results.json").read_text())
    assert payload["title"] == "Test report" and len(payload["results"]) == 2
    assert payload["results"][1]["top5"] is None and payload["results"][1]["predictions"] == [0] * 5
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[0]["top1"]) == pytest.approx(71.234)
    assert rows[1]["top5"] == "" and rows[0]["weight_decay"] == "" and "predictions" not in rows[0]


def test_report_without_figures(tmp_path):
    report = write_report(tmp_path, title="Bare", results=RESULTS[:1], info={})
    assert "![" not in report.read_text() and (tmp_path / "results.csv").is_file()


def test_mismatched_inputs_raise(tmp_path):
    y = torch.arange(10) % 4
    with pytest.raises(GeosslError, match="rows"):
        write_report(tmp_path, title="t", results=RESULTS, info={}, confusion=(y, y[:9], NAMES))
    with pytest.raises(GeosslError, match="rows"):
        write_report(tmp_path, title="t", results=RESULTS, info={}, embedding=(torch.randn(9, 3), y, NAMES))
    with pytest.raises(GeosslError, match="class names"):
        plot_confusion_matrix(y, y, NAMES[:2], tmp_path / "cm.png")
    with pytest.raises(GeosslError, match="list of dicts"):
        write_report(tmp_path, title="t", results=RESULTS[0], info={})
    with pytest.raises(GeosslError, match="does not exist"):
        plot_loss_curve(tmp_path / "missing.csv", tmp_path / "x.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,step,val/knn_top1\n0,10,50\n")
    with pytest.raises(GeosslError, match="loss"):
        plot_loss_curve(bad, tmp_path / "x.png")


def test_individual_plots(tmp_path):
    assert _is_png(plot_loss_curve(_metrics_csv(tmp_path / "m.csv", with_accuracy=False), tmp_path / "loss.png"))
    y = torch.arange(40) % 4
    y[:3] = -1  # unlabeled points are drawn in grey
    path = plot_embedding_2d(torch.randn(40, 5), y, NAMES, tmp_path / "pca.png", method="pca", max_points=30)
    assert _is_png(path)
    with pytest.raises(GeosslError, match="method"):
        plot_embedding_2d(torch.randn(40, 5), y, NAMES, tmp_path / "e.png", method="umap")


def test_embedding_falls_back_to_pca_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)  # makes the import fail
    xy, used = _project_2d(torch.randn(50, 6), "auto", seed=0)
    assert used == "PCA" and xy.shape == (50, 2)
    xy2, _ = _project_2d(torch.randn(50, 6), "pca", seed=0)
    assert xy2.shape == (50, 2)


def test_format_results_table():
    text = format_results_table(RESULTS)
    lines = text.splitlines()
    assert lines[0].split() == ["encoder", "protocol", "top1", "top5", "n_train", "n_test", "weight_decay"]
    assert "71.23" in lines[2] and "16,200" in lines[2] and lines[2].rstrip().endswith("-")
    assert "predictions" not in text
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule aligned
    assert rich_results_table(RESULTS).row_count == 2
