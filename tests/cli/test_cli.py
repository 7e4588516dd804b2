"""The command line end to end on tiny generated data, and every bad input of the spine issue."""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from geossl.cli import app

from ..conftest import make_npy_folder, make_rgb_folder

runner = CliRunner()
FAST = ["--batch-size", "8", "--no-progress", "--num-workers", "0"]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_user_error(result, *fragments: str) -> None:
    """Exit code 2, one line on stderr starting with 'error:', no traceback."""
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in err, err


def tree_digest(path: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One 2-epoch SimCLR run on a labelled RGB folder, shared by the tests below."""
    root = tmp_path_factory.mktemp("e2e")
    data = make_rgb_folder(root / "data")
    run = root / "run"
    result = invoke("pretrain", "--method", "simclr", "--data", data, "--epochs", 2, "--run-dir", run, *FAST)
    assert result.exit_code == 0, result.output
    return data, run


def test_pretrain_writes_a_complete_run_directory(trained_run):
    _, run = trained_run
    for name in ["config.yaml", "checkpoints/last.ckpt", "checkpoints/best.ckpt", "metrics.csv"]:
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents*"))
    config = (run / "config.yaml").read_text()
    assert "method: simclr" in config and "temperature: 0.2" in config and "views:" in config
    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    epochs = {r["epoch"] for r in rows if r.get("val/knn_top1")}
    assert epochs == {"0", "1"}
    assert any(r.get("train/loss_step") for r in rows)


def test_rerun_resumes_and_keeps_metrics(trained_run, tmp_path):
    data, run = trained_run
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "config.yaml").write_text((copy / "config.yaml").read_text().replace(str(run), str(copy)))
    before = (copy / "metrics.csv").read_text().splitlines()
    result = invoke("pretrain", "--method", "simclr", "--data", data, "--epochs", 3, "--run-dir", copy, *FAST)
    assert result.exit_code == 0, result.output
    assert "resumed" in result.output
    with (copy / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["epoch"] for r in rows if r.get("val/knn_top1")} == {"0", "1", "2"}
    assert len(rows) > len(before) - 1


def test_different_config_in_existing_run_is_refused_and_untouched(trained_run):
    data, run = trained_run
    digest = tree_digest(run)
    result = invoke("pretrain", "--method", "simclr", "--data", data, "--epochs", 2, "--run-dir", run, "--lr", 0.01, *FAST)
    assert_user_error(result, "different configuration", "lr")
    assert tree_digest(run) == digest


def test_evaluate_prints_table_and_writes_report(trained_run):
    _, run = trained_run
    result = invoke("evaluate", run, "--protocol", "knn,linear", "--with-baseline")
    assert result.exit_code == 0, result.output
    assert "knn" in result.output and "linear" in result.output and "random init" in result.output
    report = run / "report.md"
    text = report.read_text()
    assert "random init" in text and "split" in text.lower()
    for link in [line.split("](")[1].rstrip(")") for line in text.splitlines() if "![" in line]:
        assert (run / link).is_file(), link


def test_evaluate_random_init_only(trained_run):
    _, run = trained_run
    result = invoke("evaluate", run, "--protocol", "knn", "--random-init", "--no-plots")
    assert result.exit_code == 0, result.output
    assert "random init" in result.output


def test_embed_writes_features_and_refuses_to_overwrite(trained_run, tmp_path):
    _, run = trained_run
    out = tmp_path / "features.npy"
    result = invoke("embed", run / "checkpoints" / "last.ckpt", "--out", out)
    assert result.exit_code == 0, result.output
    feats = np.load(out)
    assert feats.shape == (36, 512) and np.isfinite(feats).all()
    assert np.load(tmp_path / "features.labels.npy").shape == (36,)
    assert_user_error(invoke("embed", run, "--out", out), "already exists")


def test_info_lists_methods_backbones_datasets():
    result = invoke("info")
    assert result.exit_code == 0
    for name in ["simclr", "bam", "t-regs", "t-reg", "resnet18", "resnet50", "eurosat-sample", "cifar10"]:
        assert name in result.output


def test_multispectral_npy_pretraining(tmp_path):
    data = make_npy_folder(tmp_path / "ms", bands=5)
    run = tmp_path / "run"
    result = invoke("pretrain", "--data", data, "--epochs", 1, "--run-dir", run, *FAST)
    assert result.exit_code == 0, result.output
    assert "num_bands: 5" in (run / "config.yaml").read_text() or (run / "checkpoints" / "last.ckpt").is_file()
    # A 5-band checkpoint on 3-band data is refused.
    rgb = make_rgb_folder(tmp_path / "rgb")
    assert_user_error(invoke("evaluate", run, "--data", rgb), "5-band", "3 bands")


# -- bad input ----------------------------------------------------------------------------------


def test_nonexistent_path(tmp_path):
    assert_user_error(invoke("pretrain", "--data", tmp_path / "missing", "--run-dir", tmp_path / "r", *FAST), "does not exist")
    assert not (tmp_path / "r").exists()


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(invoke("pretrain", "--data", tmp_path / "empty", "--run-dir", tmp_path / "r", *FAST))
    assert not (tmp_path / "r").exists()


def test_corrupt_image_among_good_ones(tmp_path):
    data = make_rgb_folder(tmp_path / "data")
    (data / "class_0" / "broken.png").write_bytes(b"this is not a png")
    assert_user_error(invoke("pretrain", "--data", data, "--run-dir", tmp_path / "r", *FAST), "broken.png")
    assert not (tmp_path / "r").exists()


def test_different_band_counts(tmp_path):
    data = make_npy_folder(tmp_path / "data", bands=4)
    np.save(data / "class_0" / "odd.npy", np.zeros((6, 16, 16), np.float32))
    assert_user_error(invoke("pretrain", "--data", data, "--run-dir", tmp_path / "r", *FAST), "band")


def test_unknown_method_and_backbone(tmp_path):
    assert_user_error(invoke("pretrain", "--method", "simclrr", *FAST), "unknown method", "simclr")
    assert_user_error(invoke("pretrain", "--backbone", "resnet-18", *FAST), "unknown backbone", "Did you mean 'resnet18'")


def test_batch_size_larger_than_dataset(tmp_path):
    data = make_rgb_folder(tmp_path / "data")
    result = invoke("pretrain", "--data", data, "--run-dir", tmp_path / "r", "--batch-size", 4096, "--no-progress")
    assert_user_error(result, "--batch-size 4096", "larger than the training set")
    assert not (tmp_path / "r").exists()


def test_diverging_training_stops_with_the_step(tmp_path):
    data = make_npy_folder(tmp_path / "data", bands=3)
    run = tmp_path / "r"
    # A learning rate of 1e30 makes the weights overflow within a few steps.
    result = invoke("pretrain", "--data", data, "--run-dir", run, "--epochs", 5, "--lr", "1e30", "--optimizer", "sgd", "--warmup-epochs", 0, *FAST)
    assert_user_error(result, "NaN", "at step", "lower --lr")


def test_nan_loss_stops_with_the_step(tmp_path, monkeypatch):
    from geossl.methods.simclr import SimCLR

    original = SimCLR.training_step

    def nan_at_third_step(self, views):
        out = original(self, views)
        self._calls = getattr(self, "_calls", 0) + 1
        if self._calls == 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(SimCLR, "training_step", nan_at_third_step)
    data = make_rgb_folder(tmp_path / "data")
    result = invoke("pretrain", "--data", data, "--run-dir", tmp_path / "r", "--epochs", 3, *FAST)
    assert_user_error(result, "the loss became nan at step 2", "lower --lr")


def test_evaluate_flat_folder_refuses_label_protocols(tmp_path, trained_run):
    _, run = trained_run
    flat = tmp_path / "flat"
    flat.mkdir()
    src = next((trained_run[0] / "class_0").glob("*.png"))
    for i in range(10):
        (flat / f"{i}.png").write_bytes(src.read_bytes())
    assert_user_error(invoke("evaluate", run, "--data", flat), "no labels")


def test_bad_config_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 3\nbatchsize: 3\n")
    assert_user_error(invoke("pretrain", "--config", cfg), "batchsize", "batch_size")


def test_console_script_prints_one_line_and_exit_code_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "geossl.cli", "pretrain", "--data", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unknown_or_unsupported_precision_is_one_line_before_any_data_is_read(tmp_path):
    missing = tmp_path / "not-read"  # validation runs before the data: a missing folder is not reported
    result = invoke("pretrain", "--train-data", missing, "--precision", "bf16", "--run-dir", tmp_path / "r1", *FAST)
    assert_user_error(result, "unknown precision 'bf16'", "Did you mean 'bf16-mixed'?")
    result = invoke("pretrain", "--train-data", missing, "--precision", "16-mixed", "--accelerator", "cpu",
                    "--run-dir", tmp_path / "r2", *FAST)
    assert_user_error(result, "16-mixed needs a GPU", "--precision bf16-mixed")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
