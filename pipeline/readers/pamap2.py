"""PAMAP2 Physical Activity Monitoring ``.dat`` files (``subjectNNN.dat``).

Layout (from the dataset's readme): whitespace-separated text, one row per 100 Hz sample, 54 columns,
``NaN`` for missing values:

====== =====================================================================
column content
====== =====================================================================
1      timestamp (s)
2      activityID (0 = transient activity between the protocol's activities)
3      heart rate (bpm); the HR monitor reports at ~9 Hz, so most rows are NaN
4-20   IMU on the hand
21-37  IMU on the chest
38-54  IMU on the ankle
====== =====================================================================

Each IMU block has 17 columns: temperature (°C), 3D acceleration ±16 g (m/s²), 3D acceleration ±6 g
(m/s²), 3D gyroscope (rad/s), 3D magnetometer (µT), orientation (4 values).

Channels yielded, in this order: ``heart_rate``, then for ``hand``, ``chest``, ``ankle``:
``<imu>_temperature``, ``<imu>_acc16_x/y/z``, ``<imu>_gyro_x/y/z``, ``<imu>_mag_x/y/z`` (31 channels).
Two column groups are skipped on purpose:

- the ±6 g accelerometer: the readme recommends the ±16 g one because the ±6 g sensor saturates
  during fast movements (running, jumping), and it measures the same thing;
- the orientation quaternion: the readme says it is invalid in this data collection.

``labels`` of every record is the activityID column (int64; a missing activityID reads as 0,
transient). Missing values (wireless dropouts, marked ``NaN`` in the file) stay NaN in ``samples``; the
ingest stage deals with them. Heart rate is the one exception: it is a slow signal sampled sparsely
inside the 100 Hz grid, so its NaN gaps shorter than :data:`HR_MAX_GAP_S` seconds are filled by linear
interpolation between the neighbouring readings; longer gaps (the monitor lost contact) and the
stretches before the first and after the last reading stay NaN. The interpolation runs on the whole
recording before any time span is cut, so a span reads the same values as the whole file.

Options: ``fs`` (default 100 Hz; checked against the median step of the timestamp column, which must
agree within 5 %), ``subject`` (default: the file stem, ``subject101``), ``record`` (default: the file
stem), ``modality`` / ``unit`` override every channel's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from nw2.core.errors import InputError
from nw2.pipeline.readers.base import ReadOptions, file_stem, finite_or_nan, scrubbed, select, time_slice
from nw2.pipeline.records import ChannelInfo, Record

FORMAT = "pamap2"
EXTENSIONS = (".dat",)

N_COLUMNS = 54
FS = 100.0
HR_MAX_GAP_S = 2.0
"""Heart-rate NaN runs shorter than this are interpolated; longer ones stay NaN."""
FS_TOLERANCE = 0.05

_IMUS = (("hand", 3), ("chest", 20), ("ankle", 37))  # 0-based first column of each IMU block
# (suffix, offset in the IMU block, modality, unit); ±6 g acc (offsets 4-6) and orientation (13-16) skipped.
_IMU_CHANNELS = (
    ("temperature", 0, "temp", "°C"),
    ("acc16_x", 1, "acc", "m/s^2"), ("acc16_y", 2, "acc", "m/s^2"), ("acc16_z", 3, "acc", "m/s^2"),
    ("gyro_x", 7, "other", "rad/s"), ("gyro_y", 8, "other", "rad/s"), ("gyro_z", 9, "other", "rad/s"),
    ("mag_x", 10, "other", "uT"), ("mag_y", 11, "other", "uT"), ("mag_z", 12, "other", "uT"),
)
#: (name, 0-based column, modality, unit) of every channel, in the order probe/read list them.
CHANNELS: tuple[tuple[str, int, str, str], ...] = (("heart_rate", 2, "hr", "bpm"),) + tuple(
    (f"{imu}_{suffix}", base + offset, modality, unit)
    for imu, base in _IMUS
    for suffix, offset, modality, unit in _IMU_CHANNELS
)


def _first_line(head: bytes) -> bytes:
    return head.split(b"\n", 1)[0].strip()


def _is_number(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def sniff(path: str | Path, head: bytes) -> bool:
    """A ``.dat`` file whose first line is 54 whitespace-separated numbers (``NaN`` allowed)."""
    if not str(path).lower().endswith(".dat"):
        return False
    fields = _first_line(head).split()
    return len(fields) == N_COLUMNS and all(_is_number(f) for f in fields)


def _check_columns(path: Path, first: bytes) -> None:
    n = len(first.split())
    if n != N_COLUMNS:
        raise InputError(path, f"expected {N_COLUMNS} whitespace-separated columns (PAMAP2 layout), found {n}")


def _head_line(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.strip():
                    return line.strip()
    except OSError as err:
        raise InputError(path, f"cannot open ({err.strerror or err})") from None
    raise InputError(path, "empty file")


def _fs(opts: ReadOptions, path: Path) -> float:
    fs = float(opts.fs) if opts.fs is not None else FS
    if not (math.isfinite(fs) and fs > 0):
        raise InputError(path, f"sampling rate must be positive, got {opts.fs}")
    return fs


def _check_timestamps(path: Path, timestamps: np.ndarray, fs: float) -> None:
    steps = np.diff(timestamps[np.isfinite(timestamps)])
    if steps.size == 0:
        return
    step = float(np.median(steps))
    if not step > 0 or abs(step * fs - 1.0) > FS_TOLERANCE:
        rate = f"{1.0 / step:.4g} Hz" if step > 0 else "not increasing"
        raise InputError(path, f"timestamp column steps by {step:.6g} s (median; {rate}), "
                               f"which disagrees with fs={fs:g} Hz by more than {FS_TOLERANCE:.0%}")


def _load(path: Path) -> np.ndarray:
    """The whole table as an (n, 54) float64 array, NaN where the file says NaN (or leaves a gap)."""
    _check_columns(path, _head_line(path))
    table = None
    # Fast path: the released files separate fields with exactly one space. polars cannot collapse
    # repeated separators (they read as empty fields, i.e. nulls) and pads short rows with nulls, while
    # "NaN" in the file reads as NaN, not null. So any failure or any null falls back on np.loadtxt,
    # which splits on any run of whitespace and refuses ragged rows. It reads no comments either: a line
    # starting with '#' is a damaged row, and skipping it would give fewer rows than probe counted.
    try:
        frame = pl.read_csv(path, separator=" ", has_header=False, quote_char=None,
                            schema={f"c{i}": pl.Float64 for i in range(N_COLUMNS)})
        if not any(frame.null_count().row(0)):
            table = frame.to_numpy().astype(np.float64, copy=False)
    except Exception:  # noqa: BLE001 - any polars failure means "not the simple layout", not an error yet
        table = None
    if table is None:
        try:
            table = np.loadtxt(path, dtype=np.float64, ndmin=2, comments=None)
        except ValueError as err:
            detail = str(err).splitlines()[0].split("; use `usecols`")[0]
            raise InputError(path, f"not a PAMAP2 table: {scrubbed(detail)}") from None
        if table.shape[1] != N_COLUMNS:
            raise InputError(path, f"expected {N_COLUMNS} whitespace-separated columns (PAMAP2 layout), "
                                   f"found {table.shape[1]}")
    if table.shape[0] == 0:
        raise InputError(path, "no data rows")
    return table


def _count_rows(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                n += 1
    return n


def interpolate_short_gaps(values: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly fill NaN runs of fewer than ``max_gap`` samples that lie between two finite values."""
    out = np.array(values, dtype=np.float64, copy=True)
    good = np.flatnonzero(np.isfinite(out))
    if good.size < 2:
        return out
    filled = np.interp(np.arange(good[0], good[-1] + 1), good, out[good])
    # Length of the NaN run each sample sits in (0 for finite samples), between first and last reading.
    gaps = np.diff(good) - 1
    run = np.repeat(np.append(gaps, 0), np.append(gaps, 0) + 1)
    keep = np.isfinite(out[good[0]:good[-1] + 1]) | (run < max_gap)
    out[good[0]:good[-1] + 1] = np.where(keep, filled, np.nan)
    return out


