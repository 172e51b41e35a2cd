"""Automatic delay-embedding parameters: lag, Theiler window, and their resolution for one window.

A scalar signal ``x`` is unfolded into the vectors
``X_i = (x_i, x_{i+lag}, ..., x_{i+(emb_dim-1) lag})`` (Takens' delay embedding). The metrics of
:mod:`pipeline.metrics.dynamics` need three numbers for it: the embedding dimension, the lag, and
the Theiler window ``min_tsep`` (neighbours closer than that in time are ignored, because they are
close only by the continuity of the signal, not by a return of the dynamics). The functions here
choose them from the window when the caller does not, with the rules documented on each, and
:func:`resolve_embedding` caps the automatic ones so that enough embedded vectors remain in a short
window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._common import Undefined, as_signal, check_fs, positive_int, require

#: Embedding dimension when the caller gives none: nolds ``lyap_r``'s default, and enough to unfold
#: attractors of correlation dimension up to about 4.5 (Takens: emb_dim > 2 D) -- more than any
#: physiological signal at the length of one window can resolve.
DEFAULT_EMB_DIM = 10

#: Fewest embedded vectors (after the caller's reserve) on which the slopes mean anything.
MIN_VECTORS = 32

LAG_METHODS = ("autocorrelation", "mutual_information")


@dataclass(frozen=True)
class Embedding:
    """Delay-embedding parameters: dimension, lag and Theiler window, all in samples."""

    emb_dim: int
    lag: int
    min_tsep: int

    def n_vectors(self, n: int) -> int:
        """Number of embedded vectors of a signal of ``n`` samples."""
        return n - (self.emb_dim - 1) * self.lag


def _default_max_lag(n: int, max_lag) -> int:
    if max_lag is None:
        return max(1, n // 4)
    return positive_int(max_lag, "max_lag")


def _signal(x) -> np.ndarray:
    x = as_signal(x)
    require(x, 4)
    return x


def autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Biased, mean-removed autocorrelation ``r(0..max_lag)`` of ``x`` (``r(0) = 1``), by FFT."""
    n = x.size
    centred = x - x.mean()
    spectrum = np.fft.rfft(centred, 2 * n)  # zero padding to 2n: linear, not circular, correlation
    acov = np.fft.irfft(spectrum * np.conj(spectrum), 2 * n)[: max_lag + 1]
    return acov / acov[0]


def autocorrelation_lag(x, max_lag=None) -> int:
    """First lag (samples) at which the autocorrelation of ``x`` falls below ``1/e``.

    Rule: ``lag = min{k >= 1 : r(k) < 1/e}`` with the biased, mean-removed autocorrelation ``r``.
    The ``1/e`` decorrelation time is the classic choice for a delay-embedding lag (coordinates
    still related, no longer redundant). nolds ``lyap_r`` uses the weaker threshold ``1 - 1/e``
    on a non-centred autocorrelation, so its lags are shorter; pass ``lag`` explicitly to compare.

    Fallback: when ``r`` stays above ``1/e`` up to ``max_lag`` (default ``n // 4``), the
    decorrelation time is at least ``max_lag`` and ``max_lag`` is returned. The result is >= 1.

    Raises :class:`~pipeline.metrics._common.Undefined` on a constant or non-finite signal.
    """
    x = _signal(x)
    max_lag = min(_default_max_lag(x.size, max_lag), x.size - 1)
    r = autocorrelation(x, max_lag)
    below = np.flatnonzero(r[1:] < 1.0 / math.e)
    return int(below[0]) + 1 if below.size else max_lag


def mutual_information(x: np.ndarray, lag: int, bins: int) -> float:
    """Mutual information (nats) between ``x_t`` and ``x_{t+lag}`` from a ``bins x bins`` histogram
    of equal-width bins over the range of ``x``."""
    lo, hi = float(x.min()), float(x.max())
    codes = np.minimum(((x - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
    a, b = codes[:-lag], codes[lag:]
    joint = np.bincount(a * bins + b, minlength=bins * bins).astype(np.float64).reshape(bins, bins)
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])))


def mutual_information_lag(x, bins=16, max_lag=None) -> int:
    """First local minimum (samples) of the time-delayed mutual information of ``x``.

    Fraser & Swinney (1986): the lag at which ``I(x_t; x_{t+lag})`` has its first local minimum
    makes the delay coordinates as independent as the dynamics allow without being unrelated. The
    mutual information is estimated from a ``bins x bins`` histogram with equal-width bins.

    Rule: the first ``k`` in ``1..max_lag-1`` with ``I(k) < I(k-1)`` and ``I(k) <= I(k+1)``.
    Fallback: when ``I`` has no local minimum up to ``max_lag`` (default ``n // 4``), the lag of its
    smallest value in ``1..max_lag``. The result is >= 1.

    References: A. M. Fraser and H. L. Swinney, Phys. Rev. A 33, 1134 (1986).
    """
    x = _signal(x)
    bins = positive_int(bins, "bins", minimum=2)
    max_lag = min(_default_max_lag(x.size, max_lag), x.size - 2)
    if max_lag < 1:
        raise Undefined("too_short", f"too short ({x.size} samples) for a mutual-information lag")
    mi = np.array([mutual_information(x, k, bins) if k else np.inf for k in range(max_lag + 1)])
    for k in range(1, max_lag):
        if mi[k] < mi[k - 1] and mi[k] <= mi[k + 1]:
            return k
    return int(np.argmin(mi[1:])) + 1


