"""Do local crops (multi-crop) help a two-view method at a short CPU budget? Same epochs, with and without them.

For each method and seed, pretrain on the train part of a small EuroSAT split for ``--epochs`` epochs with 0 and with
``--local-crops N`` local crops (24 px at 64 px, after the 2 global views), then report kNN top-1 on the test part and
the training time: local crops cost extra backbone passes, so the question is accuracy per epoch *and* per minute.
Runs without local crops are shared with ``lightly_compare.py`` (same run directory names, config and split), so they
are reused when present.

Usage: python benchmarks/local_crops.py [--methods simclr] [--local-crops 2] [--epochs 2] [--seeds 0,1] [--split 0.2,0.1,0.7]
"""

from __future__ import annotations

import argparse
import csv
import statistics

from _common import add_data_argument, write_results
from _protocol import accumulate, short_run_knn

from geossl.data import load_data


def train_images_per_s(run) -> float:
    """Median training throughput the run logged (images per second, all views of an image counted once)."""
    values = [float(r["train/img_per_s"]) for r in csv.DictReader(open(run / "metrics.csv")) if r.get("train/img_per_s")]
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--methods", default="simclr")
    parser.add_argument("--local-crops", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--split", default="0.2,0.1,0.7")
    args = parser.parse_args()

    split = tuple(float(f) for f in args.split.split(","))
    data = load_data(args.data, split=split, seed=0)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = accumulate("local_crops", None)  # rows of other methods (earlier invocations) are kept
    for name in args.methods.split(","):
        for local in (0, args.local_crops):
            knn, speed = [], []
            for seed in seeds:
                suffix = "" if local == 0 else f"-local{local}"
                top1, run = short_run_knn(name, data, args.data, split=split, epochs=args.epochs, batch_size=args.batch_size,
                                          seed=seed, run_name=f"lightly-compare-{name}-{args.epochs}ep-seed{seed}{suffix}",
                                          local_crops=local or None)
                knn.append(top1)
                speed.append(train_images_per_s(run))
            row = {"method": f"{name} + {local} local" if local else name, "local crops": local, "epochs": args.epochs,
                   "seeds": ", ".join(map(str, seeds)), "kNN (seeds)": ", ".join(f"{k:.2f}" for k in knn),
                   "kNN mean": statistics.fmean(knn), "train img/s (mean)": statistics.fmean(speed)}
            print(row, flush=True)
            rows[row["method"]] = row
    notes = (
        f"Data: {data.name}, {data.image_size[0]} px, train part of a {args.split} split ({data.split_description}); batch "
        f"{args.batch_size}; ResNet-18 (standard stem); each method's default views, plus N local crops (24 px, crop scale "
        "0.05-0.14) after the 2 global views; the two-view loss averaged over the pairs with a global view. kNN top-1 "
        "(cosine, k=20, T=0.07, bank = train part) on the test part. Same epochs with and without local crops; train "
        "img/s (the runs' logged median) says what they cost on the shared 2-core machine; runs without local crops are "
        "reused from lightly_compare.py when present, so their img/s may come from another time of day."
    )
    write_results("local_crops", "Local crops for the two-view methods (short runs)", [rows[k] for k in sorted(rows)],
                  ["method", "local crops", "epochs", "seeds", "kNN (seeds)", "kNN mean", "train img/s (mean)"], notes)


if __name__ == "__main__":
    main()
