"""Frequency-domain scores of a forecast against the truth, per window.

For a segment ``x`` of ``H`` samples (the forecast or the truth over one horizon):

- the **power spectrum** is the periodogram of the mean-removed, Hann-tapered segment,
  ``S[k] = |sum_t w_t (x_t - mean(x)) e^{-2 pi i k t / H}|^2 / sum_t w_t^2`` for ``k = 1..floor(H/2)``
  (``w_t = 0.5 - 0.5 cos(2 pi t / H)``; the DC bin is dropped: the level is scored by MSE/MAE);
- the **log-spectral distance** (dB) is ``LSD = sqrt(mean_k (10 log10((S_f[k] + e) / (S_t[k] + e)))^2)`` with the
  floor ``e = FLOOR * mean_k S_t[k] + 1e-12``: 0 for identical segments; power more than 40 dB below the truth's
  mean bin power counts as absent;
- the **spectral correlation** is Pearson's r between ``S_f`` and ``S_t`` over the bins: 1 when they are
  proportional; when one of them is flat (zero variance) it is 1 if both are equal and 0 otherwise, so it is
  always defined.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FLOOR", "MIN_LENGTH", "power_spectrum", "log_spectral_distance", "spectral_correlation"]

#: Relative floor of the log-spectral distance (-40 dB of the truth's mean bin power).
FLOOR = 1e-4
#: Shortest segment with a spectrum of at least two bins.
MIN_LENGTH = 4


def power_spectrum(x) -> np.ndarray:
    """Periodogram bins ``1..floor(H/2)`` of the mean-removed, Hann-tapered segments ``x`` (..., H)."""
    x = np.asarray(x, dtype=np.float64)
    H = x.shape[-1]
    if H < MIN_LENGTH:
        raise ValueError(f"a spectrum needs at least {MIN_LENGTH} samples, got {H}")
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(H) / H)
    xc = (x - x.mean(-1, keepdims=True)) * w
    return np.abs(np.fft.rfft(xc, axis=-1)[..., 1:H // 2 + 1]) ** 2 / np.sum(w * w)


def log_spectral_distance(pred, truth, floor: float = FLOOR) -> np.ndarray:
    """RMS over frequency bins of the dB ratio of the forecast's and the truth's power (see the module)."""
    sp, st = power_spectrum(pred), power_spectrum(truth)
    e = floor * st.mean(-1, keepdims=True) + 1e-12
    d = 10.0 * np.log10((sp + e) / (st + e))
    return np.sqrt(np.mean(d * d, axis=-1))


def spectral_correlation(pred, truth) -> np.ndarray:
    """Pearson correlation of the two power spectra over the bins (see the module for flat spectra)."""
    sp, st = power_spectrum(pred), power_spectrum(truth)
    a = sp - sp.mean(-1, keepdims=True)
    b = st - st.mean(-1, keepdims=True)
    va, vb = (a * a).sum(-1), (b * b).sum(-1)
    tiny = 1e-24
    flat = (va <= tiny * np.maximum(1.0, (sp * sp).sum(-1))) | (vb <= tiny * np.maximum(1.0, (st * st).sum(-1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(-1) / np.sqrt(va * vb)
    same = np.all(np.isclose(sp, st, rtol=1e-9, atol=1e-12), axis=-1)
    return np.where(flat, np.where(same, 1.0, 0.0), np.clip(r, -1.0, 1.0))
