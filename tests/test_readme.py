"""The README's Python examples run as written (in a temporary working directory)."""

import re
import sys
from pathlib import Path


README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_examples():
    blocks = python_blocks()
    assert len(blocks) >= 3
    assert "make demo" in README.read_text() and "make test" in README.read_text()


def test_plain_pytorch_loop_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[0], "README-example-1", "exec"), {})
    top1 = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= top1 <= 100.0


def test_engine_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(python_blocks()[1], "README-example-2", "exec"), {})
    out = capsys.readouterr().out
    assert "random init" in out and (tmp_path / "runs" / "api-demo" / "report.md").is_file()


def test_core_does_not_import_lightning():
    import subprocess

    code = "import sys, geossl.losses, geossl.nn, geossl.eval, geossl.data, geossl.augment.views, geossl.methods, geossl.train; print(any(m.startswith('lightning') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_ot_example_runs():
    block = next(b for b in python_blocks() if "from geossl.ot import" in b)
    scope: dict = {}
    exec(compile(block, "README-ot-example", "exec"), scope)
    assert scope["plan"].shape == (64, 256, 256) and scope["value"].shape == (64,)
    # Uniform marginals: every problem's plan sums to 1 over rows (within the 100-iteration accuracy).
    assert (scope["plan"].sum(dim=(1, 2)) - 1).abs().max() < 1e-4
