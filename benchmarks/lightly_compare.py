"""geossl against lightly on the same configuration: SimCLR, BYOL and Barlow Twins.

For each method the geossl method object is built twice: once as it is, once with its heads and loss replaced by
lightly's (``lightly.models.modules`` heads, ``lightly.loss`` losses) — same backbone, views, optimiser and engine,
so the comparison isolates the method code. Measured:

* step throughput (images/s of a full training step, interleaved timing, medians); target geossl/lightly >= 1.0;
* with ``--train``: kNN and linear top-1 after the same short pretraining on EuroSAT for each implementation and
  seed (``--seeds``), to check that accuracies agree within seed noise.

Usage: python benchmarks/lightly_compare.py [--methods simclr,byol,barlow-twins] [--train --epochs 3 --seeds 0,1 --split 0.2,0.1,0.7]
       [--impls geossl]   # retrain only geossl's side; lightly's kNN is kept from the saved row (same seeds, epochs)
       python benchmarks/lightly_compare.py --render   # re-render the table from its JSON
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from _common import (RESULTS, add_data_argument, machine, markdown_table, median_interleaved, numbered,
                     write_results)
from _protocol import full_training_step, method_and_views, short_run_knn

from geossl.cpu_memory import keep_freed_memory
from geossl.data import load_data
from geossl.methods.registry import METHODS
from geossl.nn.backbones import feature_dim
from geossl.nn.ema import make_teacher


_VARIANTS: dict[str, type] = {}


def lightly_variant(name: str) -> type:
    """A subclass of the geossl method whose heads and loss are lightly's, registered as ``NAME-lightly``; built once
    per method and registered again on each call (a caller may have emptied the registry since)."""
    if name not in _VARIANTS:
        _VARIANTS[name] = _build_lightly_variant(name)
    METHODS[_VARIANTS[name].name] = _VARIANTS[name]
    return _VARIANTS[name]


def _build_lightly_variant(name: str) -> type:
    from lightly import loss as LL
    from lightly.models import modules as LM

    base = METHODS[name]

    class Variant(base):  # type: ignore[misc, valid-type]
        def __init__(self, backbone, **kw):
            # the engine passes only the overrides; the lightly heads need every size (read from base's signature)
            kw = {**base.defaults, **kw}
            super().__init__(backbone, **kw)
            d = feature_dim(backbone)
            if name == "simclr":
                self.projector = LM.SimCLRProjectionHead(d, kw["hidden_dim"], kw["projection_dim"])
                self.criterion = LL.NTXentLoss(temperature=kw["temperature"], gather_distributed=True)
            elif name == "byol":
                self.projector = LM.BYOLProjectionHead(d, kw["hidden_dim"], kw["projection_dim"])
                self.predictor = LM.BYOLPredictionHead(kw["projection_dim"], kw["hidden_dim"], kw["projection_dim"])
                self.teacher_projector = make_teacher(self.projector)
                self.criterion = LL.NegativeCosineSimilarity()
            elif name == "barlow-twins":
                self.projector = LM.BarlowTwinsProjectionHead(d, kw["hidden_dim"], kw["projection_dim"])
                self.criterion = LL.BarlowTwinsLoss(lambda_param=kw["lambda_"], gather_distributed=True)
            else:
                raise ValueError(f"no lightly variant for {name}")

    Variant.name = f"{name}-lightly"
    Variant.__name__ = f"{base.__name__}Lightly"
    return Variant


def seed_noise(row: dict) -> dict:
    """Whether geossl's and lightly's per-seed kNN top-1 differ by more than seed noise: Welch's t-test (unequal
    variances, no pairing: a seed does not give both implementations the same initial weights or views).

    Returns the row's ``kNN diff (95% CI)`` (geossl minus lightly, points) and ``Welch p`` columns; the accuracies
    agree within seed noise when the interval contains 0."""
    from scipy import stats  # scikit-learn's dependency, in the bench extra

    ours, theirs = ([float(k) for k in row[f"{impl} kNN (seeds)"].split(", ")] for impl in ("geossl", "lightly"))
    if min(len(ours), len(theirs)) < 2:  # no spread to compare against
        return {"kNN diff (95% CI)": "n/a (one seed)", "Welch p": ""}
    test = stats.ttest_ind(ours, theirs, equal_var=False)
    ci = test.confidence_interval(0.95)
    diff = statistics.fmean(ours) - statistics.fmean(theirs)
    return {"kNN diff (95% CI)": f"{diff:+.2f} ({ci.low:+.2f} to {ci.high:+.2f})", "Welch p": float(test.pvalue)}


def step_throughput(name: str, data, batch_size: int, n_steps: int) -> tuple[float, float]:
    """Images/s of a full step for geossl's and lightly's implementation of ``name`` (interleaved medians)."""
    images = torch.stack([data.train[i][0] for i in range(batch_size)])
    steps = {}
    for key, cls in (("geossl", METHODS[name]), ("lightly", lightly_variant(name))):
        method, augment = method_and_views(cls, data)
        steps[key] = numbered(full_training_step(method, augment, images, total_steps=1000, momentum=0.9))
    seconds = median_interleaved(steps, n_steps, take_turns=True)
    return batch_size / seconds["geossl"], batch_size / seconds["lightly"]


class _Features(torch.nn.Module):
    """A stand-in backbone that returns its input: the views given to the method are already features (B, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.feature_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def method_code_ms(name: str, batch_size: int, n_steps: int, dim: int = 512) -> tuple[float, float]:
    """Milliseconds of the method code alone for geossl's and lightly's implementation of ``name``: heads, loss,
    backward and the optimiser-step hook (EMA update) on two fixed views of (batch_size, dim) features, without the
    backbone, whose time would otherwise drown their difference (interleaved medians)."""
    features = [torch.randn(batch_size, dim) for _ in range(2)]
    steps = {}
    for key, cls in (("geossl", METHODS[name]), ("lightly", lightly_variant(name))):
        method = cls(_Features(dim))

        def step(i: int, method=method) -> None:
            out = method.training_step([f.clone().requires_grad_() for f in features])
            out.loss.backward()
            method.on_optimizer_step(i, 1000)

        steps[key] = numbered(step)
    seconds = median_interleaved(steps, n_steps, warmup=3, take_turns=True)
    return 1e3 * seconds["geossl"], 1e3 * seconds["lightly"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_argument(parser)
    parser.add_argument("--methods", default="simclr,byol,barlow-twins")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--train", action="store_true", help="also pretrain both implementations and compare accuracy")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--impls", default="geossl,lightly",
                        help="which implementations to retrain with --train; the other keeps its numbers from the saved row "
                             "(only when that row has the same seeds and epochs)")
    parser.add_argument("--split", default="0.6,0.2,0.2",
                        help="train,val,test fractions (stratified, seed 0); a smaller train part shortens --train")
    parser.add_argument("--render", action="store_true",
                        help="only re-render the table from results/lightly_compare.json")
    args = parser.parse_args()

    saved_path = RESULTS / "lightly_compare.json"
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    rows = {r["method"]: r for r in saved.get("rows", [])}  # the other methods' saved rows are kept
    history = saved.get("earlier throughput", [])
    if args.render:
        render(rows, saved["setup"], history)
        return
    # pretrain keeps freed memory on the CPU (geossl.cpu_memory); the timed steps run the same way
    if not torch.cuda.is_available():
        keep_freed_memory()
    split = tuple(float(f) for f in args.split.split(","))
    data = load_data(args.data, split=split, seed=0)
    here = machine()
    stamp = f"{here['commit']} {here['date']}"
    for name in args.methods.split(","):
        ours, theirs = step_throughput(name, data, args.batch_size, args.steps)
        code_ours, code_theirs = method_code_ms(name, args.batch_size, 4 * args.steps)
        previous = rows.get(name, {})
        if "ratio" in previous and previous.get("throughput cpu") != here["cpu"]:
            # another machine's measurement stays in the report (the latest one per machine)
            replaced = (name, previous.get("throughput cpu"))
            history = [h for h in history if (h["method"], h.get("throughput cpu")) != replaced]
            history.append({"method": name, **{k: previous.get(k, "") for k in THROUGHPUT_COLUMNS}})
        row = {"method": name, "geossl img/s": ours, "lightly img/s": theirs, "ratio": ours / theirs,
               "timed steps": args.steps, "geossl method ms": code_ours, "lightly method ms": code_theirs,
               "method-code ratio": code_theirs / code_ours, "throughput cpu": here["cpu"],
               "throughput measured": stamp}
        if not args.train:  # a throughput-only run keeps the row's accuracy columns
            row = {**previous, **row}
        else:
            same_setup = previous.get("seeds") == args.seeds.replace(",", ", ") and previous.get("epochs") == args.epochs
            for impl in {"geossl", "lightly"} - set(args.impls.split(",")):
                if not same_setup or f"{impl} kNN mean" not in previous:
                    raise SystemExit(f"no saved {impl} kNN for {name} with seeds {args.seeds} and {args.epochs} epochs; "
                                     f"add {impl} to --impls")
                row[f"{impl} kNN (seeds)"], row[f"{impl} kNN mean"] = previous[f"{impl} kNN (seeds)"], previous[f"{impl} kNN mean"]
            for impl in [i for i in ("geossl", "lightly") if i in args.impls.split(",")]:
                method = name if impl == "geossl" else f"{name}-lightly"
                knn = [short_run_knn(method, data, args.data, split=split, epochs=args.epochs, batch_size=args.batch_size,
                                     seed=seed, run_name=f"lightly-compare-{method}-{args.epochs}ep-seed{seed}")[0]
                       for seed in (int(s) for s in args.seeds.split(","))]
                row[f"{impl} kNN (seeds)"] = ", ".join(f"{k:.2f}" for k in knn)
                row[f"{impl} kNN mean"] = statistics.fmean(knn)
            row["seeds"], row["epochs"], row["accuracy cpu"] = args.seeds.replace(",", ", "), args.epochs, here["cpu"]
        print(row, flush=True)
        rows[name] = row
    setup = saved.get("setup", {}) if not args.train else {}
    setup = {**setup, "data": data.name, "px": data.image_size[0], "batch": args.batch_size}
    if args.train:
        setup.update(split=args.split, split_description=data.split_description)
    render(rows, setup, history)


#: The throughput columns, kept per measurement in the "earlier throughput" list when a method is re-measured.
THROUGHPUT_COLUMNS = ["geossl img/s", "lightly img/s", "ratio", "timed steps", "geossl method ms", "lightly method ms",
                      "method-code ratio", "throughput cpu", "throughput measured"]


def render(rows: dict[str, dict], setup: dict, history: list[dict]) -> None:
    """Write ``results/lightly_compare.{md,json}`` from the rows, with the seed-noise test of each trained row and the
    throughput measured earlier on other machines as a second table."""
    rows = {name: {**row, **(seed_noise(row) if "seeds" in row else {})} for name, row in rows.items()}
    columns = ["method", *THROUGHPUT_COLUMNS]
    trained = any("seeds" in r for r in rows.values())
    if trained:
        columns += ["seeds", "epochs", "geossl kNN (seeds)", "lightly kNN (seeds)", "geossl kNN mean",
                    "lightly kNN mean", "kNN diff (95% CI)", "Welch p", "accuracy cpu"]
    notes = (
        f"Data: {setup['data']}, {setup['px']} px; batch {setup['batch']}; ResNet-18 (standard stem), "
        "channels_last; the same views, optimiser and backbone for both; only the heads and the loss differ (lightly "
        "'NAME-lightly' variants). Interleaved timed steps (the row's count; since 2026-12-06 07:30 taking turns to go "
        "first), medians; on the CPU with freed memory "
        "kept, as pretrain runs (rows timed before 2026-12-05 ran with glibc's default malloc). Target: ratio >= 1.0 "
        "(geossl's images/s over lightly's). method ms: the method code alone, heads, loss, backward and EMA update "
        "on two fixed views of (batch, 512) features without the backbone (4x the row's timed steps, interleaved, "
        "medians), where the two implementations differ; method-code ratio: lightly's ms over geossl's (> 1: "
        "geossl's is faster). throughput cpu / accuracy cpu: the machine each part ran on (the sessions' machines "
        "differ; parts measured before 2026-12-06 carry the machine line this file had at the commit that added "
        "them)."
        + (f" Accuracy: pretraining for the row's epochs on the train part of a {setup['split']} split "
           f"({setup['split_description']}), one run per seed of the row; kNN top-1 (cosine, k=20, T=0.07, bank = "
           "train part) on the test part. kNN diff: geossl's mean minus lightly's, with the 95% confidence interval "
           "of Welch's t-test (unequal variances, unpaired); the accuracies agree within seed noise when it contains "
           "0. Rows accumulate: re-running one method keeps the others; a run without --train keeps a row's accuracy."
           if trained else "")
    )
    if history:
        notes += "\n\nEarlier throughput measurements on other machines (the latest per machine):\n\n" + markdown_table(
            history, ["method", *THROUGHPUT_COLUMNS])
    write_results("lightly_compare", "geossl against lightly (same configuration)", [rows[m] for m in sorted(rows)],
                  columns, notes, extra={"setup": setup, "earlier throughput": history})
    print(notes)


if __name__ == "__main__":
    main()
