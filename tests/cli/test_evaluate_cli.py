"""`geossl evaluate` with every protocol, `geossl report`, `geossl compare`, features input, and their bad inputs."""

from __future__ import annotations

import base64
import csv
import json
import shutil

import numpy as np
import pytest

from geossl.eval.hierarchy import EUROSAT_CLASSES

from ..conftest import make_rgb_folder
from .test_cli import FAST, assert_user_error, invoke

ALL = "knn,linear,fewshot,clustering,retrieval,hierarchy,representation"
SMALL_FEWSHOT = ["--n-way", "2", "--shots", "1,2", "--queries", "2", "--episodes", "20"]
HIERARCHY = """\
scene:
  warm: [class_0, class_1]
  cold: [class_2, class_3]
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 1-epoch SimCLR run on 4 colour classes x 20 images of 16 px, and a hierarchy file of its classes."""
    root = tmp_path_factory.mktemp("evalcli")
    data = make_rgb_folder(root / "data", classes=4, per_class=20)
    run = root / "run"
    result = invoke("pretrain", "--method", "simclr", "--data", data, "--epochs", 1, "--run-dir", run, *FAST)
    assert result.exit_code == 0, result.output
    hierarchy = root / "tree.yaml"
    hierarchy.write_text(HIERARCHY)
    return data, run, hierarchy


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    """The run evaluated with every protocol, a kNN sweep, label fractions and SOT, into its own folder."""
    _, run, hierarchy = tiny_run
    out = tmp_path_factory.mktemp("evalout") / "all"
    result = invoke("evaluate", run, "--protocol", ALL, "--knn-k", "1,5,20", "--knn-t", "0.02,0.07",
                    "--label-fraction", "0.25,1", "--transform", "sot", "--hierarchy", hierarchy, *SMALL_FEWSHOT,
                    "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_every_protocol_in_one_tidy_table(evaluated):
    out, output = evaluated
    payload = json.loads((out / "results.json").read_text())
    rows = payload["results"]
    assert {r["protocol"] for r in rows} == set(ALL.split(","))
    assert all(set(r) >= {"encoder", "protocol", "setting", "metric", "value", "n_test"} for r in rows)
    knn = [r for r in rows if r["protocol"] == "knn" and r["metric"] == "top1"]
    assert {r["setting"] for r in knn} == {f"cosine, k={k}, T={t}" for k in (1, 5, 20) for t in (0.02, 0.07)}
    # k = 1 ignores the temperature
    k1 = {r["setting"]: r["value"] for r in knn if ", k=1," in r["setting"]}
    assert len(set(k1.values())) == 1
    linear = {r["setting"]: r for r in rows if r["protocol"] == "linear" and r["metric"] == "top1"}
    assert linear["L-BFGS, 25% labels"]["n_train"] == 12 and linear["L-BFGS, 100% labels"]["n_train"] == 48
    fewshot = [r for r in rows if r["protocol"] == "fewshot"]
    assert len(fewshot) == 2 and all(r["ci95"] is not None and "SOT" in r["setting"] for r in fewshot)
    assert any("SOT" in r["setting"] for r in rows if r["protocol"] == "clustering")
    hier = {r["metric"] for r in rows if r["protocol"] == "hierarchy"}
    assert {"ahc", "mistake_severity", "hdist@1", "accuracy@height1"} <= hier
    assert {r["metric"] for r in rows if r["protocol"] == "retrieval"} >= {"recall@1", "map_at_r", "r_precision"}
    assert {r["metric"] for r in rows if r["protocol"] == "representation"} >= {"rankme", "uniformity"}
    with open(out / "results.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows) and list(csv_rows[0])[:5] == ["encoder", "protocol", "setting", "metric", "value"]
    # the terminal and report.md show the pivoted tables
    assert "knn (cosine, k=5, T=0.02)" in output and "nmi" in output and "recall@1" in output
    report = (out / "report.md").read_text()
    assert "| encoder | protocol | top1 | top5 |" in report and "accuracy@height1" in report


def test_plots_are_written_and_linked(evaluated):
    out, _ = evaluated
    report = (out / "report.md").read_text()
    for png in ["knn_vs_k.png", "per_class_accuracy.png", "confusion_matrix.png", "embedding.png", "loss_curve.png"]:
        assert (out / png).is_file() and (out / png).stat().st_size > 5000, png
        assert f"]({png})" in report, png


def test_report_builds_self_contained_html(evaluated):
    out, _ = evaluated
    (out / "report.md").unlink()
    result = invoke("report", out)
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert (out / "report.md").is_file()
    images = html.count('src="data:image/png;base64,')
    assert images == 5 and "<table>" in html and "<td class=\"num\">" in html
    assert "src=\"http" not in html and ".png\"" not in html  # nothing fetched from outside the page
    first = html.split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_side_by_side(tiny_run, evaluated, tmp_path):
    _, run, _ = tiny_run
    out, _ = evaluated
    other = tmp_path / "baseline"
    result = invoke("evaluate", run, "--protocol", "knn,clustering", "--random-init", "--out", other, "--no-plots")
    assert result.exit_code == 0, result.output
    md = tmp_path / "cmp.md"
    result = invoke("compare", out, other, "--out", md)
    assert result.exit_code == 0, result.output
    lines = md.read_text().splitlines()
    assert lines[0] == "| protocol | metric | all | baseline |"
    nmi = next(line for line in lines if "clustering" in line and "| nmi |" in line and "SOT" in line)
    assert nmi.count("|") == 5 and nmi.rstrip(" |").endswith("-")  # the baseline ran k-means without SOT
    assert any(line.startswith("| random init: knn (cosine, k=20, T=0.07) | top1 |") for line in lines)
    assert "encoder" in lines[2] and "random init" in lines[2]


def test_features_input_with_default_eurosat_hierarchy(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 30)
    x = (rng.normal(size=(10, 16))[y] * 2 + rng.normal(size=(300, 16))).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    np.save(tmp_path / "f.labels.npy", y)  # found next to the features, as `geossl embed` writes them
    (tmp_path / "f.json").write_text(json.dumps({"classes": list(EUROSAT_CLASSES)}))
    result = invoke("evaluate", "--features", tmp_path / "f.npy", "--protocol", "knn,hierarchy", "--no-plots")
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "eval-f" / "results.json").read_text())
    assert "stratified 80%/20%" in payload["info"]["split"]
    hier = [r for r in payload["results"] if r["protocol"] == "hierarchy"]
    assert hier and "eurosat.yaml" in hier[0]["setting"] and hier[0]["n_test"] == 60


