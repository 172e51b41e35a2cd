"""Build a PAMAP2-layout ``.dat`` file from real recordings (no synthetic signals).

Sources:

- accelerometry: the Daphnet freezing-of-gait recording S06R02 (``sample("daphnet_s06r02")``): three
  3-axis accelerometers (ankle, thigh "leg", lower back "trunk") at 64 Hz in mg. Each axis is resampled
  to PAMAP2's 100 Hz with :func:`scipy.signal.resample_poly` (up 25, down 16) and converted from mg to
  m/s² (× 9.80665e-3). Axes: x = horizontal forward, y = vertical, z = horizontal lateral.
  They fill the ±16 g accelerometer columns: hand <- leg, chest <- trunk, ankle <- ankle. The ±6 g
  columns get the same values clipped to ±6 g, which is how the real ±6 g sensor saturates (the reader
  skips them anyway).
- heart rate (optional): MIT-BIH record 208 (``sample("mitbih_208")``, 360 Hz ECG). R peaks are found
  with a band-pass filter and :func:`scipy.signal.find_peaks`; the heart rate at a beat is ``60 / RR``
  with RR averaged over the last 4 beats, rounded to whole bpm, as a chest strap reports it (record 208
  is full of premature beats, so single RR intervals jump around). As in PAMAP2 (HR monitor at ~9 Hz inside the
  100 Hz rows) only every 11th row carries a value, the rate of the latest beat; other rows are NaN.

Missing values, placed by this builder where the real dataset has them (documented, fixed positions):

- no real source for temperature, gyroscope, magnetometer and orientation: those columns are NaN;
- wireless dropouts: each IMU's 17 columns are NaN over a few fixed row ranges (:data:`DROPOUTS`),
  as in PAMAP2, where one sensor at a time drops packets;
- heart-rate monitor contact loss: no HR values for :data:`HR_GAP_S` seconds (longer than the reader's
  2 s interpolation limit).

Labels are assigned, the signals are real: activityID 4 (walking) where Daphnet marks no freeze of gait,
0 (transient) where it marks one, and 0 for the first :data:`TRANSIENT_S` seconds, since PAMAP2 files
start with transient rows before the first protocol activity (S06R02 has no freeze in this excerpt).
Timestamps are Daphnet's start time (280 s) plus ``row / 100``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
from scipy import signal as sps

FS = 100.0
DAPHNET_FS = 64.0
MG_TO_MS2 = 9.80665e-3
AXES = ("horiz_fwd", "vert", "horiz_lateral")
#: PAMAP2 IMU -> Daphnet sensor whose accelerometer fills its ±16 g columns.
IMU_SOURCES = {"hand": "leg", "chest": "trunk", "ankle": "ankle"}
IMU_BASE = {"hand": 3, "chest": 20, "ankle": 37}  # 0-based first column of each IMU block
#: Wireless dropouts: IMU -> list of [first_row, stop_row) where its 17 columns are NaN.
DROPOUTS = {"hand": [(2000, 2050), (7300, 7301)], "chest": [(5000, 5010)], "ankle": [(8000, 8200)]}
HR_EVERY = 11
HR_BEATS = 4
HR_GAP_S = (60.0, 63.0)
TRANSIENT_S = 5.0
ACTIVITY_WALKING, ACTIVITY_TRANSIENT = 4, 0


def resample(values: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    ratio = Fraction(fs_out / fs_in).limit_denominator(10000)
    return sps.resample_poly(np.asarray(values, dtype=np.float64), ratio.numerator, ratio.denominator)


def daphnet_acc(daphnet_csv_path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Resampled ±16 g columns in m/s² keyed ``<imu>_<axis>`` (x/y/z), the 100 Hz activity ids, t0."""
    frame = pl.read_csv(daphnet_csv_path)
    t0 = float(frame["timestamp"].str.to_datetime().dt.epoch("ms")[0]) / 1000.0
    acc = {}
    for imu, sensor in IMU_SOURCES.items():
        for axis, source in zip("xyz", AXES):
            acc[f"{imu}_{axis}"] = resample(frame[f"{sensor}_{source}"].to_numpy(), DAPHNET_FS, FS) * MG_TO_MS2
    n = len(next(iter(acc.values())))
    freeze = frame["is_anomaly"].to_numpy()
    nearest = np.minimum(np.floor(np.arange(n) * DAPHNET_FS / FS).astype(int), len(freeze) - 1)
    activity = np.where(freeze[nearest] != 0, ACTIVITY_TRANSIENT, ACTIVITY_WALKING)
    activity[: int(TRANSIENT_S * FS)] = ACTIVITY_TRANSIENT
    return acc, activity, t0


