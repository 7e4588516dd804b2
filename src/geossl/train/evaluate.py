"""Evaluate and embed with a pretrained encoder: the code behind ``geossl evaluate`` and ``geossl embed``.

Features are extracted once per (checkpoint, dataset split) and cached in the run directory, so trying another
protocol or k costs seconds. :func:`evaluate_features` runs the same protocols on features extracted elsewhere
(``.npy`` files). Every protocol is a function ``_protocol_NAME(features, options, encoder) -> rows`` over frozen
features (``evaluation.md``); its rows are tidy (one measured number each, see :mod:`geossl.eval.report`), and all of
them form the one table written to results.json, results.csv and report.md.

| protocol | features | metrics |
|---|---|---|
| knn | train bank, test queries | top1, top5 (%) for every k × T of the sweep |
| linear | train (or a stratified label fraction of it), test | top1, top5 (%), chosen weight_decay |
| fewshot | test | N-way K-shot episode accuracy (%) ± 95 % CI, optional SOT |
| clustering | test | k-means (k = classes): nmi, ari, acc, purity, silhouette in [0, 1], optional SOT |
| retrieval | test (its own reference set) | recall@1/5/10, precision_at_1, r_precision, map_at_r in [0, 1] |
| hierarchy | scores of the kNN / linear classifiers on test | accuracy (%), ahc, mistake_severity, hdist@k |
| representation | test (all samples when unlabelled) | rankme, effective_rank, uniformity, per_dim_std, mean_cosine |
| finetune | the images: train (or a label fraction), test | top1, top5 (%) of the whole encoder + linear head trained end to end |
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

import geossl
from geossl.cpu_memory import keep_freed_memory
from geossl.data import DataSplits, load_data
from geossl.errors import GeosslError, unknown_name_error
from geossl.eval.features import FeatureCache, extract_features
from geossl.eval.knn import knn_sweep
from geossl.eval.linear import linear_probe, stratified_split, stratified_subset
from geossl.eval.report import format_tidy_results, pivot_results, write_report
from geossl.train.checkpoint import LoadedEncoder, load_encoder, random_init_like
from geossl.train.run import data_from_config

PROTOCOLS = ("knn", "linear", "fewshot", "clustering", "retrieval", "hierarchy", "representation", "finetune")
#: Protocols that train the encoder itself (they need a run directory and the images, not features).
END_TO_END = ("finetune",)
#: Protocols that need no labels.
LABEL_FREE = ("representation",)
TRANSFORMS = ("sot",)
_SOT_PROTOCOLS = ("fewshot", "clustering")
#: k values of the k-NN accuracy-against-k plot when the sweep itself has a single k.
PLOT_KS = (1, 5, 10, 20, 50, 100, 200)


@dataclass
class EvaluationResult:
    """What an evaluation returns.

    Attributes:
        rows: one wide row per (encoder, protocol, setting), metrics as columns (``top1``, ``nmi``, ...).
        tidy: the tidy rows written to results.json / results.csv (one measured number per row).
        table: the terminal view (one table per group of protocols).
        report: path of report.md.
    """

    rows: list[dict[str, Any]]
    table: str
    report: Path
    tidy: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EvalOptions:
    """Settings of the protocols (the CLI flags of ``geossl evaluate``)."""

    knn_k: list[int] = field(default_factory=lambda: [20])
    knn_t: list[float] = field(default_factory=lambda: [0.07])
    knn_metric: str = "cosine"
    knn_backend: str = "auto"
    label_fractions: list[float] = field(default_factory=lambda: [1.0])
    n_way: int = 5
    shots: list[int] = field(default_factory=lambda: [1, 5])
    n_query: int = 15
    episodes: int = 600
    fewshot_head: str = "prototype"
    transform: str | None = None
    hierarchy: str | Path | None = None
    linear_solver: str = "lbfgs"
    finetune_epochs: int = 10
    finetune_lr: float = 0.01
    reuse_freed_memory: bool = True  # finetune on the CPU keeps freed memory for the next step, as pretrain does
    seed: int = 0

    def validate(self, protocols: list[str]) -> None:
        if not self.knn_k or any(k < 1 for k in self.knn_k):
            raise GeosslError(f"--knn-k needs positive integers like 10,20,100,200, got {self.knn_k}")
        if not self.knn_t or any(not t > 0 for t in self.knn_t):
            raise GeosslError(f"--knn-t needs positive temperatures like 0.02,0.07, got {self.knn_t}")
        if not self.label_fractions or any(not 0 < f <= 1 for f in self.label_fractions):
            raise GeosslError(f"--label-fraction needs fractions in (0, 1] like 0.01,0.1, got {self.label_fractions}")
        if self.transform is not None:
            if self.transform not in TRANSFORMS:
                raise unknown_name_error("transform", self.transform, TRANSFORMS)
            if not set(protocols) & set(_SOT_PROTOCOLS):
                raise GeosslError("--transform sot applies to the fewshot and clustering protocols; add one of them, "
                                  "e.g. --protocol fewshot,clustering")
        if self.hierarchy is not None and "hierarchy" not in protocols:
            raise GeosslError("--hierarchy is used by the hierarchy protocol; add it, e.g. --protocol knn,hierarchy")
        if self.knn_backend not in ("auto", "torch", "faiss"):
            raise unknown_name_error("kNN backend", self.knn_backend, ("auto", "torch", "faiss"))
        if self.knn_metric not in ("cosine", "euclidean"):
            raise unknown_name_error("kNN metric", self.knn_metric, ("cosine", "euclidean"))
        if self.n_way < 2:
            raise GeosslError(f"--n-way must be at least 2, got {self.n_way}")
        if not self.shots or any(s < 1 for s in self.shots) or self.n_query < 1 or self.episodes < 1:
            raise GeosslError("--shots, --queries and --episodes must be positive")
        if self.linear_solver not in ("lbfgs", "sgd"):
            raise unknown_name_error("linear probe solver", self.linear_solver, ("lbfgs", "sgd"))
        if self.finetune_epochs < 1 or not self.finetune_lr > 0:
            raise GeosslError(f"--finetune-epochs must be >= 1 and --finetune-lr > 0, got {self.finetune_epochs} and {self.finetune_lr}")
        if self.fewshot_head not in ("prototype", "logistic"):
            raise unknown_name_error("few-shot head", self.fewshot_head, ("prototype", "logistic"))


@dataclass
class FeatureSet:
    """Frozen features of one encoder: train (kNN bank / probe fit), optional val (probe weight decay), test."""

    train_f: torch.Tensor
    train_y: torch.Tensor
    test_f: torch.Tensor
    test_y: torch.Tensor
    val_f: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    classes: list[str] | None = None


def parse_protocols(protocols: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"knn, linear"`` or a list → validated protocol names, duplicates removed, order kept.

    Raises:
        GeosslError: on an empty list or an unknown name (with the closest match).
    """
    items = protocols.split(",") if isinstance(protocols, str) else list(protocols)
    out: list[str] = []
    for p in (str(p).strip().lower() for p in items):
        if not p:
            continue
        if p not in PROTOCOLS:
            raise unknown_name_error("protocol", p, PROTOCOLS)
        if p not in out:
            out.append(p)
    if not out:
        raise GeosslError(f"no protocol given; pass --protocol with some of {','.join(PROTOCOLS)}")
    return out