def test_features_with_explicit_test_set(tmp_path):
    rng = np.random.default_rng(1)
    for name, n in (("train", 40), ("test", 20)):
        y = np.arange(n) % 2
        np.save(tmp_path / f"{name}.npy", (y[:, None] * 3 + rng.normal(size=(n, 8))).astype(np.float32))
        np.save(tmp_path / f"{name}_y.npy", y)
    result = invoke("evaluate", "--features", tmp_path / "train.npy", "--labels", tmp_path / "train_y.npy",
                    "--test-features", tmp_path / "test.npy", "--test-labels", tmp_path / "test_y.npy",
                    "--protocol", "knn", "--out", tmp_path / "o", "--no-plots")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "o" / "results.json").read_text())["results"]
    assert rows[0]["n_train"] == 40 and rows[0]["n_test"] == 20 and rows[0]["value"] > 90


# -- bad input ----------------------------------------------------------------------------------


def test_unknown_protocol_names_the_closest(tiny_run):
    _, run, _ = tiny_run
    assert_user_error(invoke("evaluate", run, "--protocol", "knn,clusterin"), "unknown protocol 'clusterin'",
                      "Did you mean 'clustering'")


def test_features_and_labels_of_different_lengths(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((10, 4), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(9, np.int64))
    assert_user_error(invoke("evaluate", "--features", tmp_path / "f.npy", "--labels", tmp_path / "y.npy"),
                      "10 rows", "9")


def test_label_protocol_without_labels(tmp_path):
    np.save(tmp_path / "f.npy", np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32))
    assert_user_error(invoke("evaluate", "--features", tmp_path / "f.npy", "--protocol", "knn,representation"),
                      "without labels", "knn")
    # the label-free protocol alone works
    result = invoke("evaluate", "--features", tmp_path / "f.npy", "--protocol", "representation", "--no-plots")
    assert result.exit_code == 0, result.output


