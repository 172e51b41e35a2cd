"""The evaluation summary (``metrics.json``'s ``summary``, ``EvalResult.summary``) as nested data, and a typed
name for one of its scores.

Shape (``docs/evaluate.md``)::

    {"forecast": {"model":     {metric: {"mean": x, "by_horizon": {"<h>": x, ...}}, ...},
                  "adapted":   {metric: {...}, ...},                # when evaluated with adaptation
                  "baselines": {name: {"mse": {...}}}},             # the best baseline by MSE: the reference
     "probe":    {task: {score: x, ...}, ...}}                       # auroc, balanced_accuracy | r2

Only defined values appear. Readers walk this structure (:func:`score_keys`, :func:`score_value`); no key is
ever a string to be parsed. Whether a larger value is better is a property of the metric or probe score
(:data:`SUMMARY_HIGHER_IS_BETTER`, :attr:`ScoreKey.higher_is_better`).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import baselines
from .forecast import METRICS
from .trained import TRAINED_BASELINES

__all__ = ["SUMMARY_HIGHER_IS_BETTER", "PROBE_SCORES", "MODEL_METHODS", "ScoreKey", "build_summary",
           "score_keys", "score_value", "per_window_column"]

#: Whether a larger value is better, per forecast metric and per probe score.
SUMMARY_HIGHER_IS_BETTER: dict[str, bool] = {
    "mse": False, "mae": False, "mae_physical": False, "lsd": False, "spectral_corr": True,
    "latent_distance": False, "auroc": True, "balanced_accuracy": True, "r2": True, "pearson": True,
}
#: The probe scores the summary carries, in order (classification: auroc, balanced_accuracy; regression: r2).
PROBE_SCORES = ("auroc", "balanced_accuracy", "r2")
#: The model's own forecasters in the summary (``forecast.baselines`` holds the reference).
MODEL_METHODS = ("model", "adapted")
SECTIONS = ("forecast", "probe")


@dataclass(frozen=True)
class ScoreKey:
    """One score of the summary.

    ``section``: ``"forecast"`` or ``"probe"``. ``name``: the forecaster (``model``, ``adapted`` or a baseline
    such as ``ar``) or the probe task (``modality``, ``label_<dataset>``, ``largest_lyapunov`` ...).
    ``metric``: a forecast metric (``mse`` ...) or a probe score (``auroc`` ...). ``horizon``: forecast only;
    that horizon's value, or ``None`` for the mean over horizons."""

    section: str
    name: str
    metric: str
    horizon: int | None = None

    def __post_init__(self):
        if self.section not in SECTIONS:
            raise ValueError(f"unknown summary section {self.section!r}")
        if self.metric not in SUMMARY_HIGHER_IS_BETTER:
            raise ValueError(f"unknown summary metric {self.metric!r}")
        if self.horizon is not None and self.section != "forecast":
            raise ValueError("only a forecast score has a horizon")

    @property
    def higher_is_better(self) -> bool:
        return SUMMARY_HIGHER_IS_BETTER[self.metric]

    @property
    def is_baseline(self) -> bool:
        """A baseline's forecast score: the same for every model evaluated on the same windows."""
        return self.section == "forecast" and self.name not in MODEL_METHODS

    @property
    def label(self) -> str:
        """A short display name (``mse``, ``mse_adapted``, ``probe_modality_auroc``, ``baseline_ar_mse``, with
        `` at horizon H`` for one horizon); made from the fields for reports, never parsed back."""
        return self._base_label() if self.horizon is None else f"{self._base_label()} at horizon {self.horizon}"

    def _base_label(self) -> str:
        if self.section == "probe":
            return f"probe_{self.name}_{self.metric}"
        if self.name in MODEL_METHODS:
            return self.metric if self.name == "model" else f"{self.metric}_{self.name}"
        return f"baseline_{self.name}_{self.metric}"

    def to_dict(self) -> dict:
        return {"section": self.section, "name": self.name, "metric": self.metric, "horizon": self.horizon}

    @classmethod
    def from_dict(cls, d: dict) -> "ScoreKey":
        return cls(d["section"], d["name"], d["metric"], d.get("horizon"))

    def sort_key(self) -> tuple:
        """Report order: by :attr:`label` (so ``mse`` and ``mse_adapted`` sit together), then the horizon."""
        return (self._base_label(), -1 if self.horizon is None else self.horizon, self.section, self.name,
                self.metric)


