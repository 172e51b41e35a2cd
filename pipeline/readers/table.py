"""What tables of samples have in common: their time column (its unit, the rate it gives) and cells that are
not numbers; shared by the CSV and Parquet readers."""

from __future__ import annotations

import re


import numpy as np
import polars as pl

from nw2.core.errors import InputError
from nw2.pipeline.readers.base import ReadOptions, shown

#: Column names taken as a time axis when the spec names none.
TIME_NAMES = ("time", "timestamp", "datetime", "timer", "t", "time_s", "seconds")
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
#: A time column named with its unit, taken as one like TIME_NAMES: ``time_ms``, ``timestamp (ms)``, ``t[us]``.
_TIME_WITH_UNIT = re.compile(r"(?:time|timestamp|timer|t)[ _]?[(\[]?(?:s|ms|us|ns)[)\]]?")


def bad_cells(col: pl.Series) -> tuple[int, int, str | None]:
    """Cells of a text column that are not numbers (``ERR``, ``--``; empty cells and ``NaN`` are missing
    samples, not bad): how many, the first one's row in ``col`` and its text."""
    values = col.cast(pl.String).str.strip_chars()
    parsed = values.cast(pl.Float64, strict=False)
    bad = parsed.is_null() & values.is_not_null() & (values != "")
    count = int(bad.sum())
    if count == 0:
        return 0, -1, None
    row = int(bad.arg_max())
    return count, row, values[row]


def time_column(names: list[str], opts: ReadOptions, path) -> str | None:
    """The table's time column: ``time_column`` if given (it must exist), else the first named like one."""
    if opts.time_column:
        if opts.time_column not in names:
            raise InputError(path, f"time column {opts.time_column!r} not found (columns: "
                                   f"{', '.join(shown(c) for c in names[:20])})")
        return opts.time_column
    for name in names:
        if name.lower() in TIME_NAMES or _TIME_WITH_UNIT.fullmatch(name.lower()):
            return name
    return None


#: A unit written in a time column's name: ``time_ms``, ``timestamp (ms)``, ``t[us]``, ``seconds``.
_NAMED_UNIT = re.compile(r"(?:^|[\s_(\[])(s|sec|secs|seconds|ms|msec|millis|milliseconds|us|usec|microseconds|ns|"
                         r"nanoseconds)(?:[)\]]|$)")
_UNIT_WORDS = {"s": "s", "sec": "s", "secs": "s", "seconds": "s", "ms": "ms", "msec": "ms", "millis": "ms",
               "milliseconds": "ms", "us": "us", "usec": "us", "microseconds": "us", "ns": "ns",
               "nanoseconds": "ns"}
#: The largest fractional step taken for seconds: read as milliseconds it would be over 50 kHz.
_MS_STEP_BELOW = 1e3 / 50e3
#: Unix epoch stamps (years 1998-2103) in each unit: their magnitude tells the unit apart.
_EPOCH = {"s": (9e8, 4.2e9), "ms": (9e11, 4.2e12), "us": (9e14, 4.2e15), "ns": (9e17, 4.2e18)}


