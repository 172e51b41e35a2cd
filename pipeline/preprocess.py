"""Per-channel signal preparation: cleaning, resampling, filtering, normalization.

Every function is a pure NumPy/SciPy function of an array and a few numbers, so a step can be
tested alone and the ingest stage stays a thin composition of them.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import ndimage, signal


def missing_mask(x: np.ndarray) -> np.ndarray:
    """Samples that carry no value: NaN or infinite."""
    return ~np.isfinite(x)


def outlier_jumps(x: np.ndarray, fs: float, range_factor: float) -> np.ndarray:
    """Mask of samples that jump away from their 50 ms rolling median by more than
    ``range_factor`` times the channel's 0.5-99.5 percentile range.

    Measured against the range rather than a robust deviation on purpose: sparse features such as
    ECG R waves are statistical outliers of every deviation estimate but never exceed the range.
    """
    ok = np.isfinite(x)
    if ok.sum() < 3:
        return np.zeros(x.shape, bool)
    lo, hi = np.percentile(x[ok], [0.5, 99.5])
    spread = hi - lo
    if spread <= 0:
        return np.zeros(x.shape, bool)
    width = max(3, int(round(0.05 * fs)) | 1)
    filled = fill_missing(x, ~ok)
    residual = np.abs(filled - ndimage.median_filter(filled, size=width, mode="nearest"))
    return ok & (residual > range_factor * spread)


def fill_missing(x: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Linear interpolation over missing samples; edges take the nearest value."""
    if not missing.any():
        return x.astype(np.float64, copy=True)
    good = np.flatnonzero(~missing)
    if good.size == 0:
        return np.zeros(x.shape, np.float64)
    out = x.astype(np.float64, copy=True)
    bad = np.flatnonzero(missing)
    out[bad] = np.interp(bad, good, x[good])
    return out


def resample_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """Integer ``up/down`` closest to ``fs_out/fs_in`` with a denominator below 1000."""
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return ratio.numerator, ratio.denominator


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling with SciPy's anti-aliasing FIR (Kaiser window)."""
    up, down = resample_ratio(fs_in, fs_out)
    if up == down:
        return x.astype(np.float64, copy=True)
    return signal.resample_poly(x, up, down, padtype="line")


def resample_mask(mask: np.ndarray, n_out: int) -> np.ndarray:
    """A missing-sample mask carried to ``n_out`` samples: an output sample is missing when any
    source sample in its span was."""
    if n_out == 0:
        return np.zeros(0, bool)
    edges = np.linspace(0, mask.size, n_out + 1)
    starts = np.floor(edges[:-1]).astype(np.int64)
    stops = np.maximum(np.ceil(edges[1:]).astype(np.int64), starts + 1)
    counts = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    return counts[np.minimum(stops, mask.size)] - counts[np.minimum(starts, mask.size)] > 0


def bandpass(x: np.ndarray, fs: float, low: float, high: float, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (a high-pass when ``low`` is 0)."""
    if low > 0:
        sos = signal.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    else:
        sos = signal.butter(order, high, btype="lowpass", fs=fs, output="sos")
    if x.size <= 3 * (2 * len(sos) + 1):
        return x
    return signal.sosfiltfilt(sos, x)


def notch(x: np.ndarray, fs: float, freq: float, quality: float = 30.0) -> np.ndarray:
    """Zero-phase IIR notch at ``freq`` Hz."""
    b, a = signal.iirnotch(freq, quality, fs=fs)
    if x.size <= 3 * max(len(a), len(b)):
        return x
    return signal.filtfilt(b, a, x)


def normalize(x: np.ndarray, method: str) -> tuple[np.ndarray, float, float]:
    """Return ``(normalized, scale, offset)`` with ``x == normalized * scale + offset``.

    ``zscore`` uses the mean and the population standard deviation (ddof=0), ``robust`` the median
    and the interquartile range divided by 1.349 (the standard deviation of a normal distribution
    with that IQR), ``none`` leaves the values alone. A zero scale becomes 1 so nothing divides by 0.
    """
    if method == "none":
        return x, 1.0, 0.0
    if method == "zscore":
        offset, scale = float(np.mean(x)), float(np.std(x))
    elif method == "robust":
        q1, offset, q3 = (float(v) for v in np.percentile(x, [25, 50, 75]))
        scale = (q3 - q1) / 1.349
    else:
        raise ValueError(f"unknown normalization {method!r}")
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    return (x - offset) / scale, scale, offset


def detrend(x: np.ndarray) -> np.ndarray:
    """Remove the least-squares straight line."""
    return signal.detrend(x, type="linear")
