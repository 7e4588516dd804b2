"""The contract every self-supervised method fulfils (plain PyTorch, no Lightning).

A method owns a backbone, its heads and its loss, declares its default views and
hyperparameters (the paper's, cited in its docstring), and turns a list of views into a loss in
a few lines. The Lightning engine (``geossl.train``) adds optimisation, logging and evaluation.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from geossl.augment.views import ViewConfig


def batch_norm_groups(bn_splits: int, n: int) -> int:
    """How many BatchNorm groups a batch of ``n`` images makes with ``bn_splits`` asked for (MoCo v2's shuffle-BN,
    BYOL's ghost BatchNorm): BatchNorm needs >= 2 samples per group, so a small (last) batch gets fewer groups."""
    return max(1, min(bn_splits, n // 2))


@dataclass
class StepOutput:
    """What a method's training step returns.

    Attributes:
        loss: scalar SSL loss to minimise.
        features: detached backbone features of the first view (B, D), for the online probe.
        embeddings: detached embeddings the loss acts on (B, E), for collapse monitors.
        logs: extra scalars to log (name → value).
        branches: the embeddings of each view WITH their graph, one (B, E) tensor per view (global views only for
            multi-crop methods): what an added regulariser (``--regularizer t-reg``) acts on. ``None`` when the
            method does not expose them (adding a regulariser is then refused).
    """

    loss: torch.Tensor
    features: torch.Tensor
    embeddings: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)
    branches: list[torch.Tensor] | None = None


#: Constructor arguments that are not hyperparameters: the network, and the switch for gathering over processes
#: (the engine leaves it on; plain-PyTorch users turn it off).
NOT_HYPERPARAMETERS = frozenset({"backbone", "gather"})


def constructor_defaults(cls: type) -> dict[str, Any]:
    """The hyperparameters of a method class and their defaults, read from its ``__init__`` signature.

    Every argument but those in :data:`NOT_HYPERPARAMETERS` is a hyperparameter the config may override, so each needs
    a default (the engine builds a method from its defaults alone); the signature is the one place they are written.

    Raises:
        TypeError: a hyperparameter without a default.
    """
    defaults: dict[str, Any] = {}
    for name, parameter in list(inspect.signature(cls.__init__).parameters.items())[1:]:  # [1:]: self
        if name in NOT_HYPERPARAMETERS or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is parameter.empty:
            raise TypeError(f"{cls.__name__}.__init__: give the hyperparameter '{name}' a default (the paper's); "
                            "the engine builds a method from its defaults")
        defaults[name] = parameter.default
    return defaults


#: ``regularizer_defaults`` of the methods whose loss reads the embeddings only through ``z / ‖z‖``: T-REG on the
#: normalised embeddings. On raw z the paper's T-REG weights hold ‖z‖ near γ·c/(2λ) ≈ 150, where such a loss's
#: gradient into z is ~150 times weaker than T-REG's and the regulariser alone drives the encoder (measured on
#: EuroSAT, 10 epochs: BYOL + T-REG on raw z ends below random init; see
#: ``benchmarks/results/transport_ssl_discussion.md``).
SCALE_FREE_TREG: dict[str, dict[str, Any]] = {"t-reg": {"normalize": True}}


class Method(nn.Module):
    """Base class of the SSL methods.

    Subclasses set :attr:`name`, give their constructor the paper's hyperparameters as keyword defaults (read into
    :attr:`defaults`, overridable from the config) and implement :meth:`training_step`. ``self.backbone`` maps
    (B, C, H, W) images to (B, D) features; it is the part kept for downstream use.
    """

    name: ClassVar[str] = ""
    #: Paper defaults of the method's own hyperparameters, read from the constructor's signature for each class
    #: that sets :attr:`name` (:func:`constructor_defaults`); empty on the unnamed bases, which may leave them unset.
    defaults: ClassVar[dict[str, Any]] = {}
    #: Optimisation defaults (optimizer, base lr for batch 256, weight decay, warm-up epochs).
    optim_defaults: ClassVar[dict[str, Any]] = {}
    #: Defaults of a regulariser's arguments when added to this method (``--regularizer NAME``), by regulariser name;
    #: the user's ``regularizer_args`` override them. See :data:`SCALE_FREE_TREG`.
    regularizer_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Submodules whose learning rate is not decayed after the warm-up (SimSiam's predictor); see
    #: :func:`geossl.train.optim.parameter_groups`.
    constant_lr_modules: ClassVar[tuple[str, ...]] = ()
    #: Whether ``training_step`` takes local crops after the 2 global views (multi-crop, ``--local-crops N``); see
    #: :mod:`geossl.methods._multicrop` for how the two-view methods use them.
    supports_local_crops: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # only the registered (named) classes: the shared bases take their heads' sizes without defaults
        if cls.__dict__.get("name"):
            derived = constructor_defaults(cls)
            if "defaults" in cls.__dict__ and cls.__dict__["defaults"] != derived:
                raise TypeError(f"{cls.__name__}.defaults {cls.__dict__['defaults']} disagrees with its __init__ "
                                f"defaults {derived}; drop the attribute (it is read from the signature)")
            cls.defaults = derived

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def lr_scales(self) -> dict[str, float]:
        """Submodule name → multiplier of the base learning rate (none by default; BYOL's ``predictor_lr_scale``);
        see :func:`geossl.train.optim.parameter_groups`."""
        return {}

    @classmethod
    def default_views(cls, image_size: int, overhead: bool) -> list[ViewConfig]:
        """The method's views for images of ``image_size`` px; two identical distributions by default.

        The shared default is :class:`~geossl.augment.views.ViewConfig`'s: crops of scale 0.2-1, colour jitter of
        SimCLR's strength 0.5 with probability 0.8, grayscale 0.2, no blur or solarisation. Methods whose papers
        prescribe other views override this (BYOL, SwAV, DINO, BAM). These are RGB views: on other data the engine
        runs them without their RGB-only operations (:func:`geossl.train.run.default_views`).

        Args:
            image_size: side of the input images.
            overhead: aerial/satellite imagery (adds vertical flips: no canonical orientation).
        """
        view = ViewConfig(size=image_size, vflip=0.5 if overhead else 0.0)
        return [view, view]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, D) of normalised images (B, C, H, W)."""
        return self.backbone(x)

    def training_step(self, views: list[torch.Tensor]) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def on_optimizer_step(self, step: int, total_steps: int) -> None:
        """Hook after each optimiser step (EMA teachers, queues); nothing by default."""
