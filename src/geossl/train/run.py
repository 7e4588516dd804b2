"""Run directories and the pretraining entry point used by the CLI and by Python users.

A run is a directory::

    runs/NAME/
      config.yaml              the fully resolved configuration
      checkpoints/last.ckpt    written every epoch; re-running the same command resumes from it
      checkpoints/best.ckpt    best online kNN top-1 on the held-out split (labelled data only)
      metrics.csv              every logged scalar (kept across resumptions)
      tensorboard/             TensorBoard events

Nothing is created before the data, the method and the backbone have been validated, and an
existing run is only ever resumed, never overwritten: a different configuration in the same
directory is an error that names the differing keys.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geossl.augment.views import ViewConfig, check_view
from geossl.cpu_memory import keep_freed_memory
from geossl.data import DataSplits, load_data
from geossl.errors import GeosslError, unknown_name_error
from geossl.methods._multicrop import local_crop_size
from geossl.methods.regularizers import build_regularizer
from geossl.methods.registry import METHODS, get_method
from geossl.nn.backbones import BACKBONES
from geossl.train.config import PretrainConfig, config_differences, load_yaml_config, save_yaml_config
from geossl.train.optim import OPTIMIZERS

TORCHVISION_NATURAL = {"cifar10", "cifar100", "stl10"}


@dataclass
class PretrainResult:
    """Where a finished run lives and its final online metrics."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None
    metrics: dict[str, float]
    resumed: bool
    is_main_process: bool = True


def data_from_config(config: PretrainConfig) -> DataSplits:
    """Load the data a config names (the same call for pretraining and evaluation)."""
    return load_data(
        config.data,
        root=config.root,
        train_data=config.train_data,
        test_data=config.test_data,
        split=tuple(config.split),
        seed=config.split_seed,
        download=config.download,
        image_size=config.image_size,
        skip_corrupt=config.skip_corrupt,
    )


def data_info(data: DataSplits) -> dict[str, Any]:
    """What a checkpoint must remember of its training data."""
    return {
        "name": data.name,
        "source": str(data.source),
        "num_bands": data.num_bands,
        "image_size": list(data.image_size),
        "mean": [float(m) for m in data.mean],
        "std": [float(s) for s in data.std],
        "value_scale": float(data.value_scale),
        "rgb": bool(data.is_rgb),
        "classes": list(data.classes) if data.classes else None,
        "split_description": data.split_description,
    }


def regularizer_args(config: PretrainConfig) -> dict[str, Any]:
    """The regulariser's arguments: the method's ``regularizer_defaults`` for it, overridden by ``config.regularizer_args``."""
    if config.regularizer is None:
        return dict(config.regularizer_args)
    return {**get_method(config.method).regularizer_defaults.get(config.regularizer, {}), **config.regularizer_args}


def resolve_config(config: PretrainConfig, data: DataSplits) -> PretrainConfig:
    """Fill every ``None`` with the method's paper defaults so ``config.yaml`` is complete."""
    method_cls = get_method(config.method)
    unknown = sorted(set(config.method_args) - set(method_cls.defaults))
    if unknown:
        raise GeosslError(f"unknown argument(s) {unknown} for method '{config.method}'; known: {sorted(method_cls.defaults)}")
    d = config.to_dict()
    d["method_args"] = {**method_cls.defaults, **config.method_args}
    if config.regularizer is not None:
        d["regularizer_args"] = regularizer_args(config)
    for key in ("optimizer", "lr", "weight_decay"):
        if d[key] is None:
            d[key] = method_cls.optim_defaults[key]
    if d["gradient_clip"] is None:
        d["gradient_clip"] = method_cls.optim_defaults.get("gradient_clip")
    if d["views"] is None:
        overhead = data.name not in TORCHVISION_NATURAL
        views = default_views(method_cls, data.image_size[0], overhead, config.local_crops, rgb=data.is_rgb)
        d["views"] = [v.to_dict() for v in views]
    for i, view in enumerate(d["views"]):
        # Views set by hand are checked here, before a run directory is made, with the name the user gave them.
        check_view(ViewConfig.from_dict(view), data.is_rgb, name=f"views[{i}] of the config")
    return PretrainConfig.from_dict(d)


