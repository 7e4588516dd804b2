"""The transport and geometry SSL methods on EuroSAT, next to the classics; and the cost of their extra terms.

Two parts:

- ``--timing``: forward+backward time of the uniformity terms, SSW-SSL's SSW₂² against the Wang–Isola pairwise term
  (and SW-SSL's exact sliced W₂²), on embeddings of batch 512 and 4096 (d = 3, the thesis' S², and d = 128); and the
  share of T-REGS' minimum-spanning-tree search in a full ResNet-18 training step. Written to
  ``results/transport_ssl_timing.{md,json}``.
- ``--method NAME [--regularizer t-reg]``: one accuracy row under the protocol of ``zoo_eurosat.py`` (see
  ``_protocol.py``), accumulated in ``results/transport_ssl_eurosat.{md,json}``; the rows of simclr, byol and
  barlow-twins are taken from ``zoo_eurosat.json`` when they exist there.

Usage:
    python benchmarks/transport_ssl_eurosat.py --timing
    python benchmarks/transport_ssl_eurosat.py --method ssw [--budget-min 40]
    python benchmarks/transport_ssl_eurosat.py --method byol --regularizer t-reg
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from _common import RESULTS, SHARED_DATA, median_time, write_results
from _protocol import PROTOCOL_NOTE, accumulate, method_and_views, ordered_rows, run_row

from geossl.cli import _parse_sets
from geossl.data import load_data
from geossl.errors import GeosslError
from geossl.geometry.mst import mst_edges
from geossl.losses.uniformity import (
    ssw_uniformity,
    sw_uniformity,
    wang_isola_uniformity,
)
from geossl.methods.registry import METHODS
from geossl.train.config import PretrainConfig
from geossl.train.run import regularizer_args

ORDER = ["simclr", "byol", "barlow-twins", "bam", "ssw", "sw", "uniformity", "t-regs", "byol+t-reg(normalize=true)", "byol+t-reg(normalize=false)",
         "barlow-twins+t-reg",
         "ot-feature", "ot-sample", "dense-ot"]
CLASSICS = ("simclr", "byol", "barlow-twins")
#: The rows the benchmark's definition asks for (the others are extra).
REQUIRED = ("simclr", "byol", "barlow-twins", "bam", "ssw", "t-regs", "ot-feature", "dense-ot", "byol+t-reg(normalize=true)",
            "barlow-twins+t-reg")


def uniformity_timing(repeats: int) -> list[dict]:
    rows = []
    terms = {
        "Wang–Isola (pairwise)": lambda z: wang_isola_uniformity(z),
        "SSW₂², L=10": lambda z: ssw_uniformity(z, 10),
        "SW₂² exact, L=10": lambda z: sw_uniformity(z, 10),
    }
    for d in (3, 128):
        for n in (512, 4096):
            z0 = F.normalize(torch.randn(n, d), dim=1)
            base = None
            for label, term in terms.items():
                def step(z0=z0, term=term) -> None:
                    z = z0.clone().requires_grad_(True)
                    term(F.normalize(z, dim=1)).backward()

                s = median_time(step, repeats)
                base = base or s
                rows.append({"term": label, "d": d, "batch": n, "ms (fwd+bwd)": 1e3 * s, "speed-up vs pairwise": base / s})
    return rows


def mst_share(data, batch_size: int, repeats: int) -> dict:
    """Time of the two MST searches of a T-REGS step against the whole step (views, forward, backward, update)."""
    method, augment = method_and_views("t-regs", data)
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1e-4)
    x = torch.stack([data.train[i][0] for i in range(batch_size)])

    def full() -> None:
        opt.zero_grad()
        method.training_step([v.contiguous(memory_format=torch.channels_last) for v in augment(x)]).loss.backward()
        opt.step()

    with torch.no_grad():
        z = method.projector(method.backbone(torch.cat(augment(x)))).chunk(2)
    step_s = median_time(full, repeats)
    mst_s = median_time(lambda: [mst_edges(v) for v in z], repeats * 3)
    return {"batch": batch_size, "embedding dim": z[0].shape[1], "step s": step_s, "MST search s (2 views)": mst_s,
            "MST share %": 100 * mst_s / step_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timing", action="store_true", help="time the uniformity terms and the MST search")
    parser.add_argument("--method", choices=sorted(METHODS))
    parser.add_argument("--render", action="store_true", help="only re-render the accuracy table from its JSON")
    parser.add_argument("--regularizer", default=None, help="e.g. t-reg (added to every view's embeddings)")
    parser.add_argument("--reg-set", action="append", default=[], metavar="KEY=VALUE",
                        help="regulariser argument, e.g. normalize=true or gamma=0.05 (repeatable; named in the row)")
    parser.add_argument("--data", default=str(SHARED_DATA / "EuroSAT_RGB"))
    parser.add_argument("--budget-min", type=float, default=40.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not (args.timing or args.method or args.render):
        parser.error("give --timing, --method NAME or --render")
    if args.timing or args.method:
        data = load_data(args.data, split=(0.6, 0.2, 0.2), seed=0)

    if args.timing:
        rows = uniformity_timing(args.repeats)
        share = mst_share(data, args.batch_size, max(2, args.repeats // 2))
        notes = (
            "Forward+backward of the uniformity term alone on normalised embeddings (float32, medians of "
            f"{args.repeats}). T-REGS at batch {share['batch']}, embedding dim {share['embedding dim']}: a full ResNet-18 step "
            f"takes {share['step s']:.2f} s, of which the two MST searches (dense distances + NumPy Prim, no gradient) take "
            f"{share['MST search s (2 views)'] * 1e3:.1f} ms ({share['MST share %']:.2f}%)."
        )
        write_results("transport_ssl_timing", "Cost of the uniformity terms and of T-REG's MST", rows,
                      ["term", "d", "batch", "ms (fwd+bwd)", "speed-up vs pairwise"], notes, extra={"mst": share})

    if args.method:
        try:
            reg_args = _parse_sets(args.reg_set, "--reg-set", "a regulariser argument")  # the CLI's parsing
        except GeosslError as e:
            parser.error(str(e))
        label = args.method + (f"+{args.regularizer}" if args.regularizer else "")
        if args.regularizer:
            # the row names the regulariser's effective arguments: the method's defaults for it and --reg-set
            effective = regularizer_args(PretrainConfig(method=args.method, regularizer=args.regularizer, regularizer_args=reg_args))
            label += f"({','.join(f'{k}={str(v).lower() if isinstance(v, bool) else v}' for k, v in effective.items())})" if effective else ""
        row = run_row(args.method, data, args.data, budget_min=args.budget_min, batch_size=args.batch_size, seed=args.seed,
                      epochs=args.epochs, regularizer=args.regularizer, tag=label, regularizer_args=reg_args)
        render(accumulate("transport_ssl_eurosat", row))
    if args.render:
        render({r["method"]: r for r in json.loads((RESULTS / "transport_ssl_eurosat.json").read_text())["rows"]})


def render(rows: dict) -> None:
    """Write ``results/transport_ssl_eurosat.{md,json}``: this script's rows plus the classics' rows of the zoo."""
    zoo = RESULTS / "zoo_eurosat.json"
    if zoo.exists():
        for r in json.loads(zoo.read_text())["rows"]:
            mine = rows.get(r["method"])
            # The zoo's row is the reference for a classic unless this script ran that method itself.
            if r["method"] in CLASSICS and (mine is None or str(mine.get("commit", "")).endswith("(zoo_eurosat)")):
                rows[r["method"]] = {**r, "commit": f"{r['commit']} (zoo_eurosat)"}
    ordered, reference = ordered_rows(rows, ORDER, REQUIRED)
    notes = (
        PROTOCOL_NOTE + reference + " Rows accumulate over sessions; each names its commit and cpu (the machine: "
        "the sessions' machines differ, so train min and img/s compare only between rows of one cpu). "
        "NAME+t-reg(ARGS): the method "
        "with T-REG added to each view's embeddings (``--regularizer t-reg``), ARGS its effective arguments "
        "(normalize=true: on the L2-normalised embeddings, the default for methods whose loss is scale-free; "
        "normalize=false: on raw z, the paper's form). Discussion against the papers' claims: "
        "``benchmarks/results/transport_ssl_discussion.md``. Rows of the multi-crop methods (bam here; swav and dino "
        "in the zoo) run before 2026-12-05 blurred with the papers' sigma of 0.1-2 px unscaled at 64 px; since then "
        "it is scaled by 64/224 (``geossl.augment.views.paper_blur_sigma``), as BYOL's always was. The byol rows, with "
        "and without T-REG, ran with BYOL's defaults before 2026-12-05 (the paper's single lr and target momentum 0.996; "
        "the zoo row `byol predictor_lr_scale=1 momentum=0.996`); BYOL's defaults since (10x predictor lr, momentum 0.99) "
        "reached +10.4, +9.9 and +9.8 in the zoo at batch 256 and +11.7, +10.8 and +13.4 at batch 64 (seeds 0-2), and "
        "have no T-REG row yet."
    )
    write_results("transport_ssl_eurosat", "Transport and geometry SSL methods on EuroSAT (CPU budget)", ordered,
                  ["method", "epochs", "train min", "kNN top-1", "linear top-1", "kNN gain vs random", "img/s (step)",
                   "seed", "commit", "cpu"], notes)

if __name__ == "__main__":
    main()
