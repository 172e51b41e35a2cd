"""``nw2 evaluate``: forecasts of a trained world model against baselines, and linear probes, with a report.

```python
from nw2.model.evaluate import EvalConfig, ScoreKey, evaluate, score_keys, score_value
result = evaluate("runs/r1", "runs/demo/store", EvalConfig(split="val,test"))
result.summary          # {"forecast": {"model": {"mse": {"mean": ..., "by_horizon": {"32": ...}}}, ...},
                        #  "probe": {"modality": {"auroc": ..., ...}, ...}}
score_value(result.summary, ScoreKey("forecast", "model", "mse"))   # the model's MSE, mean over horizons
result.per_window       # polars: one row per window and horizon (for bootstrap intervals over windows)
result.metrics          # everything in result.out / "metrics.json"
```

Modules, one job each: :mod:`.config` (:class:`EvalConfig`, the settings), :mod:`.data` (reading a store or
corpus), :mod:`.forecast` (the protocol and per-window scores), :mod:`.baselines`, :mod:`.spectra`,
:mod:`.probe`, :mod:`.summary` (the headline numbers as nested data, and :class:`ScoreKey`), :mod:`.report`
and :mod:`.stage` (the flow and the output). See ``docs/evaluate.md``.

:class:`EvalConfig` is imported at once; everything else, which imports torch, on first use (PEP 562), so
that the command line, which reads EvalConfig's fields to make ``nw2 evaluate``'s options, starts without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import EvalConfig

_LAZY = {
    ".baselines": ("AR_ORDER", "ar_forecast", "last_value", "seasonal_naive", "seasonal_period", "window_mean"),
    ".forecast": ("METHODS", "METRICS", "default_horizons", "parse_horizons"),
    ".probe": ("auroc", "auroc_ovr", "balanced_accuracy", "fit_logistic", "fit_ridge"),
    ".report": ("describe",),
    ".spectra": ("log_spectral_distance", "power_spectrum", "spectral_correlation"),
    ".stage": ("REGIME_METRICS", "EvalResult", "dumps", "evaluate"),
    ".summary": ("MODEL_METHODS", "PROBE_SCORES", "SUMMARY_HIGHER_IS_BETTER", "ScoreKey", "per_window_column",
                 "score_keys", "score_value"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["EvalConfig", "evaluate", "EvalResult", "SUMMARY_HIGHER_IS_BETTER", "ScoreKey", "score_keys",
           "score_value", "per_window_column", "MODEL_METHODS", "PROBE_SCORES", "describe", "METHODS",
           "METRICS", "REGIME_METRICS", "AR_ORDER", "default_horizons", "parse_horizons", "last_value",
           "window_mean", "seasonal_period", "seasonal_naive", "ar_forecast", "power_spectrum",
           "log_spectral_distance", "spectral_correlation", "auroc", "auroc_ovr", "balanced_accuracy",
           "fit_logistic", "fit_ridge", "dumps"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
