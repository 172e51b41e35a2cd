"""OpenSignals (PLUX biosignalsplux / BITalino) text exports.

Layout: ``# OpenSignals Text File Format``, then ``# {JSON header}``, then ``# EndOfHeader``, then
tab-separated rows. The JSON maps each device to its ``column`` names, ``label`` (the analog channels),
``sensor`` types, ``sampling rate``, ``date`` and ``time``. Several devices put their columns side by
side in header order. Values are raw ADC counts (unit ``adc``): sensor transfer functions depend on
hardware details the file does not always carry, and nw2 normalizes each window anyway.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from nw2.core.errors import InputError
from nw2.pipeline.readers.base import (ChannelInfo, ReadOptions, Record, file_stem, finite_or_nan, scrubbed, select,
                                       shown, time_slice)
from nw2.pipeline.records import guess_modality

FORMAT = "opensignals"
EXTENSIONS = ()  # .txt says nothing: claimed by content only
_MAGIC = b"# OpenSignals Text File Format"


def sniff(path, head: bytes) -> bool:
    return head.startswith(_MAGIC)


def _header(path: Path) -> list[dict]:
    """The devices' JSON headers."""
    with open(path, "rb") as fh:
        lines = [fh.readline() for _ in range(3)]
    if not lines[0].startswith(_MAGIC):
        raise InputError(path, "not an OpenSignals text file (first line is not the OpenSignals banner)")
    try:
        meta = json.loads(lines[1].decode("utf-8").lstrip("#").strip())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"OpenSignals JSON header is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or not meta:
        raise InputError(path, "OpenSignals JSON header names no device")
    return list(meta.values())


def _layout(devices: list[dict], path) -> list[tuple[int, str, str, float, dict]]:
    """(column index, channel name, sensor, fs, device) for every analog channel."""
    out, base = [], 0
    for dev in devices:
        try:
            columns, labels = dev["column"], dev["label"]
            fs = float(dev["sampling rate"])
        except KeyError as err:
            raise InputError(path, f"OpenSignals header lacks {shown(err.args[0])}") from None
        except (TypeError, ValueError):  # the message would quote the value
            raise InputError(path, "OpenSignals header: 'sampling rate' is not a number") from None
        sensors = dev.get("sensor") or [""] * len(labels)
        for label, sensor in zip(labels, sensors):
            if label not in columns:
                raise InputError(path, f"OpenSignals label {shown(label)} is not among its columns")
            out.append((base + columns.index(label), label, str(sensor), fs, dev))
        base += len(columns)
    return out


def _start_time(dev: dict) -> datetime | None:
    try:
        date = [int(v) for v in str(dev["date"]).split("-")]
        hms = str(dev["time"]).split(":")
        sec = float(hms[2])
        return datetime(date[0], date[1], date[2], int(hms[0]), int(hms[1]), int(sec), int(round((sec % 1) * 1e6)) % 1000000)
    except (KeyError, ValueError, IndexError):
        return None


def _data(path: Path) -> np.ndarray:
    # Header lines start with '#', so polars skips them as comments.
    try:
        df = pl.read_csv(path, separator="\t", has_header=False, comment_prefix="#",
                         infer_schema_length=1000)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(path, f"cannot parse OpenSignals data rows: {scrubbed(first)}") from None
    # Every row ends with a tab, which makes an empty last column.
    df = df.select([c for c in df.columns if df[c].null_count() < df.height])
    if df.height == 0:
        raise InputError(path, "OpenSignals file has no data rows")
    try:
        return df.cast(pl.Float64).to_numpy()
    except Exception:
        raise InputError(path, "OpenSignals data rows are not numeric") from None


def _modality(opts: ReadOptions, label: str, sensor: str) -> str:
    return opts.modality or guess_modality(sensor, label)


def probe(path, opts: ReadOptions) -> list[ChannelInfo]:
    path = Path(path)
    devices = _header(path)
    # Counting rows needs no parsing: one line per sample after the header.
    with open(path, "rb") as fh:
        n_rows = sum(1 for line in fh if line.strip() and not line.startswith(b"#"))
    return [ChannelInfo(label, fs, n_rows, _modality(opts, label, sensor), opts.unit or "adc")
            for _, label, sensor, fs, _ in _layout(devices, path)]


def read(path, opts: ReadOptions, channels=None, start_s: float = 0.0, stop_s: float | None = None):
    path = Path(path)
    layout = _layout(_header(path), path)
    data = _data(path)
    records = []
    for index in select(channels, len(layout), path):
        col, label, sensor, fs, dev = layout[index]
        if col >= data.shape[1]:
            raise InputError(path, f"OpenSignals channel {shown(label)} has no data column")
        span = time_slice(data.shape[0], fs, start_s, stop_s)
        records.append(Record(
            dataset=opts.dataset, subject=opts.subject or file_stem(path), record=opts.record or file_stem(path),
            channel=label if not sensor else f"{sensor}_{label}", modality=_modality(opts, label, sensor),
            unit=opts.unit or "adc", fs=fs, samples=finite_or_nan(data[span, col]),
            start_time=_start_time(dev), offset_s=span.start / fs,
        ))
    return records