def default_views(method_cls: type, image_size: int, overhead: bool, local_crops: int | None,
                  rgb: bool = True) -> list:
    """The method's views, with ``local_crops`` local crops after the 2 global views when given.

    Methods defined with multi-crop (SwAV, DINO, BAM) build their own local crops. For the others the local crops are
    the first global view's augmentations at 96/224 of the image size with SwAV's crop scale 0.05-0.14 and the blur
    probability 0.5 of SwAV's and DINO's local crops (Caron et al. 2020, §3.2; 2021, App.).

    On data that are not 8-bit RGB (``rgb=False``) the views leave out the papers' colour jitter, grayscale and
    solarisation, which are defined for RGB only (:meth:`~geossl.augment.views.ViewConfig.without_rgb_only`); the
    band-wise jitter of the views takes their place, with the band dropout and Gaussian noise of spec
    ``remote_sensing.md`` §2 (:meth:`~geossl.augment.views.ViewConfig.with_spectral_defaults`). These are optical
    defaults: SAR backscatter takes views set by hand (``speckle``).
    """
    if local_crops is not None and "n_local" in inspect.signature(method_cls.default_views).parameters:
        views = method_cls.default_views(image_size, overhead, n_local=local_crops)
    else:
        views = method_cls.default_views(image_size, overhead)
        if local_crops:
            local = dataclasses.replace(views[0], size=local_crop_size(image_size), crop_scale=(0.05, 0.14),
                                        blur=0.5 if views[0].blur > 0 else 0.0)
            views = views[:2] + [local] * local_crops
    return views if rgb else [v.without_rgb_only().with_spectral_defaults() for v in views]


#: Lightning's precision settings that geossl trains with: float32; bfloat16 autocast (CPUs with AVX-512 BF16/AMX
#: and Ampere+ GPUs; the losses stay float32, geossl.losses.precision); float16 autocast with loss scaling (GPUs).
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def validate_config(config: PretrainConfig) -> None:
    """Cheap checks of names and numbers, before any data is read."""
    get_method(config.method)
    if config.regularizer is not None:
        build_regularizer(config.regularizer, regularizer_args(config))
    if config.backbone not in BACKBONES:
        raise unknown_name_error("backbone", config.backbone, BACKBONES)
    if config.optimizer is not None and config.optimizer not in OPTIMIZERS:
        raise unknown_name_error("optimizer", config.optimizer, OPTIMIZERS)
    for key in ("epochs", "batch_size", "accumulate_grad_batches"):
        if int(getattr(config, key)) < 1:
            raise GeosslError(f"--{key.replace('_', '-')} must be at least 1, got {getattr(config, key)}")
    if config.lr is not None and config.lr <= 0:
        raise GeosslError(f"--lr must be positive, got {config.lr}")
    if config.precision not in PRECISIONS:
        raise unknown_name_error("precision", config.precision, PRECISIONS)
    if config.precision == "16-mixed" and _runs_on_cpu(config):
        raise GeosslError("--precision 16-mixed needs a GPU (float16 autocast); on the CPU use --precision bf16-mixed")
    local = config.local_crops
    if local is not None:
        if isinstance(local, bool) or not isinstance(local, int) or local < 0:
            raise GeosslError(f"--local-crops must be a non-negative integer, got {local!r}")
        if local > 0 and not get_method(config.method).supports_local_crops:
            able = sorted(name for name, cls in METHODS.items() if cls.supports_local_crops)
            raise GeosslError(f"method '{config.method}' takes exactly 2 views, no local crops; drop --local-crops or use "
                              f"one of {', '.join(able)}")
        if config.views is not None and len(config.views) != 2 + local:
            raise GeosslError(f"--local-crops {local} conflicts with the {len(config.views)} views of the config; "
                              "give either 'views' or 'local_crops'")


