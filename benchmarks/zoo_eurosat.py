"""Every SSL method on the full EuroSAT RGB set under the same CPU budget; one method per invocation.

Protocol (the same as ``eurosat_simclr.py``): EuroSAT RGB, 64x64, stratified 60/20/20 split with seed 0
(16,200 / 5,400 / 5,400). ResNet-18 with the standard stem; each method with its paper defaults (views, heads,
optimiser). Epochs are sized from timed steps so that pretraining takes at most ``--budget-min`` minutes. The frozen
backbone is evaluated on the test split by kNN (cosine, k=20, T=0.07, bank = train) and an L-BFGS linear probe,
next to the same architecture with random weights.

The table is accumulated in ``results/zoo_eurosat.json``: each invocation adds or replaces its method's row, which
names the commit it ran on, so the table can be filled over several sessions.

Usage: python benchmarks/zoo_eurosat.py --method byol [--budget-min 40] [--epochs N] [--batch-size 256]
       python benchmarks/zoo_eurosat.py --method swav --set queue_length=3840   # a method argument off its default
       python benchmarks/zoo_eurosat.py --method byol --view 1.solarize=0.2   # a view field off its default
       python benchmarks/zoo_eurosat.py --render   # re-render the table from its JSON
"""

from __future__ import annotations

import argparse
import json
import re
import statistics

from _common import RESULTS, SHARED_DATA, markdown_table, write_results
from _protocol import PROTOCOL_NOTE, accumulate, ordered_rows, run_row

from geossl.augment.views import ViewConfig
from geossl.cli import _parse_sets
from geossl.data import load_data
from geossl.errors import GeosslError
from geossl.methods.registry import METHODS
from geossl.train.run import default_views

ORDER = ["simclr", "moco-v2", "moco-v3", "byol", "simsiam", "barlow-twins", "vicreg", "swav", "dino", "mmcr"]