def _encoder_key(enc: LoadedEncoder, seed: int) -> str:
    layer = "" if enc.layer == "backbone" else f"-{enc.layer}"
    if enc.checkpoint is None:
        # a random projector depends on the method's head; a random backbone does not, and a random teacher is the
        # random backbone (they share its cached features)
        head = f"{layer}-{enc.config.method}" if enc.layer == "projector" else ""
        return f"random-{enc.config.backbone}-{enc.data_info['num_bands']}-seed{seed}{head}"
    st = enc.checkpoint.stat()
    return f"{enc.checkpoint.resolve()}-{st.st_size}-{st.st_mtime_ns}{layer}"


def _augmented_pair(enc: LoadedEncoder, dataset, cache_dir: Path, key: str, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of two seeded random views (resized crop, flips) of every image, for the alignment metric; cached."""
    from geossl.eval.finetune import _augment

    views = []
    for v in (1, 2):
        gen = torch.Generator().manual_seed(seed * 1000 + v)

        def preprocess(x: torch.Tensor, gen: torch.Generator = gen) -> torch.Tensor:
            return _augment(enc.normalization(x), gen)

        views.append(FeatureCache(cache_dir).get_or_compute(
            f"{key}|{dataset.fingerprint()}|view{v}-seed{seed}",
            lambda p=preprocess: extract_features(enc.backbone, dataset, preprocess=p, batch_size=batch_size, progress=True),
        )[0])
    return views[0], views[1]


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


# ------------------------------------------------------------------------------------------------------ protocols


def _pct(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def _row(encoder: str, protocol: str, setting: str, metric: str, value: Any, *, ci95: float | None = None,
         n_train: int | None = None, n_test: int | None = None) -> dict[str, Any]:
    if value is not None and not isinstance(value, int):
        value = float(value)
        value = value if math.isfinite(value) else None
    return {"encoder": encoder, "protocol": protocol, "setting": setting, "metric": metric,
            "value": value, "ci95": ci95,
            "n_train": n_train, "n_test": n_test}


def _labelled(f: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    keep = y >= 0
    return (f, y) if bool(keep.all()) else (f[keep], y[keep])


def _knn_label(res: dict[str, Any], opts: EvalOptions) -> str:
    return f"knn {opts.knn_metric}, k={res['k']}, T={res['temperature']:g}"


def _main_knn(sweep: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep cell reported by the plots and the hierarchy: k = 20, T = 0.07 (DINO) when swept, else the first."""
    return next((r for r in sweep if r["k"] == 20 and math.isclose(r["temperature"], 0.07)), sweep[0])


def _protocol_knn(fs: FeatureSet, opts: EvalOptions, enc: str, extras: dict[str, Any]) -> list[dict[str, Any]]:
    sweep = knn_sweep(fs.train_f, fs.train_y, fs.test_f, fs.test_y, ks=opts.knn_k, temperatures=opts.knn_t,
                      metric=opts.knn_metric, backend=opts.knn_backend)
    extras["knn"] = sweep
    rows = []
    for res in sweep:
        setting = f"{opts.knn_metric}, k={res['k']}, T={res['temperature']:g}"
        for metric in ("top1", "top5"):
            rows.append(_row(enc, "knn", setting, metric, res[metric], n_train=len(fs.train_y), n_test=len(fs.test_y)))
    return rows


def _protocol_linear(fs: FeatureSet, opts: EvalOptions, enc: str, extras: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for frac in opts.label_fractions:
        if frac >= 1.0:
            x, y, vx, vy = fs.train_f, fs.train_y, fs.val_f, fs.val_y
        else:  # limited labels: the validation split would be extra labels, so λ is chosen on 10 % of the subset
            idx = stratified_subset(fs.train_y, frac, opts.seed)
            x, y, vx, vy = fs.train_f[idx], fs.train_y[idx], None, None
        res = linear_probe(x, y, fs.test_f, fs.test_y, val_features=vx, val_labels=vy, seed=opts.seed, solver=opts.linear_solver)
        extras.setdefault("linear", []).append((frac, res))
        setting = f"{'L-BFGS' if opts.linear_solver == 'lbfgs' else 'SGD'}, {_pct(frac)} labels"
        for metric in ("top1", "top5"):
            rows.append(_row(enc, "linear", setting, metric, res[metric], n_train=len(y), n_test=len(fs.test_y)))
        rows.append(_row(enc, "linear", setting, "weight_decay", res["weight_decay"], n_train=len(y),
                         n_test=len(fs.test_y)))
        if "lr" in res:
            rows.append(_row(enc, "linear", setting, "lr", res["lr"], n_train=len(y), n_test=len(fs.test_y)))
    return rows


def _protocol_fewshot(fs: FeatureSet, opts: EvalOptions, enc: str, extras: dict[str, Any]) -> list[dict[str, Any]]:
    from geossl.eval.fewshot import run_episodes

    n_classes = int(torch.unique(fs.test_y).numel())
    if n_classes < opts.n_way:
        raise GeosslError(f"few-shot {opts.n_way}-way episodes need at least {opts.n_way} classes but the evaluation "
                          f"set has {n_classes}; lower --n-way to at most {n_classes}")
    counts = torch.bincount(fs.test_y)
    for k in opts.shots:
        enough = int((counts >= k + opts.n_query).sum())
        if enough < opts.n_way:
            raise GeosslError(f"few-shot {opts.n_way}-way {k}-shot episodes with {opts.n_query} queries need "
                              f"{k + opts.n_query} samples in each of {opts.n_way} classes, but only {enough} classes of "
                              f"the evaluation set have that many; lower --shots, --queries or --n-way")
    rows = []
    for k in opts.shots:
        res = run_episodes(fs.test_f, fs.test_y, n_way=opts.n_way, k_shot=k, n_query=opts.n_query,
                           n_episodes=opts.episodes, classifier=opts.fewshot_head, transform=opts.transform,
                           seed=opts.seed)
        setting = (f"{opts.n_way}-way {k}-shot, {opts.n_query} queries, {opts.episodes} episodes, {opts.fewshot_head}"
                   + (", SOT" if opts.transform == "sot" else ""))
        rows.append(_row(enc, "fewshot", setting, "accuracy", res["accuracy"], ci95=res["ci95"],
                         n_test=len(fs.test_y)))
    return rows


def _protocol_clustering(fs: FeatureSet, opts: EvalOptions, enc: str, extras: dict[str, Any]) -> list[dict[str, Any]]:
    from geossl.eval.clustering import kmeans_metrics

    n_clusters = int(torch.unique(fs.test_y).numel())
    if n_clusters < 2:
        raise GeosslError("clustering needs at least 2 classes in the evaluation set")
    if opts.transform == "sot" and len(fs.test_y) > 12_000:
        raise GeosslError(f"--transform sot on {len(fs.test_y):,} samples needs an N x N matrix per Sinkhorn step; "
                          "use at most 12,000 samples (e.g. --features with a subset)")
    # k-means on the labels present, relabelled 0..C'-1 (the metrics accept any labelling)
    res = kmeans_metrics(fs.test_f, fs.test_y, n_clusters, n_init=10, seed=opts.seed, transform=opts.transform,
                         with_silhouette=True)
    setting = f"k-means, k={n_clusters}, 10 restarts" + (", SOT" if opts.transform == "sot" else "")
    return [_row(enc, "clustering", setting, m, res[m], n_test=len(fs.test_y))
            for m in ("nmi", "ari", "acc", "purity", "silhouette")]


def _protocol_retrieval(fs: FeatureSet, opts: EvalOptions, enc: str, extras: dict[str, Any]) -> list[dict[str, Any]]:
    from geossl.eval.retrieval import retrieval_metrics

    res = retrieval_metrics(fs.test_f, fs.test_y, ks=(1, 5, 10), metric=opts.knn_metric, backend=opts.knn_backend)
    setting = f"{opts.knn_metric}, test set vs itself"
    return [_row(enc, "retrieval", setting, m, res[m], n_test=int(res["n_queries"]))
            for m in ("recall@1", "recall@5", "recall@10", "precision_at_1", "r_precision", "map_at_r")]


def _resolve_hierarchy(opts: EvalOptions, classes: list[str] | None):
    from geossl.eval.hierarchy import EUROSAT_CLASSES, eurosat_hierarchy, load_hierarchy

    if not classes:
        raise GeosslError("the hierarchy protocol needs class names; the features come without them (write them as "
                          "'classes' in the JSON sidecar of --features, as `geossl embed` does)")
    if opts.hierarchy is not None:
        return load_hierarchy(opts.hierarchy, classes), Path(opts.hierarchy).name
    if set(classes) == set(EUROSAT_CLASSES):
        return eurosat_hierarchy(), "eurosat.yaml (packaged)"
    shown = ", ".join(classes[:6]) + (", ..." if len(classes) > 6 else "")
    raise GeosslError(f"no class hierarchy for these classes ({shown}); pass --hierarchy FILE.yaml (the packaged "
                      "hierarchy covers EuroSAT's 10 classes)")


def _protocol_hierarchy(fs: FeatureSet, opts: EvalOptions, enc: str, extras: dict[str, Any]) -> list[dict[str, Any]]:
    from geossl.eval.hierarchy import accuracy_at_height, hierarchical_metrics

    hierarchy, source = _resolve_hierarchy(opts, fs.classes)
    classes = list(fs.classes or [])
    classifiers: list[tuple[str, torch.Tensor]] = []
    if extras.get("knn"):
        res = _main_knn(extras["knn"])
        classifiers.append((f"{_knn_label(res, opts)}", res["scores"]))
    if extras.get("linear"):  # the probe with the most labels
        frac, res = max(extras["linear"], key=lambda fr: fr[0])
        classifiers.append((f"linear {_pct(frac)} labels", res["scores"]))
    if not classifiers:  # hierarchy alone: score with the first k-NN setting
        res = knn_sweep(fs.train_f, fs.train_y, fs.test_f, fs.test_y, ks=opts.knn_k[:1], temperatures=opts.knn_t[:1],
                        metric=opts.knn_metric, backend=opts.knn_backend)[0]
        classifiers.append((f"{_knn_label(res, opts)}", res["scores"]))
    root_height = hierarchy.height(hierarchy.root)
    rows = []
    for name, scores in classifiers:
        s = scores.double()
        if s.shape[1] < len(classes):  # classes after the largest label seen: never predicted
            pad = torch.full((s.shape[0], len(classes) - s.shape[1]), float(s.min()) - 1.0, dtype=s.dtype)
            s = torch.cat([s, pad], dim=1)
        m = hierarchical_metrics(s, fs.test_y, hierarchy, classes, ks=(1, 5))
        setting = f"{name}, {source}"
        rows.append(_row(enc, "hierarchy", setting, "accuracy", 100.0 * m["accuracy"], n_test=len(fs.test_y)))
        for key in ("ahc", "mistake_severity", "hdist@1", "hdist@5"):
            rows.append(_row(enc, "hierarchy", setting, key, m[key], n_test=len(fs.test_y)))
        pred = torch.sort(s, dim=1, descending=True, stable=True).indices[:, 0]
        for h in range(1, root_height):
            acc = accuracy_at_height(pred, fs.test_y, hierarchy, classes, h)
            rows.append(_row(enc, "hierarchy", setting, f"accuracy@height{h}", 100.0 * acc, n_test=len(fs.test_y)))
    return rows


def _protocol_representation(fs: FeatureSet, opts: EvalOptions, enc: str, extras: dict[str, Any]) -> list[dict[str, Any]]:
    from geossl.eval.monitors import mean_pairwise_cosine, per_dim_std, rankme
    from geossl.eval.representation import effective_rank, uniformity

    z = extras.get("all_test_f", fs.test_f)
    n = len(z)
    setting = "backbone features, " + ("evaluation set" if n == len(fs.test_y) else "all samples")
    values = {"dim": z.shape[1], "rankme": rankme(z), "effective_rank": effective_rank(z, center=True),
              "uniformity": uniformity(z), "per_dim_std": per_dim_std(z), "mean_cosine": mean_pairwise_cosine(z)}
    if "view_pair" in extras:  # two augmented views of every evaluation image (run directories only, not .npy input)
        from geossl.eval.representation import alignment

        values["alignment"] = alignment(*extras["view_pair"])
    return [_row(enc, "representation", setting, m, v, n_test=n) for m, v in values.items()]


_PROTOCOL_FUNCTIONS = {
    "knn": _protocol_knn,
    "linear": _protocol_linear,
    "fewshot": _protocol_fewshot,
    "clustering": _protocol_clustering,
    "retrieval": _protocol_retrieval,
    "hierarchy": _protocol_hierarchy,
    "representation": _protocol_representation,
}

_NOTES = {
    "knn": "kNN: weighted vote of the k nearest training features (cosine; exp(s/T) weights); top1/top5 in percent.",
    "linear": "linear: multinomial logistic regression (L-BFGS, or SGD with lr and weight decay swept on the validation "
              "split with --probe sgd) on standardised frozen features; label fractions are "
              "stratified, seeded subsets of the training split, with the weight decay chosen on 10 % of the subset "
              "(on the validation split at 100 %); top1/top5 in percent.",
    "fewshot": "fewshot: N-way K-shot episodes sampled from the evaluation set; accuracy in percent, mean over "
               "episodes ± 95 % confidence interval (1.96·std/√E).",
    "clustering": "clustering: k-means (k = number of classes) on L2-normalised features; NMI, ARI, clustering "
                  "accuracy (Hungarian matching), purity and silhouette as fractions.",
    "retrieval": "retrieval: every evaluation sample queries the others (self excluded); Recall@K, precision@1, "
                 "R-precision and MAP@R as fractions (Musgrave et al. 2020).",
    "hierarchy": "hierarchy: accuracy in percent; ahc = mean tree distance between predicted and true class "
                 "(0 = all correct); mistake_severity and hdist@k in LCA heights (Bertinetto et al. 2020); "
                 "accuracy@heightH after mapping classes to their ancestors of height H.",
    "finetune": "finetune: a copy of the encoder and a linear head trained end to end (SGD, nesterov momentum 0.9, "
                "cosine schedule with one warm-up epoch, head lr 10x, random resized crops and flips), final-epoch "
                "top1/top5 in percent on the test split; label fractions as for linear.",
    "representation": "representation: alignment (Wang-Isola, α = 2) between the features of two seeded random views "
                      "(resized crop, flips) of every evaluation image, when the images are available; RankMe and effective rank (centred) of the features, Wang-Isola uniformity "
                      "(t = 2, normalised), mean per-dimension std of the normalised features (healthy ≈ 1/√dim), "
                      "mean pairwise cosine.",
}


def _run_protocols(
    name: str, fs: FeatureSet, protocols: list[str], opts: EvalOptions, extras: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Tidy rows of every protocol for one encoder's features, and what the plots need.

    Args:
        name: encoder name of the rows.
        fs: the features; label-based protocols use their labelled samples (label >= 0).
        protocols: validated protocol names (:func:`parse_protocols`), run in the order of :data:`PROTOCOLS`
            (the hierarchy protocol scores the kNN and linear classifiers run before it).
        opts: protocol settings.
        extras: initial extras (e.g. ``all_test_f`` for the representation of unlabelled samples).

    Returns:
        ``(rows, extras)``: extras hold the kNN sweep results, the linear probe results per label fraction and the
        labelled test features and labels.

    Raises:
        GeosslError: when a label-based protocol meets no labels, or a protocol rejects its input.
    """
    extras = dict(extras or {})
    label_based = [p for p in protocols if p not in LABEL_FREE]
    if label_based:
        train_f, train_y = _labelled(fs.train_f, fs.train_y)
        test_f, test_y = _labelled(fs.test_f, fs.test_y)
        if len(train_y) == 0 or len(test_y) == 0:
            raise GeosslError(f"the data have no labels; --protocol {','.join(label_based)} need labelled samples "
                              "(use --protocol representation, or `geossl embed` to export features)")
        val_f = val_y = None
        if fs.val_f is not None and fs.val_y is not None:
            val_f, val_y = _labelled(fs.val_f, fs.val_y)
            if len(val_y) == 0:
                val_f = val_y = None
        fs = FeatureSet(train_f, train_y, test_f, test_y, val_f, val_y, fs.classes)
    extras.update(features=fs.test_f, labels=fs.test_y)
    rows: list[dict[str, Any]] = []
    for p in sorted(protocols, key=PROTOCOLS.index):
        if p in _PROTOCOL_FUNCTIONS:
            rows += _PROTOCOL_FUNCTIONS[p](fs, opts, name, extras)
    return rows, extras


def _protocol_finetune(enc: LoadedEncoder, ds: DataSplits, test_split, opts: EvalOptions, name: str, batch_size: int) -> list[dict[str, Any]]:
    """Fine-tune the whole encoder with a linear head, once per label fraction (:func:`geossl.eval.finetune.finetune`)."""
    from geossl.eval.finetune import finetune

    # geossl.eval.finetune trains on CUDA when there is one, else on the CPU, where a batch-128 ResNet step maps and
    # zeroes fresh pages for every activation unless freed memory is kept (geossl.cpu_memory).
    if opts.reuse_freed_memory and not torch.cuda.is_available():
        keep_freed_memory()
    rows = []
    for frac in opts.label_fractions:
        res = finetune(enc.backbone, ds.train, test_split, len(ds.classes or []), preprocess=enc.normalization,
                       epochs=opts.finetune_epochs, lr=opts.finetune_lr, batch_size=min(batch_size, 128),
                       label_fraction=frac, seed=opts.seed, progress=True)
        setting = f"SGD, {opts.finetune_epochs} epochs, lr {opts.finetune_lr:g}, {_pct(frac)} labels"
        for metric in ("top1", "top5"):
            rows.append(_row(name, "finetune", setting, metric, res[metric], n_train=res["n_train"], n_test=res["n_test"]))
    return rows


# -------------------------------------------------------------------------------------------------------- outputs


def _per_class(pred: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    total = torch.bincount(y, minlength=n_classes).double()
    correct = torch.bincount(y[pred == y], minlength=n_classes).double()
    return torch.where(total > 0, 100.0 * correct / total.clamp_min(1), torch.full_like(total, float("nan")))


def _figures(out_dir: Path, fs_extras: dict[str, Any], fs: FeatureSet, protocols: list[str], opts: EvalOptions
             ) -> list[tuple[str, Path]]:
    """Render the evaluation figures of the first encoder into ``out_dir``; (caption, path) in report order."""
    from geossl.eval.plots import plot_confusion_matrix, plot_embedding_2d, plot_knn_vs_k, plot_per_class_accuracy

    figures: list[tuple[str, Path]] = []
    test_f, test_y = fs_extras["features"], fs_extras["labels"]
    labelled = len(test_y) > 0 and bool((test_y >= 0).any())
    n_classes = len(fs.classes) if fs.classes else (int(test_y.max()) + 1 if labelled else 0)
    classes = list(fs.classes) if fs.classes else [f"class {i}" for i in range(n_classes)]
    sweep = fs_extras.get("knn")
    if sweep:
        curves: dict[float, tuple[list[int], list[float]]] = {}
        if len({r["k"] for r in sweep}) >= 2:
            for r in sweep:
                ks, accs = curves.setdefault(r["temperature"], ([], []))
                ks.append(r["k"])
                accs.append(r["top1"])
        else:  # one k asked: a plot-only sweep at the first temperature (one neighbour search)
            train_f, train_y = _labelled(fs.train_f, fs.train_y)
            ks = sorted({k for k in (*PLOT_KS, *opts.knn_k) if k <= len(train_y)} or {1})
            res = knn_sweep(train_f, train_y, test_f, test_y, ks=ks, temperatures=opts.knn_t[:1],
                            metric=opts.knn_metric, backend=opts.knn_backend)
            curves[opts.knn_t[0]] = ([r["k"] for r in res], [r["top1"] for r in res])
        caption = "k-NN accuracy against k" + ("" if len({r["k"] for r in sweep}) >= 2 else
                                               f" (swept for this plot; the table uses k={opts.knn_k[0]})")
        figures.append((caption, plot_knn_vs_k(curves, out_dir / "knn_vs_k.png")))
    per_class: dict[str, torch.Tensor] = {}
    preds: tuple[str, torch.Tensor] | None = None
    linear = sorted(fs_extras.get("linear", []), key=lambda fr: -fr[0])  # most labels first
    for frac, res in linear[:2]:
        label = f"linear, {_pct(frac)} labels"
        per_class[label] = _per_class(res["predictions"], test_y, n_classes)
        preds = preds or (label, res["predictions"])
    if sweep:
        main = _main_knn(sweep)
        label = f"kNN, k={main['k']}, T={main['temperature']:g}"
        per_class[label] = _per_class(main["predictions"], test_y, n_classes)
        preds = preds or (label, main["predictions"])
    if per_class:
        support = torch.bincount(test_y, minlength=n_classes)
        png = plot_per_class_accuracy(per_class, classes, out_dir / "per_class_accuracy.png", support=support)
        figures.append(("Per-class accuracy", png))
    if preds is not None:
        figures.append((f"Confusion matrix ({preds[0]})",
                        plot_confusion_matrix(test_y, preds[1], classes, out_dir / "confusion_matrix.png")))
    emb_f = fs_extras.get("all_test_f", test_f)
    emb_y = fs_extras.get("all_test_y", test_y)
    if len(emb_f) >= 2:
        png = plot_embedding_2d(emb_f, emb_y, classes, out_dir / "embedding.png", seed=opts.seed)
        figures.append(("Embedding of the evaluation features", png))
    return figures


def _write_outputs(
    out_dir: Path, *, title: str, rows: list[dict[str, Any]], info: dict[str, Any], protocols: list[str],
    opts: EvalOptions, fs: FeatureSet | None, extras: dict[str, Any] | None, metrics_csv: Path | None, plots: bool
) -> EvaluationResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("knn_vs_k.png", "per_class_accuracy.png", "confusion_matrix.png", "embedding.png", "loss_curve.png",
                  "report.html"):
        (out_dir / stale).unlink(missing_ok=True)  # a figure of an earlier evaluation would contradict the results
    figures = _figures(out_dir, extras, fs, protocols, opts) if plots and fs is not None and extras else []
    report = write_report(
        out_dir, title=title, results=rows, info=info,
        metrics_csv=metrics_csv if plots and metrics_csv is not None and metrics_csv.is_file() else None,
        figures=figures, notes=[_NOTES[p] for p in PROTOCOLS if p in protocols],
    )
    wide = [r for table in pivot_results(rows) for r in table]
    return EvaluationResult(rows=wide, table=format_tidy_results(rows), report=report, tidy=rows)


def _info_protocols(protocols: list[str], opts: EvalOptions) -> dict[str, Any]:
    info: dict[str, Any] = {"protocols": ", ".join(sorted(protocols, key=PROTOCOLS.index))}
    if "knn" in protocols or "retrieval" in protocols or "hierarchy" in protocols:
        from geossl.eval.knn import resolve_backend

        info["neighbour search"] = f"{resolve_backend(opts.knn_backend)} ({opts.knn_metric})"
    info["seed"] = opts.seed
    return info


# ------------------------------------------------------------------------------------------------------- entry points


def evaluate_checkpoint(
    path: str | Path,
    *,
    data: str | None = None,
    root: str | None = None,
    train_data: str | None = None,
    test_data: str | None = None,
    protocols: str | list[str] = ("knn", "linear"),
    k: int = 20,
    temperature: float = 0.07,
    options: EvalOptions | None = None,
    random_init: bool = False,
    with_baseline: bool = False,
    prefer: str = "best",
    out_dir: str | Path | None = None,
    batch_size: int = 256,
    seed: int = 0,
    plots: bool = True,
    layer: str = "backbone",
) -> EvaluationResult:
    """Frozen-feature evaluation of a run with any of :data:`PROTOCOLS`, with a report and plots.

    Args:
        path: run directory or checkpoint.
        data / root / train_data / test_data: evaluation data (default: the run's own data and split).
        protocols: names from :data:`PROTOCOLS` (list or comma-separated string).
        k, temperature: kNN parameters (DINO protocol: 20 and 0.07) when ``options`` is not given.
        options: all protocol settings (k and T sweeps, label fractions, few-shot, transform, hierarchy); its seed
            is replaced by ``seed``.
        random_init: evaluate a random-init encoder of the same architecture instead of the weights.
        with_baseline: evaluate both, side by side.
        prefer: ``best`` or ``last`` checkpoint of a run directory.
        out_dir: where report.md, results.json/csv and the PNGs go (default: the run directory, or a sub-folder
            ``eval-DATA`` / ``eval-random-init`` of it).
        batch_size: feature-extraction batch size.
        seed: seed of the random init, the probe, the label subsets, the episodes and k-means.
        plots: draw the training curves, kNN accuracy against k, per-class accuracy, confusion matrix and 2-D
            feature map.
        layer: ``backbone`` (the features before the projector, the papers' protocol), ``projector`` (its output)
            or ``teacher`` (the EMA teacher's backbone, which DINO's authors evaluate: Caron et al. 2021, Fig. 6).
    """
    protocols = parse_protocols(protocols)
    if layer == "projector" and "finetune" in protocols:
        raise GeosslError("--protocol finetune fine-tunes the backbone; drop --layer projector for it")
    opts = options if options is not None else EvalOptions(knn_k=[k], knn_t=[temperature])
    opts.seed = seed
    opts.validate(protocols)
    if prefer not in ("best", "last"):
        raise GeosslError(f"--checkpoint must be best or last, got '{prefer}'")
    trained = load_encoder(path, prefer=prefer, seed=seed, layer=layer)
    ckpt_path = trained.checkpoint
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    ds = _load_eval_data(trained, data, root, train_data, test_data)
    _check_compatible(trained, ds)
    label_based = [p for p in protocols if p not in LABEL_FREE]
    if label_based and not ds.has_labels:
        raise GeosslError(
            f"{ds.name} has no labels (a flat folder); --protocol {','.join(label_based)} need one sub-folder per "
            "class; use --protocol representation, or `geossl embed` to export features"
        )
    if label_based and ds.test is None and ds.val is None:
        raise GeosslError(f"{ds.name} has no test split; pass --test-data or a --split with a test part")
    cache_dir = run_dir / "features"
    encoders: list[tuple[str, LoadedEncoder, str]] = []
    if not random_init:
        encoders.append((f"{trained.config.method} (epoch {trained.epoch})", trained, _encoder_key(trained, seed)))
    if random_init or with_baseline:
        rand = random_init_like(trained, seed)
        encoders.append(("random init", rand, _encoder_key(rand, seed)))
    test_split = ds.test if ds.test is not None else ds.val if ds.val is not None else ds.train
    rows: list[dict[str, Any]] = []
    first: tuple[FeatureSet, dict[str, Any]] | None = None
    for name, enc, key in encoders:
        train_f, train_y = _features(enc, ds.train, cache_dir, key, batch_size)
        test_f, test_y = _features(enc, test_split, cache_dir, key, batch_size)
        val_f = val_y = None
        if ds.val is not None and ds.test is not None:
            val_f, val_y = _features(enc, ds.val, cache_dir, key, batch_size)
        fs = FeatureSet(train_f, train_y, test_f, test_y, val_f, val_y, list(ds.classes or []) or None)
        start = {"all_test_f": test_f, "all_test_y": test_y}
        if "representation" in protocols:
            start["view_pair"] = _augmented_pair(enc, test_split, cache_dir, key, batch_size, seed)
        r, extras = _run_protocols(name, fs, protocols, opts, start)
        rows.extend(r)
        first = first or (fs, extras)
        if "finetune" in protocols:
            rows.extend(_protocol_finetune(enc, ds, test_split, opts, name, batch_size))
    own_data = data is None and train_data is None and test_data is None
    if out_dir is None:
        out_dir = run_dir if own_data and not random_init else run_dir / ("eval-random-init" if random_init else f"eval-{ds.name}")
        if layer == "teacher" and not random_init:
            out_dir = Path(out_dir) / "eval-teacher"  # next to the student's report, not over it
    info = {
        "checkpoint": str(ckpt_path) if not random_init else f"random init (seed {seed}) of {ckpt_path}",
        "method": trained.config.method,
        "backbone": trained.config.backbone,
        "dataset": f"{ds.name} ({ds.source})",
        "split": ds.split_description,
        "image size": f"{ds.image_size[0]}x{ds.image_size[1]}, {ds.num_bands} bands",
        "features": {"backbone": "backbone output (before the projector)", "projector": "projector output",
                     "teacher": "EMA teacher's backbone output"}[layer] + ", frozen, no augmentation",
        **_info_protocols(protocols, opts),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "geossl": geossl.__version__,
    }
    return _write_outputs(
        Path(out_dir), title=f"geossl evaluation: {trained.config.method} on {ds.name}", rows=rows, info=info,
        protocols=protocols, opts=opts, fs=first[0] if first else None, extras=first[1] if first else None,
        metrics_csv=run_dir / "metrics.csv", plots=plots,
    )


def _load_npy(path: str | Path, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise GeosslError(f"{what} file '{p}' does not exist; pass a .npy file (e.g. written by `geossl embed`)")
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise GeosslError(f"cannot read {what} file '{p}' as a NumPy .npy array: {str(e).splitlines()[0]}") from None


def _features_and_labels(features: str | Path, labels: str | Path | None, what: str) -> tuple[torch.Tensor, torch.Tensor, Path | None]:
    """(features (N, D) float32, labels (N,) with -1 when absent, the labels path used)."""
    f = _load_npy(features, f"{what}features")
    if f.ndim != 2 or not np.issubdtype(f.dtype, np.number):
        raise GeosslError(f"{what}features '{features}' must be a 2-D (N, D) numeric array, got shape {f.shape} "
                          f"({f.dtype})")
    if not np.isfinite(f).all():
        raise GeosslError(f"{what}features '{features}' contain NaN or infinite values")
    if labels is None:  # the naming of `geossl embed`: X.npy and X.labels.npy
        guess = Path(features).with_name(Path(features).stem + ".labels.npy")
        labels = guess if guess.is_file() else None
    if labels is None:
        return torch.from_numpy(f.astype(np.float32)), torch.full((f.shape[0],), -1, dtype=torch.long), None
    y = _load_npy(labels, f"{what}labels")
    if y.ndim != 1:
        raise GeosslError(f"{what}labels '{labels}' must be a 1-D array of class indices, got shape {y.shape}")
    if y.shape[0] != f.shape[0]:
        raise GeosslError(f"{what}features '{features}' have {f.shape[0]:,} rows but {what}labels '{labels}' have "
                          f"{y.shape[0]:,}; they must describe the same samples, in the same order")
    if not np.issubdtype(y.dtype, np.integer) and not (np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))):
        raise GeosslError(f"{what}labels '{labels}' must hold integer class indices (-1 for unlabelled), got {y.dtype}")
    if y.size and y.min() < -1:
        raise GeosslError(f"{what}labels '{labels}' contain {int(y.min())}; labels are 0..C-1, or -1 for unlabelled")
    return torch.from_numpy(f.astype(np.float32)), torch.from_numpy(y.astype(np.int64)), Path(labels)


def _sidecar_classes(features: str | Path) -> list[str] | None:
    meta = Path(features).with_suffix(".json")
    if not meta.is_file():
        return None
    try:
        classes = json.loads(meta.read_text()).get("classes")
    except (OSError, ValueError, AttributeError):
        return None
    return [str(c) for c in classes] if isinstance(classes, list) and classes else None


def evaluate_features(
    features: str | Path,
    labels: str | Path | None = None,
    *,
    test_features: str | Path | None = None,
    test_labels: str | Path | None = None,
    classes: list[str] | None = None,
    protocols: str | list[str] = ("knn", "linear"),
    options: EvalOptions | None = None,
    test_fraction: float = 0.2,
    out_dir: str | Path | None = None,
    seed: int = 0,
    plots: bool = True,
) -> EvaluationResult:
    """The protocols of :func:`evaluate_checkpoint` on features extracted elsewhere (``.npy`` files).

    Args:
        features: (N, D) features; with ``test_features`` these are the training features, else they are split.
        labels: (N,) integer labels (-1: unlabelled); default: ``FEATURES.labels.npy`` when it exists (the naming of
            ``geossl embed``), else none (label-free protocols only).
        test_features / test_labels: an explicit test set (labels default to ``TEST.labels.npy`` likewise).
        classes: class names in label order; default: ``classes`` of the ``FEATURES.json`` sidecar written by
            ``geossl embed``, else ``class 0``, ``class 1``, ...
        protocols: names from :data:`PROTOCOLS`.
        options: protocol settings; its seed is replaced by ``seed``.
        test_fraction: without ``test_features``, the labelled samples are split stratified and seeded into
            1 - test_fraction train and test_fraction test (default 80/20).
        out_dir: output folder (default ``eval-FEATURES_STEM`` next to the features file).
        seed: seed of the split and of the protocols.
        plots: draw kNN-vs-k, per-class accuracy, confusion matrix and the 2-D feature map.
    """
    protocols = parse_protocols(protocols)
    if set(protocols) & set(END_TO_END):
        raise GeosslError("--protocol finetune trains the encoder, so it needs a run directory (or checkpoint), not --features")
    opts = options if options is not None else EvalOptions()
    opts.seed = seed
    opts.validate(protocols)
    if not 0.0 < test_fraction < 1.0:
        raise GeosslError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if test_labels is not None and test_features is None:
        raise GeosslError("--test-labels needs --test-features")
    f, y, labels_path = _features_and_labels(features, labels, "")
    label_based = [p for p in protocols if p not in LABEL_FREE]
    if label_based and not bool((y >= 0).any()):
        raise GeosslError(f"'{features}' come without labels (pass --labels LABELS.npy); --protocol "
                          f"{','.join(label_based)} need labels; use --protocol representation for label-free metrics")
    if test_features is not None:
        tf, ty, _ = _features_and_labels(test_features, test_labels, "test ")
        if tf.shape[1] != f.shape[1]:
            raise GeosslError(f"features have dimension {f.shape[1]} but test features have {tf.shape[1]}; extract "
                              "both with the same encoder")
        if label_based and not bool((ty >= 0).any()):
            raise GeosslError(f"test features '{test_features}' come without labels; pass --test-labels")
        fs = FeatureSet(f, y, tf, ty)
        split = f"given train ({len(y):,}) and test ({len(ty):,}) features"
        all_test = (tf, ty)
    elif bool((y >= 0).any()):
        keep = torch.nonzero(y >= 0).flatten()
        tr, te = stratified_split(y[keep], test_fraction, seed)
        tr, te = keep[tr], keep[te]
        if len(te) == 0 or len(tr) == 0:
            raise GeosslError(f"{len(keep)} labelled samples are too few to split into train and test; pass "
                              "--test-features")
        fs = FeatureSet(f[tr], y[tr], f[te], y[te])
        split = (f"stratified {_pct(1 - test_fraction)}/{_pct(test_fraction)} split of the labelled features "
                 f"(seed {seed}): {len(tr):,} train / {len(te):,} test")
        all_test = (f[te], y[te])
    else:  # unlabelled, label-free protocols only: every sample is evaluated
        fs = FeatureSet(f, y, f, y)
        split = f"all {len(y):,} samples (unlabelled)"
        all_test = (f, y)
    names = classes or _sidecar_classes(features)
    n_seen = int(max(int(fs.train_y.max()), int(fs.test_y.max()))) + 1 if len(fs.test_y) else 0
    if names is not None and n_seen > len(names):
        raise GeosslError(f"labels go up to {n_seen - 1} but {len(names)} class names were given; pass one name per "
                          "class")
    fs.classes = names
    rows, extras = _run_protocols("features", fs, protocols, opts, {"all_test_f": all_test[0], "all_test_y": all_test[1]})
    if fs.classes is None and n_seen:
        fs.classes = [f"class {i}" for i in range(n_seen)]
    if out_dir is None:
        out_dir = Path(features).parent / f"eval-{Path(features).stem}"
    info = {
        "dataset": f"{Path(features).name} (.npy features)",
        "features": str(features),
        "labels": str(labels_path) if labels_path else "none",
        "test features": str(test_features) if test_features else "split from the features",
        "dimension": f.shape[1],
        "split": split,
        **_info_protocols(protocols, opts),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "geossl": geossl.__version__,
    }
    return _write_outputs(Path(out_dir), title=f"geossl evaluation: features {Path(features).name}", rows=rows,
                          info=info, protocols=protocols, opts=opts, fs=fs, extras=extras, metrics_csv=None,
                          plots=plots)


def build_external_model(spec: str, weights: str | Path | None = None) -> torch.nn.Module:
    """A feature extractor from a model zoo: ``torchvision:NAME`` or ``timm:NAME``, classifier head removed.

    No weights are downloaded (pass ``weights``, a state dict saved with ``torch.save``, for pretrained ones), so the
    model is randomly initialised otherwise.

    Args:
        spec: ``torchvision:resnet50``, ``timm:vit_small_patch16_224``, ...
        weights: optional state-dict file loaded before the head is removed (keys of the full model).
    """
    zoo, _, name = spec.partition(":")
    if zoo not in ("torchvision", "timm") or not name:
        raise GeosslError(f"--model must look like torchvision:resnet50 or timm:NAME, got '{spec}'")
    if zoo == "torchvision":
        import torchvision

        try:
            model = torchvision.models.get_model(name, weights=None)
        except ValueError:
            raise unknown_name_error("torchvision model", name, torchvision.models.list_models()) from None
    else:
        try:
            import timm
        except ImportError:
            raise GeosslError("timm is not installed; pip install timm, or use a torchvision:NAME model") from None
        try:
            model = timm.create_model(name, pretrained=False)
        except RuntimeError:
            raise unknown_name_error("timm model", name, timm.list_models()) from None
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except (OSError, RuntimeError, KeyError) as e:
            raise GeosslError(f"could not load weights '{weights}' into {spec}: {str(e).splitlines()[0]}") from None
    # the pooled features before the classifier
    if zoo == "timm":
        model.reset_classifier(0)
    else:
        for head in ("fc", "classifier", "heads", "head"):
            if isinstance(getattr(model, head, None), torch.nn.Module):
                setattr(model, head, torch.nn.Identity())
                break
    return model.eval()


def evaluate_model(
    model: torch.nn.Module,
    data: str,
    *,
    name: str = "model",
    protocols: str | list[str] = ("knn", "linear"),
    options: EvalOptions | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 256,
    seed: int = 0,
    plots: bool = True,
) -> EvaluationResult:
    """The frozen-feature protocols for any encoder (a torchvision or timm model, or your own ``nn.Module``).

    Args:
        model: module mapping images (B, C, H, W) to features (B, D) (classifier head removed).
        data: dataset name or folder (:func:`geossl.data.load_data`, its default 60/20/20 split).
        name: encoder name in the results.
        protocols: frozen-feature protocols (``finetune`` needs a geossl run).
        options: protocol settings; its seed is replaced by ``seed``.
        mean / std: input normalisation in scaled units (e.g. ImageNet's for ImageNet weights); default: the
            training split's own statistics.
        out_dir: where the report goes (default ``./eval-NAME-DATA``).
        batch_size: feature-extraction batch size.
        seed: seed of the split's protocols.
        plots: draw the figures.
    """
    from geossl.augment.views import Normalization

    protocols = parse_protocols(protocols)
    if set(protocols) & set(END_TO_END):
        raise GeosslError("--protocol finetune needs a geossl run directory; evaluate external models with frozen features")
    opts = options if options is not None else EvalOptions()
    opts.seed = seed
    opts.validate(protocols)
    ds = load_data(data)
    label_based = [p for p in protocols if p not in LABEL_FREE]
    if label_based and not ds.has_labels:
        raise GeosslError(f"{ds.name} has no labels; --protocol {','.join(label_based)} need one sub-folder per class")
    norm = Normalization(list(mean or ds.mean), list(std or ds.std), ds.value_scale)
    test_split = ds.test if ds.test is not None else ds.val if ds.val is not None else ds.train
    train_f, train_y = extract_features(model, ds.train, preprocess=norm, batch_size=batch_size, progress=True)
    test_f, test_y = extract_features(model, test_split, preprocess=norm, batch_size=batch_size, progress=True)
    val_f = val_y = None
    if ds.val is not None and ds.test is not None:
        val_f, val_y = extract_features(model, ds.val, preprocess=norm, batch_size=batch_size, progress=True)
    fs = FeatureSet(train_f, train_y, test_f, test_y, val_f, val_y, list(ds.classes or []) or None)
    rows, extras = _run_protocols(name, fs, protocols, opts, {"all_test_f": test_f, "all_test_y": test_y})
    info = {
        "encoder": name,
        "dataset": f"{ds.name} ({ds.source})",
        "split": ds.split_description,
        "features": "model output (classifier head removed), frozen, no augmentation",
        "normalisation": "given mean/std" if mean else "the training split's statistics",
        **_info_protocols(protocols, opts),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "geossl": geossl.__version__,
    }
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return _write_outputs(Path(out_dir or f"eval-{safe}-{ds.name}"), title=f"geossl evaluation: {name} on {ds.name}",
                          rows=rows, info=info, protocols=protocols, opts=opts, fs=fs, extras=extras, metrics_csv=None,
                          plots=plots)


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
