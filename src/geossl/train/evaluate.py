"""Evaluate and embed with a pretrained encoder: the code behind ``geossl evaluate`` and ``geossl embed``.

Features are extracted once per (checkpoint, dataset split) and cached in the run directory, so
trying another protocol or k costs seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import geossl
from geossl.data import DataSplits, load_data
from geossl.errors import GeosslError, unknown_name_error
from geossl.eval.features import FeatureCache, extract_features
from geossl.eval.knn import knn_classify
from geossl.eval.linear import linear_probe
from geossl.eval.report import format_results_table, write_report
from geossl.train.checkpoint import LoadedEncoder, load_encoder, random_init_like
from geossl.train.run import data_from_config

PROTOCOLS = ("knn", "linear")


@dataclass
class EvaluationResult:
    rows: list[dict[str, Any]]
    table: str
    report: Path


def _encoder_key(enc: LoadedEncoder, seed: int) -> str:
    if enc.checkpoint is None:
        return f"random-{enc.config.backbone}-{enc.data_info['num_bands']}-seed{seed}"
    st = enc.checkpoint.stat()
    return f"{enc.checkpoint.resolve()}-{st.st_size}-{st.st_mtime_ns}"


def _features(enc: LoadedEncoder, dataset, cache_dir: Path, key: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features of ``dataset``, read from ``cache_dir`` when computed before."""
    cache = FeatureCache(cache_dir)
    return cache.get_or_compute(
        f"{key}|{dataset.fingerprint()}",
        lambda: extract_features(enc.backbone, dataset, preprocess=enc.normalization, batch_size=batch_size, progress=True),
    )


def _load_eval_data(enc: LoadedEncoder, data, root, train_data, test_data) -> DataSplits:
    if data is None and train_data is None and test_data is None:
        return data_from_config(enc.config)
    cfg = enc.config
    return load_data(
        data,
        root=root or cfg.root,
        train_data=train_data,
        test_data=test_data,
        split=tuple(cfg.split),
        seed=cfg.split_seed,
        image_size=cfg.image_size,
    )


def _check_compatible(enc: LoadedEncoder, data: DataSplits) -> None:
    bands = int(enc.data_info["num_bands"])
    if data.num_bands != bands:
        raise GeosslError(
            f"the checkpoint was trained on {bands}-band images but {data.name} has {data.num_bands} bands; "
            "evaluate on data with the same bands"
        )