def beat_rate(ecg_npz_path: str | Path, fs: float = 360.0) -> tuple[np.ndarray, np.ndarray]:
    """Beat times (s) and 60/RR heart rate (bpm, rounded) of the ECG in an npz with key ``ecg``."""
    with np.load(ecg_npz_path) as npz:
        ecg = np.asarray(npz["ecg"], dtype=np.float64)
    b, a = sps.butter(3, [5.0, 20.0], btype="band", fs=fs)
    energy = sps.filtfilt(b, a, ecg) ** 2
    peaks, _ = sps.find_peaks(energy, distance=int(0.25 * fs), height=0.3 * np.percentile(energy, 99))
    times = peaks / fs
    rr = np.diff(times)
    # Like a chest strap, report the mean rate over the last HR_BEATS beats.
    mean_rr = np.convolve(rr, np.ones(HR_BEATS) / HR_BEATS, mode="valid")
    return times[HR_BEATS:], np.round(60.0 / mean_rr)


def heart_rate_column(n: int, ecg_npz_path: str | Path | None) -> np.ndarray:
    """The PAMAP2 heart-rate column: every 11th row the latest beat's rate, NaN elsewhere."""
    hr = np.full(n, np.nan)
    if ecg_npz_path is None:
        return hr
    times, rates = beat_rate(ecg_npz_path)
    rows = np.arange(0, n, HR_EVERY)
    latest = np.searchsorted(times, rows / FS, side="right") - 1
    ok = latest >= 0
    hr[rows[ok]] = rates[latest[ok]]
    gap = slice(int(HR_GAP_S[0] * FS), int(HR_GAP_S[1] * FS))
    hr[gap] = np.nan
    return hr


def build_table(daphnet_csv_path: str | Path, ecg_npz_path: str | Path | None = None) -> np.ndarray:
    """The (n, 54) PAMAP2 table, before formatting (see the module docstring)."""
    acc, activity, t0 = daphnet_acc(daphnet_csv_path)
    n = len(activity)
    table = np.full((n, 54), np.nan)
    table[:, 0] = t0 + np.arange(n) / FS
    table[:, 1] = activity
    table[:, 2] = heart_rate_column(n, ecg_npz_path)
    six_g = 6 * 9.80665
    for imu, base in IMU_BASE.items():
        for k, axis in enumerate("xyz"):
            table[:, base + 1 + k] = acc[f"{imu}_{axis}"]
            table[:, base + 4 + k] = np.clip(acc[f"{imu}_{axis}"], -six_g, six_g)
        for start, stop in DROPOUTS[imu]:
            table[start:stop, base:base + 17] = np.nan
    return table


def format_table(table: np.ndarray) -> str:
    """Rows as PAMAP2 writes them: single spaces, ``NaN`` for missing, 6 decimals for measurements."""
    cells = np.char.mod("%.6f", table).astype(object)
    cells[:, 0] = np.char.mod("%.2f", table[:, 0])
    cells[:, 1] = np.char.mod("%d", table[:, 1].astype(int))
    cells[:, 2] = np.char.mod("%.0f", table[:, 2])
    cells[np.isnan(table)] = "NaN"
    return "".join(" ".join(row) + "\n" for row in cells)


def build_pamap2_dat(daphnet_csv_path: str | Path, out_path: str | Path,
                     ecg_npz_path: str | Path | None = None) -> Path:
    """Write the PAMAP2-layout file built from the Daphnet CSV (and MIT-BIH 208 heart rate if given)."""
    out_path = Path(out_path)
    out_path.write_text(format_table(build_table(daphnet_csv_path, ecg_npz_path)))
    return out_path
