"""Per-channel signal preparation: cleaning, resampling, filtering, normalization.

Every function is a pure NumPy/SciPy function of an array and a few numbers, so a step can be
tested alone and the ingest stage stays a thin composition of them.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

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
    lo, hi = np.percentile(x[ok], [0.5, 99.5], overwrite_input=True)  # x[ok] is a copy
    spread = hi - lo
    if spread <= 0:
        return np.zeros(x.shape, bool)
    width = max(3, int(round(0.05 * fs)) | 1)
    filled = fill_missing(x, ~ok)
    return ok & _far_from_running_median(filled, width, range_factor * spread)


#: Fraction of the samples above which ``_far_from_running_median`` filters the whole signal.
_FULL_MEDIAN_SHARE = 0.3


def _far_from_running_median(x: np.ndarray, width: int, limit: float) -> np.ndarray:
    """``abs(x - ndimage.median_filter(x, size=width, mode="nearest")) > limit``, exactly, for a finite
    1-D ``x`` and an odd ``width``, computing the median only where the answer can be true.

    A sample's median is one of the values in its window, so ``abs(x - median)`` is at most the
    window's range. Cut ``x`` into blocks of at least ``width // 2`` samples: a window then lies in
    its block and the two neighbours, whose joint range bounds the residual of every sample in the
    block (float subtraction is monotonic, so the bound holds after rounding too). Only blocks whose
    bound exceeds ``limit`` (an R wave, a pop) get the median, from ``median_filter`` run on those
    stretches with ``width // 2`` samples of context on each side (clipped indices reproduce
    ``mode="nearest"``); the median is an order statistic, so it is the very same value.
    """
    n = x.size
    half = width // 2
    out = np.zeros(n, bool)
    if n == 0:
        return out
    block = max(half, 16)
    starts = np.arange(0, n, block)
    bmin, bmax = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    nmin = np.minimum(bmin, np.minimum(np.r_[bmin[:1], bmin[:-1]], np.r_[bmin[1:], bmin[-1:]]))
    nmax = np.maximum(bmax, np.maximum(np.r_[bmax[:1], bmax[:-1]], np.r_[bmax[1:], bmax[-1:]]))
    suspect = (nmax - nmin) > limit
    if not suspect.any():
        return out
    if suspect.mean() > _FULL_MEDIAN_SHARE:
        return np.abs(x - ndimage.median_filter(x, size=width, mode="nearest")) > limit
    # Runs of consecutive suspect blocks -> sample spans [a, e).
    edges = np.diff(np.r_[0, suspect.astype(np.int8), 0])
    a = np.flatnonzero(edges == 1) * block
    e = np.minimum(np.flatnonzero(edges == -1) * block, n)
    seg_len = (e - a) + 2 * half
    offsets = np.r_[0, np.cumsum(seg_len)[:-1]]
    pos = np.arange(int(seg_len.sum())) + np.repeat(a - half - offsets, seg_len)
    values = x[np.clip(pos, 0, n - 1)]
    med = ndimage.median_filter(values, size=width, mode="nearest")
    inner = (pos >= np.repeat(a, seg_len)) & (pos < np.repeat(e, seg_len))
    where = pos[inner]
    out[where] = np.abs(x[where] - med[inner]) > limit
    return out


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
    if n_out == 0 or not mask.any():
        return np.zeros(n_out, bool)
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


@lru_cache(maxsize=16)
def _unit_ramp(n: int) -> np.ndarray:
    """The centred ramp ``0 .. n-1`` scaled to unit norm: with the constant it spans the lines."""
    t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    t /= np.sqrt(np.sum(t * t))
    t.flags.writeable = False
    return t


def detrend_rows(rows: np.ndarray) -> np.ndarray:
    """:func:`detrend` of every row of a 2-D array at once.

    The least-squares line of a fixed number of samples is a fixed projection onto the span of
    ``[1, t]``: ``x - X (X^T X)^-1 X^T x``. With an orthonormal basis of that span (the constant and
    the centred unit ramp ``r``) it is ``x - mean(x) - (x . r) r``, two row-wise reductions instead of
    a least-squares solve per window. Equal to :func:`detrend` up to float rounding.
    """
    rows = np.asarray(rows, dtype=np.float64)
    n = rows.shape[-1]
    centred = rows - rows.mean(axis=-1, keepdims=True)
    if n < 2:
        return centred
    ramp = _unit_ramp(n)
    # Element-wise product and sum, not a BLAS matrix product: the same bits on every machine
    # and thread count, so stores built by different schedulers stay byte-identical.
    slope = (centred * ramp).sum(axis=-1, keepdims=True)
    centred -= slope * ramp
    return centred


def normalize_rows(rows: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`normalize` of every row of a 2-D array: ``(normalized, scale, offset)``, the last two
    one value per row, with the same conventions (ddof=0, IQR / 1.349, a zero scale becomes 1)."""
    rows = np.asarray(rows)
    if method == "none":
        return rows, np.ones(rows.shape[0]), np.zeros(rows.shape[0])
    if method == "zscore":
        # each row measured in units of its own largest deviation first: the squares of 1e-310 underflow to
        # 0 and those of 1e300 overflow, either way leaving a scale of 1 and windows of zeros or of inf
        offset = np.mean(rows, axis=1)
        unit = np.max(np.abs(rows - offset[:, None]), axis=1)
        unit = np.where(np.isfinite(unit) & (unit > 0), unit, 1.0)
        scale = np.std((rows - offset[:, None]) / unit[:, None], axis=1) * unit
    elif method == "robust":
        q1, offset, q3 = np.percentile(rows, [25, 50, 75], axis=1)
        scale = (q3 - q1) / 1.349
    else:
        raise ValueError(f"unknown normalization {method!r}")
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    return (rows - offset[:, None]) / scale[:, None], scale, offset