def test_flat_folder_allows_only_label_free_protocols(tiny_run, tmp_path):
    data, run, _ = tiny_run
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, src in enumerate(sorted((data / "class_0").glob("*.png"))[:12]):
        shutil.copy(src, flat / f"{i}.png")
    assert_user_error(invoke("evaluate", run, "--data", flat, "--protocol", "clustering"), "no labels", "clustering")


def test_fewer_classes_than_the_episode_way(tiny_run):
    _, run, _ = tiny_run
    assert_user_error(invoke("evaluate", run, "--protocol", "fewshot", "--n-way", "5", "--no-plots"),
                      "5-way", "4", "--n-way")


def test_hierarchy_missing_classes_or_with_a_cycle(tiny_run, tmp_path):
    _, run, _ = tiny_run
    missing = tmp_path / "missing.yaml"
    missing.write_text("scene:\n  warm: [class_0, class_1]\n  cold: [class_2]\n")
    assert_user_error(invoke("evaluate", run, "--protocol", "hierarchy", "--hierarchy", missing, "--no-plots"),
                      "misses", "class_3")
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text("class_0: a\nclass_1: a\nclass_2: b\nclass_3: b\na: b\nb: a\nroot: null\n")
    assert_user_error(invoke("evaluate", run, "--protocol", "hierarchy", "--hierarchy", cycle, "--no-plots"),
                      "cycle")
    # without --hierarchy, classes that are not EuroSAT's have no default tree
    assert_user_error(invoke("evaluate", run, "--protocol", "hierarchy", "--no-plots"), "--hierarchy")


def test_report_and_compare_without_results(tmp_path):
    (tmp_path / "run").mkdir()
    assert_user_error(invoke("report", tmp_path / "run"), "no evaluation results", "geossl evaluate")
    assert_user_error(invoke("compare", tmp_path / "run"), "no evaluation results")
    assert_user_error(invoke("compare", tmp_path / "absent"), "does not exist")


def test_bad_option_values(tiny_run, tmp_path):
    _, run, _ = tiny_run
    assert_user_error(invoke("evaluate", run, "--knn-k", "10,x"), "--knn-k")
    assert_user_error(invoke("evaluate", run, "--label-fraction", "0,0.1"), "--label-fraction")
    assert_user_error(invoke("evaluate", run, "--protocol", "knn", "--transform", "sot"), "fewshot")
    assert_user_error(invoke("evaluate", run, "--protocol", "fewshot", "--transform", "sto"), "unknown transform")
    assert_user_error(invoke("evaluate", run, "--features", tmp_path / "f.npy"), "either")
    assert_user_error(invoke("evaluate"), "run directory")


def test_finetune_protocol_trains_end_to_end(tiny_run, tmp_path):
    _, run, _ = tiny_run
    out = tmp_path / "ft"
    result = invoke("evaluate", run, "--protocol", "knn,finetune", "--finetune-epochs", 2, "--label-fraction", "0.5,1",
                    "--no-plots", "--out", out)
    assert result.exit_code == 0, result.output
    tidy = json.loads((out / "results.json").read_text())
    rows = tidy["results"] if isinstance(tidy, dict) else tidy
    ft = [r for r in rows if r["protocol"] == "finetune" and r["metric"] == "top1"]
    n_train = sorted(r["n_train"] for r in ft)
    assert len(n_train) == 2 and 2 * n_train[0] == n_train[1]  # 50 % and 100 % of the training labels
    assert all(0 <= r["value"] <= 100 for r in ft)
    assert "finetune" in (out / "report.md").read_text()


