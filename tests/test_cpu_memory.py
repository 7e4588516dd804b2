"""Freed CPU memory is reused instead of unmapped (geossl.cpu_memory), and CPU pretraining turns that on."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from geossl.cli import app
from geossl.cpu_memory import is_glibc

from .conftest import make_rgb_folder

# A training step's pattern: large activations allocated and touched during the forward pass, all freed by the
# backward. Prints the minor page faults of the last five of 17 steps (glibc settles its heap in the first few).
_FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    from geossl.cpu_memory import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def step():
        activations = [torch.ones(mb * 2**18) for mb in (40, 80, 48, 40)]  # MB, above glibc's largest mmap threshold
        del activations
    for _ in range(12):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not is_glibc(), reason="the settings are for glibc's malloc")
def test_kept_memory_stops_the_page_faults_of_repeated_steps():
    pages = 5 * 208 * 2**20 // 4096  # every page of five steps' fresh maps
    default = _faults("default")
    if default < pages // 4:
        pytest.skip(f"this kernel faults {default} times for {pages} fresh pages (transparent huge pages for every map?)")
    kept = _faults("keep")
    assert kept < pages // 50, (default, kept)


def test_cpu_pretraining_keeps_freed_memory_unless_told_not_to(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("geossl.train.run.keep_freed_memory", lambda: calls.append(1) or True)
    data = make_rgb_folder(tmp_path / "data", classes=2, per_class=8)
    run = tmp_path / "run"
    common = ["pretrain", "--method", "simclr", "--data", str(data), "--run-dir", str(run), "--accelerator", "cpu",
              "--batch-size", "8", "--no-progress", "--num-workers", "0", "--no-online-eval"]
    result = CliRunner().invoke(app, [*common, "--epochs", "1", "--no-reuse-freed-memory"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == []
    # The setting does not make a different run: resuming with the default is allowed, and turns it on.
    result = CliRunner().invoke(app, [*common, "--epochs", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "resumed" in result.output and calls == [1]


def test_cpu_finetuning_keeps_freed_memory_unless_told_not_to(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("geossl.train.evaluate.keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.setattr("geossl.train.run.keep_freed_memory", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU path, on any machine
    data = make_rgb_folder(tmp_path / "data", classes=2, per_class=8)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["pretrain", "--method", "simclr", "--data", str(data), "--run-dir", str(run),
                                      "--accelerator", "cpu", "--batch-size", "8", "--no-progress", "--num-workers", "0",
                                      "--no-online-eval", "--epochs", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    common = ["evaluate", str(run), "--finetune-epochs", "1", "--no-plots", "--batch-size", "8"]
    result = CliRunner().invoke(app, [*common, "--protocol", "knn"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == []  # only the protocol that trains the encoder changes the process's malloc
    result = CliRunner().invoke(app, [*common, "--protocol", "finetune", "--no-reuse-freed-memory",
                                      "--out", str(tmp_path / "a")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == []
    result = CliRunner().invoke(app, [*common, "--protocol", "finetune", "--out", str(tmp_path / "b")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == [1] and "finetune" in result.output
