"""Inter-beat (NN or RR) interval series: one interval per line of a text file, or a 1-D ``.npy`` array.

Such a file holds events, not samples at a rate: interval ``k`` is the time between beats ``k-1`` and ``k``. The
reader puts the beats at the running sum of the intervals (the first beat at 0 s) and gives two channels on a
regular grid of ``extra["grid_fs"]`` Hz (default :data:`GRID_FS`, the rate HRV analyses interpolate at), both of
modality ``hr``: ``ibi`` (seconds) and ``heart_rate`` (beats per minute), each made by
:func:`nw2.pipeline.derive.interval_series`, the same maths as a ``derive`` source (intervals outside 0.25-2 s are
left out, nothing is extrapolated). Ingest then resamples them to the spec's ``target_fs`` like any channel.

The intervals' unit is never guessed (a column of 800s is milliseconds, a column of 0.8s seconds, but a column of
2s?): ``extra["interval_unit"]`` must say ``ms`` or ``s``, or the file is refused with that option named. The format
is never detected: name it (``format: intervals``). ``.npy`` files are read with ``allow_pickle=False``.

An interval longer than :data:`MAX_INTERVAL_S` is refused: no heart pauses that long between two beats, and such a
file holds something else or another unit (1e30, or milliseconds read as seconds). ``read`` builds the grid of the
span asked for only, so what it allocates follows the span, not the length the intervals add up to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nw2.pipeline.derive import interval_series
from nw2.pipeline.readers.base import ChannelInfo, InputError, ReadOptions, Record, file_stem, scrubbed, select
from nw2.pipeline.readers.numpy_reader import load_npy

FORMAT = "intervals"
EXTENSIONS: tuple[str, ...] = ()  # never chosen by extension: a list of numbers is not self-describing
#: Default rate of the regular grid, Hz.
GRID_FS = 4.0
UNITS = {"ms": 1e-3, "s": 1.0}
CHANNELS = (("ibi", "s", False), ("heart_rate", "bpm", True))
#: The longest interval taken as the time between two beats, seconds.
MAX_INTERVAL_S = 60.0


def sniff(path: str | Path, head: bytes) -> bool:
    return False


def _options(path, opts: ReadOptions) -> tuple[float, float]:
    unit = opts.extra.get("interval_unit")
    if unit not in UNITS:
        raise InputError(path, f"unit of the intervals unknown: set extra.interval_unit to ms or s"
                               + (f" (got {unit!r})" if unit is not None else ""))
    fs = float(opts.extra.get("grid_fs", GRID_FS))
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(path, f"extra.grid_fs must be a positive number of Hz, not {opts.extra.get('grid_fs')!r}")
    return UNITS[unit], fs


def _intervals(path, opts: ReadOptions) -> np.ndarray:
    scale, _ = _options(path, opts)
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            is_npy = fh.read(6) == b"\x93NUMPY"
        values = load_npy(p) if is_npy else np.loadtxt(p, comments="#", delimiter=opts.delimiter, ndmin=1,
                                                        dtype=np.float64)
    except ValueError as err:
        detail = scrubbed(str(err).splitlines()[0]) if str(err).strip() else type(err).__name__
        raise InputError(path, f"not a list of numbers, one interval per line ({detail})") from None
    except OSError as err:
        raise InputError(path, f"cannot open ({err.strerror or err})") from None
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        raise InputError(path, f"expected one numeric column of intervals, got shape {values.shape} ({values.dtype})")
    values = np.asarray(values, dtype=np.float64) * scale
    if values.size < 3 or not np.isfinite(values).all() or (values <= 0).any():
        raise InputError(path, "intervals must be at least three finite positive numbers")
    longest = int(np.argmax(values))
    if values[longest] > MAX_INTERVAL_S:
        raise InputError(path, f"interval {longest + 1} lasts {values[longest]:.3g} s, longer than "
                               f"{MAX_INTERVAL_S:g} s between two beats: not inter-beat intervals, or not in "
                               f"{opts.extra.get('interval_unit')} (extra.interval_unit)")
    return values


def _beats(path, opts: ReadOptions) -> tuple[float, np.ndarray]:
    """The grid's rate and the beat times (the first at 0 s)."""
    intervals = _intervals(path, opts)
    _, fs = _options(path, opts)
    return fs, np.concatenate([[0.0], np.cumsum(intervals)])


def _grid_size(fs: float, beats: np.ndarray) -> int:
    """Points of ``grid(0, beats[-1], fs)``, counted without building it."""
    return max(0, int(np.ceil(float(beats[-1]) * fs - 1e-9)))


def probe(path: str | Path, opts: ReadOptions) -> list[ChannelInfo]:
    fs, beats = _beats(path, opts)
    return [ChannelInfo(name, fs, _grid_size(fs, beats), "hr", unit) for name, unit, _ in CHANNELS]


def read(path: str | Path, opts: ReadOptions, channels: list[int] | None = None,
         start_s: float = 0.0, stop_s: float | None = None) -> list[Record]:
    fs, beats = _beats(path, opts)
    chosen = select(channels, len(CHANNELS), path)
    # The whole recording's grid points j / fs inside [start_s, stop_s), built for that span only.
    n = _grid_size(fs, beats)
    first = min(n, max(0, int(np.ceil(start_s * fs - 1e-9))))
    last = n if stop_s is None else min(n, max(first, int(np.ceil(stop_s * fs - 1e-9))))
    times = np.arange(first, last) / fs
    times = times[(times >= start_s) & (stop_s is None or times < stop_s)]
    subject, record = opts.subject or file_stem(path), opts.record or file_stem(path)
    out = []
    for c in chosen:
        name, unit, rate = CHANNELS[c]
        out.append(Record(opts.dataset, subject, record, name, "hr", unit, fs,
                          interval_series(beats, times, "beat", as_rate=rate),
                          offset_s=float(times[0]) if times.size else float(start_s)))
    return out
