"""The ``geossl`` command line: pretrain, evaluate, report, compare, embed, info.

Every error caused by the user's input prints one line (``error: ...``) on stderr and exits with
code 2; no traceback.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import typer

from geossl.errors import GeosslError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Self-supervised and geometric representation learning for vision and Earth observation.",
)


def _user_errors(fn):
    """Turn GeosslError (and bad-input errors raised deep inside torch data loading) into one line + exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GeosslError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted; re-run the same command to resume from the last checkpoint", err=True)
            raise typer.Exit(code=130) from None

    return wrapper


def _parse_floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise GeosslError(f"{option} expects comma-separated numbers like 0.6,0.2,0.2, got '{text}'") from None


def _parse_sets(items: list[str] | None, option: str = "--set", what: str = "a method argument") -> dict[str, Any]:
    """``--set temperature=0.5`` → {"temperature": 0.5} (values parsed as YAML scalars); ``option``/``what`` name the
    flag in the error message."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise GeosslError(f"{option} expects KEY=VALUE ({what}), got '{item}'")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _quiet_lightning() -> None:
    """Lightning's start-up banners (GPU available, TPU...) are noise in a CLI."""
    import logging

    import lightning.pytorch  # noqa: F401 - its import sets its loggers to INFO; override after

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


