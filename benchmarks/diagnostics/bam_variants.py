"""BAM collapse diagnosis: a manual loop on 2,560 EuroSAT train images (10 batches of 256, cycled), ResNet-18, the
method's default multi-crop views; after every third step the mean pairwise cosine of the first global crop's
embeddings and the RankMe of the embeddings (z) and backbone features (f).

Usage: python benchmarks/diagnostics/bam_variants.py VARIANT STEPS
VARIANT: comma-separated flags and key=value pairs, e.g. ``opt=lars,lr=0.6`` (the former defaults, single network),
``opt=adamw,lr=0.0003,teacher,topk=128`` (the released recipe). Flags: ``teacher`` (EMA teacher, momentum 0.99),
``single`` (no teacher), ``nomask``, ``twoview`` (global crops only), ``stopcols`` (target columns detached),
``lastbn`` (non-affine BatchNorm on the projector output). Keys: ``opt`` (lars/sgd/adamw), ``lr`` (per 256 images),
``warm`` (linear warm-up steps), ``eps``, ``temperature``, ``it`` (Sinkhorn iterations), ``topk``.
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _loop import BATCH as bs  # noqa: E402
from _loop import batch_views, collapse_stats, parse_variant, train_subset  # noqa: E402
from _protocol import method_and_views  # noqa: E402

from geossl.nn.heads import ProjectionHead  # noqa: E402
from geossl.train.optim import build_optimizer, parameter_groups, warmup_cosine  # noqa: E402

variant, opts, flags, steps = parse_variant(sys.argv)
data, X = train_subset()
margs: dict = {"teacher_momentum": 0.99 if "teacher" in flags else None, "top_k": int(opts.get("topk", 0))}
if "nomask" in flags:
    margs["mask_positives"] = False
for key in ("eps", "temperature"):
    if key in opts:
        margs[key] = float(opts[key])
if "it" in opts:
    margs["n_iters"] = int(opts["it"])
method, augment = method_and_views("bam", data, margs)
if "stopcols" in flags:
    forward = method.criterion.forward
    method.criterion.forward = lambda z, t=None: forward(z, [e.detach() for e in z])
if "lastbn" in flags:
    torch.manual_seed(1)
    method.projector = ProjectionHead((512, 2048, 2048, 256), batch_norm=True, last_batch_norm=True)
lr = float(opts.get("lr", 0.6)) * bs / 256
opt = build_optimizer(opts.get("opt", "lars"), parameter_groups(method, 1e-6), lr)
warm = int(opts.get("warm", 0))
print(variant, "lr", lr, "method args", margs, flush=True)
t0 = time.time()
for s in range(steps):
    views = batch_views(augment, X, s, "twoview" in flags)
    for group in opt.param_groups:
        group["lr"] = lr * (warmup_cosine(s, 10**6, warm) if warm else 1.0)
    out = method.training_step(views)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    method.on_optimizer_step(s, 1000)
    if s % 3 == 0 or s == steps - 1:
        print(f"step {s} loss {out.loss.item():.4f} column-mass cv {out.logs['target_column_mass_cv']:.3f} "
              f"{collapse_stats(out.embeddings, out.features)} ({time.time() - t0:.0f} s)", flush=True)
