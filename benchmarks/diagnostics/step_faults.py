"""Where does a teacher method's step time go? Per-step wall time, CPU time in the kernel and minor page faults.

Compares, on the same fixed views (batch 256, 64 px EuroSAT): the bare backbone forward+backward+SGD step, the same
plus one no-grad backbone forward (what a teacher adds), and the method's full step. Kernel (system) time and minor
page faults show how much of a step goes to the kernel handing out fresh zeroed pages for activations.

Usage: python benchmarks/diagnostics/step_faults.py [--methods byol,simsiam] [--steps 5]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import SHARED_DATA  # noqa: E402
from _protocol import method_and_views  # noqa: E402
from method_overhead import step_functions  # noqa: E402

from geossl.data import load_data  # noqa: E402


def measure(fn, steps: int) -> tuple[float, float, float]:
    """Median-free means over ``steps`` calls after 2 warm-up calls: wall s, system s and minor faults per call."""
    for _ in range(2):
        fn()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        fn()
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return (t1 - t0) / steps, (r1.ru_stime - r0.ru_stime) / steps, (r1.ru_minflt - r0.ru_minflt) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="byol,simsiam")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    data = load_data(str(SHARED_DATA / "EuroSAT_RGB"))
    images = torch.stack([data.train[i][0] for i in range(args.batch_size)])
    print("| method | step | wall s | kernel s | minor faults (k) |\n|---|---|---|---|---|")
    for name in args.methods.split(","):
        method, augment = method_and_views(name, data)
        method.train()
        steps = step_functions(method, [v.contiguous(memory_format=torch.channels_last) for v in augment(images)])
        for label, key in (("bare", "bare"), ("bare + no-grad fwd", "bare+fwd"), ("method", "method")):
            wall, sys_s, faults = measure(steps[key], args.steps)
            print(f"| {name} | {label} | {wall:.2f} | {sys_s:.2f} | {faults / 1000:.0f} |", flush=True)


if __name__ == "__main__":
    main()
