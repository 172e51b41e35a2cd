"""Slow physiological series derived from waveforms: heart rate and inter-beat intervals, respiration rate, the
tonic EDA level, on a regular grid (1 Hz by default), so that minute-level evolution can be forecast from the same
recordings as the waveforms.

The events come from NeuroKit2's published detectors, never hand-written ones:

- **beats** of an ECG: ``nk.ecg_clean`` then ``nk.ecg_peaks`` (NeuroKit's QRS detector), of a PPG: ``nk.ppg_clean``
  then ``nk.ppg_peaks`` (Elgendi et al. 2013); both with NeuroKit's artifact correction (Lipponen & Tarvainen 2019),
  which moves misplaced and inserts missed beats;
- **breaths** of a respiration trace: ``nk.rsp_clean`` then ``nk.rsp_peaks`` (Khodadad et al. 2018); a breath starts
  at each trough (the onset of inhalation);
- the **tonic EDA level**: ``nk.eda_clean`` then ``nk.eda_phasic`` (its ``highpass`` decomposition: the tonic part is
  what a 0.05 Hz low-pass keeps).

From events at times :math:`t_1 < \\dots < t_m` (seconds), the interval :math:`I_k = t_k - t_{k-1}` is credited to
the time of the event that closes it, and a series on the grid :math:`\\tau_j = j / f_{out}` is the linear
interpolation of :math:`(t_k, I_k)` (``ibi``, in seconds) or of :math:`(t_k, 60 / I_k)` (``heart_rate`` in beats
per minute, ``respiration_rate`` in breaths per minute). Intervals outside the physiological range of
:data:`INTERVAL_RANGE` are detector errors and are dropped before interpolating. Grid points before the first
kept interval or after the last one are NaN: nothing is extrapolated. The tonic level is averaged over each grid
step (a block mean, so the 1 Hz series is not aliased).

NeuroKit2 is an optional dependency (``pip install 'nw2[synthetic]'``); asking for a derived series without it
raises an error that says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nw2.core.errors import Nw2Error

__all__ = ["SERIES", "INTERVAL_RANGE", "DerivedSeries", "DeriveError", "derive", "beats", "breaths",
           "interval_series", "tonic_level"]

#: What each derived series is made from, its unit and its modality in a store.
SERIES: dict[str, dict] = {
    "heart_rate": {"from": ("ecg", "ppg"), "unit": "bpm", "modality": "hr"},
    "ibi": {"from": ("ecg", "ppg"), "unit": "s", "modality": "hr"},
    "respiration_rate": {"from": ("resp",), "unit": "breaths/min", "modality": "resp"},
    "eda_tonic": {"from": ("eda",), "unit": "", "modality": "eda"},  # the source's unit (uS, mostly)
}
#: Plausible intervals between events, in seconds: beats 0.25-2.0 s (30-240 bpm), breaths 1-20 s (3-60 per min).
INTERVAL_RANGE = {"beat": (0.25, 2.0), "breath": (1.0, 20.0)}
#: The fewest intervals a series is made from.
MIN_INTERVALS = 2


class DeriveError(Nw2Error):
    """A derived series that cannot be made from this signal (wrong modality, too short, no events)."""


@dataclass(frozen=True)
class DerivedSeries:
    """A derived series on a regular grid: ``values[j]`` at ``j / fs`` seconds from the start of the signal."""

    name: str
    values: np.ndarray
    fs: float
    unit: str
    method: str
    events: np.ndarray | None = None
    """Times (s) of the beats or breath onsets it was made from; ``None`` for the tonic level."""


def _neurokit():
    try:
        import neurokit2
    except ImportError as err:  # pragma: no cover - the test extra installs it
        raise DeriveError("derived series need NeuroKit2: pip install 'nw2[synthetic]'") from err
    return neurokit2


def _checked(signal, fs) -> tuple[np.ndarray, float]:
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise DeriveError(f"expected one channel (a 1-D signal), got shape {x.shape}")
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise DeriveError(f"sampling rate must be a positive number of Hz, got {fs!r}")
    if not np.isfinite(x).all():
        raise DeriveError(f"{int((~np.isfinite(x)).sum())} of {x.size} samples are NaN or infinite; fill or cut them first")
    if x.size < 2 or np.ptp(x) == 0:
        raise DeriveError(f"the signal is flat ({x.size} samples of one value): nothing to derive")
    return x, fs


def _detect(what: str, run):
    """Run a NeuroKit2 detector; its failures (an IndexError on a signal without events, ...) become one
    :class:`DeriveError` naming the detector."""
    try:
        return run()
    except DeriveError:
        raise
    except Exception as err:  # the library's own checks and failures on degenerate input
        raise DeriveError(f"{what} failed on this signal ({type(err).__name__}: {err})") from None


def beats(signal, fs: float, modality: str) -> np.ndarray:
    """Sample indices of the heart beats of an ECG (R peaks) or a PPG (systolic peaks)."""
    x, fs = _checked(signal, fs)
    nk = _neurokit()
    if modality == "ecg":
        _, info = _detect("neurokit2.ecg_peaks", lambda: nk.ecg_peaks(nk.ecg_clean(x, sampling_rate=fs),
                                                                      sampling_rate=fs, correct_artifacts=True))
        return np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
    if modality == "ppg":
        _, info = _detect("neurokit2.ppg_peaks", lambda: nk.ppg_peaks(nk.ppg_clean(x, sampling_rate=fs),
                                                                      sampling_rate=fs, correct_artifacts=True))
        return np.asarray(info["PPG_Peaks"], dtype=np.int64)
    raise DeriveError(f"beats are found in ecg or ppg, not {modality!r}")


def breaths(signal, fs: float) -> np.ndarray:
    """Sample indices of the breath onsets (troughs) of a respiration trace."""
    x, fs = _checked(signal, fs)
    nk = _neurokit()
    _, info = _detect("neurokit2.rsp_peaks", lambda: nk.rsp_peaks(nk.rsp_clean(x, sampling_rate=fs), sampling_rate=fs))
    return np.asarray(info["RSP_Troughs"], dtype=np.int64)


def interval_series(events_s: np.ndarray, duration_s: float, out_fs: float, kind: str, as_rate: bool
                    ) -> np.ndarray:
    """Intervals between events (``as_rate``: 60 / interval) linearly interpolated onto ``j / out_fs`` for
    ``j < duration_s * out_fs``; NaN outside the kept intervals. ``kind`` (``beat``/``breath``) sets the
    plausible range of :data:`INTERVAL_RANGE`."""
    lo, hi = INTERVAL_RANGE[kind]
    t = np.asarray(events_s, dtype=np.float64)
    grid = np.arange(int(np.floor(duration_s * out_fs + 1e-9))) / out_fs
    out = np.full(grid.size, np.nan)
    if t.size < MIN_INTERVALS + 1:
        return out
    iv = np.diff(t)
    keep = (iv >= lo) & (iv <= hi)
    if keep.sum() < MIN_INTERVALS:
        return out
    at, value = t[1:][keep], iv[keep]
    if as_rate:
        value = 60.0 / value
    inside = (grid >= at[0]) & (grid <= at[-1])
    out[inside] = np.interp(grid[inside], at, value)
    return out


def tonic_level(signal, fs: float, out_fs: float) -> np.ndarray:
    """The tonic EDA level, averaged over each ``1 / out_fs`` step (the last partial step is dropped)."""
    x, fs = _checked(signal, fs)
    nk = _neurokit()
    phasic = _detect("neurokit2.eda_phasic", lambda: nk.eda_phasic(nk.eda_clean(x, sampling_rate=fs),
                                                                    sampling_rate=fs, method="highpass"))
    tonic = np.asarray(phasic["EDA_Tonic"], dtype=np.float64)
    n = int(np.floor(x.size / fs * out_fs + 1e-9))
    edges = np.floor(np.arange(n + 1) * fs / out_fs + 1e-9).astype(np.int64)
    sums = np.concatenate([[0.0], np.cumsum(tonic)])
    counts = np.diff(edges)
    return (sums[edges[1:]] - sums[edges[:-1]]) / np.maximum(counts, 1)


def derive(signal, fs: float, modality: str, name: str, out_fs: float = 1.0, unit: str = "") -> DerivedSeries:
    """The derived series ``name`` (:data:`SERIES`) of one channel sampled at ``fs`` Hz, on a grid of
    ``out_fs`` Hz; ``unit`` is the channel's (the tonic level keeps it). :class:`DeriveError` with the reason
    when the series cannot be made from this channel."""
    if name not in SERIES:
        raise DeriveError(f"unknown derived series {name!r} (known: {', '.join(SERIES)})")
    made_from = SERIES[name]["from"]
    if modality not in made_from:
        raise DeriveError(f"{name} is derived from {' or '.join(made_from)}, not {modality!r}")
    out_fs = float(out_fs)
    if not np.isfinite(out_fs) or out_fs <= 0:
        raise DeriveError(f"the derived series' rate must be a positive number of Hz, got {out_fs!r}")
    x, fs = _checked(signal, fs)
    if out_fs >= fs:
        raise DeriveError(f"the derived series' rate ({out_fs:g} Hz) must be below the signal's ({fs:g} Hz)")
    duration = x.size / fs
    if name == "eda_tonic":
        return DerivedSeries(name, tonic_level(x, fs, out_fs), out_fs, unit, "neurokit2.eda_phasic(highpass)")
    if name == "respiration_rate":
        idx, kind, method = breaths(x, fs), "breath", "neurokit2.rsp_peaks(khodadad2018) troughs"
    else:
        idx, kind = beats(x, fs, modality), "beat"
        method = "neurokit2.ecg_peaks(neurokit)" if modality == "ecg" else "neurokit2.ppg_peaks(elgendi)"
    events = idx / fs
    values = interval_series(events, duration, out_fs, kind, as_rate=name != "ibi")
    if not np.isfinite(values).any():
        raise DeriveError(f"{name}: too few plausible {kind} intervals in {duration:.1f} s "
                          f"({len(events)} {kind}s found)")
    return DerivedSeries(name, values, out_fs, SERIES[name]["unit"], method, events)
