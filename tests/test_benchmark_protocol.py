"""benchmarks/_protocol.py: re-measured rows replace the same method's row, or with ``per_cpu`` only the same
method's row from the same CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture()
def protocol(tmp_path, monkeypatch):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _protocol

        monkeypatch.setattr(_protocol, "RESULTS", tmp_path)
        monkeypatch.setattr(_protocol, "cpu_name", lambda: "CPU B")
        yield _protocol
    finally:
        sys.path.remove(str(BENCHMARKS))


def saved(tmp_path: Path, rows: list[dict]) -> None:
    (tmp_path / "t.json").write_text(json.dumps({"rows": rows}))


def test_remeasured_rows_replace_by_method(protocol, tmp_path) -> None:
    saved(tmp_path, [{"method": "simclr", "x": 1, "cpu": "CPU A"}, {"method": "byol", "x": 2, "cpu": "CPU A"}])
    rows = protocol.remeasured_rows("t", ["simclr"], lambda name: {"method": name, "x": 3})
    assert [(r["method"], r["x"], r["cpu"]) for r in rows] == [("byol", 2, "CPU A"), ("simclr", 3, "CPU B")]
    assert rows[1]["measured"]


def test_remeasured_rows_per_cpu_keep_each_machines_row(protocol, tmp_path) -> None:
    saved(tmp_path, [{"method": "simclr", "x": 1, "cpu": "CPU A"}, {"method": "simclr", "x": 2, "cpu": "CPU B"}])
    rows = protocol.remeasured_rows("t", ["simclr", "byol"], lambda name: {"method": name, "x": 3}, per_cpu=True)
    assert [(r["method"], r["x"], r["cpu"]) for r in rows] == [
        ("byol", 3, "CPU B"), ("simclr", 1, "CPU A"), ("simclr", 3, "CPU B")]
