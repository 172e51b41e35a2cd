"""Fractal dimension of one window's waveform: Higuchi, Katz and Petrosian.

Each public function matches its antropy counterpart (tolerances in
``tests/test_metrics_fractal.py``); the kernels are single passes (Higuchi: ``kmax`` passes) with
O(1) extra memory. The dimension of a graph is per sample, so ``fs`` is validated but unused.
"""

from __future__ import annotations

from math import isnan, log, log10

import numpy as np
from numba import float64, int64, njit

from ._common import (Undefined, as_signal, check_fs, lstsq_slope, nan_if_undefined, positive_int, require,
                      signatures)

__all__ = ["higuchi_fd", "katz_fd", "petrosian_fd"]


# --------------------------------------------------------------------------- Higuchi

@njit(signatures(lambda a: float64(a, int64)), cache=True, nogil=True)
def _higuchi_fd(x, kmax):
    """Least-squares slope of ``ln L(k)`` against ``ln(1/k)``, ``k = 1 .. kmax``; ``nan`` when a
    curve length is 0 (a signal periodic with period ``k``)."""
    n = x.size
    log_inverse_k = np.empty(kmax)
    log_length = np.empty(kmax)
    for k in range(1, kmax + 1):
        mean_length = 0.0
        for m in range(k):
            n_steps = (n - m - 1) // k
            # four partial sums break the chain of dependent additions (about 2x faster than one)
            s0 = s1 = s2 = s3 = 0.0
            j = 0
            while j + 4 <= n_steps:
                i = m + j * k
                s0 += abs(x[i + k] - x[i])
                s1 += abs(x[i + 2 * k] - x[i + k])
                s2 += abs(x[i + 3 * k] - x[i + 2 * k])
                s3 += abs(x[i + 4 * k] - x[i + 3 * k])
                j += 4
            while j < n_steps:
                i = m + j * k
                s0 += abs(x[i + k] - x[i])
                j += 1
            length = (s0 + s1) + (s2 + s3)
            # Higuchi's normalization: the sub-series spans k * n_steps of the window's n - 1
            # intervals, so scale it up to n - 1, and divide by k, the time each step covers
            mean_length += length / k * ((n - 1) / (k * n_steps))
        mean_length /= k
        if not mean_length > 0:
            return np.nan
        log_inverse_k[k - 1] = log(1.0 / k)
        log_length[k - 1] = log(mean_length)
    return lstsq_slope(log_inverse_k, log_length, kmax)


@nan_if_undefined
def higuchi_fd(x, fs, kmax: int = 10) -> float:
    r"""Higuchi fractal dimension: how fast the curve length grows as the time scale shrinks.

    Between 1 and 2 for a signal's graph: 1 for a smooth curve, whose length does not depend on
    the scale it is measured at, 2 for white noise, whose length grows like :math:`1/k` per step.
    Brownian motion gives 1.5. Higher means rougher, more irregular fine structure.

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz. Unused (the dimension is per sample) but validated.
    kmax : int, default 10
        Largest time interval :math:`k` in samples (at least 2).

    Returns
    -------
    float
        Higuchi FD; ``nan`` on a window shorter than ``2 * kmax`` samples, constant, non-finite,
        or with a zero curve length at some ``k``.

    Notes
    -----
    For each :math:`k = 1 \dots k_{max}` and offset :math:`m = 0 \dots k-1`, with
    :math:`N_m = \lfloor (N - m - 1)/k \rfloor`,

    .. math::
        L_m(k) = \frac{N - 1}{k^2 N_m} \sum_{j=1}^{N_m} |x_{m+jk} - x_{m+(j-1)k}|, \qquad
        L(k) = \frac{1}{k} \sum_m L_m(k),

    and the FD is the least-squares slope of :math:`\ln L(k)` against :math:`\ln(1/k)`.
    :math:`k_{max} = 10` is antropy's default; Higuchi's curves are straight over that range for
    the noises of the paper. Invariant to gain and offset.

    References
    ----------
    Higuchi, T. (1988). Approach to an irregular time series on the basis of the fractal theory.
    Physica D, 31(2), 277-283.
    """
    x = as_signal(x)
    check_fs(fs)
    kmax = positive_int(kmax, "kmax", 2)
    require(x, 2 * kmax)  # every offset m < kmax has at least one step of kmax samples
    value = _higuchi_fd(x, kmax)
    if isnan(value):
        raise Undefined("degenerate_fit", "zero curve length at some k")
    return value


