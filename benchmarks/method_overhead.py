"""Step time of every SSL method against the bare backbone on the same views.

Claim (classic-methods issue): a method's training step (backbone, heads, loss, backward, optimiser step, EMA/queue
updates) costs at most 1.15x the bare backbone forward+backward+step on the same views, for methods without
multi-crop. Both are timed on the same fixed views; making the views (crops, colour, blur, on the batch) is timed
separately and reported as its own column, since it does not depend on the method code but on its augmentation
recipe. Methods with a momentum teacher also run the teacher's forward pass on the views; that pass is part of the
method, so their table row also gives the ratio against "bare fwd+bwd + one no-grad forward".

Usage: python benchmarks/method_overhead.py [--methods simclr,byol,...] [--batch-size 256] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
from _common import RESULTS, add_data_argument, median_interleaved, write_results
from _protocol import method_and_views, remeasured_rows

from geossl.cpu_memory import keep_freed_memory
from geossl.data import load_data
from geossl.methods.registry import METHODS


def _has_teacher(method: torch.nn.Module) -> bool:
    return any(not p.requires_grad for p in method.parameters())


def step_functions(method: torch.nn.Module, fixed: list[torch.Tensor]) -> dict[str, Callable[[], None]]:
    """The steps compared on the same fixed views: ``bare`` (backbone forward+backward+SGD step, one pass per
    resolution), ``bare+fwd`` (the same and one no-grad backbone forward, what a teacher adds) and ``method`` (the
    method's full step with its optimiser-step hook)."""
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    groups: dict[tuple, list] = {}
    for v in fixed:
        groups.setdefault(tuple(v.shape[-2:]), []).append(v)
    batches = [torch.cat(g) for g in groups.values()]
    step_count = [0]

    def bare() -> None:
        opt.zero_grad(set_to_none=True)
        sum(method.backbone(x).mean() for x in batches).backward()
        opt.step()

    def bare_plus_forward() -> None:
        bare()
        with torch.no_grad():
            for x in batches:
                method.backbone(x)

    def method_step() -> None:
        opt.zero_grad(set_to_none=True)
        method.training_step(fixed).loss.backward()
        opt.step()
        step_count[0] += 1
        method.on_optimizer_step(step_count[0], 1000)

    return {"bare": bare, "bare+fwd": bare_plus_forward, "method": method_step}


def measure(name: str, data, images: torch.Tensor, n_steps: int) -> dict:
    method, augment = method_and_views(name, data, image_size=images.shape[-1])
    method.train()
    fixed = [v.contiguous(memory_format=torch.channels_last) for v in augment(images)]
    teacher = _has_teacher(method)
    steps = step_functions(method, fixed)

    def make_views() -> None:
        [v.contiguous(memory_format=torch.channels_last) for v in augment(images)]

    timed = {"bare": steps["bare"], "method": steps["method"], "views": make_views}
    if teacher:
        timed["bare+fwd"] = steps["bare+fwd"]
    t = median_interleaved(timed, n_steps)
    sizes: dict[int, int] = {}  # views per resolution, in order of appearance
    for v in fixed:
        sizes[v.shape[-2]] = sizes.get(v.shape[-2], 0) + 1
    row = {
        "method": name,
        "views": f"{len(fixed)} ({', '.join(f'{n}x{s}px' for s, n in sizes.items())})",
        "bare s": t["bare"],
        "method s": t["method"],
        "ratio": t["method"] / t["bare"],
        "ratio vs bare+teacher fwd": t["method"] / t["bare+fwd"] if teacher else "",
        "views s": t["views"],
        "images/s (with views)": images.shape[0] / (t["method"] + t["views"]),
    }
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--methods", default=",".join(sorted(METHODS)))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=None, help="resize the images (e.g. 224, the papers' size)")
    parser.add_argument("--name", default="method_overhead", help="results file name")
    args = parser.parse_args()
    kept = keep_freed_memory()  # as pretrain runs on the CPU: the ratios are the engine's

    data = load_data(args.data)
    images = torch.stack([data.train[i][0] for i in range(args.batch_size)])
    if args.image_size:
        images = torch.nn.functional.interpolate(images.float(), size=args.image_size, mode="bilinear", antialias=False)
    previous = RESULTS / f"{args.name}.json"
    machine_before = json.loads(previous.read_text())["machine"] if previous.exists() else None
    # re-measuring some methods keeps the others' rows
    rows = remeasured_rows(args.name, args.methods.split(","), lambda name: measure(name, data, images, args.steps))
    if machine_before:  # rows from before the "measured" column: the file's own commit and date
        for r in rows:
            r.setdefault("measured", f"{machine_before['commit']} {machine_before['date'].removesuffix(' UTC')}")
    notes = (
        f"Data: {data.name}, {images.shape[-1]} px"
        f"{f' (resized from {data.image_size[0]} px, bilinear)' if args.image_size else ''}, {data.num_bands} bands; "
        f"batch {args.batch_size}; ResNet-18 (standard stem), "
        f"channels_last; each method with its default views and heads; {args.steps} timed steps per measure, interleaved, medians; "
        f"freed memory {'kept for reuse, as pretrain runs on the CPU' if kept else 'returned to the system (glibc default)'} for rows measured since 2026-12-04 22:00 (benchmarks/cpu_memory.py).\n"
        "bare: the backbone forward+backward+SGD step on the fixed views, one pass per resolution. method: the method's full "
        "step on the same fixed views (heads, loss, backward, SGD step, EMA/queue updates). views s: making the views from the "
        "raw batch (the method's augmentation recipe), timed apart; images/s counts it. Target: ratio <= 1.15 for methods without multi-crop. "
        "For teacher methods the last-but-one column divides by bare + one no-grad backbone forward of the views (the teacher's "
        "pass, which the method cannot avoid). Rows accumulate: each names the commit and time it was measured at; "
        "compare ratios, not seconds, across rows measured at different times or on different cpus (the shared "
        "machine's speed varies, and the sessions' machines differ)."
    )
    write_results(args.name, f"SSL method step time against the bare backbone ({images.shape[-1]} px)", rows,
                  ["method", "views", "bare s", "method s", "ratio", "ratio vs bare+teacher fwd", "views s", "images/s (with views)",
                   "measured", "cpu"], notes)
    print(notes)


if __name__ == "__main__":
    main()
