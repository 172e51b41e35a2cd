"""Turning a parsed table (polars DataFrame) into records: shared by the CSV and Parquet readers."""

from __future__ import annotations

import re

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from nw2.core.errors import InputError
from nw2.pipeline.readers.base import ChannelInfo, ReadOptions, Record, file_stem, select, shown, time_slice
from nw2.pipeline.records import guess_modality

#: Column names taken as a time axis when the spec names none.
TIME_NAMES = ("time", "timestamp", "datetime", "timer", "t", "time_s", "seconds")
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
#: A time column named with its unit, taken as one like TIME_NAMES: ``time_ms``, ``timestamp (ms)``, ``t[us]``.
_TIME_WITH_UNIT = re.compile(r"(?:time|timestamp|timer|t)[ _]?[(\[]?(?:s|ms|us|ns)[)\]]?")


def _numeric(col: pl.Series, path, opts: ReadOptions) -> pl.Series:
    """A text column of numbers with some cells that are not (``ERR``, ``--``): as floats with those cells
    missing when ``extra["non_numeric"]`` is ``missing``; else InputError naming the first such cell, how many
    there are, and that option."""
    values = col.cast(pl.String).str.strip_chars()
    parsed = values.cast(pl.Float64, strict=False)
    bad = parsed.is_null() & values.is_not_null() & (values != "")
    count = int(bad.sum())
    if count == 0 or opts.extra.get("non_numeric") == "missing":
        return parsed.alias(col.name)
    if count == col.len() - int(values.is_null().sum()):
        raise InputError(path, f"column {shown(col.name)} is not numeric ({col.dtype}, e.g. {shown(values[0])}): "
                               f"drop it with channels, or name it label_column or time_column")
    row = int(bad.arg_max())
    raise InputError(path, f"column {shown(col.name)} is not numeric: data row {row + 1} holds {shown(values[row])} "
                           f"({count} such cell{'s' if count > 1 else ''}); fix them, or set "
                           f"extra.non_numeric: missing to read them as missing samples")


def time_column(df: pl.DataFrame, opts: ReadOptions, path) -> str | None:
    if opts.time_column:
        if opts.time_column not in df.columns:
            raise InputError(path, f"time column {opts.time_column!r} not found (columns: "
                                   f"{', '.join(shown(c) for c in df.columns[:20])})")
        return opts.time_column
    for name in df.columns:
        if name.lower() in TIME_NAMES or _TIME_WITH_UNIT.fullmatch(name.lower()):
            return name
    return None


def seconds_and_start(col: pl.Series, opts: ReadOptions, path) -> tuple[np.ndarray, datetime | None]:
    """Elapsed seconds from a time column (numbers in ``extra['time_unit']``, or datetimes)."""
    if col.dtype == pl.Utf8:
        try:
            col = col.str.to_datetime(time_zone="UTC")
        except Exception:
            raise InputError(path, f"time column {shown(col.name)} is neither numeric nor a date-time") from None
    if col.dtype.is_temporal():
        ns = col.dt.epoch("ns").to_numpy().astype(np.float64)
        start = col[0]
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        return (ns - ns[0]) * 1e-9, start
    if not col.dtype.is_numeric():
        raise InputError(path, f"time column {shown(col.name)} is neither numeric nor a date-time")
    t = col.cast(pl.Float64).to_numpy()
    t = t * time_scale(col.name, t, opts, path, needed=opts.fs is None)
    return t - t[0], None


#: A unit written in a time column's name: ``time_ms``, ``timestamp (ms)``, ``t[us]``, ``seconds``.
_NAMED_UNIT = re.compile(r"(?:^|[\s_(\[])(s|sec|secs|seconds|ms|msec|millis|milliseconds|us|usec|microseconds|ns|"
                         r"nanoseconds)(?:[)\]]|$)")
_UNIT_WORDS = {"s": "s", "sec": "s", "secs": "s", "seconds": "s", "ms": "ms", "msec": "ms", "millis": "ms",
               "milliseconds": "ms", "us": "us", "usec": "us", "microseconds": "us", "ns": "ns",
               "nanoseconds": "ns"}
#: Unix epoch stamps (years 1998-2103) in each unit: their magnitude tells the unit apart.
_EPOCH = {"s": (9e8, 4.2e9), "ms": (9e11, 4.2e12), "us": (9e14, 4.2e15), "ns": (9e17, 4.2e18)}