class TimeSummary:
    """What a time column's unit and rate are worked out from, gathered a block of stamps at a time so a long
    file's column is never held whole: the count, the first and last stamp, the finite ones' range, whether all
    are whole numbers, and the distinct steps between consecutive stamps with their counts (a sampled clock has
    few, so the median step stays exact in little memory)."""

    def __init__(self) -> None:
        self.n = self.finite = 0
        self.first = self.last = float("nan")
        self.lo, self.hi = float("inf"), float("-inf")
        self.whole = True
        self.decreasing = False
        self.steps = np.empty(0)
        """The distinct finite steps, sorted, and how often each occurs (``counts``)."""
        self.counts = np.empty(0, dtype=np.int64)
        self.unit_step: float | None = None
        """The median step between distinct stamps when the stamps go back and forth (set by :meth:`of`)."""

    @classmethod
    def of(cls, values: np.ndarray) -> "TimeSummary":
        """The summary of a whole column: a long table's channels interleave, and may share, their stamps, so
        the step that tells the unit is then the median between distinct stamps."""
        summary = cls()
        summary.add(values)
        if summary.decreasing:
            distinct = np.diff(np.unique(values[np.isfinite(values)]))
            summary.unit_step = float(np.median(distinct)) if distinct.size else 0.0
        return summary

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return
        steps = np.diff(values, prepend=self.last) if self.n else np.diff(values)
        if not self.n:
            self.first = float(values[0])
        self.n += values.size
        self.last = float(values[-1])
        finite = values[np.isfinite(values)]
        if finite.size:
            self.finite += finite.size
            self.lo, self.hi = min(self.lo, float(finite.min())), max(self.hi, float(finite.max()))
            self.whole = self.whole and bool(np.all(np.mod(finite, 1) == 0))
        steps = steps[np.isfinite(steps)]
        self.decreasing = self.decreasing or bool((steps < 0).any())
        merged, inverse = np.unique(np.concatenate([self.steps, steps]), return_inverse=True)
        weights = np.concatenate([self.counts, np.ones(steps.size, dtype=np.int64)])
        self.counts = np.bincount(inverse, weights=weights, minlength=merged.size).astype(np.int64)
        self.steps = merged

    def scaled(self, k: float) -> "TimeSummary":
        """The same stamps in another unit (``k`` of the new per old)."""
        out = TimeSummary()
        out.__dict__.update(self.__dict__)
        out.first, out.last, out.lo, out.hi = self.first * k, self.last * k, self.lo * k, self.hi * k
        out.steps = self.steps * k
        out.whole = False  # whole numbers of one unit are not of another; nothing asks after scaling
        out.unit_step = None if self.unit_step is None else self.unit_step * k
        return out

    def median(self, positive: bool = False) -> float:
        """The median of the steps (of the positive ones only, as between distinct sorted stamps), as
        ``np.median`` gives it; 0.0 without any."""
        values, counts = self.steps, self.counts
        if positive:
            keep = values > 0
            values, counts = values[keep], counts[keep]
        total = int(counts.sum())
        if total == 0:
            return 0.0
        ends = np.cumsum(counts)
        a = values[np.searchsorted(ends, (total - 1) // 2, side="right")]
        b = values[np.searchsorted(ends, total // 2, side="right")]
        return float((a + b) / 2)


def time_scale(name: str, values: np.ndarray | TimeSummary, opts: ReadOptions, path, needed: bool = True) -> float:
    """Seconds per unit of a numeric time column, never guessed: ``extra.time_unit``, else a unit its name
    writes (``time_ms``), else Unix epoch stamps' magnitude (ms since 1970 are about 1.7e12), else seconds when
    the steps are fractions of one small enough that milliseconds would mean over 50 kHz (0.001: 1 kHz, not
    1 MHz). Other steps of a relative clock could be seconds or milliseconds (whole numbers; or 0.25, which is
    4 Hz or 4 kHz): InputError naming the option to set, unless the rate is ``needed`` not (``fs`` given), where
    the stamps only order the rows. ``values``: the column, or its
    :class:`TimeSummary`."""
    unit = opts.extra.get("time_unit")
    if unit is not None:
        if unit not in _TIME_UNITS:
            raise InputError(path, f"time_unit {unit!r} is not one of {', '.join(_TIME_UNITS)}")
        return _TIME_UNITS[unit]
    named = _NAMED_UNIT.search(str(name).lower())
    if named:
        return _TIME_UNITS[_UNIT_WORDS[named.group(1)]]
    summary = values if isinstance(values, TimeSummary) else TimeSummary.of(values)
    if summary.finite > 1:
        first, last = abs(summary.lo), abs(summary.hi)
        span = last - first
        for unit, (lo, hi) in _EPOCH.items():
            # both ends in the epoch range, and at most a day per sample and 100 kHz in that unit
            rate = (summary.finite - 1) / (span * _TIME_UNITS[unit]) if span > 0 else 0.0
            if lo <= first and last < hi and 1e-5 <= rate <= 1e5:
                return _TIME_UNITS[unit]
    step = summary.unit_step if summary.unit_step is not None else summary.median(positive=True)
    # Fractions of a unit are seconds only when, read as milliseconds, they would be a rate no recording has
    # (over 50 kHz): steps of 0.25 are 4 Hz in seconds or 4 kHz in milliseconds, and are refused.
    if 0 < step <= _MS_STEP_BELOW and not summary.whole:
        return 1.0
    if not needed:
        return 1.0
    raise InputError(path, f"time column {shown(name)}: the unit of its stamps is not known (steps of {step:g} are "
                           f"{1 / step if step > 0 else float('inf'):g} Hz in seconds, "
                           f"{1e3 / step if step > 0 else float('inf'):g} Hz in milliseconds); set extra.time_unit "
                           f"(s, ms, us or ns), name the column with its unit (time_ms), or give fs")


def rate_from_time(t: np.ndarray | TimeSummary, path) -> float:
    """Sampling rate from elapsed seconds (or their :class:`TimeSummary`).

    The mean rate over the whole recording, because clocks with coarse ticks jitter (Daphnet
    alternates 15 and 16 ms steps at 64 Hz; heartpy's data3 stamps 100 Hz samples with a 15.6 ms
    Windows clock), so the median step is wrong; the median step when gaps (steps over three times
    the median) take more than 1% of the recording, since they would bias the mean.
    """
    summary = t if isinstance(t, TimeSummary) else TimeSummary.of(t)
    median = summary.median()
    if summary.counts.sum() == 0 or median <= 0:
        raise InputError(path, "time column does not increase; cannot derive a sampling rate")
    big = summary.steps > 3 * median
    gaps = float((summary.steps[big] * summary.counts[big]).sum())
    span = summary.last - summary.first
    step = median if gaps > 0.01 * span else float(span / (summary.n - 1))
    fs = 1.0 / step
    # Rounded stamps make a nominal 64 Hz come out as 64.0002: within 0.1 % of an integer, take it.
    if round(fs) > 0 and abs(fs - round(fs)) <= 1e-3 * fs:
        return float(round(fs))
    return round(fs, 6)
