"""Turning a parsed table (polars DataFrame) into records: shared by the CSV and Parquet readers."""

from __future__ import annotations

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
        if name.lower() in TIME_NAMES:
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
    unit = opts.extra.get("time_unit", "s")
    if unit not in _TIME_UNITS:
        raise InputError(path, f"time_unit {unit!r} is not one of {', '.join(_TIME_UNITS)}")
    t = col.cast(pl.Float64).to_numpy() * _TIME_UNITS[unit]
    return t - t[0], None


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
