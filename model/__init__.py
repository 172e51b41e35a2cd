"""The nw2 world model: configuration, network and test-time adaptation.

The configurations are imported at once; the network and the adaptation, which import torch, on first use
(PEP 562), so that the command line, which reads the configs' fields to make ``nw2 pretrain``'s options,
starts without torch (and so do the processes that import it, such as Dask's spawned workers)."""

from __future__ import annotations

import importlib
from typing import Any

from .config import PRESETS, ModelConfig, from_preset

__all__ = ["Model", "ModelConfig", "PRESETS", "from_preset", "adapted_step", "fit_linear_transition"]

_LAZY = {"Model": ".network", "adapted_step": ".adapt", "fit_linear_transition": ".adapt"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
