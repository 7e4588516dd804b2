"""Shared helpers of the benchmark scripts: machine description and result tables."""

from __future__ import annotations

import itertools
import json
import os
import platform
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("GEOSSL_SHARED_DATA", REPO.parent / "shared" / "data"))


def add_data_argument(parser) -> None:
    """``--data``: the full EuroSAT RGB set when ../shared/data has it, else the built-in sample."""
    full = SHARED_DATA / "EuroSAT_RGB"
    parser.add_argument("--data", default=str(full) if full.is_dir() else "eurosat-sample")


def cpu_name() -> str:
    """The CPU's model name (a results row's "cpu": the sessions' machines differ)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "commit": commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def median_interleaved(
    steps: dict[str, Any], n: int, *, warmup: int = 2, take_turns: bool = False
) -> dict[str, float]:
    """Median seconds of each no-argument step function over ``n`` rounds after ``warmup``, run round-robin so that
    machine noise hits all alike. ``take_turns``: reverse the order every other round (ABBA), so that no step always
    runs on the caches and allocator state of the same other one."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(n + warmup):
        for k in (list(steps)[::-1] if take_turns and i % 2 else list(steps)):
            t = time.perf_counter()
            steps[k]()
            if i >= warmup:
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def numbered(step):
    """A no-argument call of ``step(i)`` with i = 1, 2, ... (the optimiser-step hooks take the step number)."""
    count = itertools.count(1)
    return lambda: step(next(count))


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_results(name: str, title: str, rows: list[dict[str, Any]], columns: list[str], notes: str = "",
                  extra: dict | None = None, preamble: str = "") -> Path:
    """Print the table and write ``results/NAME.md`` and ``results/NAME.json``; ``preamble``: markdown between the
    title and the table (not stored in the JSON, which keeps the rows)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    table = markdown_table(rows, columns)
    md = [f"# {title}", "", *([preamble.strip(), ""] if preamble else []), table, ""]
    if notes:
        md += [notes.strip(), ""]
    md += ["Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    (RESULTS / f"{name}.md").write_text("\n".join(md))
    (RESULTS / f"{name}.json").write_text(json.dumps({"title": title, "rows": rows, "machine": info, **(extra or {})}, indent=2))
    print(table)
    print(f"\nwrote {RESULTS / (name + '.md')}")
    return RESULTS / f"{name}.md"