def probe(path: str | Path, opts: ReadOptions = ReadOptions()) -> list[ChannelInfo]:
    path = Path(path)
    fs = _fs(opts, path)
    first = _head_line(path)
    _check_columns(path, first)
    n = _count_rows(path)
    return [ChannelInfo(name, fs, n, opts.modality or modality, opts.unit or unit)
            for name, _, modality, unit in CHANNELS]


def read(path: str | Path, opts: ReadOptions = ReadOptions(), channels: list[int] | None = None,
         start_s: float = 0.0, stop_s: float | None = None) -> list[Record]:
    path = Path(path)
    fs = _fs(opts, path)
    wanted = select(channels, len(CHANNELS), path)
    table = _load(path)
    _check_timestamps(path, table[:, 0], fs)
    n = table.shape[0]
    span = time_slice(n, fs, start_s, stop_s)
    activity = table[:, 1]
    labels = np.where(np.isfinite(activity), activity, 0.0).round().astype(np.int64)[span]
    stem = file_stem(path)
    records = []
    for index in wanted:
        name, column, modality, unit = CHANNELS[index]
        values = table[:, column]
        if name == "heart_rate":
            values = interpolate_short_gaps(values, int(round(HR_MAX_GAP_S * fs)))
        records.append(Record(
            dataset=opts.dataset, subject=opts.subject or stem, record=opts.record or stem,
            channel=name, modality=opts.modality or modality, unit=opts.unit or unit, fs=fs,
            samples=finite_or_nan(values[span]), offset_s=span.start / fs,
            labels=labels.copy(),
        ))
    return records