def _score(mean, by_horizon: dict) -> dict:
    return {"mean": mean, "by_horizon": {str(h): v for h, v in by_horizon.items() if v is not None}}


def build_summary(overall: dict, by_horizon: list[dict], adapt: bool, best: str | None,
                  probe_section: dict) -> dict:
    """The summary from ``forecast.overall`` ({method: {metric: mean over horizons}}), ``forecast.by_horizon``
    ([{horizon, method: {metric: value}}]), whether adaptation ran, the best baseline by MSE and the probe
    section. The numbers are those of ``overall``, ``by_horizon`` and the probe tasks, unchanged."""

    def method_scores(method: str, metrics) -> dict:
        out = {}
        for key in metrics:
            if overall[method][key] is not None:
                out[key] = _score(overall[method][key], {e["horizon"]: e[method][key] for e in by_horizon})
        return out

    forecast: dict = {"model": method_scores("model", METRICS)}
    if adapt:
        adapted = method_scores("adapted", METRICS)
        if adapted:
            forecast["adapted"] = adapted
    if best is not None:
        forecast["baselines"] = {best: method_scores(best, ("mse",))}  # the reference level the model should beat
    probe = {}
    for task, info in probe_section.get("tasks", {}).items():
        scores = {s: info[s] for s in PROBE_SCORES if info.get(s) is not None}
        if scores:
            probe[task] = scores
    return {"forecast": forecast, "probe": probe}


def score_keys(summary: dict, horizons: bool = False) -> list[ScoreKey]:
    """Every score in ``summary``, in report order (:meth:`ScoreKey.sort_key`); with ``horizons``, each
    forecast score's per-horizon values too."""
    keys = []
    fc = summary.get("forecast", {})

    def add(name: str, scores: dict) -> None:
        for metric, score in scores.items():
            keys.append(ScoreKey("forecast", name, metric))
            if horizons:
                keys.extend(ScoreKey("forecast", name, metric, int(h)) for h in score.get("by_horizon", {}))

    for method in MODEL_METHODS:
        add(method, fc.get(method, {}))
    for name, scores in fc.get("baselines", {}).items():
        add(name, scores)
    for task, scores in summary.get("probe", {}).items():
        keys.extend(ScoreKey("probe", task, score) for score in scores)
    return sorted(keys, key=ScoreKey.sort_key)


def score_value(summary: dict, key: ScoreKey) -> float | None:
    """The value of ``key`` in ``summary``; ``None`` when the summary does not hold it."""
    if key.section == "probe":
        return summary.get("probe", {}).get(key.name, {}).get(key.metric)
    fc = summary.get("forecast", {})
    scores = fc.get(key.name) if key.name in MODEL_METHODS else fc.get("baselines", {}).get(key.name)
    score = (scores or {}).get(key.metric)
    if score is None:
        return None
    return score["mean"] if key.horizon is None else score.get("by_horizon", {}).get(str(key.horizon))


def per_window_column(method: str, metric: str) -> str:
    """The column of ``EvalResult.per_window`` holding ``metric`` of forecaster ``method``: the model's under
    the metric's name, every other forecaster's as ``<metric>_<method>``."""
    if method not in MODEL_METHODS + ("without_interventions",) + baselines.BASELINES + TRAINED_BASELINES:
        raise ValueError(f"unknown forecaster {method!r}")
    return metric if method == "model" else f"{metric}_{method}"