@app.command()
@_user_errors
def pretrain(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="SSL method (see `geossl info`)."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset name or image folder (default: eurosat-sample)."),
    root: Optional[str] = typer.Option(None, help="Where torchvision datasets (cifar10, cifar100, stl10) live."),
    train_data: Optional[str] = typer.Option(None, help="Explicit training folder (no split)."),
    test_data: Optional[str] = typer.Option(None, help="Explicit test folder."),
    split: Optional[str] = typer.Option(None, help="Train/val/test fractions for folders, e.g. 0.6,0.2,0.2."),
    split_seed: Optional[int] = typer.Option(None, help="Seed of the stratified split."),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Backbone (resnet18, resnet50, ...)."),
    small_stem: Optional[str] = typer.Option(None, help="3x3 stem without max-pool: auto (≤32 px), true or false."),
    image_size: Optional[int] = typer.Option(None, help="Resize every image to this size (needed when sizes differ)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Training epochs."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size per device."),
    optimizer: Optional[str] = typer.Option(None, help="lars, sgd or adamw (default: the method's)."),
    lr: Optional[float] = typer.Option(None, help="Base learning rate for a batch of 256 (scaled linearly)."),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay."),
    warmup_epochs: Optional[float] = typer.Option(None, help="Linear warm-up epochs (default: min(10, epochs/10))."),
    accumulate_grad_batches: Optional[int] = typer.Option(None, help="Gradient accumulation steps."),
    devices: Optional[str] = typer.Option(None, help="Number of devices (or 'auto')."),
    accelerator: Optional[str] = typer.Option(None, help="cpu, gpu or auto."),
    strategy: Optional[str] = typer.Option(None, help="auto or ddp."),
    precision: Optional[str] = typer.Option(None, help="32-true, 16-mixed or bf16-mixed."),
    num_workers: Optional[str] = typer.Option(None, help="DataLoader workers (default: auto)."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of options (flags override it)."),
    run_dir: Optional[str] = typer.Option(None, "--run-dir", "-o", help="Run directory (default runs/METHOD-DATA-BACKBONE)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Method argument KEY=VALUE, e.g. --set temperature=0.5."),
    local_crops: Optional[int] = typer.Option(
        None, "--local-crops", help="Multi-crop: N small local crops after the 2 global views (default: the method's; swav/dino: 6 on images of 96 px or more, 0 below; bam 6)."),
    regularizer: Optional[str] = typer.Option(None, "--regularizer", help="Add a regulariser on every view's embeddings, e.g. t-reg."),
    reg_set: Optional[list[str]] = typer.Option(None, "--reg-set", help="Regulariser argument KEY=VALUE, e.g. --reg-set gamma=0.2."),
    skip_corrupt: bool = typer.Option(False, "--skip-corrupt", help="Skip unreadable images instead of stopping."),
    download: bool = typer.Option(False, "--download", help="Allow torchvision datasets to be downloaded."),
    no_online_eval: bool = typer.Option(False, "--no-online-eval", help="Skip the per-epoch kNN on the held-out split."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    no_reuse_freed_memory: bool = typer.Option(
        False, "--no-reuse-freed-memory",
        help="On the CPU, let glibc return freed activation memory to the system (slower steps, lower resident size between steps)."),
) -> None:
    """Pretrain an encoder without labels; re-running the same command resumes the run."""
    _quiet_lightning()
    from geossl.train.config import PretrainConfig, load_yaml_config
    from geossl.train.run import pretrain as run_pretrain

    base = PretrainConfig()
    if config is not None:
        base = PretrainConfig.from_dict({**base.to_dict(), **load_yaml_config(config)}, source=str(config))
    method_args = {**base.method_args, **_parse_sets(set_)}
    overrides = dict(
        method=method, data=data, root=root, train_data=train_data, test_data=test_data,
        split=_parse_floats(split, "--split"), split_seed=split_seed, backbone=backbone, small_stem=small_stem,
        image_size=image_size, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
        weight_decay=weight_decay, warmup_epochs=warmup_epochs, accumulate_grad_batches=accumulate_grad_batches,
        devices=(int(devices) if devices and devices.isdigit() else devices), accelerator=accelerator,
        strategy=strategy, precision=precision,
        num_workers=(int(num_workers) if num_workers and num_workers.isdigit() else num_workers), seed=seed,
        run_dir=run_dir, method_args=method_args or None, local_crops=local_crops,
        regularizer=regularizer, regularizer_args=_parse_sets(reg_set, "--reg-set", "a regulariser argument") or None,
        skip_corrupt=skip_corrupt or None, download=download or None,
        online_eval=False if no_online_eval else None, progress=False if no_progress else None,
        reuse_freed_memory=False if no_reuse_freed_memory else None,
    )
    if method is not None and method != base.method and set_ is None:
        overrides["method_args"] = {}
    cfg = base.merged(overrides)
    result = run_pretrain(cfg)
    if not result.is_main_process:
        return
    verb = "resumed and finished" if result.resumed else "finished"
    knn = result.metrics.get("val/knn_top1")
    typer.echo(f"{verb}: {result.run_dir}" + (f"  (online kNN top-1 {knn:.2f})" if knn is not None else ""))
    typer.echo(f"checkpoint: {result.best_checkpoint or result.last_checkpoint}")
    typer.echo(f"next: geossl evaluate {result.run_dir} --protocol knn,linear")


def _parse_ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise GeosslError(f"{option} expects comma-separated integers like 10,20,100,200, got '{text}'") from None


@app.command()
@_user_errors
def evaluate(
    path: Optional[str] = typer.Argument(None, help="Run directory or checkpoint file (or use --features)."),
    protocol: str = typer.Option(
        "knn,linear", "--protocol", "-p",
        help="Comma-separated: knn, linear, fewshot, clustering, retrieval, hierarchy, representation, finetune."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Evaluate on this dataset (default: the run's)."),
    root: Optional[str] = typer.Option(None, help="Root of torchvision datasets."),
    train_data: Optional[str] = typer.Option(None, help="Explicit training folder (fits the probe / kNN bank)."),
    test_data: Optional[str] = typer.Option(None, help="Explicit test folder."),
    features: Optional[Path] = typer.Option(None, "--features", help="Evaluate these (N, D) .npy features instead of a run."),
    model: Optional[str] = typer.Option(None, "--model", help="Evaluate a model-zoo encoder instead of a run: torchvision:NAME or timm:NAME (with --data)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="State dict for --model (nothing is downloaded)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="(N,) .npy labels of --features (default: FEATURES.labels.npy)."),
    test_features: Optional[Path] = typer.Option(None, "--test-features", help="Test features .npy (default: a stratified split of --features)."),
    test_labels: Optional[Path] = typer.Option(None, "--test-labels", help="Test labels .npy (default: TEST.labels.npy)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Test share of the seeded stratified split of --features."),
    k: int = typer.Option(20, help="Neighbours of the kNN classifier (see --knn-k for a sweep)."),
    temperature: float = typer.Option(0.07, help="Temperature of the kNN vote (see --knn-t for a sweep)."),
    knn_k: Optional[str] = typer.Option(None, "--knn-k", help="kNN sweep over k, e.g. 10,20,100,200."),
    knn_t: Optional[str] = typer.Option(None, "--knn-t", help="kNN sweep over the temperature, e.g. 0.02,0.07."),
    knn_backend: str = typer.Option("auto", "--knn-backend", help="Neighbour search: auto (faiss when installed), torch or faiss; identical results."),
    label_fraction: Optional[str] = typer.Option(None, "--label-fraction", help="Linear probe on stratified label subsets, e.g. 0.01,0.1 (default 1)."),
    n_way: int = typer.Option(5, "--n-way", help="Few-shot: classes per episode."),
    shots: str = typer.Option("1,5", "--shots", help="Few-shot: support samples per class, comma-separated."),
    queries: int = typer.Option(15, "--queries", help="Few-shot: query samples per class."),
    episodes: int = typer.Option(600, "--episodes", help="Few-shot: number of episodes."),
    fewshot_head: str = typer.Option("prototype", "--fewshot-head", help="Few-shot classifier: prototype or logistic."),
    transform: Optional[str] = typer.Option(None, "--transform", help="'sot': self-optimal-transport features for fewshot and clustering."),
    hierarchy: Optional[Path] = typer.Option(None, "--hierarchy", help="Class hierarchy YAML/JSON (default: the packaged EuroSAT one when the classes match)."),
    layer: str = typer.Option("backbone", "--layer", help="Features to evaluate: backbone (before the projector), projector, or teacher (the EMA teacher's backbone: BYOL, MoCo, DINO, BAM)."),
    probe: str = typer.Option("lbfgs", "--probe", help="Linear probe solver: lbfgs (deterministic) or sgd (lr and weight decay swept on val)."),
    finetune_epochs: int = typer.Option(10, "--finetune-epochs", help="Epochs of the finetune protocol (whole encoder + linear head)."),
    finetune_lr: float = typer.Option(0.01, "--finetune-lr", help="Encoder learning rate per 256 images of the finetune protocol (head: 10x)."),
    no_reuse_freed_memory: bool = typer.Option(
        False, "--no-reuse-freed-memory",
        help="Finetune protocol on the CPU: let glibc return freed activation memory to the system (slower steps)."),
    random_init: bool = typer.Option(False, "--random-init", help="Evaluate a randomly initialised encoder of the same architecture instead."),
    with_baseline: bool = typer.Option(False, "--with-baseline", help="Also evaluate the random-init encoder, side by side."),
    checkpoint: str = typer.Option("best", help="In a run directory: best or last checkpoint."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report directory (default: inside the run directory)."),
    batch_size: int = typer.Option(256, help="Batch size of feature extraction."),
    seed: int = typer.Option(0, help="Seed (random init, probe, label subsets, episodes, k-means, split)."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the plots."),
) -> None:
    """Evaluate frozen features with any protocol; prints the results and writes report.md, results.json/csv and plots."""
    from geossl.train.evaluate import EvalOptions, evaluate_checkpoint, evaluate_features, parse_protocols

    protocols = parse_protocols(protocol)
    options = EvalOptions(
        knn_k=_parse_ints(knn_k, "--knn-k") or [k],
        knn_t=_parse_floats(knn_t, "--knn-t") or [temperature],
        knn_backend=knn_backend,
        label_fractions=_parse_floats(label_fraction, "--label-fraction") or [1.0],
        n_way=n_way, shots=_parse_ints(shots, "--shots") or [], n_query=queries, episodes=episodes,
        fewshot_head=fewshot_head, transform=transform, hierarchy=hierarchy, seed=seed,
        finetune_epochs=finetune_epochs, finetune_lr=finetune_lr, linear_solver=probe,
        reuse_freed_memory=not no_reuse_freed_memory,
    )
    if model is not None:
        if path is not None or features is not None:
            raise GeosslError("pass one of a run directory, --features or --model")
        if data is None:
            raise GeosslError("--model needs --data DATASET (the images to embed)")
        from geossl.train.evaluate import build_external_model, evaluate_model

        result = evaluate_model(build_external_model(model, weights), data, name=model, protocols=protocols, options=options,
                                out_dir=out, batch_size=batch_size, seed=seed, plots=not no_plots)
        typer.echo(result.table)
        typer.echo(f"report: {result.report}")
        return
    if weights is not None:
        raise GeosslError("--weights goes with --model")
    if features is not None:
        if path is not None:
            raise GeosslError("pass either a run directory or --features, not both")
        run_only = [name for name, v in (("--data", data), ("--train-data", train_data), ("--test-data", test_data))
                    if v is not None] + (["--random-init"] if random_init else []) + (["--with-baseline"] if with_baseline else [])
        if run_only:
            raise GeosslError(f"{', '.join(run_only)} need a run directory; with --features the features are the data")
        result = evaluate_features(
            features, labels, test_features=test_features, test_labels=test_labels, protocols=protocols,
            options=options, test_fraction=test_fraction, out_dir=out, seed=seed, plots=not no_plots,
        )
    else:
        if path is None:
            raise GeosslError("pass a run directory (or checkpoint), or --features FEATURES.npy")
        feature_only = [name for name, v in (("--labels", labels), ("--test-features", test_features),
                                             ("--test-labels", test_labels)) if v is not None]
        if feature_only:
            raise GeosslError(f"{', '.join(feature_only)} go with --features FEATURES.npy")
        _quiet_lightning()
        result = evaluate_checkpoint(
            path, data=data, root=root, train_data=train_data, test_data=test_data, protocols=protocols,
            options=options, random_init=random_init, with_baseline=with_baseline, prefer=checkpoint,
            out_dir=out, batch_size=batch_size, seed=seed, plots=not no_plots, layer=layer,
        )
    typer.echo(result.table)
    typer.echo(f"report: {result.report}")


@app.command()
@_user_errors
def report(
    path: str = typer.Argument(..., help="Run directory or evaluation folder (written by geossl evaluate)."),
) -> None:
    """Assemble report.md and a self-contained report.html (images inline) from what evaluate wrote."""
    from geossl.eval.report import assemble_report

    md, page = assemble_report(path)
    typer.echo(f"wrote {md}")
    typer.echo(f"wrote {page}")


@app.command()
@_user_errors
def compare(
    paths: list[str] = typer.Argument(..., help="Run directories or evaluation folders, one column each."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the table to this Markdown file."),
) -> None:
    """Side-by-side table of evaluations: one column per run, one row per protocol and metric."""
    from geossl.eval.report import compare_results

    table = compare_results(paths)
    typer.echo(table)
    if out is not None:
        if out.suffix.lower() not in (".md", ".markdown"):
            raise GeosslError(f"--out must be a Markdown file ending in .md, got {out}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n", encoding="utf-8")
        typer.echo(f"wrote {out}")


@app.command()
@_user_errors
def embed(
    checkpoint: str = typer.Argument(..., help="Run directory or checkpoint file."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Dataset name or image folder (default: the run's)."),
    out: Path = typer.Option(..., "--out", help="Output .npy file (features, shape N x D)."),
    split: str = typer.Option("all", help="all, train, val or test."),
    root: Optional[str] = typer.Option(None, help="Root of torchvision datasets."),
    batch_size: int = typer.Option(256, help="Batch size."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Write the backbone features of every image to a .npy file (labels and file order alongside)."""
    _quiet_lightning()
    from geossl.train.evaluate import embed_dataset

    written = embed_dataset(checkpoint, data=data, out=out, split=split, root=root, batch_size=batch_size, overwrite=overwrite)
    for p in written:
        typer.echo(f"wrote {p}")


@app.command()
def info() -> None:
    """List methods, regularizers, backbones and datasets."""
    import torch

    import geossl
    from geossl.data import list_datasets
    from geossl.methods.registry import METHODS
    from geossl.nn.backbones import BACKBONES

    typer.echo(f"geossl {geossl.__version__}  (torch {torch.__version__}, CUDA available: {torch.cuda.is_available()})")
    typer.echo("\nmethods (* takes local crops: --local-crops N):")
    for name, cls in sorted(METHODS.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        typer.echo(f"  {name:<13}{'*' if cls.supports_local_crops else ' '} {doc}")
    typer.echo("\nregularizers (--regularizer NAME, added to any method):")
    from geossl.methods.regularizers import REGULARIZERS, build_regularizer

    for name in sorted(REGULARIZERS):
        doc = (type(build_regularizer(name)).__doc__ or "").strip().splitlines()[0]
        typer.echo(f"  {name:<14} {doc}")
    typer.echo("\nbackbones:")
    for name, b in BACKBONES.items():
        typer.echo(f"  {name:<14} {b.description}; features {b.feature_dim}-d; any band count")
    typer.echo("\ndatasets (or any image folder path):")
    for name, desc in list_datasets():
        typer.echo(f"  {name:<14} {desc}")


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:lightning")
    app()


if __name__ == "__main__":
    sys.exit(main())