def time_scale(name: str, values: np.ndarray, opts: ReadOptions, path, needed: bool = True) -> float:
    """Seconds per unit of a numeric time column, never guessed: ``extra.time_unit``, else a unit its name
    writes (``time_ms``), else Unix epoch stamps' magnitude (ms since 1970 are about 1.7e12), else seconds when
    the steps are fractions of one (a millisecond or finer counter counts in whole numbers). Whole-number steps
    of a relative clock could be seconds or milliseconds: InputError naming the option to set, unless the rate
    is ``needed`` not (``fs`` given), where the stamps only order the rows."""
    unit = opts.extra.get("time_unit")
    if unit is not None:
        if unit not in _TIME_UNITS:
            raise InputError(path, f"time_unit {unit!r} is not one of {', '.join(_TIME_UNITS)}")
        return _TIME_UNITS[unit]
    named = _NAMED_UNIT.search(str(name).lower())
    if named:
        return _TIME_UNITS[_UNIT_WORDS[named.group(1)]]
    finite = values[np.isfinite(values)]
    if finite.size > 1:
        first, last = abs(float(finite.min())), abs(float(finite.max()))
        span = last - first
        for unit, (lo, hi) in _EPOCH.items():
            # both ends in the epoch range, and at most a day per sample and 100 kHz in that unit
            rate = (finite.size - 1) / (span * _TIME_UNITS[unit]) if span > 0 else 0.0
            if lo <= first and last < hi and 1e-5 <= rate <= 1e5:
                return _TIME_UNITS[unit]
    steps = np.diff(np.unique(finite))  # a long table's channels interleave, and may share, their stamps
    step = float(np.median(steps)) if steps.size else 0.0
    if 0 < step < 1 and not np.all(np.mod(finite, 1) == 0):
        return 1.0
    if not needed:
        return 1.0
    raise InputError(path, f"time column {shown(name)}: the unit of its stamps is not known (steps of {step:g} are "
                           f"{1 / step if step > 0 else float('inf'):g} Hz in seconds, "
                           f"{1e3 / step if step > 0 else float('inf'):g} Hz in milliseconds); set extra.time_unit "
                           f"(s, ms, us or ns), name the column with its unit (time_ms), or give fs")


def rate_from_time(t: np.ndarray, path) -> float:
    """Sampling rate from elapsed seconds.

    The mean rate over the whole recording, because clocks with coarse ticks jitter (Daphnet
    alternates 15 and 16 ms steps at 64 Hz; heartpy's data3 stamps 100 Hz samples with a 15.6 ms
    Windows clock), so the median step is wrong; the median step when gaps (steps over three times
    the median) take more than 1% of the recording, since they would bias the mean.
    """
    steps = np.diff(t)
    steps = steps[np.isfinite(steps)]
    if steps.size == 0 or np.median(steps) <= 0:
        raise InputError(path, "time column does not increase; cannot derive a sampling rate")
    median = float(np.median(steps))
    gaps = steps[steps > 3 * median].sum()
    step = median if gaps > 0.01 * (t[-1] - t[0]) else float((t[-1] - t[0]) / (len(t) - 1))
    fs = 1.0 / step
    # Rounded stamps make a nominal 64 Hz come out as 64.0002: within 0.1 % of an integer, take it.
    if round(fs) > 0 and abs(fs - round(fs)) <= 1e-3 * fs:
        return float(round(fs))
    return round(fs, 6)


class Table:
    """A wide table of channels with an optional time and label column, ready for probe/read."""

    def __init__(self, df: pl.DataFrame, opts: ReadOptions, path: str | Path) -> None:
        self.path = path
        self.opts = opts
        if df.height == 0:
            raise InputError(path, "no data rows")
        tcol = time_column(df, opts, path)
        self.start_time = None
        fs = opts.fs
        if tcol is not None:
            t, self.start_time = seconds_and_start(df[tcol], opts, path)
            if fs is None:
                fs = rate_from_time(t, path)
        if fs is None:
            raise InputError(path, "no sampling rate: pass --fs, set fs in the spec, or name a time column")
        self.fs = float(fs)
        lcol = opts.label_column
        if lcol is not None and lcol not in df.columns:
            raise InputError(path, f"label column {lcol!r} not found (columns: "
                                   f"{', '.join(shown(c) for c in df.columns[:20])})")
        self.labels = None if lcol is None else df[lcol].to_numpy()
        self.channels = [c for c in df.columns if c not in (tcol, lcol)]
        if not self.channels:
            raise InputError(path, "no signal columns")
        for name in self.channels:
            if not (df[name].dtype.is_numeric() or df[name].dtype == pl.Null):
                df = df.with_columns(_numeric(df[name], path, opts))
        self.df = df

    def probe(self) -> list[ChannelInfo]:
        return [ChannelInfo(name, self.fs, self.df.height, self._modality(name), self.opts.unit or "")
                for name in self.channels]

    def _modality(self, name: str) -> str:
        return self.opts.modality or guess_modality(name)

    def read(self, channels, start_s: float, stop_s: float | None) -> list[Record]:
        span = time_slice(self.df.height, self.fs, start_s, stop_s)
        labels = None if self.labels is None else self.labels[span]
        out = []
        for index in select(channels, len(self.channels), self.path):
            name = self.channels[index]
            values = self.df[name].cast(pl.Float64).to_numpy()[span]
            out.append(Record(
                dataset=self.opts.dataset,
                subject=self.opts.subject or file_stem(self.path),
                record=self.opts.record or file_stem(self.path),
                channel=name, modality=self._modality(name), unit=self.opts.unit or "",
                fs=self.fs, samples=np.ascontiguousarray(values, dtype=np.float64),
                start_time=self.start_time, offset_s=span.start / self.fs, labels=labels,
            ))
        return out
