"""Load a pretrained encoder from a run directory or a checkpoint file, without Lightning.

A geossl checkpoint stores the resolved config and the data description in its
``hyper_parameters``, so the encoder is rebuilt from the file alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from geossl.augment.views import Normalization
from geossl.errors import GeosslError
from geossl.train.config import PretrainConfig


@dataclass
class LoadedEncoder:
    """A backbone ready for feature extraction.

    Attributes:
        backbone: module (B, C, H, W) → (B, D), in eval mode.
        normalization: the preprocessing of its training data.
        config: the run's configuration.
        data_info: the training data description (bands, size, classes, split).
        checkpoint: the file it came from (None for a random-init encoder).
        epoch: epochs trained (0 for random init).
        layer: ``backbone`` (features before the projector, the default), ``projector`` (its output, where the
            SSL loss acts; ``backbone`` is then the backbone followed by the projector) or ``teacher`` (the EMA
            teacher's backbone of BYOL, MoCo, DINO or BAM, loaded into ``backbone``).
    """

    backbone: nn.Module
    normalization: Normalization
    config: PretrainConfig
    data_info: dict[str, Any]
    checkpoint: Path | None
    epoch: int
    layer: str = "backbone"


LAYERS = ("backbone", "projector", "teacher")

#: Per layer, (checkpoint part, method attribute) pairs: the weights under ``method.PART.`` go into that attribute.
#: The teacher's backbone has the student's architecture, so its weights are loaded into ``method.backbone``.
_CHECKPOINT_PARTS = {
    "backbone": (("backbone", "backbone"),),
    "projector": (("backbone", "backbone"), ("projector", "projector")),
    "teacher": (("teacher_backbone", "backbone"),),
}


def has_teacher(method: nn.Module) -> bool:
    """Whether ``method`` keeps an EMA teacher backbone (``teacher_backbone``: BYOL, MoCo, DINO, BAM with a teacher)."""
    return isinstance(getattr(method, "teacher_backbone", None), nn.Module)


def _encoder_module(method: nn.Module, layer: str, method_name: str) -> nn.Module:
    """The module whose output is the representation at ``layer``, in eval mode."""
    if layer not in LAYERS:
        from geossl.errors import unknown_name_error

        raise unknown_name_error("layer", layer, LAYERS)
    if layer == "teacher" and not has_teacher(method):
        raise GeosslError(f"method '{method_name}' has no EMA teacher (BYOL, MoCo, DINO and BAM have one); use --layer backbone")
    if layer in ("backbone", "teacher"):
        return method.backbone.eval()
    projector = getattr(method, "projector", None)
    if not isinstance(projector, nn.Module):
        raise GeosslError(f"method '{method_name}' has no projector module; use --layer backbone")
    return nn.Sequential(method.backbone, projector).eval()


def resolve_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """A checkpoint file from a path that is either a ``.ckpt`` file or a run directory.

    In a run directory, ``best.ckpt`` (best online kNN) is preferred, then ``last.ckpt``.
    """
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        order = ["best.ckpt", "last.ckpt"] if prefer == "best" else ["last.ckpt", "best.ckpt"]
        for name in order:
            if (p / "checkpoints" / name).is_file():
                return p / "checkpoints" / name
        raise GeosslError(f"{p} holds no checkpoint (looked for checkpoints/best.ckpt and checkpoints/last.ckpt); pretrain first or pass a .ckpt file")
    raise GeosslError(f"{p} does not exist; pass a run directory (runs/NAME) or a .ckpt file")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """``torch.load`` with a one-line error for files that are not geossl checkpoints."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise GeosslError(f"{path} is not a readable checkpoint ({type(e).__name__}); pass a .ckpt written by geossl pretrain") from None
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if "config" not in hp or "data_info" not in hp:
        raise GeosslError(f"{path} is not a geossl checkpoint (no config in its hyper_parameters); pass a .ckpt written by geossl pretrain")
    return ckpt


def load_encoder(path: str | Path, *, random_init: bool = False, seed: int = 0, prefer: str = "best",
                 layer: str = "backbone") -> LoadedEncoder:
    """Rebuild the backbone of a run and load its weights (or keep a random init).

    Args:
        path: run directory or ``.ckpt`` file.
        random_init: build the same architecture with fresh random weights (the baseline).
        seed: seed of the random initialisation.
        prefer: ``best`` or ``last`` checkpoint when ``path`` is a run directory.
        layer: ``backbone`` or ``projector`` (see :class:`LoadedEncoder`).
    """
    from geossl.train.module import build_method, normalization_from_info

    ckpt_path = resolve_checkpoint(path, prefer)
    ckpt = read_checkpoint(ckpt_path)
    hp = ckpt["hyper_parameters"]
    config = PretrainConfig.from_dict(hp["config"])
    info = hp["data_info"]
    torch.manual_seed(seed)
    method = build_method(config, info)
    if random_init:
        return LoadedEncoder(_encoder_module(method, layer, config.method), normalization_from_info(info), config, info, None, 0, layer)
    encoder = _encoder_module(method, layer, config.method)  # checks the layer (and that a teacher exists)
    for part, attribute in _CHECKPOINT_PARTS[layer]:
        prefix = f"method.{part}."
        state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        module = getattr(method, attribute, None)
        if isinstance(module, nn.Module):
            module.load_state_dict(state)
    return LoadedEncoder(
        backbone=encoder,
        normalization=normalization_from_info(info),
        config=config,
        data_info=info,
        checkpoint=ckpt_path,
        epoch=int(ckpt.get("epoch", -1)) + 1,
        layer=layer,
    )


def random_init_like(encoder: LoadedEncoder, seed: int = 0) -> LoadedEncoder:
    """The same architecture as ``encoder`` with fresh random weights (the baseline), without re-reading its file."""
    from geossl.train.module import build_method

    torch.manual_seed(seed)
    method = build_method(encoder.config, encoder.data_info)
    return LoadedEncoder(_encoder_module(method, encoder.layer, encoder.config.method), encoder.normalization, encoder.config,
                         encoder.data_info, None, 0, encoder.layer)
