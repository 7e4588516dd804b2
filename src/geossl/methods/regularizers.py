"""Regularisers that any method can add to its loss (``geossl pretrain --regularizer NAME``).

A regulariser is a loss module applied to each view's embeddings (``StepOutput.branches``, with their graph) and
added to the method's loss. Names are kebab-case; an unknown name lists the known ones.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from geossl.errors import GeosslError, unknown_name_error

#: name -> "module:class" (imported on first use, so the core stays light)
REGULARIZERS: dict[str, str] = {
    # Mordacq, Loiseaux, Kalogeiton, Oudot, "T-REGS", NeurIPS 2025: MST length + sphere term on each view
    "t-reg": "geossl.losses.treg:TREG",
}


def build_regularizer(name: str, args: dict[str, Any] | None = None) -> nn.Module:
    """The regulariser module registered under ``name``, built with ``args``.

    Raises:
        GeosslError: unknown name (with the closest match) or arguments the regulariser does not take.
    """
    if name not in REGULARIZERS:
        raise unknown_name_error("regularizer", name, REGULARIZERS)
    module, cls_name = REGULARIZERS[name].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    try:
        return cls(**(args or {}))
    except TypeError as e:
        raise GeosslError(f"bad regularizer_args for '{name}': {e}; see help({cls.__name__})") from None
