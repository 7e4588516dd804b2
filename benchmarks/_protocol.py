"""The EuroSAT pretraining protocol shared by ``zoo_eurosat.py`` and ``transport_ssl_eurosat.py``.

EuroSAT RGB, 64x64, stratified 60/20/20 split with seed 0 (16,200 / 5,400 / 5,400); ResNet-18 with the standard stem;
each method with its defaults (views, heads, optimiser); epochs sized from timed steps so that pretraining takes at most
a given number of minutes; the frozen backbone evaluated on the test split by kNN (cosine, k=20, T=0.07, bank = train)
and an L-BFGS linear probe, next to the same architecture with random weights. Rows accumulate in a JSON file, one
per key, each naming the commit it ran on.
"""

from __future__ import annotations

import json
import math
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from _common import REPO, RESULTS, commit, cpu_name

from geossl.augment.views import MultiViewAugment, Normalization, ViewAugment, ViewConfig
from geossl.cpu_memory import keep_freed_memory
from geossl.methods.registry import METHODS
from geossl.methods.regularizers import build_regularizer
from geossl.nn import build_backbone
from geossl.train.checkpoint import has_teacher
from geossl.train.config import PretrainConfig
from geossl.train.evaluate import evaluate_checkpoint
from geossl.train.run import default_views, pretrain
from geossl.train.run import regularizer_args as resolved_regularizer_args

RUNS = REPO / "benchmarks" / "runs"


def method_and_views(name: str | type, data, method_args: dict | None = None, image_size: int | None = None,
                     local_crops: int | None = None, views: list[dict] | None = None):
    """A fresh method (channels-last, ResNet-18, seeded) and the augmentation producing its default views.

    Args:
        name: registered method name, or a method class (e.g. a lightly-based variant).
        data: the loaded data (bands, statistics).
        method_args: overrides of the method's defaults.
        image_size: side of the images the views are made for (default: the data's).
        local_crops: local crops after the 2 global views, as ``pretrain --local-crops`` (default: the method's).
        views: the views as dicts of ViewConfig fields, as the run config's ``views`` (default: the method's).
    """
    cls = METHODS[name] if isinstance(name, str) else name
    norm = Normalization(data.mean, data.std, data.value_scale)
    if views is None:
        configs = default_views(cls, image_size or data.image_size[0], True, local_crops)
    else:
        configs = [ViewConfig.from_dict(v) for v in views]
    augment = MultiViewAugment([ViewAugment(v, norm, data.is_rgb) for v in configs])
    torch.manual_seed(0)
    method = cls(build_backbone("resnet18", data.num_bands), **(method_args or {}))
    return method.to(memory_format=torch.channels_last), augment


def autocast_for(precision: str, device_type: str = "cpu"):
    """The autocast context Lightning enters for ``precision`` ("32-true", "bf16-mixed", "16-mixed")."""
    if precision == "32-true":
        return torch.autocast(device_type, enabled=False)
    if precision in ("bf16-mixed", "16-mixed"):
        return torch.autocast(device_type, dtype=torch.bfloat16 if precision.startswith("bf16") else torch.float16)
    raise ValueError(f"precision {precision!r} is not timed here; use 32-true, bf16-mixed or 16-mixed")


def full_training_step(method: torch.nn.Module, augment, images: torch.Tensor, *, regularizer=None, total_steps: int = 100,
                       momentum: float = 0.0, precision: str = "32-true"):
    """One training step on ``images`` (B, C, H, W) as ``pretrain`` runs it: the views made from the raw batch
    (channels-last), forward, the loss (plus ``regularizer`` on every branch) under ``precision``'s autocast, backward,
    an SGD step and the method's optimiser-step hook (EMA/queue updates). Returns a function of the 1-based step
    number."""
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1e-4, momentum=momentum)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        views = [v.contiguous(memory_format=torch.channels_last) for v in augment(images)]
        with autocast_for(precision, images.device.type):
            out = method.training_step(views)
            loss = out.loss + (sum(regularizer(z) for z in out.branches) if regularizer is not None else 0)
        loss.backward()
        opt.step()
        method.on_optimizer_step(i, total_steps)

    return step


