"""NeuroKit2's physiological simulators as a synthetic generator (``generator: physio``).

Five signals, each one NeuroKit2 function with its own parameters: ``ecg`` (``ecg_simulate``, the ECGSYN
dynamical model), ``ppg`` (``ppg_simulate``), ``rsp`` (``rsp_simulate``), ``eda`` (``eda_simulate``) and ``emg``
(``emg_simulate``). They have no known Lyapunov exponent: their rows carry ``system`` and ``system_params`` but a
null ``true_lyapunov`` and ``regime``. NeuroKit2 is an optional dependency (``pip install 'nw2[synthetic]'``),
imported only when a physio task runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PhysioSignal:
    """One simulator: its NeuroKit2 function, the store's modality, and the parameters a spec may set."""

    function: str
    modality: str
    params: tuple[str, ...]
    """Numeric parameters of the function a spec may set or sweep (the rest keep NeuroKit2's defaults)."""
    fixed: tuple[tuple[str, object], ...] = ()
    """Arguments nw2 always passes (the ECGSYN method: a dynamical model, not a template)."""


SIGNALS: dict[str, PhysioSignal] = {
    "ecg": PhysioSignal("ecg_simulate", "ecg", ("heart_rate", "heart_rate_std", "noise"), (("method", "ecgsyn"),)),
    "ppg": PhysioSignal("ppg_simulate", "ppg", ("heart_rate", "frequency_modulation", "ibi_randomness", "drift",
                                                "motion_amplitude", "powerline_amplitude", "burst_number",
                                                "burst_amplitude")),
    "rsp": PhysioSignal("rsp_simulate", "resp", ("respiratory_rate", "noise")),
    "eda": PhysioSignal("eda_simulate", "eda", ("scr_number", "drift", "noise")),
    "emg": PhysioSignal("emg_simulate", "emg", ("burst_number", "burst_duration", "noise")),
}

#: Shortest simulation in seconds (the first ``n`` samples are kept).
MIN_DURATION_S = 20
#: Parameters whose NeuroKit2 argument is an integer (counts): a sweep's values are rounded to them.
_INTEGER = {"burst_number", "scr_number"}

#: nw2's ready grids (``sweeps: ready``): heart rates, variability, noise and artifacts, each signal over the
#: range its simulator is meant for. ``steps`` values per parameter, all combinations.
READY_GRIDS: dict[str, dict] = {
    "ecg": {"heart_rate": [50, 130], "heart_rate_std": [1, 10], "noise": [0.0, 0.1], "steps": 3},
    "ppg": {"heart_rate": [50, 130], "ibi_randomness": [0.05, 0.4], "motion_amplitude": [0.0, 0.5], "steps": 3},
    "rsp": {"respiratory_rate": [8, 24], "noise": [0.0, 0.1], "steps": 3},
    "eda": {"scr_number": [0, 8], "drift": [-0.05, 0.05], "steps": 3},
    "emg": {"burst_number": [0, 6], "burst_duration": [0.3, 1.5], "steps": 3},
}


def signal_names() -> tuple[str, ...]:
    return tuple(SIGNALS)


def _function(signal: str):
    import neurokit2  # optional: nw2[synthetic]

    return getattr(neurokit2, SIGNALS[signal].function)


def default_params(signal: str) -> dict[str, float]:
    """NeuroKit2's defaults of the settable parameters, read from the function's signature."""
    sig = inspect.signature(_function(signal))
    return {p: float(sig.parameters[p].default) for p in SIGNALS[signal].params}


def resolve_params(signal: str, params: Mapping[str, float]) -> dict[str, float]:
    """The defaults overridden by ``params``; an unknown signal or parameter is a ``ValueError`` naming it."""
    if signal not in SIGNALS:
        raise ValueError(f"unknown physio signal {signal!r} (known: {', '.join(SIGNALS)})")
    unknown = sorted(set(params) - set(SIGNALS[signal].params))
    if unknown:
        raise ValueError(f"{signal}: unknown parameter {unknown[0]!r} (known: {', '.join(SIGNALS[signal].params)})")
    out = {**default_params(signal), **{k: float(v) for k, v in params.items()}}
    return {k: float(round(v)) if k in _INTEGER else v for k, v in sorted(out.items())}


def simulate(signal: str, params: Mapping[str, float], n: int, fs: float, seed: int) -> np.ndarray:
    """``n`` samples at ``fs`` Hz of one simulator with ``params`` (see :func:`resolve_params`), seeded."""
    kwargs = {k: int(v) if k in _INTEGER else float(v) for k, v in resolve_params(signal, params).items()}
    # NeuroKit2 takes an integer rate; duration in whole seconds, cut to n samples below
    rate = int(round(fs))
    if abs(rate - fs) > 1e-9:
        raise ValueError(f"{signal}: NeuroKit2 simulates at an integer sampling rate, not {fs:g} Hz")
    # whole seconds, and at least MIN_DURATION_S: shorter, rsp_simulate returns fewer samples than asked and
    # ppg_simulate averages an empty slice (NeuroKit2 0.3)
    duration = max(int(np.ceil(n / rate)) + 1, MIN_DURATION_S)
    values = _function(signal)(duration=duration, sampling_rate=rate, random_state=seed,
                               **dict(SIGNALS[signal].fixed), **kwargs)
    values = np.asarray(values, dtype=np.float64)[:n]
    if values.size < n or not np.all(np.isfinite(values)):
        raise ValueError(f"{signal}: the simulator returned {values.size} samples, "
                         f"{int(np.count_nonzero(~np.isfinite(values)))} of them not finite")
    return values
