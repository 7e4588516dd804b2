"""DINO collapse diagnosis: a manual loop on 2,560 EuroSAT train images (10 batches of 256, cycled), ResNet-18, the
method's default multi-crop views, with the engine's schedules as in a 6-epoch run (378 steps: the teacher
temperature warm-up, the teacher momentum, the frozen last layer, the linear lr warm-up of 0.6 epochs) and gradient
clipping 3.0; every third step the loss (log K = a flat teacher), the teacher's entropy, the mean pairwise cosine of
the first global crop's embeddings and RankMe.

Usage: python benchmarks/diagnostics/dino_variants.py VARIANT STEPS
VARIANT: comma-separated key=value pairs: ``opt`` (lars/sgd/adamw), ``lr`` (per 256 images), ``wd``, ``warm``
(linear warm-up steps, default 38), ``total`` (steps of the simulated run, default 378), ``m.NAME`` (a method
argument), e.g. ``opt=lars,lr=0.3`` (the script's defaults, the method's old ones) or ``opt=adamw,lr=0.0005,wd=0.04`` (the paper's ViT recipe).
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _loop import batch_views, collapse_stats, method_args, parse_variant, train_subset, variant_optimizer  # noqa: E402
from _protocol import method_and_views  # noqa: E402

from geossl.train.optim import warmup_cosine  # noqa: E402

variant, opts, flags, steps = parse_variant(sys.argv)
data, X = train_subset()
method, augment = method_and_views("dino", data, method_args(opts))
opt, lr = variant_optimizer(method, opts, lr=0.3, weight_decay=1e-6)
warm, total = int(opts.get("warm", 38)), int(opts.get("total", 378))
params = [p for p in method.parameters() if p.requires_grad]
print(variant, "lr", lr, flush=True)
t0 = time.time()
for s in range(steps):
    views = batch_views(augment, X, s, "twoview" in flags)
    for group in opt.param_groups:
        group["lr"] = lr * warmup_cosine(s, total, warm)
    method._step, method._total_steps = s, total
    out = method.training_step(views)
    opt.zero_grad()
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 3.0)
    opt.step()
    method.on_optimizer_step(s + 1, total)
    if s % 3 == 0 or s == steps - 1:
        print(f"step {s} loss {out.loss.item():.4f} teacher entropy {out.logs['teacher_entropy']:.3f} "
              f"tau_t {out.logs['teacher_temp']:.4f} {collapse_stats(out.embeddings, out.features)} ({time.time() - t0:.0f} s)",
              flush=True)