def train_step_seconds(name: str, data, batch_size: int, method_args: dict | None = None, regularizer: str | None = None,
                       n_steps: int = 4, regularizer_args: dict | None = None, local_crops: int | None = None,
                       precision: str = "32-true", views: list[dict] | None = None) -> float:
    """Median time of a full training step (views, forward, backward, optimiser step, EMA update), first step excluded.

    Two batch-64 runs of 2026-12-04, each started as the previous run ended, were sized from steps timed 1.4x slower
    than the runs then went (SimSiam 62.5 against 88.6 img/s, DINO 31.8 against 45.2); on an idle machine 3 and 16
    timed steps agree with the run (DINO at batch 64: 46.0 and 43.7 img/s), so the step count is not the cause.
    ``--epochs`` overrides the sizing."""
    method, augment = method_and_views(name, data, method_args, local_crops=local_crops, views=views)
    # the arguments the run will use (the method's defaults for this regulariser, then the caller's), as pretrain merges them
    reg = None
    if regularizer:
        config = PretrainConfig(method=name, regularizer=regularizer, regularizer_args=regularizer_args or {})
        reg = build_regularizer(regularizer, resolved_regularizer_args(config))
    step = full_training_step(method, augment, torch.stack([data.train[i][0] for i in range(batch_size)]), regularizer=reg,
                              precision=precision)
    times = []
    for i in range(n_steps):
        t = time.perf_counter()
        step(i + 1)
        if i > 0:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_row(name: str, data, data_path: str, *, budget_min: float, batch_size: int, seed: int, epochs: int | None = None,
            method_args: dict | None = None, regularizer: str | None = None, tag: str | None = None,
            regularizer_args: dict | None = None, run_options: dict | None = None) -> dict[str, Any]:
    """Pretrain ``name`` within the budget, evaluate it and its random-init twin, and return the table row.

    ``run_options``: PretrainConfig fields off the method's defaults (``optimizer``, ``lr``, ``weight_decay``,
    ``local_crops``, ``precision``, ``views``)."""
    started_on = commit()  # the code that runs; HEAD may move during a 40-minute run
    # pretrain keeps freed memory on the CPU (geossl.cpu_memory); the steps that size the epochs must run the same way
    if not torch.cuda.is_available():
        keep_freed_memory()
    step_s = train_step_seconds(name, data, batch_size, method_args, regularizer, regularizer_args=regularizer_args,
                                local_crops=(run_options or {}).get("local_crops"),
                                precision=(run_options or {}).get("precision", "32-true"),
                                views=(run_options or {}).get("views"))
    epoch_s = step_s * (len(data.train) // batch_size)
    # 8% of the budget is kept for the online kNN evaluations and checkpoints
    epochs = epochs or max(1, math.floor(0.92 * budget_min * 60 / epoch_s))
    label = tag or name
    print(f"{label}: ~{epoch_s:.0f} s per epoch -> {epochs} epochs in {budget_min} min", flush=True)
    run_dir = RUNS / f"{label.replace(' ', '_')}-{epochs}ep-seed{seed}"
    config = PretrainConfig(method=name, method_args=method_args or {}, data=data_path, epochs=epochs, batch_size=batch_size,
                            seed=seed, run_dir=str(run_dir), knn_bank_size=5000, online_eval_every=max(1, epochs // 4),
                            progress=False, regularizer=regularizer,
                            regularizer_args=regularizer_args or {}, **(run_options or {}))
    t = time.perf_counter()
    result = pretrain(config, data=data)
    wall = time.perf_counter() - t
    baseline_key = f"{config.backbone}|{data_path}|{len(data.train)}/{len(data.val)}/{len(data.test)}|seed{seed}"
    baseline = _cached_baseline(baseline_key)
    ev = evaluate_checkpoint(run_dir, with_baseline=baseline is None, prefer="last", plots=False)
    print(ev.table)

    def top1(random_init: bool, protocol: str) -> float:
        if random_init and baseline is not None:
            return baseline[protocol]
        return next(float(r["top1"]) for r in ev.rows if r["protocol"].startswith(protocol) and (r["encoder"] == "random init") == random_init)

    if baseline is None:
        _store_baseline(baseline_key, {"knn": top1(True, "knn"), "linear": top1(True, "linear")})
    teacher = teacher_top1(name, data, method_args, run_dir)

    return {
        "method": label,
        "epochs": epochs,
        "train min": wall / 60,
        "kNN top-1": top1(False, "knn"),
        "linear top-1": top1(False, "linear"),
        "kNN gain vs random": top1(False, "knn") - top1(True, "knn"),
        "img/s (step)": batch_size / step_s,
        "peak RSS GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "final loss": float(result.metrics.get("train/loss", float("nan"))),
        "seed": seed,
        "commit": started_on,
        "cpu": cpu_name(),  # train min and img/s depend on it; the sessions' machines differ
        "random kNN": top1(True, "knn"),
        "random linear": top1(True, "linear"),
        **teacher,
    }


def teacher_top1(name: str, data, method_args: dict | None, run_dir: Path) -> dict[str, float]:
    """kNN and linear top-1 of the run's EMA teacher backbone (DINO's authors evaluate the teacher), or {} for a
    method without one; same protocol as the student's numbers."""
    method, _ = method_and_views(name, data, method_args)  # BAM has a teacher only with some arguments
    if not has_teacher(method):
        return {}
    ev = evaluate_checkpoint(run_dir, prefer="last", plots=False, layer="teacher")
    print(ev.table)
    first = {p: next(float(r["top1"]) for r in ev.rows if r["protocol"].startswith(p)) for p in ("knn", "linear")}
    return {"teacher kNN top-1": first["knn"], "teacher linear top-1": first["linear"]}


#: Random-init results by (backbone, data, split sizes, seed): the random encoder depends on nothing else, so
#: it is evaluated once (by the first row that needs it) instead of once per row.
BASELINE_CACHE = RUNS / "random_init_baseline.json"


def _cached_baseline(key: str) -> dict[str, float] | None:
    cache = json.loads(BASELINE_CACHE.read_text()) if BASELINE_CACHE.is_file() else {}
    return cache.get(key)


def _store_baseline(key: str, values: dict[str, float]) -> None:
    cache = json.loads(BASELINE_CACHE.read_text()) if BASELINE_CACHE.is_file() else {}
    cache[key] = values
    BASELINE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    BASELINE_CACHE.write_text(json.dumps(cache, indent=1))


def short_run_knn(method: str, data, data_path: str, *, split: tuple, epochs: int, batch_size: int, seed: int,
                  run_name: str, **config: Any) -> tuple[float, Path]:
    """Pretrain a short run in ``benchmarks/runs/RUN_NAME`` (resumed, so reused when finished) and return the kNN
    top-1 of its last checkpoint on the test part, with the run directory. ``config``: more PretrainConfig fields."""
    run = RUNS / run_name
    pretrain(PretrainConfig(method=method, data=data_path, epochs=epochs, batch_size=batch_size, seed=seed, split=list(split),
                            run_dir=str(run), online_eval=False, progress=False, **config), data=data)
    ev = evaluate_checkpoint(run, prefer="last", plots=False, protocols=["knn"])
    return float(ev.rows[0]["top1"]), run


def saved_rows(json_name: str) -> list[dict[str, Any]]:
    """The rows stored in ``results/JSON_NAME.json`` (none before its first run)."""
    path: Path = RESULTS / f"{json_name}.json"
    return json.loads(path.read_text())["rows"] if path.exists() else []


def accumulate(json_name: str, row: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Rows of ``results/JSON_NAME.json`` by method label, with ``row`` added or replaced."""
    rows = {r["method"]: r for r in saved_rows(json_name)}
    if row is not None:
        rows[row["method"]] = row
    return rows


def remeasured_rows(json_name: str, names: list[str], measure, per_cpu: bool = False) -> list[dict[str, Any]]:
    """The rows of ``results/JSON_NAME.json`` with those of ``names`` re-measured: ``measure(name)`` gives the row,
    stamped with "measured" (commit and UTC time) and "cpu" columns; the other methods' rows are kept. ``per_cpu``:
    a row replaces only the same method's row from the same CPU, so that each machine keeps its own (for numbers
    that depend on the instruction set, such as bfloat16 speed-ups). Sorted by method (then CPU)."""
    stamp = {"measured": f"{commit()} {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}", "cpu": cpu_name()}

    def key(row: dict[str, Any]) -> tuple[str, str]:
        return row["method"], str(row.get("cpu", "")) if per_cpu else ""

    rows = {key(r): r for r in saved_rows(json_name)}
    for name in names:
        row = {**measure(name), **stamp}
        rows[key(row)] = row
    return [rows[k] for k in sorted(rows)]


#: The protocol sentence shared by the accuracy tables of zoo_eurosat.py and transport_ssl_eurosat.py.
PROTOCOL_NOTE = (
    "EuroSAT RGB, stratified 60/20/20 split with seed 0 (16,200 / 5,400 / 5,400); every number on the test split "
    "(5,400 images). ResNet-18, standard stem, 64 px, batch 256, each method with its paper defaults (`geossl info` "
    "lists them); epochs sized from timed steps so that pretraining takes at most about 40 min of 2 CPU cores (train "
    "min: the row's actual time, online kNN evaluations included). kNN: cosine, k=20, T=0.07, bank = train split; "
    "linear: L-BFGS on standardised features, wd chosen on val."
)


def ordered_rows(rows: dict[str, dict[str, Any]], order: list[str], required: tuple[str, ...] | list[str]) -> tuple[list, str]:
    """Rows in ``order`` (others after, by name) and the notes' tail: random-init reference and missing rows."""
    ref = next(r for r in rows.values() if "random kNN" in r)
    ordered = [rows[m] for m in order if m in rows] + [r for m, r in sorted(rows.items()) if m not in order]
    missing = [m for m in required if m not in rows]
    tail = f" Random init, same protocol: kNN {ref['random kNN']:.2f}, linear {ref['random linear']:.2f}."
    return ordered, tail + (f" Still missing: {', '.join(missing)}." if missing else "")
