"""Forecasting baselines, scored on the same windows and horizons as the model.

Every function takes a batch of contexts ``ctx`` (B, n) (any float dtype; computed in float64) and a horizon
``h`` and returns the forecast (B, h) in the context's scale:

- :func:`last_value`      every future sample equals the context's last sample;
- :func:`window_mean`     every future sample equals the context's mean;
- :func:`seasonal_naive`  repeats the context's last period, the period found by :func:`seasonal_period`
  (the first autocorrelation peak after the first zero crossing that reaches 0.8 of the highest one there); a
  context without one falls back to the last value and is flagged;
- :func:`ar_forecast`     a least-squares AR(p) model with intercept fitted on the context, run recursively.

See ``docs/evaluate.md`` for the formulas.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AR_ORDER", "BASELINES", "last_value", "window_mean", "autocorrelation", "seasonal_period",
           "seasonal_naive", "ar_fit", "ar_forecast", "ar_rollouts"]

#: Order p of the autoregressive baseline (capped at a quarter of the context).
AR_ORDER = 16
#: Relative cut-off of the singular values in the AR least-squares fit (minimum-norm solution below it).
AR_RCOND = 1e-10
#: A peak of the autocorrelation counts as the seasonal period when it reaches this fraction of the highest one.
PEAK_FRACTION = 0.8
#: Names of the baselines, in report order.
BASELINES = ("last_value", "seasonal_naive", "mean", "ar")


def _as2d(ctx) -> np.ndarray:
    x = np.asarray(ctx, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"contexts must have shape (batch, length >= 1), got {x.shape}")
    return x


def last_value(ctx, h: int) -> np.ndarray:
    """``y[t] = x[n-1]`` for every step of the horizon."""
    x = _as2d(ctx)
    return np.repeat(x[:, -1:], h, axis=1)


def window_mean(ctx, h: int) -> np.ndarray:
    """``y[t] = mean(x)`` for every step of the horizon."""
    x = _as2d(ctx)
    return np.repeat(x.mean(1, keepdims=True), h, axis=1)


def autocorrelation(ctx) -> np.ndarray:
    """The unbiased sample autocorrelation ``r[k] = c[k] / c[0]``, ``c[k] = sum_t (x_t - m)(x_{t+k} - m) / (n - k)``
    for lags ``0..n-1`` (B, n); rows of a flat context are all zero."""
    x = _as2d(ctx)
    n = x.shape[1]
    xc = x - x.mean(1, keepdims=True)
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(xc, nfft, axis=1)
    c = np.fft.irfft(f * np.conj(f), nfft, axis=1)[:, :n] / (n - np.arange(n))
    c0 = c[:, :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(c0 > 1e-12 * np.maximum(1.0, np.abs(xc).max(1, keepdims=True)) ** 2, c / c0, 0.0)
    return r


def seasonal_period(ctx) -> np.ndarray:
    """Per context, the seasonal period in samples, or 0 when there is none.

    With ``r`` the autocorrelation (:func:`autocorrelation`) over lags ``1..n//2``: find the first lag ``k0``
    where ``r <= 0`` (the first zero crossing). The peaks after it are the lags ``k0 < k < n//2`` with
    ``r[k-1] <= r[k] > r[k+1]`` and ``r[k] > 0``; the period is the first peak whose ``r`` reaches
    ``PEAK_FRACTION`` (0.8) of the highest peak's. So a small side lobe (a T wave's) does not count as the
    period, and a multiple of the period does not beat the period itself. No zero crossing, or no peak after
    it, gives 0 (a period longer than ``n/2`` cannot be seen twice in the context).
    """
    r = autocorrelation(ctx)
    n = r.shape[1]
    top = max(1, n // 2)
    out = np.zeros(r.shape[0], dtype=np.int64)
    for b in range(r.shape[0]):
        rb = r[b, :top + 1]
        nonpos = np.flatnonzero(rb[1:] <= 0.0)
        if nonpos.size == 0:
            continue
        k0 = 1 + int(nonpos[0])
        if k0 + 2 > top:
            continue
        mid = rb[k0 + 1:top]          # candidate lags k0+1 .. top-1
        prev, nxt = rb[k0:top - 1], rb[k0 + 2:top + 1]
        peaks = np.flatnonzero((mid >= prev) & (mid > nxt) & (mid > 0.0))
        if peaks.size == 0:
            continue
        strong = peaks[mid[peaks] >= PEAK_FRACTION * mid[peaks].max()]
        out[b] = k0 + 1 + int(strong[0])
    return out


def seasonal_naive(ctx, h: int, period=None) -> tuple[np.ndarray, np.ndarray]:
    """``y[t] = x[n - p + (t mod p)]``: the last period ``p`` repeated. Returns ``(forecast, fell_back)`` where
    ``fell_back`` (B,) bool marks the contexts without a period (:func:`seasonal_period` gave 0), forecast
    with the last value instead."""
    x = _as2d(ctx)
    n = x.shape[1]
    p = seasonal_period(x) if period is None else np.broadcast_to(np.asarray(period, dtype=np.int64), (x.shape[0],))
    fell_back = p <= 0
    pp = np.where(fell_back, 1, p)
    t = np.arange(h)[None, :]
    idx = n - pp[:, None] + (t % pp[:, None])
    return np.take_along_axis(x, idx, axis=1), fell_back


def ar_fit(ctx, order: int = AR_ORDER) -> np.ndarray:
    """Least-squares AR(p) with intercept on each context: minimises
    ``sum_{t=p}^{n-1} (x_t - c - sum_{i=1}^{p} a_i x_{t-i})^2`` (minimum-norm solution where the regressors are
    collinear, as on a noiseless sine). Returns ``[c, a_1, ..., a_p]`` (B, p+1), for the standardised context
    ``(x - mean) / std`` (std 1 when flat)."""
    x = _as2d(ctx)
    z, _, _ = _standardise(x)
    n = z.shape[1]
    p = int(order)
    coef = np.zeros((z.shape[0], p + 1))
    if n - p < 1:
        return coef
    # lagged design: row t holds 1, x_{t-1}, ..., x_{t-p}
    cols = [np.ones((z.shape[0], n - p))] + [z[:, p - i:n - i] for i in range(1, p + 1)]
    A = np.stack(cols, axis=2)  # (B, n-p, p+1)
    y = z[:, p:]
    for b in range(z.shape[0]):
        coef[b] = np.linalg.lstsq(A[b], y[b], rcond=AR_RCOND)[0]
    return coef


def _standardise(x: np.ndarray):
    mu = x.mean(1, keepdims=True)
    sd = x.std(1, keepdims=True)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return (x - mu) / sd, mu, sd


def ar_forecast(ctx, h: int, order: int = AR_ORDER) -> np.ndarray:
    """Run the fitted AR(p) of :func:`ar_fit` forward ``h`` steps, feeding each forecast back in. ``p`` is
    capped at ``n // 4`` so the fit has at least three equations per coefficient. Each step is clipped to
    ``[min(x) - R, max(x) + R]``, ``R = max(x) - min(x)``, so an unstable fit stays finite."""
    x = _as2d(ctx)
    return ar_rollouts(x, [x.shape[1]], h, order)[:, 0]


def ar_rollouts(ctx, origins, h: int, order: int = AR_ORDER) -> np.ndarray:
    """The AR(p) of :func:`ar_forecast`, fitted once on the whole context, run ``h`` steps from each of
    ``origins`` (sample indices in ``[p, n]``: the forecast from origin ``o`` starts at sample ``o``, fed the
    true samples before it) -> (B, len(origins), h). Origin ``n`` is :func:`ar_forecast`; earlier ones are the
    fit's in-sample multi-step backtests, which the model's insight weighs against its own (``model/insight.py``)."""
    x = _as2d(ctx)
    n = x.shape[1]
    p = max(1, min(int(order), n // 4))
    origins = [int(o) for o in origins]
    if any(o < p or o > n for o in origins):
        raise ValueError(f"AR({p}) origins must lie in [{p}, {n}], got {origins}")
    coef = ar_fit(x, p)
    z, mu, sd = _standardise(x)
    lo, hi = z.min(1), z.max(1)
    span = hi - lo
    lo, hi = (lo - span)[:, None], (hi + span)[:, None]
    out = np.empty((x.shape[0], len(origins), h))
    lagged = np.stack([z[:, o - p:o][:, ::-1] for o in origins], axis=1)  # (B, O, p): x_{t-1}, ..., x_{t-p}
    for t in range(h):
        v = coef[:, None, 0] + np.einsum("bi,boi->bo", coef[:, 1:], lagged)
        v = np.clip(v, lo, hi)
        out[:, :, t] = v
        lagged = np.concatenate([v[:, :, None], lagged[:, :, :-1]], axis=2)
    return out * sd[:, :, None] + mu[:, :, None]
