"""SwAV collapse diagnosis: a manual loop on 2,560 EuroSAT train images (10 batches of 256, cycled), ResNet-18, the
method's default multi-crop views; after every third step the loss (log K = flat predictions), the share of prototypes
that are some sample's nearest, the mean pairwise cosine of the first global crop's embeddings and RankMe.

Usage: python benchmarks/diagnostics/swav_variants.py VARIANT STEPS
VARIANT: comma-separated key=value pairs: ``opt`` (lars/sgd/adamw), ``lr`` (per 256 images), ``warm`` (linear warm-up
steps), ``freeze`` (steps with frozen prototypes, default 1 as in a 2-epoch run), ``twoview`` (flag: global crops only), ``m.NAME`` (a method argument, e.g. ``m.n_prototypes=128``), e.g. ``opt=lars,lr=0.6``
(the first defaults) or ``opt=lars,lr=0.03`` (the paper's LARS steps: lr 0.6 at trust 0.001 = lr 0.03 at the engine's
trust 0.02 for the adapted weights).
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _loop import batch_views, collapse_stats, method_args, parse_variant, train_subset, variant_optimizer  # noqa: E402
from _protocol import method_and_views  # noqa: E402

from geossl.train.optim import warmup_cosine  # noqa: E402

variant, opts, flags, steps = parse_variant(sys.argv)
data, X = train_subset()
method, augment = method_and_views("swav", data, method_args(opts))
opt, lr = variant_optimizer(method, opts, lr=0.6, weight_decay=1e-6)
warm, freeze = int(opts.get("warm", 0)), int(opts.get("freeze", 1))
total = 10**6
print(variant, "lr", lr, flush=True)
t0 = time.time()
for s in range(steps):
    views = batch_views(augment, X, s, "twoview" in flags)
    for group in opt.param_groups:
        group["lr"] = lr * (warmup_cosine(s, total, warm) if warm else 1.0)
    # the method freezes its prototypes for a fraction of ``total``: pass a total that makes it ``freeze`` steps
    method._step, method._total_steps = s, max(1, round(freeze / method.freeze_prototypes))
    out = method.training_step(views)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    method.prototypes.normalize()
    if s % 3 == 0 or s == steps - 1:
        print(f"step {s} loss {out.loss.item():.4f} prototypes used {out.logs['prototypes_used']:.2f} "
              f"{collapse_stats(out.embeddings, out.features)} ({time.time() - t0:.0f} s)", flush=True)
