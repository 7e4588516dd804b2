"""Training step time of each SSL method in float32 and in bfloat16 mixed precision on the CPU.

``geossl pretrain --precision bf16-mixed`` runs the backbone and heads under ``torch.autocast("cpu", bfloat16)``
(oneDNN's bfloat16 convolutions and matmuls; AMX tiles or AVX-512 BF16 where the CPU has them) and every loss in
float32 (``geossl.losses.precision``). This script times the full step as ``pretrain`` runs it (views from the raw
batch, forward, loss, backward, SGD step, EMA/queue updates) in both precisions, interleaved so machine noise hits
both alike, and reports the speed-up; it also gives the first-step loss of the same fresh model on the same fixed
views in both precisions (how far bfloat16's forward moves the loss). Whether the speed-up holds in accuracy is
measured by the zoo rows named ``precision=bf16-mixed`` (benchmarks/zoo_eurosat.py).

Usage: python benchmarks/cpu_precision.py [--methods simclr,byol,...] [--batch-size 256] [--steps 4]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
from _common import RESULTS, add_data_argument, median_interleaved, numbered, write_results
from _protocol import autocast_for, full_training_step, method_and_views, remeasured_rows

from geossl.cpu_memory import keep_freed_memory
from geossl.data import load_data
from geossl.methods.registry import METHODS

CLASSIC = "simclr,moco-v2,moco-v3,byol,simsiam,barlow-twins,vicreg,swav,dino,mmcr"


def cpu_bfloat16_support() -> str:
    """The CPU's bfloat16 instructions (from /proc/cpuinfo), e.g. "amx_bf16, avx512_bf16", or "none"."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("amx_bf16", "avx512_bf16", "avx_vnni") if f in flags]
    return ", ".join(found) or "none"


def first_step_losses(name: str, data, images: torch.Tensor) -> tuple[float, float]:
    """The loss of one fresh model on one set of fixed views, in float32 and under bfloat16 autocast."""
    method, augment = method_and_views(name, data)
    method.train()
    torch.manual_seed(0)
    views = [v.contiguous(memory_format=torch.channels_last) for v in augment(images)]
    losses = []
    for precision in ("32-true", "bf16-mixed"):
        model = copy.deepcopy(method)  # batch-norm statistics and queues start equal
        with torch.no_grad(), autocast_for(precision):
            torch.manual_seed(1)  # the methods that draw (sliced projections) draw the same
            losses.append(float(model.training_step(views).loss))
    return losses[0], losses[1]


def measure(name: str, data, images: torch.Tensor, n_steps: int) -> dict:
    steps = {}
    for precision in ("32-true", "bf16-mixed"):
        method, augment = method_and_views(name, data)
        method.train()
        step = full_training_step(method, augment, images, precision=precision)
        steps[precision] = numbered(step)
    t = median_interleaved(steps, n_steps)
    loss32, loss16 = first_step_losses(name, data, images)
    row = {
        "method": name,
        "float32 s": t["32-true"],
        "bf16-mixed s": t["bf16-mixed"],
        "speed-up": t["32-true"] / t["bf16-mixed"],
        "img/s float32": images.shape[0] / t["32-true"],
        "img/s bf16-mixed": images.shape[0] / t["bf16-mixed"],
        "loss float32": f"{loss32:.5g}",
        "loss bf16-mixed": f"{loss16:.5g}",
        "loss rel. diff": f"{abs(loss16 - loss32) / max(abs(loss32), 1e-12):.1e}",
        "bf16 instructions": cpu_bfloat16_support(),  # per row: rows accumulate over machines
    }
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--methods", default=CLASSIC, help=f"comma-separated (default: the classic methods); all: {','.join(sorted(METHODS))}")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per precision (after 2 untimed), interleaved")
    parser.add_argument("--render", action="store_true",
                        help="only re-render the table from results/cpu_precision.json")
    args = parser.parse_args()
    if args.render:
        saved = json.loads((RESULTS / "cpu_precision.json").read_text())
        render(saved["rows"], saved["setup"])
        return
    kept = keep_freed_memory()  # as pretrain runs on the CPU

    data = load_data(args.data)
    images = torch.stack([data.train[i][0] for i in range(args.batch_size)])
    # per CPU: the speed-up depends on the instruction set (AMX or not), so each machine keeps its rows
    rows = remeasured_rows("cpu_precision", args.methods.split(","),
                           lambda name: measure(name, data, images, args.steps), per_cpu=True)
    setup = {"data": data.name, "px": images.shape[-1], "batch": args.batch_size, "steps": args.steps,
             "freed memory kept": kept}
    render(rows, setup)


def render(rows: list[dict], setup: dict) -> None:
    """Write ``results/cpu_precision.{md,json}`` from the rows (one per method and CPU) and the run's setup."""
    notes = (
        f"Data: {setup['data']}, {setup['px']} px; batch {setup['batch']}; ResNet-18 (standard stem), channels_last; "
        "each method with its default views and heads; the full step as pretrain runs it (views from the raw batch "
        f"included); {setup['steps']} timed steps per precision after 2 untimed, interleaved, medians; freed memory "
        f"{'kept for reuse, as pretrain runs on the CPU' if setup['freed memory kept'] else 'returned to the system'}. "
        "Rows are kept per method and CPU: the speed-up depends on the CPU's bfloat16 instructions (bf16 instructions: "
        "those of the row's CPU, from /proc/cpuinfo; amx_bf16 is Intel's AMX tiles, avx512_bf16 AVX-512 BF16; with "
        "none, oneDNN has no native bfloat16 kernels; not measured here). "
        "bf16-mixed: torch.autocast('cpu', bfloat16) around forward and loss, as Lightning's bf16-mixed; every "
        "loss computes in float32 (geossl.losses.precision), the weights and optimiser stay float32. Loss columns: "
        "one fresh model, one set of fixed views, no_grad, in each precision (a relative difference of a loss near "
        "0, SimSiam's, is large in relative terms only). Rows accumulate, each names the commit and time it was "
        "measured at; the SwAV and DINO rows of 2026-12-05 04:25 took 2 + 6 crops (their default then), the later "
        "rows 2."
    )
    write_results("cpu_precision", "Step time in float32 and bfloat16 mixed precision on the CPU", rows,
                  ["method", "float32 s", "bf16-mixed s", "speed-up", "img/s float32", "img/s bf16-mixed", "loss float32",
                   "loss bf16-mixed", "loss rel. diff", "measured", "cpu", "bf16 instructions"], notes,
                  extra={"setup": setup})
    print(notes)


if __name__ == "__main__":
    main()
