"""Throughput of a SimCLR training step against the bare backbone, and of the data loader.

Claims (spine issue, measured here):
  * method overhead: SimCLR step (views made on the batch + backbone + projector + NT-Xent +
    backward + optimiser step) at most 10% slower than the bare backbone forward+backward +
    optimiser step on the same two views and batch;
  * the data loader with the default number of workers delivers at least 2x the images/s of a
    training step.

Usage: python benchmarks/throughput.py [--data PATH_OR_NAME] [--batch-size 256] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import add_data_argument, write_results
from geossl.augment.views import MultiViewAugment, Normalization, ViewAugment
from geossl.data import load_data
from geossl.methods import SimCLR
from geossl.nn import build_backbone
from geossl.train.config import PretrainConfig
from geossl.train.run import _resolve_workers


def _time_steps(step, n_steps: int, warmup: int = 2) -> list[float]:
    times = []
    for i in range(warmup + n_steps):
        t = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    data = load_data(args.data)
    b = args.batch_size
    images = torch.stack([data.train[i][0] for i in range(b)])
    norm = Normalization(data.mean, data.std, data.value_scale)
    views_cfg = SimCLR.default_views(data.image_size[0], overhead=True)
    augment = MultiViewAugment([ViewAugment(v, norm, rgb=data.is_rgb) for v in views_cfg])

    torch.manual_seed(0)
    method = SimCLR(build_backbone("resnet18", data.num_bands)).to(memory_format=torch.channels_last)  # the engine's default
    method.train()
    opt = torch.optim.SGD(method.parameters(), lr=1e-3, momentum=0.9)
    fixed_views = [v.contiguous(memory_format=torch.channels_last) for v in augment(images)]

    def bare_step() -> None:
        opt.zero_grad(set_to_none=True)
        method.backbone(torch.cat(fixed_views)).mean().backward()
        opt.step()

    def simclr_step() -> None:
        opt.zero_grad(set_to_none=True)
        views = [v.contiguous(memory_format=torch.channels_last) for v in augment(images)]
        method.training_step(views).loss.backward()
        opt.step()

    # Interleave the two measurements so that machine noise hits both alike.
    bare, ssl = [], []
    for _ in range(args.steps):
        bare += _time_steps(bare_step, 1, warmup=0 if bare else 2)
        ssl += _time_steps(simclr_step, 1, warmup=0 if ssl else 2)
    bare_ips = b / statistics.median(bare)
    ssl_ips = b / statistics.median(ssl)

    workers = _resolve_workers(PretrainConfig(), data)
    loader = torch.utils.data.DataLoader(data.train, batch_size=b, shuffle=True, drop_last=True, num_workers=workers)
    n_batches = min(len(loader), 30)
    t = time.perf_counter()
    seen = 0
    for i, (x, _) in enumerate(loader):
        seen += x.shape[0]
        if i + 1 >= n_batches:
            break
    loader_ips = seen / (time.perf_counter() - t)

    rows = [
        {"measure": "bare backbone fwd+bwd+step (2 views)", "images/s": bare_ips, "median step s": statistics.median(bare)},
        {"measure": "SimCLR step (views+backbone+head+loss+bwd+step)", "images/s": ssl_ips, "median step s": statistics.median(ssl)},
        {"measure": f"data loader ({workers} workers, default)", "images/s": loader_ips, "median step s": b / loader_ips},
    ]
    overhead = statistics.median(ssl) / statistics.median(bare) - 1
    notes = (
        f"Data: {data.name}, {data.image_size[0]}x{data.image_size[1]}, {data.num_bands} bands; batch {b} images "
        f"(= {2 * b} view images per step); ResNet-18 (standard stem), channels_last as in the engine; {args.steps} timed steps, medians.\n\n"
        f"Method overhead of SimCLR over the bare backbone: {100 * overhead:+.1f}% (target ≤ +10%).\n"
        f"Loader / training-step throughput: {loader_ips / ssl_ips:.1f}x (target ≥ 2x)."
    )
    write_results("throughput", "SimCLR step and data-loader throughput", rows, ["measure", "images/s", "median step s"], notes,
                  extra={"overhead": overhead, "loader_ratio": loader_ips / ssl_ips})
    print(notes)


if __name__ == "__main__":
    main()
