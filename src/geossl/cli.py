"""The ``geossl`` command line: pretrain, evaluate, embed, info.

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


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``--set temperature=0.5`` → {"temperature": 0.5} (values parsed as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise GeosslError(f"--set expects KEY=VALUE (a method argument), got '{item}'")
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
    regularizer: Optional[str] = typer.Option(None, "--regularizer", help="Add a regulariser on every view's embeddings, e.g. t-reg."),
    reg_set: Optional[list[str]] = typer.Option(None, "--reg-set", help="Regulariser argument KEY=VALUE, e.g. --reg-set gamma=0.2."),
    skip_corrupt: bool = typer.Option(False, "--skip-corrupt", help="Skip unreadable images instead of stopping."),
    download: bool = typer.Option(False, "--download", help="Allow torchvision datasets to be downloaded."),
    no_online_eval: bool = typer.Option(False, "--no-online-eval", help="Skip the per-epoch kNN on the held-out split."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
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
        run_dir=run_dir, method_args=method_args or None,
        regularizer=regularizer, regularizer_args=_parse_sets(reg_set) or None,
        skip_corrupt=skip_corrupt or None, download=download or None,
        online_eval=False if no_online_eval else None, progress=False if no_progress else None,
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


@app.command()
@_user_errors
def evaluate(
    path: str = typer.Argument(..., help="Run directory or checkpoint file."),
    data: Optional[str] = typer.Option(None, "--data", "-d", help="Evaluate on this dataset (default: the run's)."),
    root: Optional[str] = typer.Option(None, help="Root of torchvision datasets."),
    train_data: Optional[str] = typer.Option(None, help="Explicit training folder (fits the probe / kNN bank)."),
    test_data: Optional[str] = typer.Option(None, help="Explicit test folder."),
    protocol: str = typer.Option("knn,linear", "--protocol", "-p", help="Comma-separated: knn, linear."),
    k: int = typer.Option(20, help="Neighbours of the kNN classifier."),
    temperature: float = typer.Option(0.07, help="Temperature of the kNN vote."),
    random_init: bool = typer.Option(False, "--random-init", help="Evaluate a randomly initialised encoder of the same architecture instead."),
    with_baseline: bool = typer.Option(False, "--with-baseline", help="Also evaluate the random-init encoder, side by side."),
    checkpoint: str = typer.Option("best", help="In a run directory: best or last checkpoint."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report directory (default: inside the run directory)."),
    batch_size: int = typer.Option(256, help="Batch size of feature extraction."),
    seed: int = typer.Option(0, help="Seed (random init, probe)."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the plots."),
) -> None:
    """Evaluate frozen features: kNN and linear probe; prints a table and writes report.md."""
    _quiet_lightning()
    from geossl.train.evaluate import evaluate_checkpoint

    protocols = [p.strip() for p in protocol.split(",") if p.strip()]
    result = evaluate_checkpoint(
        path, data=data, root=root, train_data=train_data, test_data=test_data, protocols=protocols,
        k=k, temperature=temperature, random_init=random_init, with_baseline=with_baseline, prefer=checkpoint,
        out_dir=out, batch_size=batch_size, seed=seed, plots=not no_plots,
    )
    typer.echo(result.table)
    typer.echo(f"report: {result.report}")


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
    """List methods, backbones and datasets."""
    import torch

    import geossl
    from geossl.data import list_datasets
    from geossl.methods.registry import METHODS
    from geossl.nn.backbones import BACKBONES

    typer.echo(f"geossl {geossl.__version__}  (torch {torch.__version__}, CUDA available: {torch.cuda.is_available()})")
    typer.echo("\nmethods:")
    for name, cls in sorted(METHODS.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
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
