"""Losses in float32 under mixed precision.

Under ``torch.autocast`` (``geossl pretrain --precision bf16-mixed`` or ``16-mixed``) the heads' outputs arrive in
bfloat16/float16, and the matmuls inside a loss would run in that precision too. bfloat16 keeps 8 significant bits:
a cosine similarity near 1 is off by up to 4e-3, which a temperature of 0.1 (NT-Xent, SwAV) or 0.04 (DINO's
teacher) turns into 0.04-0.1 of a logit, and batch statistics, SVDs and minimum spanning trees fare worse (``pdist``
has no bfloat16 kernel). Mixed-precision recipes keep the loss in float32 (Micikevicius et al., "Mixed Precision
Training", ICLR 2018, §3.3: reductions in float32), so every loss of :mod:`geossl.losses` is wrapped by
:func:`float32_loss`: the backbone and heads run in half precision where they are fast, the loss in float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

__all__ = ["HALF_DTYPES", "float32_loss", "full_precision"]

HALF_DTYPES = (torch.float16, torch.bfloat16)

F = TypeVar("F", bound=Callable[..., Any])


def full_precision(z: torch.Tensor) -> torch.Tensor:
    """``z`` in float32 if it is float16/bfloat16 (mixed precision), unchanged otherwise (float32, float64)."""
    return z.float() if z.dtype in HALF_DTYPES else z


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _upcast(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return full_precision(obj)
    if isinstance(obj, list):
        return [_upcast(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(_upcast(item) for item in obj)
    if isinstance(obj, dict):
        return {key: _upcast(item) for key, item in obj.items()}
    return obj


def float32_loss(fn: F) -> F:
    """Run a loss (a function or a module's ``forward``) in float32 under mixed precision.

    Inside the call autocast is off, and float16/bfloat16 tensor arguments (also inside lists, tuples and dicts)
    are cast to float32; the result is float32. Gradients flow back through the casts in the arguments' dtypes.
    Without autocast and with float32/float64 arguments the call is unchanged (no cast, no context).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tensors = list(_tensors(args)) + list(_tensors(kwargs))
        if not tensors:
            return fn(*args, **kwargs)
        device_type = tensors[0].device.type
        if not torch.is_autocast_enabled(device_type) and not any(t.dtype in HALF_DTYPES for t in tensors):
            return fn(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return fn(*_upcast(args), **_upcast(kwargs))

    return wrapper  # type: ignore[return-value]