def mean_period(x, fs) -> float:
    """Mean period of ``x`` in samples: ``1 / f_mean`` with ``f_mean`` the power-weighted mean
    frequency (cycles per sample) of the periodogram, the zero frequency excluded.

    This is nolds' default ``min_tsep`` (before rounding up), computed the same way (FFT zero
    padded to ``2n - 1``) except that the mean is removed first so that an offset does not leak
    into the low frequencies. ``fs`` is validated only: the period is counted in samples.
    """
    x = _signal(x)
    check_fs(fs)
    n = x.size
    power = np.abs(np.fft.rfft(x - x.mean(), 2 * n - 1))[1:] ** 2
    freqs = np.fft.rfftfreq(2 * n - 1)[1:]
    total = power.sum()
    if not total > 0:
        raise Undefined("no_power", "no power at non-zero frequencies")
    return float(total / np.sum(freqs * power))


def resolve_embedding(x, fs, emb_dim=None, lag=None, min_tsep=None, lag_method="autocorrelation",
                      reserve=0) -> Embedding:
    """The embedding parameters for ``x``: the caller's where given, automatic ones otherwise.

    Defaults:

    - ``emb_dim``: :data:`DEFAULT_EMB_DIM` (10, as nolds ``lyap_r``).
    - ``lag``: :func:`autocorrelation_lag` (``lag_method="autocorrelation"``) or
      :func:`mutual_information_lag` (``"mutual_information"``), capped so that the embedding
      window ``(emb_dim - 1) lag`` spans at most half of the samples.
    - ``min_tsep``: the Theiler window, ``ceil(mean_period(x))`` samples (nolds' rule), capped at a
      quarter of the embedded vectors so that at least half of them remain candidate neighbours of
      any vector.

    The caps do not depend on ``reserve``: the number of vectors at the end that the caller needs
    beyond the usable ones (``trajectory_len - 1`` for the Lyapunov exponent, whose neighbours must
    be followable), which only enters the check of :func:`check_vectors`. Explicit values are never
    changed: when they (or the capped defaults) leave too few vectors,
    :class:`~pipeline.metrics._common.Undefined` is raised. Bad parameter values raise
    ``ValueError``.
    """
    x = as_signal(x)
    fs = check_fs(fs)
    emb_dim = DEFAULT_EMB_DIM if emb_dim is None else positive_int(emb_dim, "emb_dim")
    if lag is not None:
        lag = positive_int(lag, "lag")
    if min_tsep is not None:
        min_tsep = positive_int(min_tsep, "min_tsep", minimum=0)
    reserve = positive_int(reserve, "reserve", minimum=0)
    if lag_method not in LAG_METHODS:
        raise ValueError(f"lag_method must be one of {LAG_METHODS}, got {lag_method!r}")
    require(x, 4)
    n = x.size

    if lag is None:
        lag = autocorrelation_lag(x) if lag_method == "autocorrelation" else mutual_information_lag(x)
        lag = max(1, min(lag, (n // 2) // max(emb_dim - 1, 1)))
    n_vectors = n - (emb_dim - 1) * lag
    if min_tsep is None:
        min_tsep = min(math.ceil(mean_period(x, fs)), max(n_vectors, 0) // 4)
    emb = Embedding(emb_dim=emb_dim, lag=lag, min_tsep=min_tsep)
    check_vectors(n, emb, reserve)
    return emb


def check_vectors(n: int, emb: Embedding, reserve: int = 0) -> None:
    """Raise :class:`~pipeline.metrics._common.Undefined` unless a signal of ``n`` samples leaves,
    after ``reserve`` vectors at the end, at least ``max(MIN_VECTORS, 2 min_tsep + 2)`` usable
    embedded vectors: fewer, and some vector has no neighbour outside its Theiler window (or too
    few pairs remain for a slope to mean anything)."""
    usable = emb.n_vectors(n) - reserve
    need = max(MIN_VECTORS, 2 * emb.min_tsep + 2)
    if usable < need:
        raise Undefined("too_short", f"too short ({n} samples) for emb_dim={emb.emb_dim}, lag={emb.lag},"
                                     f" min_tsep={emb.min_tsep} and {reserve} reserved vectors:"
                                     f" {max(usable, 0)} < {need} vectors")
