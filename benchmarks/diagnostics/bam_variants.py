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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import SHARED_DATA  # noqa: E402
from _protocol import method_and_views  # noqa: E402

from geossl.data import load_data  # noqa: E402
from geossl.eval.monitors import rankme  # noqa: E402
from geossl.nn.heads import ProjectionHead  # noqa: E402
from geossl.train.optim import build_optimizer, parameter_groups, warmup_cosine  # noqa: E402

torch.set_num_threads(2)
variant, steps = sys.argv[1], int(sys.argv[2])
opts = dict(p.split("=") for p in variant.split(",") if "=" in p)
flags = {p for p in variant.split(",") if "=" not in p}
bs = 256
data = load_data(str(SHARED_DATA / "EuroSAT_RGB"), split=(0.6, 0.2, 0.2), seed=0)
idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))[: bs * 10]
X = torch.stack([data.train[int(i)][0] for i in idx])
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
    views = [v.contiguous(memory_format=torch.channels_last) for v in augment(X[(s % 10) * bs:(s % 10 + 1) * bs])]
    if "twoview" in flags:
        views = views[:2]
    for group in opt.param_groups:
        group["lr"] = lr * (warmup_cosine(s, 10**6, warm) if warm else 1.0)
    out = method.training_step(views)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    method.on_optimizer_step(s, 1000)
    if s % 3 == 0 or s == steps - 1:
        z, f = out.embeddings, out.features
        n = z.shape[0]
        mean_cos = float(((z @ z.T).sum() - n) / (n * n - n))
        print(f"step {s} loss {out.loss.item():.4f} column-mass cv {out.logs['target_column_mass_cv']:.3f} "
              f"mean cos {mean_cos:.3f} RankMe z {rankme(z):.1f} f {rankme(f):.1f} ({time.time() - t0:.0f} s)", flush=True)
