"""Long-range correlation exponents of one window: rescaled-range Hurst exponent and DFA alpha.

Both split the window into subseries of several lengths ``n``, measure a fluctuation at each length
and fit a line to ``log(fluctuation)`` against ``log(n)``; the slope is the exponent. The defaults
(scales, corrections, overlap) are those of nolds, so that results compare one to one; the line is
always fitted by ordinary least squares (nolds' ``fit="poly"``), never by RANSAC, whose random
consensus would make the value depend on a random state and on scikit-learn.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import boolean, float64, int64, njit

from ._common import (Undefined, as_signal, check_fs, lstsq_slope, nan_if_undefined, positive_int, require,
                      signatures)

I8 = int64[::1]

#: Fewest samples either exponent is computed on: at least three distinct scales (nolds' default
#: scales give ``3, 4, 5`` at 16 samples for R/S and ``4..9`` from 11 samples on for DFA).
MIN_LENGTH_HURST = 16
MIN_LENGTH_DFA = 11

FITS = ("poly",)


def logmid_n(max_n: int, ratio: float = 1 / 4.0, nsteps: int = 15) -> np.ndarray:
    """nolds' default R/S scales: up to ``nsteps`` integers evenly spaced on a log scale over the middle
    ``ratio`` of ``[0, log(max_n)]`` (rounded, duplicates removed). Cuts off the very short
    subseries (high variance of R and S) and the very long ones (too few to average)."""
    log_max = np.log(max_n)
    span = log_max * ratio
    start = log_max * (1 - ratio) * 0.5
    midrange = start + 1.0 * np.arange(nsteps) / nsteps * span
    return np.unique(np.round(np.exp(midrange)).astype("int32")).astype(np.int64)


def logarithmic_n(min_n: float, max_n: float, factor: float) -> np.ndarray:
    """nolds' ``logarithmic_n``: ``min_n, min_n f, min_n f^2, ... <= max_n``, rounded down, duplicates
    removed (the same float arithmetic, so the same integers)."""
    max_i = int(np.floor(np.log(1.0 * max_n / min_n) / np.log(factor)))
    ns = [min_n]
    for i in range(max_i + 1):
        n = int(np.floor(min_n * (factor ** i)))
        if n > ns[-1]:
            ns.append(n)
    return np.asarray(ns, dtype=np.int64)


def default_dfa_nvals(n: int) -> np.ndarray:
    """nolds' default DFA scales for ``n`` samples: ``logarithmic_n(4, 0.1 n, 1.2)`` above 70 samples
    (at least 10 windows per scale, Hardstone et al. 2012), ``4..9`` from 11 to 70 samples."""
    return np.array(_default_dfa_nvals(n), dtype=np.int64)


@functools.lru_cache(maxsize=64)
def _default_dfa_nvals(n: int) -> tuple[int, ...]:
    if n > 70:
        return tuple(int(v) for v in logarithmic_n(4, 0.1 * n, 1.2))
    return tuple(range(4, 10))


@njit(cache=True, nogil=True)
def _expected_rs(n):
    """Anis-Lloyd-Peters expected ``(R/S)_n`` of white noise (Weron 2002), as in nolds: the gamma
    ratio for ``n <= 340`` and its asymptotic form above, where the gammas overflow."""
    back = 0.0
    for i in range(1, n):
        back += math.sqrt((n - i) / i)
    if n <= 340:
        middle = math.gamma((n - 1) * 0.5) / math.sqrt(math.pi) / math.gamma(n * 0.5)
    else:
        middle = 1.0 / math.sqrt(n * math.pi * 0.5)
    return (n - 0.5) / n * middle * back


@njit(signatures(lambda a: float64(a, I8, boolean, boolean)), cache=True, nogil=True)
def _hurst_rs(x, nvals, corrected, unbiased):
    """Slope of ``log (R/S)_n`` on ``log n`` (+ 0.5 after the expected-value correction); nan when
    fewer than two scales have a non-constant subseries."""
    total = x.size
    log_n = np.empty(nvals.size)
    log_rs = np.empty(nvals.size)
    count = 0
    for s in range(nvals.size):
        n = nvals[s]
        rs_sum = 0.0
        used = 0
        for start in range(0, (total // n) * n, n):
            seg_sum = 0.0
            lo_x, hi_x = x[start], x[start]
            for i in range(start, start + n):
                seg_sum += x[i]
                lo_x = min(lo_x, x[i])
                hi_x = max(hi_x, x[i])
            if hi_x == lo_x:
                continue  # a constant subseries has no rescaled range (R = S = 0); nolds skips R == 0
            mean = seg_sum / n
            cum, sq = 0.0, 0.0
            lo_cum, hi_cum = np.inf, -np.inf
            for i in range(start, start + n):
                d = x[i] - mean
                cum += d
                sq += d * d
                lo_cum = min(lo_cum, cum)
                hi_cum = max(hi_cum, cum)
            sd = math.sqrt(sq / (n - 1 if unbiased else n))
            rs_sum += (hi_cum - lo_cum) / sd
            used += 1
        if used == 0:
            continue
        log_n[count] = math.log(n)
        log_rs[count] = math.log(rs_sum / used)
        if corrected:
            log_rs[count] -= math.log(_expected_rs(n))
        count += 1
    slope = lstsq_slope(log_n, log_rs, count)
    return slope + 0.5 if corrected else slope


@nan_if_undefined
def hurst_rs(x, fs, nvals=None, fit="poly", corrected=True, unbiased=True) -> float:
    """Hurst exponent by rescaled-range (R/S) analysis.

    ``H`` measures long-term memory: about 0.5 when increments are uncorrelated (white noise),
    above 0.5 for persistent signals (a rise tends to be followed by a rise, over many scales),
    below 0.5 for anti-persistent ones. R/S also rises for any non-stationarity (drifts, trends), so
    read it together with :func:`dfa`, which removes local trends.

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz; validated only, ``H`` is dimensionless.
    nvals : sequence of int, optional
        Subseries lengths ``n >= 2`` (samples). Default: nolds' ``logmid_n(N, 1/4, 15)``, up to 15
        lengths log-spaced over the middle quarter of ``[0, log N]`` (13 to 68 at N = 1024).
    fit : {"poly"}
        Line fit of the log-log points: ordinary least squares (nolds' RANSAC is not offered).
    corrected : bool
        Subtract the Anis-Lloyd-Peters expected ``log (R/S)_n`` of white noise and add 0.5 (nolds'
        default): removes the small-``n`` bias that makes uncorrected R/S overestimate ``H``.
    unbiased : bool
        ``S`` with ``ddof=1`` (nolds' default: the subseries mean is estimated).

    Returns
    -------
    float
        ``H``; nan when the window is shorter than 16 samples, constant or non-finite, or fewer than
        two scales have a non-constant subseries.

    Notes
    -----
    Each scale ``n`` cuts the window into ``m = N // n`` consecutive subseries (the remainder is
    dropped). For subseries ``k`` with mean ``\\bar x_k``, cumulative deviations
    ``Y_k(t) = \\sum_{i \\le t} (x_i - \\bar x_k)``, range ``R_k = \\max_t Y_k - \\min_t Y_k`` and
    standard deviation ``S_k``:

    .. math::

        (R/S)_n = \\frac{1}{m'} \\sum_k \\frac{R_k}{S_k}, \\qquad
        H = 0.5 + \\operatorname{slope}\\big(\\log n,\\ \\log (R/S)_n - \\log E[(R/S)_n]\\big),

    with the Anis-Lloyd-Peters expectation
    ``E[(R/S)_n] = \\frac{n - 1/2}{n} \\frac{\\Gamma((n-1)/2)}{\\sqrt\\pi\\,\\Gamma(n/2)}
    \\sum_{i=1}^{n-1} \\sqrt{(n-i)/i}`` (``corrected=False``: ``H`` is the plain slope). Constant
    subseries are left out of the mean (``m'`` counts the others), as nolds drops ``R = 0``.

    References
    ----------
    H. E. Hurst, "Long-term storage capacity of reservoirs", Trans. Am. Soc. Civ. Eng. 116, 770 (1951).
    A. A. Anis and E. H. Lloyd, Biometrika 63, 111 (1976); E. E. Peters, Fractal Market Analysis (1994).
    R. Weron, "Estimating long-range dependence: finite sample properties and confidence intervals",
    Physica A 312, 285-299 (2002).
    C. Schoelzel, nolds ``hurst_rs`` (same definition and defaults).
    """
    x = as_signal(x)
    check_fs(fs)
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    given = _scales(nvals, minimum=2)
    require(x, MIN_LENGTH_HURST)
    scales = logmid_n(x.size) if given is None else given
    # Scales longer than the window have no subseries; nolds gets nan for them and drops them.
    h = _hurst_rs(x, np.ascontiguousarray(scales[scales <= x.size]), bool(corrected), bool(unbiased))
    if not np.isfinite(h):
        raise Undefined("degenerate_fit", "fewer than two scales with a non-constant subseries")
    return h


def _scales(nvals, minimum: int) -> np.ndarray | None:
    """Validated caller's scales: at least two integers, each ``>= minimum``."""
    if nvals is None:
        return None
    arr = np.asarray(nvals)
    if arr.ndim != 1 or arr.size < 2 or not np.issubdtype(arr.dtype, np.number) \
            or not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise ValueError(f"nvals must be at least two integers, got {nvals!r}")
    if arr.min() < minimum:
        raise ValueError(f"nvals must all be >= {minimum}, got {nvals!r}")
    return arr.astype(np.int64)


@njit(cache=True, nogil=True)
def _orthonormal_polynomials(n, order):
    """Rows: an orthonormal basis of the polynomials of degree ``<= order`` sampled at ``t = 0..n-1``
    (Gram-Schmidt, twice, on the powers of ``t`` mapped to ``[-1, 1]``). Projecting a window on it is
    the least-squares polynomial fit, without forming ill-conditioned normal equations."""
    basis = np.empty((order + 1, n))
    half = (n - 1) / 2.0
    for k in range(order + 1):
        for t in range(n):
            basis[k, t] = ((t - half) / half) ** k if half > 0 else 1.0
        for _ in range(2):
            for j in range(k):
                dot = 0.0
                for t in range(n):
                    dot += basis[j, t] * basis[k, t]
                for t in range(n):
                    basis[k, t] -= dot * basis[j, t]
        norm = 0.0
        for t in range(n):
            norm += basis[k, t] * basis[k, t]
        norm = math.sqrt(norm)
        for t in range(n):
            basis[k, t] /= norm
    return basis


#: Rounding floor of a residual, in units of ``n (eps max |y|)^2`` (``y`` the profile, whose cumulative
#: sum carries errors of ``eps |y|`` per sample): a window whose residual is below it is a polynomial
#: of the fitted degree up to rounding (a staircase EDA trace has many such windows), and its
#: residual is set to exactly 0, the value exact arithmetic gives. nolds keeps the rounding noise
#: (``F(n)`` about 1e-13), whose logarithm then drags the fitted slope anywhere.
ROUNDING_FLOOR = 64.0

#: The one-pass DFA-1 residual loses ``log10(S_yy / residual)`` digits to cancellation; below this
#: ratio the window is recomputed in three passes, so every residual keeps at least 11 digits.
ONE_PASS_MIN_RATIO = 1e-5


@njit(cache=True, nogil=True)
def _rounding_floor(n, walk_max):
    return n * ROUNDING_FLOOR * (walk_max * 2.220446049250313e-16) ** 2


@njit(cache=True, nogil=True)
def _linear_residual(walk, start, n):
    """Residual sum of squares of the least-squares line through ``walk[start:start + n]``.

    One pass: ``S_yy - S_y^2 / n - S_ty^2 / S_tt`` from sums of the window shifted by its first value
    (so the sums are of the size of the local excursion, not of the profile). Where that cancels
    too much, three exact passes (mean, slope, residuals), with the rounding floor applied."""
    origin = walk[start]
    s_y, s_ty, s_yy = 0.0, 0.0, 0.0
    for t in range(n):
        y = walk[start + t] - origin
        s_y += y
        s_ty += t * y
        s_yy += y * y
    t_mean = (n - 1) / 2.0
    s_tt = n * (n * n - 1) / 12.0  # sum of (t - t_mean)^2 over t = 0..n-1
    sty_c = s_ty - t_mean * s_y
    resid = s_yy - s_y * s_y / n - sty_c * sty_c / s_tt
    if resid > ONE_PASS_MIN_RATIO * s_yy:
        return resid
    y_mean = s_y / n
    s_ty = 0.0
    for t in range(n):
        s_ty += (t - t_mean) * (walk[start + t] - origin - y_mean)
    slope = s_ty / s_tt
    resid, walk_max = 0.0, 0.0
    for t in range(n):
        r = walk[start + t] - origin - y_mean - slope * (t - t_mean)
        resid += r * r
        walk_max = max(walk_max, abs(walk[start + t]))
    return resid if resid > _rounding_floor(n, walk_max) else 0.0


@njit(cache=True, nogil=True)
def _polynomial_residual(walk, start, n, basis, coef):
    """Residual sum of squares of the least-squares polynomial (rows of ``basis``, orthonormal) through
    ``walk[start:start + n]``: project, subtract, sum the squares (no cancellation), rounding floor
    applied."""
    origin = walk[start]
    for k in range(basis.shape[0]):
        dot = 0.0
        for t in range(n):
            dot += basis[k, t] * (walk[start + t] - origin)
        coef[k] = dot
    resid, walk_max = 0.0, 0.0
    for t in range(n):
        r = walk[start + t] - origin
        for k in range(basis.shape[0]):
            r -= coef[k] * basis[k, t]
        resid += r * r
        walk_max = max(walk_max, abs(walk[start + t]))
    return resid if resid > _rounding_floor(n, walk_max) else 0.0


@njit(signatures(lambda a: float64(a, I8, boolean, int64)), cache=True, nogil=True)
def _dfa(x, nvals, overlap, order):
    """Slope of ``log F(n)`` on ``log n``; nan when fewer than two scales have ``F(n) > 0``."""
    total = x.size
    mean = 0.0
    for i in range(total):
        mean += x[i]
    mean /= total
    walk = np.empty(total)  # the profile: cumulative sum of deviations from the mean
    acc = 0.0
    for i in range(total):
        acc += x[i] - mean
        walk[i] = acc
    log_n = np.empty(nvals.size)
    log_f = np.empty(nvals.size)
    coef = np.empty(order + 1)
    count = 0
    for s in range(nvals.size):
        n = nvals[s]
        basis = _orthonormal_polynomials(n, order)  # for the general path; order 1 has its own
        # nolds' windows: starts range(0, N - n, n // 2) when overlapping (so the window that would
        # end exactly at the last sample is left out), consecutive N // n windows otherwise.
        step = n // 2 if overlap else n
        stop = total - n if overlap else total - n + 1
        sum_sq = 0.0
        windows = 0
        for start in range(0, stop, step):
            if order == 1:
                resid = _linear_residual(walk, start, n)
            else:
                resid = _polynomial_residual(walk, start, n, basis, coef)
            sum_sq += resid / n
            windows += 1
        if windows == 0:
            continue
        fluctuation = math.sqrt(sum_sq / windows)
        if fluctuation > 0.0:  # nolds drops zero fluctuations
            log_n[count] = math.log(n)
            log_f[count] = math.log(fluctuation)
            count += 1
    return lstsq_slope(log_n, log_f, count)


@nan_if_undefined
def dfa(x, fs, nvals=None, overlap=True, order=1, fit_exp="poly") -> float:
    """Detrended fluctuation analysis: the scaling exponent ``alpha`` of the detrended profile.

    ``alpha`` tells how fluctuations grow with the time scale once local (polynomial) trends are
    removed: 0.5 for uncorrelated noise, 1.0 for 1/f (pink) noise, 1.5 for Brownian motion; between
    0.5 and 1 persistent long-range correlations, below 0.5 anti-persistent ones. Heart-rate and gait
    series of healthy subjects sit near 1; loss of that complexity moves it towards 0.5 or 1.5.

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz; validated only, ``alpha`` is dimensionless.
    nvals : sequence of int, optional
        Window lengths (samples), each ``> order + 1`` so that a residual remains. Default: nolds'
        ``logarithmic_n(4, 0.1 N, 1.2)`` (4 to N/10, factor 1.2: at least 10 windows per scale),
        ``4..9`` for 11 to 70 samples; lengths ``<= order + 1`` are dropped from the default.
    overlap : bool
        Windows overlapping by half (nolds' default: about twice the windows, smoother ``F(n)``);
        ``False`` for consecutive windows (antropy's only choice).
    order : int
        Degree of the local polynomial trend removed in each window (DFA-1 by default).
    fit_exp : {"poly"}
        Line fit of the log-log points: ordinary least squares (nolds' RANSAC is not offered).

    Returns
    -------
    float
        ``alpha``; nan when the window is shorter than 11 samples or not longer than the largest
        scale, constant or non-finite, or fewer than two scales have a non-zero fluctuation.

    Notes
    -----
    Profile ``y(i) = \\sum_{j \\le i} (x_j - \\bar x)``; for each scale ``n`` the profile is cut into
    windows ``W`` of ``n`` samples, a polynomial ``p_W`` of degree ``order`` is fitted to each by least
    squares, and

    .. math::

        F(n) = \\sqrt{\\frac{1}{|\\mathcal W_n|} \\sum_{W \\in \\mathcal W_n}
               \\frac{1}{n} \\sum_{i \\in W} (y(i) - p_W(i))^2}, \\qquad
        \\alpha = \\operatorname{slope}(\\log n,\\ \\log F(n)).

    With ``overlap=True`` the windows start at ``0, n/2, n, ...`` strictly before ``N - n`` (nolds'
    convention); otherwise they are the ``N // n`` consecutive ones. Scales with ``F(n) = 0`` are
    dropped; a window that is a polynomial of degree ``order`` up to rounding (a staircase signal
    has many) counts as exactly 0 rather than as rounding noise, which nolds and antropy keep and
    whose logarithm (about -30) throws the slope off. antropy's ``detrended_fluctuation`` is this
    function with ``overlap=False`` and the same default scales (it takes no parameters).

    References
    ----------
    C.-K. Peng, S. Havlin, H. E. Stanley and A. L. Goldberger, "Quantification of scaling exponents
    and crossover phenomena in nonstationary heartbeat time series", Chaos 5, 82-87 (1995).
    R. Hardstone et al., "Detrended fluctuation analysis: a scale-free view on neuronal
    oscillations", Front. Physiol. 3, 450 (2012) (choice of scales).
    A. L. Goldberger et al., "Fractal dynamics in physiology: alterations with disease and aging",
    PNAS 99 (suppl. 1), 2466-2472 (2002).
    C. Schoelzel, nolds ``dfa`` (same definition and defaults).
    """
    x = as_signal(x)
    check_fs(fs)
    order = positive_int(order, "order", minimum=0)
    if fit_exp not in FITS:
        raise ValueError(f"fit_exp must be one of {FITS}, got {fit_exp!r}")
    given = _scales(nvals, minimum=order + 2)
    require(x, MIN_LENGTH_DFA)
    if given is None:
        scales = default_dfa_nvals(x.size)
        scales = scales[scales >= order + 2]
    else:
        scales = given
    if scales.size < 2:
        raise Undefined("too_short", f"fewer than two default scales longer than order + 1 = {order + 1}")
    if scales.max() >= x.size:
        raise Undefined("too_short", f"too short ({x.size} samples) for windows of {scales.max()} samples")
    alpha = _dfa(x, np.ascontiguousarray(scales), bool(overlap), order)
    if not np.isfinite(alpha):
        raise Undefined("degenerate_fit", "fewer than two scales with a non-zero fluctuation")
    return alpha