def _run_protocols(
    name: str, enc: LoadedEncoder, data: DataSplits, protocols: list[str], cache_dir: Path, key: str, k: int, temperature: float, batch_size: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of results for one encoder, and what the plots need."""
    test = data.test if data.test is not None else data.val
    train_f, train_y = _features(enc, data.train, cache_dir, key, batch_size)
    test_f, test_y = _features(enc, test, cache_dir, key, batch_size)
    val_f = val_y = None
    if data.val is not None and data.test is not None:
        val_f, val_y = _features(enc, data.val, cache_dir, key, batch_size)
    rows, extras = [], {"features": test_f, "labels": test_y}
    common = {"encoder": name, "n_train": len(train_y), "n_test": len(test_y)}
    if "knn" in protocols:
        res = knn_classify(train_f, train_y, test_f, test_y, k=k, temperature=temperature)
        rows.append({**common, "protocol": f"knn (cosine, k={k}, T={temperature})", "top1": float(res["top1"]), "top5": float(res["top5"])})
        extras["knn_predictions"] = res["predictions"]
    if "linear" in protocols:
        res = linear_probe(train_f, train_y, test_f, test_y, val_features=val_f, val_labels=val_y, seed=seed)
        rows.append({**common, "protocol": f"linear (L-BFGS, wd={res['weight_decay']:g})", "top1": float(res["top1"]), "top5": float(res["top5"])})
        extras["linear_predictions"] = res["predictions"]
    return rows, extras


def evaluate_checkpoint(
    path: str | Path,
    *,
    data: str | None = None,
    root: str | None = None,
    train_data: str | None = None,
    test_data: str | None = None,
    protocols: list[str] = ("knn", "linear"),
    k: int = 20,
    temperature: float = 0.07,
    random_init: bool = False,
    with_baseline: bool = False,
    prefer: str = "best",
    out_dir: str | Path | None = None,
    batch_size: int = 256,
    seed: int = 0,
    plots: bool = True,
) -> EvaluationResult:
    """Frozen-feature evaluation of a run (kNN and linear probe), with a report.

    Args:
        path: run directory or checkpoint.
        data / root / train_data / test_data: evaluation data (default: the run's own data and split).
        protocols: subset of ``("knn", "linear")``.
        k, temperature: kNN parameters (DINO protocol: 20 and 0.07).
        random_init: evaluate a random-init encoder of the same architecture instead of the weights.
        with_baseline: evaluate both, side by side.
        prefer: ``best`` or ``last`` checkpoint of a run directory.
        out_dir: where report.md goes (default: the run directory, or a sub-folder of it).
        batch_size: feature-extraction batch size.
        seed: seed of the random init and of the probe.
        plots: draw the loss curve, confusion matrix and 2-D feature map.
    """
    protocols = list(protocols)
    for p in protocols:
        if p not in PROTOCOLS:
            raise unknown_name_error("protocol", p, PROTOCOLS)
    if not protocols:
        raise GeosslError("no protocol given; pass --protocol knn,linear")
    if prefer not in ("best", "last"):
        raise GeosslError(f"--checkpoint must be best or last, got '{prefer}'")
    trained = load_encoder(path, prefer=prefer, seed=seed)
    ckpt_path = trained.checkpoint
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    ds = _load_eval_data(trained, data, root, train_data, test_data)
    _check_compatible(trained, ds)
    if not ds.has_labels:
        raise GeosslError(
            f"{ds.name} has no labels (a flat folder); kNN and linear evaluation need one sub-folder per class, "
            "or use `geossl embed` to export features"
        )
    if ds.test is None and ds.val is None:
        raise GeosslError(f"{ds.name} has no test split; pass --test-data or a --split with a test part")
    cache_dir = run_dir / "features"
    encoders: list[tuple[str, LoadedEncoder, str]] = []
    if not random_init:
        encoders.append((f"{trained.config.method} (epoch {trained.epoch})", trained, _encoder_key(trained, seed)))
    if random_init or with_baseline:
        rand = random_init_like(trained, seed)
        encoders.append(("random init", rand, _encoder_key(rand, seed)))
    rows: list[dict[str, Any]] = []
    extras_first: dict[str, Any] = {}
    for name, enc, key in encoders:
        r, extras = _run_protocols(name, enc, ds, protocols, cache_dir, key, k, temperature, batch_size, seed)
        rows.extend(r)
        extras_first = extras_first or extras
    own_data = data is None and train_data is None and test_data is None
    if out_dir is None:
        out_dir = run_dir if own_data and not random_init else run_dir / ("eval-random-init" if random_init else f"eval-{ds.name}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "checkpoint": str(ckpt_path) if not random_init else f"random init (seed {seed}) of {ckpt_path}",
        "method": trained.config.method,
        "backbone": trained.config.backbone,
        "dataset": f"{ds.name} ({ds.source})",
        "split": ds.split_description,
        "image size": f"{ds.image_size[0]}x{ds.image_size[1]}, {ds.num_bands} bands",
        "features": "backbone output (before the projector), frozen, no augmentation",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "geossl": geossl.__version__,
    }
    classes = list(ds.classes or [])
    confusion = None
    preds = extras_first.get("linear_predictions", extras_first.get("knn_predictions"))
    if plots and preds is not None:
        confusion = (extras_first["labels"], preds, classes)
    metrics_csv = run_dir / "metrics.csv"
    report = write_report(
        out_dir,
        title=f"geossl evaluation: {trained.config.method} on {ds.name}",
        results=rows,
        info=info,
        metrics_csv=metrics_csv if plots and metrics_csv.is_file() else None,
        confusion=confusion,
        embedding=(extras_first["features"], extras_first["labels"], classes) if plots else None,
    )
    return EvaluationResult(rows=rows, table=format_results_table(rows), report=report)


def embed_dataset(
    path: str | Path,
    *,
    out: str | Path,
    data: str | None = None,
    split: str = "all",
    root: str | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
) -> list[Path]:
    """Write backbone features (N, D) to ``out`` (.npy), labels to ``*.labels.npy`` and a JSON sidecar.

    Args:
        path: run directory or checkpoint.
        out: output ``.npy`` path; never overwritten unless ``overwrite``.
        data: dataset (default: the run's).
        split: ``all`` (train, then val, then test) or one of ``train``, ``val``, ``test``.
    """
    out = Path(out)
    if out.suffix != ".npy":
        raise GeosslError(f"--out must end with .npy, got {out}")
    if out.exists() and not overwrite:
        raise GeosslError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    if split not in ("all", "train", "val", "test"):
        raise GeosslError(f"--split must be all, train, val or test, got '{split}'")
    enc = load_encoder(path)
    ds = _load_eval_data(enc, data, root, None, None)
    _check_compatible(enc, ds)
    parts = [("train", ds.train), ("val", ds.val), ("test", ds.test)]
    parts = [(n, d) for n, d in parts if d is not None and (split == "all" or n == split)]
    if not parts:
        raise GeosslError(f"{ds.name} has no '{split}' split; use --split all")
    feats, labels, names = [], [], []
    for name, d in parts:
        f, y = extract_features(enc.backbone, d, preprocess=enc.normalization, batch_size=batch_size, progress=True)
        feats.append(f)
        labels.append(y)
        names += [name] * len(y)
    out.parent.mkdir(parents=True, exist_ok=True)
    features = torch.cat(feats).numpy().astype(np.float32)
    np.save(out, features)
    label_path = out.with_name(out.stem + ".labels.npy")
    np.save(label_path, torch.cat(labels).numpy())
    meta_path = out.with_name(out.stem + ".json")
    meta = {
        "checkpoint": str(enc.checkpoint),
        "dataset": ds.name,
        "source": str(ds.source),
        "split": ds.split_description,
        "parts": {n: names.count(n) for n in dict.fromkeys(names)},
        "order": "train, val, test (those present), each in dataset order",
        "classes": ds.classes,
        "shape": list(features.shape),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    return [out, label_path, meta_path]
