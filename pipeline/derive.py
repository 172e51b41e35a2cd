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
the time of the event that closes it, and a series on the grid :math:`\\tau_j = j / f_{out}` (whole multiples from
the start of the recording, so the pieces of one recording share one grid) is the linear
interpolation of :math:`(t_k, I_k)` (``ibi``, in seconds) or of :math:`(t_k, 60 / I_k)` (``heart_rate`` in beats
per minute, ``respiration_rate`` in breaths per minute). Intervals outside the physiological range of
:data:`INTERVAL_RANGE` are detector errors and are dropped before interpolating. Grid points before the first
kept interval or after the last one are NaN: nothing is extrapolated. The tonic level is averaged over each grid
step (a block mean, so the 1 Hz series is not aliased).

NeuroKit2 is an optional dependency (``pip install 'nw2[synthetic]'``); asking for a derived series without it
raises an error that says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from nw2.core.errors import Nw2Error
from nw2.pipeline.records import Record

__all__ = ["SERIES", "INTERVAL_RANGE", "DerivedSeries", "DeriveError", "derive", "beats", "breaths", "grid",
           "interval_series", "tonic_level", "can_derive", "derived_channel", "derived_records"]

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
    start_s: float = 0.0
    """Time of ``values[0]``, a whole multiple of ``1 / fs``."""


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


def grid(start_s: float, duration_s: float, out_fs: float) -> np.ndarray:
    """The times ``j / out_fs`` (whole multiples, so pieces of one recording share one grid) inside
    ``[start_s, start_s + duration_s)``."""
    first = int(np.ceil(start_s * out_fs - 1e-9))
    last = int(np.ceil((start_s + duration_s) * out_fs - 1e-9))
    return np.arange(first, last) / out_fs


def interval_series(events_s: np.ndarray, times_s: np.ndarray, kind: str, as_rate: bool) -> np.ndarray:
    """Intervals between events at ``events_s`` (``as_rate``: 60 / interval), each credited to the event that
    closes it, linearly interpolated at ``times_s``; NaN outside the kept intervals. ``kind``
    (``beat``/``breath``) sets the plausible range of :data:`INTERVAL_RANGE`."""
    lo, hi = INTERVAL_RANGE[kind]
    t = np.asarray(events_s, dtype=np.float64)
    times = np.asarray(times_s, dtype=np.float64)
    out = np.full(times.size, np.nan)
    if t.size < MIN_INTERVALS + 1:
        return out
    iv = np.diff(t)
    keep = (iv >= lo) & (iv <= hi)
    if keep.sum() < MIN_INTERVALS:
        return out
    at, value = t[1:][keep], iv[keep]
    if as_rate:
        value = 60.0 / value
    inside = (times >= at[0]) & (times <= at[-1])
    out[inside] = np.interp(times[inside], at, value)
    return out


def tonic_level(signal, fs: float, times_s: np.ndarray, out_fs: float, start_s: float = 0.0) -> np.ndarray:
    """The tonic EDA level averaged over each step ``[t, t + 1 / out_fs)`` of the grid ``times_s`` (the
    signal's first sample at ``start_s``); NaN for a step the signal does not cover whole."""
    x, fs = _checked(signal, fs)
    nk = _neurokit()
    phasic = _detect("neurokit2.eda_phasic", lambda: nk.eda_phasic(nk.eda_clean(x, sampling_rate=fs),
                                                                    sampling_rate=fs, method="highpass"))
    tonic = np.asarray(phasic["EDA_Tonic"], dtype=np.float64)
    times = np.asarray(times_s, dtype=np.float64)
    step = 1.0 / out_fs
    a = np.ceil((times - start_s) * fs - 1e-9).astype(np.int64)
    b = np.ceil((times + step - start_s) * fs - 1e-9).astype(np.int64)
    whole = (a >= 0) & (b <= tonic.size) & (b > a)
    sums = np.concatenate([[0.0], np.cumsum(tonic)])
    out = np.full(times.size, np.nan)
    out[whole] = (sums[b[whole]] - sums[a[whole]]) / (b[whole] - a[whole])
    return out