# --------------------------------------------------------------------------- Katz

@njit(signatures(lambda a: float64(a)), cache=True, nogil=True)
def _katz_fd(x):
    """``log10(L/a) / log10(d/a)``; ``nan`` when the farthest excursion equals the mean step."""
    n = x.size
    total_length = 0.0
    extent = 0.0
    for i in range(1, n):
        total_length += abs(x[i] - x[i - 1])
        extent = max(extent, abs(x[i] - x[0]))
    mean_step = total_length / (n - 1)
    denominator = log10(extent / mean_step)
    if denominator == 0.0:
        return np.nan
    return log10(total_length / mean_step) / denominator


@nan_if_undefined
def katz_fd(x, fs) -> float:
    r"""Katz fractal dimension: total curve length against the curve's spatial extent.

    1 for a monotone signal, whose path goes straight out; larger the more the waveform folds back
    on itself within its range (white noise of a thousand samples gives about 8, not a dimension
    between 1 and 2: the estimator is known to be biased and depends on the window length).

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz. Unused but validated.

    Returns
    -------
    float
        Katz FD; ``nan`` on a window shorter than 3 samples, constant, non-finite, or whose
        farthest excursion from the first sample equals the mean step (0/0 in the formula).

    Notes
    -----
    With :math:`L = \sum_i |x_{i+1} - x_i|` the curve length, :math:`a = L/(N-1)` the mean step
    and :math:`d = \max_i |x_i - x_0|` the extent,

    .. math:: D = \frac{\log_{10}(L/a)}{\log_{10}(d/a)}.

    Distances are along the amplitude only (unit time steps are left out), as antropy and
    mne-features, which makes the value invariant to gain and offset. No parameters.

    References
    ----------
    Katz, M. J. (1988). Fractals and the analysis of waveforms. Comput. Biol. Med., 18(3),
    145-156.
    """
    x = as_signal(x)
    check_fs(fs)
    require(x, 3)
    value = _katz_fd(x)
    if isnan(value):
        raise Undefined("zero_denominator", "extent equals mean step")
    return value


# --------------------------------------------------------------------------- Petrosian

@njit(signatures(lambda a: float64(a)), cache=True, nogil=True)
def _petrosian_fd(x):
    n = x.size
    sign_changes = 0
    # a zero step counts as rising, whatever the sign of the zero
    previous_falling = x[1] < x[0]
    for i in range(2, n):
        falling = x[i] < x[i - 1]
        sign_changes += falling != previous_falling
        previous_falling = falling
    return log10(n) / (log10(n) + log10(n / (n + 0.4 * sign_changes)))


@nan_if_undefined
def petrosian_fd(x, fs) -> float:
    r"""Petrosian fractal dimension: how often the signal turns, on a log scale.

    Counts the sign changes of the first difference (local extrema). 1 for a monotone signal;
    grows slowly with the density of turning points (about 1.03 for white noise of a thousand
    samples). Cheap and coarse: it only sees the binary up/down sequence.

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz. Unused but validated.

    Returns
    -------
    float
        Petrosian FD; ``nan`` on a window shorter than 3 samples, constant or non-finite.

    Notes
    -----
    With :math:`N_\Delta` the number of sign changes in the sequence of differences
    :math:`x_{i+1} - x_i` (a zero difference counts as positive, as in antropy, except that
    antropy's ``np.signbit`` counts a difference of ``-0.0`` as negative; here the sign of a zero
    does not matter),

    .. math:: D = \frac{\log_{10} N}{\log_{10} N + \log_{10}\frac{N}{N + 0.4 N_\Delta}}.

    Invariant to gain and offset. No parameters.

    References
    ----------
    Petrosian, A. (1995). Kolmogorov complexity of finite sequences and recognition of different
    preictal EEG patterns. Proc. 8th IEEE Symp. Computer-Based Medical Systems, 212-217.
    """
    x = as_signal(x)
    check_fs(fs)
    require(x, 3)
    return _petrosian_fd(x)
