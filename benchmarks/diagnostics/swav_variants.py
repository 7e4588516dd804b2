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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import SHARED_DATA  # noqa: E402
from _protocol import method_and_views  # noqa: E402

from geossl.data import load_data  # noqa: E402
from geossl.eval.monitors import rankme  # noqa: E402
from geossl.train.optim import build_optimizer, parameter_groups, warmup_cosine  # noqa: E402

torch.set_num_threads(2)
variant, steps = sys.argv[1], int(sys.argv[2])
opts = dict(p.split("=") for p in variant.split(",") if "=" in p)
flags = {p for p in variant.split(",") if "=" not in p}
bs = 256
data = load_data(str(SHARED_DATA / "EuroSAT_RGB"), split=(0.6, 0.2, 0.2), seed=0)
idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[: bs * 10]
X = torch.stack([data.train[int(i)][0] for i in idx])
margs = {k[2:]: (int(v) if v.isdigit() else float(v)) for k, v in opts.items() if k.startswith("m.")}
method, augment = method_and_views("swav", data, margs)
lr = float(opts.get("lr", 0.6)) * bs / 256
opt = build_optimizer(opts.get("opt", "lars"), parameter_groups(method, float(opts.get("wd", 1e-6))), lr)
warm, freeze = int(opts.get("warm", 0)), int(opts.get("freeze", 1))
total = 10**6
print(variant, "lr", lr, flush=True)
t0 = time.time()
for s in range(steps):
    views = [v.contiguous(memory_format=torch.channels_last) for v in augment(X[(s % 10) * bs:(s % 10 + 1) * bs])]
    if "twoview" in flags:
        views = views[:2]
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
        z, f = out.embeddings, out.features
        n = z.shape[0]
        mean_cos = float(((z @ z.T).sum() - n) / (n * n - n))
        print(f"step {s} loss {out.loss.item():.4f} prototypes used {out.logs['prototypes_used']:.2f} "
              f"mean cos {mean_cos:.3f} RankMe z {rankme(z):.1f} f {rankme(f):.1f} ({time.time() - t0:.0f} s)", flush=True)
