"""The metric suite: which metrics exist, their parameters, and all of them on one window.

``measure`` is what the stage calls per window: it coerces the window once, shares the embedding and
the neighbour search between the Lyapunov exponent and the correlation dimension, and never raises
for a bad window: an undefined metric is ``nan`` with a :class:`Reason` (a kind from
:data:`~pipeline.metrics._common.UNDEFINED_KINDS` and a short detail).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from nw2.pipeline.metrics._common import Reason, Undefined, as_signal, check_fs
from nw2.pipeline.metrics.chaos01 import chaos_01
from nw2.pipeline.metrics.dynamics import correlation_dimension, largest_lyapunov, lyapunov_and_dimension
from nw2.pipeline.metrics.entropy import (lempel_ziv, permutation_entropy, sample_entropy, spectral_entropy,
                                      svd_entropy)
from nw2.pipeline.metrics.fractal import higuchi_fd, katz_fd, petrosian_fd
from nw2.pipeline.metrics.scaling import dfa, hurst_rs

#: Every metric, in the order of the store's columns.
METRICS: dict[str, Callable[..., float]] = {f.__name__: f for f in (
    largest_lyapunov, correlation_dimension, sample_entropy, permutation_entropy, spectral_entropy,
    svd_entropy, lempel_ziv, hurst_rs, dfa, higuchi_fd, katz_fd, petrosian_fd, chaos_01)}

ENGINES = ("numba", "reference")

#: The parameters that fix the delay embedding: the Lyapunov exponent and the correlation dimension
#: share one neighbour search only when they agree on these.
_EMBEDDING = ("emb_dim", "lag", "min_tsep")


def defaults(name: str) -> dict[str, object]:
    """The keyword parameters of metric ``name`` and their defaults (everything after ``x, fs``)."""
    return dict(_defaults(name))


@functools.lru_cache(maxsize=None)
def _defaults(name: str) -> tuple[tuple[str, object], ...]:
    # Cached: measure() resolves parameters for every window, and inspect.signature is not free.
    sig = inspect.signature(METRICS[name].strict)
    return tuple((p.name, p.default) for p in list(sig.parameters.values())[2:])


def check_selection(names: Iterable[str] | None, params: dict | None, engine: str = "numba") -> list[str]:
    """Validate metric names, per-metric parameters and the engine; return the names in column order.
    Raises ``ValueError`` naming the first problem."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r} (valid: {', '.join(ENGINES)})")
    chosen = list(METRICS) if names is None else list(dict.fromkeys(names))
    if not chosen:
        raise ValueError("no metric selected")
    unknown = [n for n in chosen if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r} (valid: {', '.join(METRICS)})")
    for name, given in (params or {}).items():
        if name not in METRICS:
            raise ValueError(f"params: unknown metric {name!r} (valid: {', '.join(METRICS)})")
        if not isinstance(given, dict):
            raise ValueError(f"params.{name}: expected a mapping of parameter names to values")
        allowed = defaults(name)
        bad = [p for p in given if p not in allowed]
        if bad:
            raise ValueError(f"params.{name}: unknown parameter {bad[0]!r} (valid: {', '.join(allowed) or 'none'})")
    return [n for n in METRICS if n in chosen]


def resolved_params(names: Iterable[str], params: dict | None) -> dict[str, dict[str, object]]:
    """Each metric's full parameter set: its defaults overridden by ``params``."""
    params = params or {}
    return {n: {**defaults(n), **params.get(n, {})} for n in names}


@dataclass
class Measurement:
    """The metrics of one window: values (``nan`` where undefined) and why each ``nan`` is one."""

    values: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, Reason] = field(default_factory=dict)

    def set(self, name: str, value: float | None, reason: Reason | None = None) -> None:
        if reason is None and (value is None or not np.isfinite(value)):
            reason = Reason("non_finite_result", "non-finite result")
        if reason is not None:
            self.values[name], self.reasons[name] = float("nan"), reason
        else:
            self.values[name] = float(value)


def _strict(name: str, x: np.ndarray, fs: float, params: dict, out: Measurement) -> None:
    try:
        out.set(name, METRICS[name].strict(x, fs, **params))
    except Undefined as why:
        out.set(name, None, why.reason)


def measure(x, fs: float, metrics: Iterable[str] | None = None, params: dict | None = None) -> Measurement:
    """All selected metrics of one window, with a reason for every undefined one.

    Parameters
    ----------
    x : array_like
        The window (1-D; float32/float64/int, read-only is fine).
    fs : float
        Its sampling rate in Hz.
    metrics : iterable of str, optional
        Names from :data:`METRICS`; all of them by default.
    params : dict, optional
        ``{metric: {parameter: value}}`` overriding the defaults.
    """
    names = check_selection(metrics, params)
    x, fs = as_signal(x), check_fs(fs)
    full = resolved_params(names, params)
    out = Measurement()
    pair = ("largest_lyapunov", "correlation_dimension")
    shared = all(n in full for n in pair) and all(
        full[pair[0]][k] == full[pair[1]][k] for k in _EMBEDDING)
    if shared:
        lyap, dim = full[pair[0]], full[pair[1]]
        try:
            values = lyapunov_and_dimension(x, fs, **{k: lyap[k] for k in _EMBEDDING},
                                            trajectory_len=lyap["trajectory_len"], rvals=dim["rvals"])
            for name, value, slot in zip(pair, values, ("lyapunov", "dimension")):
                out.set(name, value, values.reasons.get(slot))
        except Undefined as why:
            for name in pair:
                out.set(name, None, why.reason)
    for name in names:
        if shared and name in pair:
            continue
        _strict(name, x, fs, full[name], out)
    out.values = {n: out.values[n] for n in names}
    return out


def compute_all(x, fs: float, metrics: Iterable[str] | None = None, params: dict | None = None) -> dict[str, float]:
    """``{metric: value}`` for one window; ``nan`` where a metric is undefined (see :func:`measure`
    for the reasons)."""
    return measure(x, fs, metrics, params).values
