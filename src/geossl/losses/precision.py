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


def _upcast(obj: Any, unit_rows: bool) -> Any:
    if isinstance(obj, torch.Tensor):
        if unit_rows and obj.dtype in HALF_DTYPES:
            return torch.nn.functional.normalize(obj.float(), dim=-1)
        return full_precision(obj)
    if isinstance(obj, list):
        return [_upcast(item, unit_rows) for item in obj]
    if isinstance(obj, tuple):
        return tuple(_upcast(item, unit_rows) for item in obj)
    if isinstance(obj, dict):
        return {key: _upcast(item, unit_rows) for key, item in obj.items()}
    return obj


def float32_loss(fn: F | None = None, *, unit_rows: bool = False) -> Any:
    """Run a loss (a function or a module's ``forward``) in float32 under mixed precision.

    Inside the call autocast is off, and float16/bfloat16 tensor arguments (also inside lists, tuples and dicts)
    are cast to float32; the result is float32. Gradients flow back through the casts in the arguments' dtypes.
    Without autocast and with float32/float64 arguments the call is unchanged (no cast, no context).

    Args:
        fn: the loss; ``@float32_loss`` or ``@float32_loss(unit_rows=True)``.
        unit_rows: the loss takes points on the unit sphere (rows): half-precision arguments, unit only to about
            1e-2 in bfloat16, are re-normalised after the cast so that they are unit to float32 precision
            (float32/float64 arguments are left as given and checked by the loss).
    """
    if fn is None:
        return functools.partial(float32_loss, unit_rows=unit_rows)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tensors = list(_tensors(args)) + list(_tensors(kwargs))
        if not tensors:
            return fn(*args, **kwargs)
        device_type = tensors[0].device.type
        if not torch.is_autocast_enabled(device_type) and not any(t.dtype in HALF_DTYPES for t in tensors):
            return fn(*args, **kwargs)
        with torch.autocast(device_type, enabled=False):
            return fn(*_upcast(args, unit_rows), **_upcast(kwargs, unit_rows))

    return wrapper