def simclr_row_from_spine_benchmark() -> dict | None:
    """The SimCLR row measured by ``eurosat_simclr.py`` (same data, split, backbone, batch and protocol)."""
    path = RESULTS / "eurosat_simclr.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    top1 = {(r["encoder"] == "random init", r["protocol"]): float(r["top1"]) for r in d["rows"] if not r["encoder"].startswith("supervised")}
    return {
        "method": "simclr", "epochs": d["epochs"], "train min": d["ssl_wall_s"] / 60,
        "kNN top-1": top1[(False, "knn")], "linear top-1": top1[(False, "linear")],
        "kNN gain vs random": top1[(False, "knn")] - top1[(True, "knn")], "img/s (step)": "", "peak RSS GiB": "",
        "seed": 0, "commit": d["machine"]["commit"] + " (eurosat_simclr.py)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=sorted(METHODS))
    parser.add_argument("--render", action="store_true", help="only re-render the table from results/zoo_eurosat.json")
    parser.add_argument("--data", default=str(SHARED_DATA / "EuroSAT_RGB"))
    parser.add_argument("--budget-min", type=float, default=40.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs sized from the budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a method argument off its default (repeatable); the variant gets its own row, named after it")
    parser.add_argument("--view", action="append", metavar="[N.]KEY=VALUE",
                        help="a field of the method's default views (geossl.augment.views.ViewConfig) off its default, "
                             "in every view or only in view N (from 0); repeatable; a variant row named after it, "
                             "e.g. --view 1.solarize=0.2")
    parser.add_argument("--optimizer", default=None, help="off the method's default (the variant gets its own row)")
    parser.add_argument("--lr", type=float, default=None, help="base lr per 256 images, off the method's default")
    parser.add_argument("--weight-decay", type=float, default=None, help="off the method's default")
    parser.add_argument("--local-crops", type=int, default=None,
                        help="local crops after the 2 global views, off the method's default (a variant row)")
    parser.add_argument("--precision", default=None, choices=["32-true", "bf16-mixed", "16-mixed"],
                        help="off the default 32-true (a variant row): bf16-mixed runs the backbone and heads in bfloat16")
    args = parser.parse_args()
    if not args.render and args.method is None:
        parser.error("--method is required (or --render)")

    if args.render:
        rows = accumulate("zoo_eurosat", None)
    else:
        data = load_data(args.data, split=(0.6, 0.2, 0.2), seed=0)
        method_args = _parse_sets(args.set)
        run_options = {k: v for k, v in (("optimizer", args.optimizer), ("lr", args.lr), ("weight_decay", args.weight_decay),
                                          ("local_crops", args.local_crops), ("precision", args.precision)) if v is not None}
        # the zoo's batch is 256 for every method; another batch is a variant too (the lr scales linearly with it)
        batch = {"batch_size": args.batch_size} if args.batch_size != 256 else {}
        overrides = {**method_args, **run_options, **batch}
        # a variant gets its own row (and run directory) next to the defaults' row, e.g. "swav queue_length=3840"
        # another seed is a row of its own too (rows are keyed by this label), e.g. "swav local_crops=0 seed=1"
        settings = [f"{k}={v}" for k, v in overrides.items()]
        if args.view:  # named by the edits as typed; the row stores the full views
            run_options["views"] = overrides["views"] = edited_views(args.method, data.image_size[0], args.local_crops,
                                                                     args.view)
            settings += [f"views.{item.replace(' ', '')}" for item in args.view]
        tag = " ".join([args.method, *settings, *([f"seed={args.seed}"] if args.seed else [])])
        row = run_row(args.method, data, args.data, budget_min=args.budget_min, batch_size=args.batch_size, seed=args.seed,
                      epochs=args.epochs, method_args=method_args, tag=tag, run_options=run_options)
        row["status"] = "ok" if row["kNN gain vs random"] >= 10 else f"FAILS (+{row['kNN gain vs random']:.1f} < +10)"
        if overrides:
            row["overrides"] = overrides
        rows = accumulate("zoo_eurosat", row)
    render(rows)


def edited_views(method: str, image_size: int, local_crops: int | None, items: list[str]) -> list[dict]:
    """The method's default views for ``image_size`` px overhead images (as dicts of ViewConfig fields) with the
    ``--view`` edits: ``KEY=VALUE`` sets the field in every view, ``N.KEY=VALUE`` in view N only.

    Raises:
        GeosslError: on an unknown field, a view index out of range or an invalid value.
    """
    views = [v.to_dict() for v in default_views(METHODS[method], image_size, True, local_crops)]
    for key, value in _parse_sets(items, option="--view", what="a view field").items():
        index, _, field = key.rpartition(".")
        if index and not (index.isdigit() and int(index) < len(views)):
            raise GeosslError(f"--view {key}: the view index must be 0-{len(views) - 1}, got '{index}'")
        for i in [int(index)] if index else range(len(views)):
            views[i][field] = value
    return [ViewConfig.from_dict(v).to_dict() for v in views]  # validates the fields and values


def configuration(label: str) -> str:
    """A row's label without its seed: ``"byol batch_size=64 seed=2"`` → ``"byol batch_size=64"``."""
    return " ".join(word for word in label.split() if not re.fullmatch(r"seed=\d+", word))


def summary_rows(rows: dict[str, dict]) -> list[dict]:
    """One row per configuration run at more than one seed, and per method at its defaults: the kNN gain of each
    seed, their mean and how many seeds pass the +10 bar.

    Args:
        rows: the accumulated zoo rows, keyed by label (``"method [overrides] [seed=N]"``).

    Returns:
        Rows with ``configuration``, ``seeds``, ``kNN gain per seed``, ``mean kNN gain``, ``mean kNN top-1``,
        ``mean linear top-1``, ``epochs`` and ``seeds over +10``; the methods' defaults first, in ``ORDER``.
    """
    groups: dict[str, list[dict]] = {}
    for label, row in rows.items():
        if isinstance(row.get("kNN gain vs random"), (int, float)):
            groups.setdefault(configuration(label), []).append(row)
    out = []
    for config, members in groups.items():
        if config not in METHODS and len(members) < 2:
            continue
        members = sorted(members, key=lambda r: int(r.get("seed", 0)))
        gains = [float(r["kNN gain vs random"]) for r in members]
        epochs = sorted({int(r["epochs"]) for r in members if str(r.get("epochs", "")).isdigit()})
        out.append({
            "configuration": config,
            "seeds": ", ".join(str(r.get("seed", 0)) for r in members),
            "kNN gain per seed": ", ".join(f"{g:+.1f}" for g in gains),
            "mean kNN gain": statistics.fmean(gains),
            "mean kNN top-1": statistics.fmean(float(r["kNN top-1"]) for r in members),
            "mean linear top-1": statistics.fmean(float(r["linear top-1"]) for r in members),
            "epochs": ", ".join(map(str, epochs)),
            "seeds over +10": f"{sum(g >= 10 for g in gains)} of {len(gains)}",
        })
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(out, key=lambda r: (r["configuration"] not in rank, rank.get(r["configuration"], 0),
                                      r["configuration"]))


SUMMARY_COLUMNS = ["configuration", "seeds", "kNN gain per seed", "mean kNN gain", "mean kNN top-1",
                   "mean linear top-1", "epochs", "seeds over +10"]


def render(rows: dict) -> None:
    """Write ``results/zoo_eurosat.md`` (and json) from the accumulated rows, with the protocol notes: first the
    summary over seeds (:func:`summary_rows`), then every row."""
    rows.setdefault("simclr", simclr_row_from_spine_benchmark())
    rows = {k: v for k, v in rows.items() if v is not None}
    ordered, reference = ordered_rows(rows, ORDER, ORDER)
    random_knn = sorted({f"{float(r['random kNN']):.2f}" for r in rows.values() if "random kNN" in r})
    summary = (
        "## Summary: each method at its defaults, and every configuration run at several seeds\n\n"
        + markdown_table(summary_rows(rows), SUMMARY_COLUMNS)
        + f"\n\nkNN gain: kNN top-1 on the test split minus random init's ({', '.join(random_knn)}); the bar is +10. "
        "Each seed is a row of the table below (`NAME seed=N`), with its commit, machine and status.\n\n## Every row"
    )
    notes = (
        PROTOCOL_NOTE + reference + " img/s (step): images per second of a full training step (all views), timed "
        "before training. Peak RSS: the whole process (data in memory included). cpu: the machine the row ran on; "
        "the sessions' machines differ (2 cores of an Intel Xeon with AMX, or of an AMD EPYC without), so train min "
        "and img/s compare only between rows of one cpu (rows run before 2026-12-06 06:00 carry the machine line "
        "that this file had at the commit adding them). Rows accumulate over sessions; each names "
        "its commit (+dirty: uncommitted edits outside the training code at the time). The status column says why a row "
        "misses the +10 kNN bar. Teacher columns: the EMA teacher's backbone under the same protocol (DINO's authors "
        "evaluate the teacher, Caron et al. 2021 Fig. 6; the bar is judged on the student, as solo-learn and lightly "
        "report), for rows measured since the teacher could be evaluated (`geossl evaluate --layer teacher`). "
        "BYOL's shortfall at batch 256 with LARS lr 0.2, its pass at batch 64 and its pass at batch 256 with lr 0.1 "
        "(its default since 2026-12-06) are analysed in benchmarks/diagnostics/README.md. "
        "Rows named `batch_size=64` ran at batch 64 with everything else at the method's defaults (the lr per 256 "
        "images scales linearly, as for every batch, except where the row's name also sets lr): four times the optimiser "
        "steps in the same time, which BYOL with the paper's values needed at this budget (+5.5 at batch 256, +10.7 at "
        "batch 64; with a 10x predictor lr and target momentum 0.99, its defaults since 2026-12-05, and lr 0.2, "
        "+10.4, +9.9 and +9.8 at batch 256 and +11.7, +10.8 and +13.4 at batch 64, seeds 0-2); SimSiam, DINO and SwAV "
        "do not gain enough from them. DINO without local crops takes global crops of scale 0.14-1 (the authors' "
        "advice) since commit b380a16; the row `dino head_layers=3 out_dim=4096 momentum=0.996 lr=0.03 weight_decay=0.0001 "
        "unscaled_blur` ran with 0.4-1. Rows named `unscaled_blur` (every SwAV and DINO row before 2026-12-05 22:00) blurred "
        "with the papers' σ of 0.1-2 px at 64 px, not scaled to the image size as BYOL's always was (0.1-0.57 px at 64 px; "
        "``geossl.augment.views.paper_blur_sigma``). Words `views.[N.]KEY=VALUE` in a row's name: a field of the "
        "method's default views set in every view (or in view N), as the script's `--view` does. Rows named "
        "`precision=bf16-mixed` ran the backbone and heads in bfloat16 (every loss in float32; the CPU has AMX), sized "
        "from steps timed that way: about 2x the steps of float32 in the same time (benchmarks/results/cpu_precision.md). "
        "Row names list what differs from the method's current defaults: SimSiam's defaults changed on 2026-12-05 (to the "
        "paper's CIFAR-10 projector of 2 layers and lightly's CIFAR-10 optimiser, SGD 0.12 per 256, wd 5e-4; before: 3 layers, "
        "SGD 0.5, wd 1e-5), DINO's too (to lightly's CIFAR-10 recipe: 2-layer head, K = 2048, teacher momentum 0.99, SGD 0.12, "
        "wd 5e-4; before: 3 layers, K = 4096, 0.996, SGD 0.03, wd 1e-4), and SwAV and DINO take no local crops below 96 px "
        "since (before: 2 + 6 at 64 px); BYOL's too (to a 10x predictor lr and target momentum 0.99; before: the "
        "paper's single lr and 0.996), and again on 2026-12-06 (LARS lr 0.1 per 256; before: the paper's 0.2); MoCo v3's "
        "on 2026-12-06 at 22:40 (to the authors' ResNet projector of 2 layers; before: the paper's ViT one of 3); the rows "
        "run before were renamed after the new defaults, and their status says how "
        "each ran. Rows run since 2026-12-04 22:30 (commit 7c65ac0 on) ran with freed memory "
        "kept for reuse, as the engine now does on the CPU (about 1.1x faster steps, benchmarks/results/cpu_memory.md). "
        "Budgets differ: vicreg and mmcr (rows of 2026-12-03) ran with --budget-min 13 to fit one session and pass at "
        "that budget; barlow-twins kept the 5 epochs (12-17 min) of its first row (2026-11-22) for every seed and "
        "passes at them; simclr was rerun on 2026-12-04 with --epochs 13, the epochs of its earlier 30-min row, after its "
        "projector gained the output BatchNorm; every other row had 40 min (some with --epochs set, as their status says)."
    )
    write_results("zoo_eurosat", "SSL methods on full EuroSAT under the same CPU budget", ordered,
                  ["method", "epochs", "train min", "kNN top-1", "linear top-1", "kNN gain vs random", "teacher kNN top-1",
                   "teacher linear top-1", "img/s (step)", "peak RSS GiB", "seed", "commit", "cpu", "status"], notes,
                  preamble=summary)

if __name__ == "__main__":
    main()
