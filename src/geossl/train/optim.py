"""Optimisers and learning-rate schedules for pretraining.

LARS (You, Gitman, Ginsburg 2017) as used by SimCLR/BYOL: SGD with momentum whose step for each
weight matrix is scaled by the trust ratio η‖w‖/‖g + λw‖. Biases and BatchNorm parameters are
excluded from both weight decay and adaptation, as in the SimCLR reference code.

η defaults to 0.02 (solo-learn's recipes) rather than the 0.001 of the LARS paper: with η = 0.001
and SimCLR's lr 0.3 · B/256, a batch of 128 changes each weight matrix by only ~1.5e-4 of its norm
per step, and a CPU-sized schedule of a few hundred steps barely moves the network.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from geossl.errors import GeosslError, unknown_name_error

OPTIMIZERS = ("lars", "sgd", "adamw")


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling.

    Args:
        params: parameters or parameter groups; a group with ``lars_exclude=True`` gets plain
            SGD with momentum (biases, norms).
        lr: learning rate.
        momentum: heavy-ball momentum.
        weight_decay: L2 penalty added to the gradient before the trust ratio.
        trust_coefficient: η.
        eps: guards the ratio against zero norms.
        clip_lr: NVIDIA LARC's "clipping" mode (solo-learn's ``clip_lr``): each layer's learning rate is
            ``min(lr, η‖w‖/‖g + λw‖)`` instead of the default "scaling" mode ``lr · η‖w‖/‖g + λw‖`` (the LARS paper,
            SimCLR and BYOL). The two agree only at lr = 1; for lr < 1 clipping takes larger steps.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.02,
        eps: float = 1e-8,
        clip_lr: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient, eps=eps,
                        lars_exclude=False, clip_lr=clip_lr)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["lars_exclude"]:
                    if group["weight_decay"] > 0:
                        grad = grad.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(grad)
                    ratio = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["trust_coefficient"] * w_norm / (g_norm + group["eps"]),
                        torch.ones_like(w_norm),
                    )
                    if group["clip_lr"]:
                        # LARC clipping: the layer's lr is min(ratio, lr), i.e. lr times min(ratio / lr, 1)
                        ratio = torch.clamp(ratio / group["lr"], max=1.0) if group["lr"] > 0 else ratio
                    grad = grad * ratio
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def parameter_groups(
    module: nn.Module, weight_decay: float, constant_lr: Iterable[str] = (), lr_scales: Mapping[str, float] | None = None
) -> list[dict]:
    """Split parameters: weights of ≥2-D tensors get weight decay; biases and norms do not.

    Args:
        module: the model (an SSL method).
        weight_decay: decay of the ≥2-D weights.
        constant_lr: names of submodules (e.g. ``("predictor",)``) whose learning rate is not decayed after the
            warm-up (SimSiam's predictor, Chen & He 2021, §4.2); their parameters get their own groups, flagged
            ``constant_lr=True`` for :func:`lr_multipliers`.
        lr_scales: submodule name → multiplier of the base learning rate (e.g. ``{"predictor": 10.0}``, a faster
            BYOL predictor); their parameters get their own groups, with ``lr_scale`` for :func:`build_optimizer`.

    Returns:
        Two groups (decay, no decay) first, then the same two for each set of ``constant_lr`` / ``lr_scales``
        modules that has parameters.
    """
    constant_prefixes = tuple(f"{name}." for name in constant_lr)
    scale_prefixes = [(f"{name}.", float(scale)) for name, scale in (lr_scales or {}).items()]
    for name, scale in scale_prefixes:
        if not scale > 0:
            raise GeosslError(f"the learning-rate scale of '{name[:-1]}' must be > 0, got {scale}")
    # (constant, scale, decay) → parameters; the plain groups always exist and come first
    groups: dict[tuple[bool, float, bool], list[nn.Parameter]] = {(False, 1.0, True): [], (False, 1.0, False): []}
    for name, p in module.named_parameters():
        if p.requires_grad:
            scale = next((s for prefix, s in scale_prefixes if name.startswith(prefix)), 1.0)
            groups.setdefault((name.startswith(constant_prefixes), scale, p.ndim > 1), []).append(p)
    names = [name for name, p in module.named_parameters() if p.requires_grad]
    for prefix, _ in scale_prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise GeosslError(f"a learning-rate scale names '{prefix[:-1]}', which holds no trainable parameter of the model")
    out = []
    for (constant, scale, decay), params in groups.items():
        group: dict = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        if not decay:
            group["lars_exclude"] = True
        if constant:
            group["constant_lr"] = True
        if scale != 1.0:
            group["lr_scale"] = scale
        out.append(group)
    return out


def lr_multipliers(groups: list[dict], total_steps: int, warmup_steps: int) -> list:
    """One learning-rate multiplier per parameter group for ``LambdaLR``: :func:`warmup_cosine`, or for groups
    flagged ``constant_lr`` the same warm-up followed by a constant 1."""

    def constant(step: int) -> float:
        return warmup_cosine(step, total_steps, warmup_steps, final_fraction=1.0)

    def decayed(step: int) -> float:
        return warmup_cosine(step, total_steps, warmup_steps)

    return [constant if g.get("constant_lr") else decayed for g in groups]


def build_optimizer(name: str, groups: list[dict], lr: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """Optimiser by name: ``lars``, ``sgd`` (momentum, nesterov off) or ``adamw``.

    A group's ``lr_scale`` (from :func:`parameter_groups`) sets its lr to ``lr × lr_scale``.
    """
    groups = [{**{k: v for k, v in g.items() if k != "lr_scale"}, **({"lr": lr * g["lr_scale"]} if "lr_scale" in g else {})} for g in groups]
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    # Plain torch optimisers do not know the LARS-only key.
    groups = [{k: v for k, v in g.items() if k not in ("lars_exclude", "constant_lr")} for g in groups]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise unknown_name_error("optimizer", name, OPTIMIZERS)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, final_fraction: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up from ~0 to 1, then half-cosine down to ``final_fraction``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