def test_finetune_needs_a_run_not_features(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((10, 4), np.float32))
    np.save(tmp_path / "y.npy", np.arange(10) % 2)
    assert_user_error(invoke("evaluate", "--features", tmp_path / "f.npy", "--labels", tmp_path / "y.npy", "--protocol",
                             "finetune"), "needs a run directory")


def test_sgd_probe_from_the_cli(tiny_run, tmp_path):
    _, run, _ = tiny_run
    out = tmp_path / "sgd"
    result = invoke("evaluate", run, "--protocol", "linear", "--probe", "sgd", "--no-plots", "--out", out)
    assert result.exit_code == 0, result.output
    assert "SGD, 100% labels" in (out / "report.md").read_text()
    assert_user_error(invoke("evaluate", run, "--protocol", "linear", "--probe", "adam"), "unknown linear probe solver 'adam'")


def test_representation_includes_alignment_of_two_augmented_views(evaluated):
    out, _ = evaluated
    tidy = json.loads((out / "results.json").read_text())
    rows = tidy["results"] if isinstance(tidy, dict) else tidy
    align = [r["value"] for r in rows if r["protocol"] == "representation" and r["metric"] == "alignment"]
    assert len(align) == 1 and 0 < align[0] < 4  # ‖a − b‖² of unit vectors: 0 (identical) to 4 (opposite)


def test_projector_features(tiny_run, tmp_path):
    _, run, _ = tiny_run
    out = tmp_path / "proj"
    result = invoke("evaluate", run, "--protocol", "knn,representation", "--layer", "projector", "--with-baseline", "--no-plots", "--out", out)
    assert result.exit_code == 0, result.output
    tidy = json.loads((out / "results.json").read_text())
    rows = tidy["results"] if isinstance(tidy, dict) else tidy
    dims = {r["value"] for r in rows if r["protocol"] == "representation" and r["metric"] == "dim"}
    assert dims == {128}  # SimCLR's projection_dim, not the backbone's 512
    assert "projector output" in (out / "report.md").read_text()
    assert_user_error(invoke("evaluate", run, "--protocol", "knn", "--layer", "head"), "unknown layer 'head'")
    assert_user_error(invoke("evaluate", run, "--protocol", "finetune", "--layer", "projector"), "drop --layer projector")
    assert_user_error(invoke("evaluate", run, "--protocol", "knn", "--layer", "teacher"), "method 'simclr' has no EMA teacher")


def test_torchvision_model_with_saved_weights(tiny_run, tmp_path):
    import torch
    import torchvision

    data, _, _ = tiny_run
    weights = tmp_path / "r18.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    out = tmp_path / "tv"
    result = invoke("evaluate", "--model", "torchvision:resnet18", "--weights", weights, "--data", data,
                    "--protocol", "knn,representation", "--no-plots", "--out", out)
    assert result.exit_code == 0, result.output
    tidy = json.loads((out / "results.json").read_text())
    rows = tidy["results"] if isinstance(tidy, dict) else tidy
    assert {r["value"] for r in rows if r["metric"] == "dim"} == {512}  # fc removed: pooled features
    assert_user_error(invoke("evaluate", "--model", "torchvision:resnet1800", "--data", data), "unknown torchvision model")
    assert_user_error(invoke("evaluate", "--model", "resnet18", "--data", data), "torchvision:resnet50")
    assert_user_error(invoke("evaluate", "--model", "torchvision:resnet18"), "--model needs --data")
