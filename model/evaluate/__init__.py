"""``nw2 evaluate``: forecasts of a trained world model against baselines, and linear probes, with a report.

```python
from nw2.model.evaluate import ScoreKey, evaluate, score_keys, score_value
result = evaluate("runs/r1", "runs/demo/store", split="val,test")
result.summary          # {"forecast": {"model": {"mse": {"mean": ..., "by_horizon": {"32": ...}}}, ...},
                        #  "probe": {"modality": {"auroc": ..., ...}, ...}}
score_value(result.summary, ScoreKey("forecast", "model", "mse"))   # the model's MSE, mean over horizons
result.per_window       # polars: one row per window and horizon (for bootstrap intervals over windows)
result.metrics          # everything in result.out / "metrics.json"
```

Modules, one job each: :mod:`.data` (reading a store or corpus), :mod:`.forecast` (the protocol and per-window
scores), :mod:`.baselines`, :mod:`.spectra`, :mod:`.probe`, :mod:`.summary` (the headline numbers as nested
data, and :class:`ScoreKey`), :mod:`.report` and :mod:`.stage` (the flow and the output). See ``docs/evaluate.md``.
"""

from .baselines import AR_ORDER, ar_forecast, last_value, seasonal_naive, seasonal_period, window_mean
from .forecast import METHODS, METRICS, default_horizons, parse_horizons
from .probe import auroc, auroc_ovr, balanced_accuracy, fit_logistic, fit_ridge
from .report import describe
from .spectra import log_spectral_distance, power_spectrum, spectral_correlation
from .stage import REGIME_METRICS, EvalResult, dumps, evaluate
from .summary import (MODEL_METHODS, PROBE_SCORES, SUMMARY_HIGHER_IS_BETTER, ScoreKey, per_window_column,
                      score_keys, score_value)

__all__ = ["evaluate", "EvalResult", "SUMMARY_HIGHER_IS_BETTER", "ScoreKey", "score_keys", "score_value",
           "per_window_column", "MODEL_METHODS", "PROBE_SCORES", "describe", "METHODS",
           "METRICS", "REGIME_METRICS", "AR_ORDER", "default_horizons", "parse_horizons", "last_value",
           "window_mean", "seasonal_period", "seasonal_naive", "ar_forecast", "power_spectrum",
           "log_spectral_distance", "spectral_correlation", "auroc", "auroc_ovr", "balanced_accuracy",
           "fit_logistic", "fit_ridge", "dumps"]
