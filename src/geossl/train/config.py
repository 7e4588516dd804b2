"""The pretraining configuration: defaults ← method defaults ← YAML file ← command-line flags.

The fully resolved configuration is written to ``RUN_DIR/config.yaml`` and stored in every
checkpoint, so a run can be resumed, re-evaluated or re-built from its directory alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geossl.augment.views import ViewConfig
from geossl.errors import GeosslError

#: Keys that may change between a run and its resumption without making it a different run.
RUNTIME_KEYS = frozenset({"epochs", "devices", "accelerator", "strategy", "num_workers", "progress", "run_dir", "reuse_freed_memory"})


@dataclass
class PretrainConfig:
    """Everything that defines a pretraining run.

    ``lr`` is the base learning rate for a batch of 256; the optimiser uses
    ``lr × batch_size × accumulate_grad_batches × devices / 256`` (linear scaling, Goyal et al. 2017).
    ``None`` values are filled from the method's paper defaults.
    """

    method: str = "simclr"
    method_args: dict[str, Any] = field(default_factory=dict)
    regularizer: str | None = None  # added to the method's loss on every view's embeddings, e.g. "t-reg"
    regularizer_args: dict[str, Any] = field(default_factory=dict)
    backbone: str = "resnet18"
    small_stem: bool | str = "auto"
    data: str | None = None  # None: the built-in eurosat-sample (unless train_data is given)
    root: str | None = None
    train_data: str | None = None
    test_data: str | None = None
    split: list[float] = field(default_factory=lambda: [0.6, 0.2, 0.2])
    split_seed: int = 0
    image_size: int | None = None
    skip_corrupt: bool = False
    download: bool = False
    epochs: int = 100
    batch_size: int = 256
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    gradient_clip: float | None = None  # max gradient norm; None: the method's default (DINO clips at 3.0), else none
    warmup_epochs: float | str = "auto"
    accumulate_grad_batches: int = 1
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    channels_last: bool = True  # NHWC convolutions: ~20% faster ResNet steps on CPU (oneDNN) and GPU
    num_workers: int | str = "auto"
    # CPU runs on glibc: keep freed activation memory for the next step instead of unmapping it (geossl.cpu_memory)
    reuse_freed_memory: bool = True
    seed: int = 0
    views: list[dict[str, Any]] | None = None
    local_crops: int | None = None  # multi-crop: local crops after the 2 global views; None: the method's default
    online_eval: bool = True
    online_eval_every: int = 1
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_bank_size: int = 20000
    progress: bool = True
    run_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> PretrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            import difflib

            hints = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u, known, n=1)) else u for u in unknown]
            raise GeosslError(f"unknown key(s) in {source}: {', '.join(hints)}")
        return cls(**d)

    def merged(self, overrides: dict[str, Any]) -> PretrainConfig:
        """A copy with the non-None ``overrides`` applied."""
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return PretrainConfig.from_dict(d)

    def effective_lr(self, world: int = 1) -> float:
        assert self.lr is not None
        return self.lr * self.batch_size * self.accumulate_grad_batches * world / 256

    def resolved_warmup_epochs(self) -> float:
        """``auto``: 10 epochs (the SimCLR recipe), at most a tenth of a short schedule."""
        if self.warmup_epochs == "auto":
            return min(10.0, max(0.0, round(self.epochs / 10, 2)))
        return float(self.warmup_epochs)


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict, with one-line errors for the usual mistakes."""
    p = Path(path)
    if not p.is_file():
        raise GeosslError(f"config file {p} does not exist; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise GeosslError(f"config file {p} is not valid YAML{where}; fix its syntax") from None
    if not isinstance(data, dict):
        raise GeosslError(f"config file {p} must hold a mapping of keys to values, got {type(data).__name__}")
    return data


def save_yaml_config(config: PretrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys (outside :data:`RUNTIME_KEYS`) whose values differ, formatted ``key: old → new``.

    Views are compared with every :class:`~geossl.augment.views.ViewConfig` field filled in, so that a run saved before
    a view option existed (whose default changes nothing) still resumes.
    """
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in RUNTIME_KEYS:
            continue
        before, after = old.get(key), new.get(key)
        if key == "views":
            before, after = _complete_views(before), _complete_views(after)
        if before != after:
            diffs.append(f"{key}: {before!r} → {after!r}")
    return diffs


def _complete_views(views: Any) -> Any:
    """``views`` with each view's missing options at their defaults; as given when they are not views."""
    if not isinstance(views, list) or not all(isinstance(v, dict) for v in views):
        return views
    try:
        return [ViewConfig.from_dict(v).to_dict() for v in views]
    except (GeosslError, TypeError):
        return views
