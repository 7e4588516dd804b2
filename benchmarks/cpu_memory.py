"""Training steps on the CPU with glibc's default ``malloc`` against freed memory kept for reuse (``geossl.cpu_memory``).

Claim: keeping freed activation memory in the process (what ``geossl pretrain`` does on the CPU unless
``--no-reuse-freed-memory``) removes the minor page faults and kernel time of every step and makes steps faster,
at the price of a resident size that stays at its peak.

Each (method, mode) is measured in a fresh process, since the setting is process-wide and cannot be undone; the
modes alternate (default, kept, default, kept, ...) so that the shared machine's drifts hit both. A step is the
method's full training step on one batch as ``pretrain`` runs it: the views made from the raw batch, forward,
backward, SGD step, EMA/queue updates. Per step: wall seconds, kernel CPU seconds and minor page faults (medians
over the timed steps, after warm-up steps), and the process's peak resident size.

``--methods finetune`` times a step of ``geossl evaluate --protocol finetune`` instead (supervised, one view; that
protocol trains at batch 128), which keeps freed memory on the CPU too.

Usage: python benchmarks/cpu_memory.py [--methods simclr,byol] [--repeats 2] [--steps 6]
       python benchmarks/cpu_memory.py --methods finetune --batch-size 128
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import RESULTS, add_data_argument, write_results
from _protocol import full_training_step, method_and_views

from geossl.cpu_memory import keep_freed_memory
from geossl.data import load_data


def finetune_step(data, images: torch.Tensor):
    """One step of ``geossl evaluate --protocol finetune`` (:func:`geossl.eval.finetune.finetune`): normalise, crop and
    flip, ResNet-18 + linear head, cross-entropy, backward, nesterov SGD step."""
    from torch.nn import functional as F

    from geossl.augment.views import Normalization
    from geossl.eval.finetune import _augment
    from geossl.nn import build_backbone
    from geossl.nn.backbones import feature_dim

    torch.manual_seed(0)
    backbone = build_backbone("resnet18", data.num_bands)
    model = torch.nn.Sequential(backbone, torch.nn.Linear(feature_dim(backbone), 10)).train()
    preprocess = Normalization(data.mean, data.std, data.value_scale)
    labels = torch.randint(0, 10, (len(images),))
    generator = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(_augment(preprocess(images), generator)), labels).backward()
        opt.step()

    return step


def measure_in_this_process(method_name: str, data_path: str, batch_size: int, warmup: int, steps: int, keep: bool) -> dict:
    """Time ``steps`` training steps after ``warmup`` ones; the mode must be set before any large allocation."""
    if keep and not keep_freed_memory():
        raise SystemExit("the kept mode needs glibc's malloc (Linux)")
    data = load_data(data_path)
    images = torch.stack([data.train[i][0] for i in range(batch_size)])
    if method_name == "finetune":
        step = finetune_step(data, images)
    else:
        method, augment = method_and_views(method_name, data)
        method.train()
        step = full_training_step(method, augment, images, total_steps=1000, momentum=0.9)
    walls, kernel, faults = [], [], []
    for i in range(warmup + steps):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        step(i + 1)
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        if i >= warmup:
            walls.append(t1 - t0)
            kernel.append(r1.ru_stime - r0.ru_stime)
            faults.append(r1.ru_minflt - r0.ru_minflt)
    return {
        "step s": statistics.median(walls),
        "kernel s": statistics.median(kernel),
        "minor faults (k)": statistics.median(faults) / 1000,
        "peak RSS GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--methods", default="simclr,byol")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="processes per (method, mode)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--child", choices=["default", "kept"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        row = measure_in_this_process(args.methods, args.data, args.batch_size, args.warmup, args.steps, args.child == "kept")
        print(json.dumps(row))
        return

    rows = []
    for name in args.methods.split(","):
        for repeat in range(args.repeats):
            for mode in ("default", "kept"):
                out = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--methods", name, "--data", args.data,
                     "--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--steps", str(args.steps)],
                    capture_output=True, text=True, check=True,
                )
                row = {"method": name, "batch": args.batch_size, "malloc": "glibc default" if mode == "default" else "freed memory kept", "process": repeat + 1, "timed steps": args.steps,
                       **json.loads(out.stdout.strip().splitlines()[-1])}
                row["img/s"] = args.batch_size / row["step s"]
                print(row, flush=True)
                rows.append(row)
    # rows of the methods not measured now are kept from the earlier run (the Machine line is this run's)
    previous = RESULTS / "cpu_memory.json"
    measured = set(args.methods.split(","))
    if previous.exists():
        kept = [r for r in json.loads(previous.read_text())["rows"] if r["method"] not in measured]
        rows = [*kept, *rows]
    summary = []
    for name in dict.fromkeys(r["method"] for r in rows):
        by_mode = {m: [r for r in rows if r["method"] == name and r["malloc"] == m] for m in ("glibc default", "freed memory kept")}
        steps = {m: statistics.mean(r["step s"] for r in rs) for m, rs in by_mode.items()}
        summary.append(f"{name}: mean step {steps['glibc default']:.2f} s (default) against {steps['freed memory kept']:.2f} s "
                       f"(kept), {steps['glibc default'] / steps['freed memory kept']:.2f}x")
    notes = (
        f"Data: {Path(args.data).name}, ResNet-18 (standard stem), channels_last, each method's default views "
        f"and heads, SGD. One fresh process per row, modes alternating; per row the median of its timed steps after "
        f"{args.warmup} warm-up steps. step s: views + forward + backward + optimiser step + EMA/queue update; kernel s: "
        "CPU time in the kernel per step (both threads); minor faults: pages the kernel had to hand out per step; peak RSS: "
        "the process, data in memory included. finetune: a step of `geossl evaluate --protocol finetune` (one view "
        "cropped and flipped, ResNet-18 + linear head, cross-entropy, nesterov SGD; contiguous tensors, as "
        "geossl.eval.finetune runs). Rows of methods not given to --methods are kept from their earlier run.\n\n" + "\n".join(f"- {s}" for s in summary)
    )
    write_results("cpu_memory", "CPU training steps: glibc's default malloc against freed memory kept for reuse", rows,
                  ["method", "batch", "malloc", "process", "timed steps", "step s", "img/s", "kernel s", "minor faults (k)", "peak RSS GiB"], notes)
    print(notes)


if __name__ == "__main__":
    main()
