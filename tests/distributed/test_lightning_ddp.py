"""`geossl pretrain --strategy ddp` with two CPU processes runs and writes one run directory."""

import subprocess
import sys

import pytest

from ..conftest import make_rgb_folder

pytestmark = pytest.mark.distributed


def test_pretrain_ddp_two_cpu_processes(tmp_path):
    data = make_rgb_folder(tmp_path / "data")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "geossl.cli", "pretrain", "--train-data", str(data), "--epochs", "2", "--batch-size", "8",
           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--run-dir", str(run), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("finished:") == 1, proc.stdout + proc.stderr[-2000:]  # only rank 0 reports
    assert (run / "checkpoints" / "last.ckpt").is_file()
    import torch

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1
    # 36 images, batch 8 per process, 2 processes: 2 steps per epoch (drop_last), 4 in all.
    assert ckpt["global_step"] == 4
