"""SimCLR on the full EuroSAT RGB set under a CPU time budget, against random init and supervised.

Protocol: EuroSAT RGB (27,000 images, 64x64), deterministic stratified 60/20/20 split (seed 0:
16,200 / 5,400 / 5,400). ResNet-18 with the standard stem. SimCLR pretrains on the train split
(labels unused) for as many epochs as fit the budget (estimated from timed steps); the frozen
backbone is then evaluated on the test split by kNN (cosine, k=20, T=0.07, bank = train) and by
an L-BFGS linear probe (weight decay chosen on val). The same architecture with random weights
is evaluated identically, and a supervised ResNet-18 (cross-entropy, same views' crop and flips,
SGD, cosine schedule) is trained for the same budget and evaluated both by its own classifier
and by the same frozen-feature protocols.

Usage: python benchmarks/eurosat_simclr.py [--budget-min 45] [--supervised-budget-min 45]
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import REPO, SHARED_DATA, write_results
from geossl.augment.views import Normalization, ViewAugment, ViewConfig
from geossl.data import load_data
from geossl.eval.features import extract_features
from geossl.eval.knn import knn_classify
from geossl.eval.linear import linear_probe
from geossl.methods import SimCLR
from geossl.nn import build_backbone
from geossl.train.config import PretrainConfig
from geossl.train.evaluate import evaluate_checkpoint
from geossl.train.optim import warmup_cosine
from geossl.train.run import pretrain

RUNS = REPO / "benchmarks" / "runs"


def seconds_per_epoch(data, batch_size: int) -> float:
    """Time a few SimCLR steps to size the schedule to the budget."""
    norm = Normalization(data.mean, data.std, data.value_scale)
    augs = [ViewAugment(v, norm, data.is_rgb) for v in SimCLR.default_views(64, True)]
    method = SimCLR(build_backbone("resnet18", data.num_bands)).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(method.parameters(), lr=1e-3)
    x = torch.stack([data.train[i][0] for i in range(batch_size)])
    times = []
    for i in range(4):
        t = time.perf_counter()
        opt.zero_grad()
        method.training_step([a(x).contiguous(memory_format=torch.channels_last) for a in augs]).loss.backward()
        opt.step()
        if i > 0:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * (len(data.train) // batch_size)


def supervised(data, budget_s: float, batch_size: int, epochs: int, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """Supervised ResNet-18 with cross-entropy on the train split for the same budget."""
    torch.manual_seed(seed)
    backbone = build_backbone("resnet18", data.num_bands).to(memory_format=torch.channels_last)
    head = torch.nn.Linear(512, len(data.classes))
    params = list(backbone.parameters()) + list(head.parameters())
    lr = 0.1 * batch_size / 256
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)
    norm = Normalization(data.mean, data.std, data.value_scale)
    aug = ViewAugment(ViewConfig(size=64, vflip=0.5, color_jitter=0.0, grayscale=0.0, crop_scale=(0.5, 1.0)), norm, data.is_rgb)
    loader = torch.utils.data.DataLoader(data.train, batch_size=batch_size, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed))
    total = epochs * len(loader)
    step, start = 0, time.perf_counter()
    for epoch in range(epochs):
        backbone.train()
        for x, y in loader:
            for g in opt.param_groups:
                g["lr"] = lr * warmup_cosine(step, total, len(loader))
            loss = F.cross_entropy(head(backbone(aug(x).contiguous(memory_format=torch.channels_last))), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        print(f"supervised epoch {epoch + 1}/{epochs} loss {loss.item():.3f} elapsed {time.perf_counter() - start:.0f}s", flush=True)
    backbone.eval()
    feats, labels = extract_features(torch.nn.Sequential(backbone, head), data.test, preprocess=norm, batch_size=512, progress=False)
    acc = (feats.argmax(1) == labels).float().mean().item() * 100
    return backbone, {"classifier_top1": acc, "wall_s": time.perf_counter() - start, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED_DATA / "EuroSAT_RGB"))
    parser.add_argument("--budget-min", type=float, default=45.0, help="SimCLR pretraining budget (minutes).")
    parser.add_argument("--supervised-budget-min", type=float, default=None, help="Supervised budget (default: same).")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=None, help="Override the epochs estimated from the budget.")
    parser.add_argument("--skip-supervised", action="store_true")
    args = parser.parse_args()

    data = load_data(args.data, split=(0.6, 0.2, 0.2), seed=0)
    print(f"{data.name}: {data.split_description}")
    epoch_s = seconds_per_epoch(data, args.batch_size)
    # 8% of the budget is kept for the online kNN evaluations and checkpoints.
    epochs = args.epochs or max(1, math.floor(0.92 * args.budget_min * 60 / epoch_s))
    print(f"~{epoch_s:.0f} s per epoch -> {epochs} epochs in {args.budget_min} min")

    run_dir = RUNS / f"eurosat-simclr-{epochs}ep"
    config = PretrainConfig(
        method="simclr", data=args.data, epochs=epochs, batch_size=args.batch_size, run_dir=str(run_dir),
        knn_bank_size=5000, online_eval_every=max(1, epochs // 6), progress=False,
    )
    t = time.perf_counter()
    pretrain(config, data=data)
    ssl_wall = time.perf_counter() - t
    ev = evaluate_checkpoint(run_dir, with_baseline=True, prefer="last", plots=True)
    print(ev.table)

    rows = []
    for r in ev.rows:
        rows.append({"encoder": r["encoder"], "protocol": r["protocol"].split(" (")[0], "top1": r["top1"], "top5": r["top5"],
                     "train wall min": ssl_wall / 60 if r["encoder"] != "random init" else 0.0})
    sup_info = {}
    if not args.skip_supervised:
        sup_budget = (args.supervised_budget_min or args.budget_min) * 60
        sup_epochs = max(1, math.floor(0.95 * sup_budget / (epoch_s / 2.0)))  # one view per image: ~half a SimCLR step
        backbone, sup_info = supervised(data, sup_budget, args.batch_size, sup_epochs)
        norm = Normalization(data.mean, data.std, data.value_scale)
        tr_f, tr_y = extract_features(backbone, data.train, preprocess=norm, batch_size=512, progress=False)
        va_f, va_y = extract_features(backbone, data.val, preprocess=norm, batch_size=512, progress=False)
        te_f, te_y = extract_features(backbone, data.test, preprocess=norm, batch_size=512, progress=False)
        knn = knn_classify(tr_f, tr_y, te_f, te_y, k=20, temperature=0.07)
        lin = linear_probe(tr_f, tr_y, te_f, te_y, val_features=va_f, val_labels=va_y)
        wall = sup_info["wall_s"] / 60
        name = f"supervised ({sup_epochs} ep)"
        rows += [
            {"encoder": name, "protocol": "own classifier", "top1": sup_info["classifier_top1"], "top5": "", "train wall min": wall},
            {"encoder": name, "protocol": "knn", "top1": float(knn["top1"]), "top5": float(knn["top5"]), "train wall min": wall},
            {"encoder": name, "protocol": "linear", "top1": float(lin["top1"]), "top5": float(lin["top5"]), "train wall min": wall},
        ]
    knn_ssl = next(r["top1"] for r in ev.rows if r["protocol"].startswith("knn") and r["encoder"] != "random init")
    knn_rand = next(r["top1"] for r in ev.rows if r["protocol"].startswith("knn") and r["encoder"] == "random init")
    notes = (
        f"EuroSAT RGB, {data.split_description}; test split for every number (5,400 images). ResNet-18, standard stem, 64 px.\n"
        f"SimCLR: {epochs} epochs, batch {args.batch_size}, LARS (trust 0.02) lr 0.4 x B/256, wd 1e-6, warm-up min(10, epochs/10), tau 0.2 (the simclr defaults), "
        f"budget {args.budget_min} min, wall {ssl_wall / 60:.1f} min (including online kNN every {config.online_eval_every} epochs).\n"
        f"kNN: cosine, k=20, T=0.07, bank = train split. Linear: L-BFGS logistic regression on standardised features, wd chosen on val.\n"
        f"SSL kNN gain over random init: {knn_ssl - knn_rand:+.1f} points (target ≥ +15).\n"
        "Report with plots: benchmarks/results/eurosat_simclr_report/report.md"
    )
    report_copy = REPO / "benchmarks" / "results" / "eurosat_simclr_report"
    report_copy.mkdir(parents=True, exist_ok=True)
    for f in Path(ev.report).parent.glob("*"):
        if f.suffix in {".md", ".png", ".json", ".csv"} and f.name != "metrics.csv":
            shutil.copy2(f, report_copy / f.name)
    write_results("eurosat_simclr", "SimCLR on full EuroSAT under a CPU budget (2 cores)", rows,
                  ["encoder", "protocol", "top1", "top5", "train wall min"], notes,
                  extra={"epochs": epochs, "ssl_wall_s": ssl_wall, "supervised": sup_info, "knn_gain": knn_ssl - knn_rand})
    print(notes)


if __name__ == "__main__":
    main()