def derive(signal, fs: float, modality: str, name: str, out_fs: float = 1.0, unit: str = "",
           start_s: float = 0.0) -> DerivedSeries:
    """The derived series ``name`` (:data:`SERIES`) of one channel sampled at ``fs`` Hz whose first sample lies
    at ``start_s`` seconds, on the grid of whole multiples of ``1 / out_fs`` that the signal covers (its first
    point: ``DerivedSeries.start_s``); ``unit`` is the channel's (the tonic level keeps it).
    :class:`DeriveError` with the reason when the series cannot be made from this channel."""
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
    times = grid(start_s, duration, out_fs)
    first = float(times[0]) if times.size else float(start_s)
    if name == "eda_tonic":
        return DerivedSeries(name, tonic_level(x, fs, times, out_fs, start_s), out_fs, unit,
                             "neurokit2.eda_phasic(highpass)", None, first)
    if name == "respiration_rate":
        idx, kind, method = breaths(x, fs), "breath", "neurokit2.rsp_peaks(khodadad2018) troughs"
    else:
        idx, kind = beats(x, fs, modality), "beat"
        method = "neurokit2.ecg_peaks(neurokit)" if modality == "ecg" else "neurokit2.ppg_peaks(elgendi)"
    events = start_s + idx / fs
    values = interval_series(events, times, kind, as_rate=name != "ibi")
    if not np.isfinite(values).any():
        raise DeriveError(f"{name}: too few plausible {kind} intervals in {duration:.1f} s "
                          f"({len(events)} {kind}s found)")
    return DerivedSeries(name, values, out_fs, SERIES[name]["unit"], method, events, first)


def can_derive(name: str, modality: str) -> bool:
    """Whether ``name`` is made from channels of ``modality``."""
    return modality in SERIES[name]["from"]


def derived_channel(channel: str, name: str) -> str:
    """The store's channel name of a series derived from ``channel``: ``ECG:heart_rate``."""
    return f"{channel}:{name}"


def derived_records(records: list[Record], names: tuple[str, ...], out_fs: float) -> list[Record]:
    """The ingest step of a source with ``derive``: every record of a modality a series of ``names`` is made
    from becomes that series (one record per series and source channel, at ``out_fs``); the others are left
    out. Missing source samples (NaN, inf) are interpolated for the detectors and every grid step that holds
    one is NaN in the series, so a gap costs its own windows only (dropped as missing beyond
    ``max_missing``). A stretch the series cannot be made from (flat, no beats) comes back all NaN the same
    way, and the rest of the recording is kept."""
    from nw2.pipeline.preprocess import fill_missing

    _neurokit()  # without it every stretch would look underivable: say so instead
    out = []
    for rec in records:
        missing = ~np.isfinite(rec.samples)
        signal = fill_missing(np.asarray(rec.samples, dtype=np.float64), missing) if missing.any() else rec.samples
        times = grid(rec.offset_s, rec.samples.size / rec.fs, out_fs)
        for name in names:
            if not can_derive(name, rec.modality):
                continue
            unit = SERIES[name]["unit"] or rec.unit
            try:
                series = derive(signal, rec.fs, rec.modality, name, out_fs, rec.unit, rec.offset_s)
                values, start = series.values.copy(), series.start_s
            except DeriveError:
                values, start = np.full(times.size, np.nan), float(times[0]) if times.size else rec.offset_s
            if missing.any() and values.size:
                values[_steps_holding(missing, rec.fs, rec.offset_s, start, out_fs, values.size)] = np.nan
            out.append(dataclasses.replace(rec, channel=derived_channel(rec.channel, name),
                                           modality=SERIES[name]["modality"], unit=unit, fs=out_fs,
                                           samples=values, offset_s=start, labels=None))
    return out


def _steps_holding(missing: np.ndarray, fs: float, offset_s: float, start_s: float, out_fs: float,
                   n: int) -> np.ndarray:
    """Which of ``n`` grid steps ``[start + j / out_fs, start + (j + 1) / out_fs)`` hold a missing sample."""
    idx = np.flatnonzero(missing)
    step = np.floor(((offset_s + idx / fs) - start_s) * out_fs + 1e-9).astype(np.int64)
    hit = np.zeros(n, bool)
    hit[step[(step >= 0) & (step < n)]] = True
    return hit