def default_run_dir(config: PretrainConfig, data_name: str) -> Path:
    """``runs/<method>-<data>-<backbone>``: deterministic, so re-running a command resumes it."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in data_name)
    return Path("runs") / f"{config.method}-{safe}-{config.backbone}"


def prepare_run_dir(run_dir: Path, config: PretrainConfig) -> bool:
    """Check ``run_dir`` against ``config``; return True when an existing run must be resumed."""
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise GeosslError(f"{run_dir} exists and is a file; choose another --run-dir")
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        if any(run_dir.iterdir()):
            raise GeosslError(f"{run_dir} exists, is not empty and holds no geossl run (no config.yaml); choose another --run-dir")
        return False
    stored = load_yaml_config(config_file)
    diffs = config_differences(stored, config.to_dict())
    if diffs:
        raise GeosslError(
            f"{run_dir} holds a run with a different configuration ({'; '.join(diffs[:3])}{'; ...' if len(diffs) > 3 else ''}); "
            "pass --run-dir NEW to start another run, or repeat the original options to resume it"
        )
    return (run_dir / "checkpoints" / "last.ckpt").is_file()


def _csv_logger(run_dir: Path):
    """A CSVLogger writing ``run_dir/metrics.csv`` that keeps earlier rows when a run resumes.

    Lightning's CSV writer deletes an existing metrics.csv when it starts; the old rows are read
    first and written back with their header, and the writer is told those keys.
    """
    from lightning.pytorch.loggers import CSVLogger

    path = run_dir / "metrics.csv"
    rows, header = [], []
    if path.is_file():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    logger = CSVLogger(save_dir=str(run_dir), name="", version="")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        experiment = logger.experiment
    if rows:
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        experiment.metrics_keys = sorted(header)
    return logger


def _resolve_workers(config: PretrainConfig, data: DataSplits) -> int:
    if config.num_workers != "auto":
        return int(config.num_workers)
    # In-memory tensors are indexed faster than worker processes can pickle them.
    from geossl.data import TensorImageDataset

    if isinstance(data.train, TensorImageDataset):
        return 0
    return min(4, os.cpu_count() or 1)


def _runs_on_cpu(config: PretrainConfig) -> bool:
    return config.accelerator == "cpu" or (config.accelerator == "auto" and not torch.cuda.is_available())


def _bank(data: DataSplits, size: int, seed: int):
    """The labelled subset of train used as the online kNN bank (at most ``size`` images)."""
    n = len(data.train)
    if n <= size:
        return data.train
    g = torch.Generator().manual_seed(seed)
    return data.train.subset(torch.randperm(n, generator=g)[:size].sort().values)


def pretrain(config: PretrainConfig, *, data: DataSplits | None = None) -> PretrainResult:
    """Pretrain ``config.method`` and write a run directory (resuming an existing one).

    Args:
        config: the configuration (``None`` fields take the method's paper defaults).
        data: already-loaded data; loaded from ``config`` when omitted.

    Returns:
        The run directory, its checkpoints and the last logged metrics.
    """
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from geossl.train.callbacks import ETAProgressBar, Throughput
    from geossl.train.module import PretrainModule

    validate_config(config)
    data = data if data is not None else data_from_config(config)
    config = resolve_config(config, data)
    validate_config(config)
    n_train = len(data.train) + (len(data.unlabeled) if getattr(data, "unlabeled", None) is not None else 0)
    if config.batch_size > n_train:
        raise GeosslError(f"--batch-size {config.batch_size} is larger than the training set ({n_train} images); use --batch-size {n_train} or less")
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config, data.name)
    config = config.merged({"run_dir": str(run_dir)})
    resume = prepare_run_dir(run_dir, config)

    if config.reuse_freed_memory and _runs_on_cpu(config):
        keep_freed_memory()
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = PretrainModule(config.to_dict(), data_info(data))
    held_out = data.val if data.val is not None else data.test
    if data.has_labels and held_out is not None and config.online_eval:
        module.eval_sets = (_bank(data, config.knn_bank_size, config.seed), held_out)

    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_yaml_config(config, run_dir / "config.yaml")
    has_monitor = module.eval_sets is not None
    # Two callbacks: Lightning only refreshes save_last when the top-k checkpoint changed, and
    # last.ckpt must follow every epoch for resumption.
    last_checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False)
    best_checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor="val/knn_top1",
        mode="max",
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    checkpoints = [last_checkpoint] + ([best_checkpoint] if has_monitor else [])
    throughput = Throughput()
    callbacks = [throughput, *checkpoints, LearningRateMonitor(logging_interval="epoch")]
    if config.progress:
        callbacks.append(ETAProgressBar(throughput))
    # Unlabelled extras (STL-10's 100,000 images) join the pretraining set; their label -1 keeps them
    # out of the online probe.
    train_set = data.train if getattr(data, "unlabeled", None) is None else torch.utils.data.ConcatDataset([data.train, data.unlabeled])
    workers = _resolve_workers(config, data)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,  # BatchNorm and the contrastive batch want full batches
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(config.seed),
    )
    trainer = L.Trainer(
        default_root_dir=str(run_dir),
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        precision=config.precision,
        accumulate_grad_batches=config.accumulate_grad_batches,
        gradient_clip_val=config.gradient_clip or None,
        logger=[_csv_logger(run_dir), TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")],
        callbacks=callbacks,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings():
        # Lightning's advice about worker counts and the absence of a validation loop is noise here.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*val_dataloader.*")
        warnings.filterwarnings("ignore", message=".*Checkpoint directory.*exists and is not empty.*")
        # Epochs without an online evaluation (--online-eval-every > 1) have no kNN score to compare.
        warnings.filterwarnings("ignore", message=".*could not find the monitored key.*")
        trainer.fit(module, train_dataloaders=loader, ckpt_path=str(last) if resume else None)
    best = run_dir / "checkpoints" / "best.ckpt"
    best = best if best.is_file() else None
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return PretrainResult(
        run_dir=run_dir, last_checkpoint=last, best_checkpoint=best, metrics=metrics, resumed=resume, is_main_process=trainer.is_global_zero
    )
