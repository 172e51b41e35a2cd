"""Entropy and complexity of one window: sample, permutation, spectral and SVD entropy, Lempel-Ziv.

Each public function matches its antropy counterpart with the same parameters (the tolerances are in
``tests/test_metrics_entropy.py``); the kernels are Numba loops with O(n) memory. None of these
quantities is a rate, so ``fs`` only has to be a valid sampling rate; it is accepted everywhere so
that every metric has the signature ``f(x, fs, **params)``.
"""

from __future__ import annotations

import functools
from math import factorial, isinf, isnan, log, log2, sqrt

import numpy as np
from numba import float64, int64, njit
from numpy.lib.stride_tricks import sliding_window_view

from ._common import (Undefined, as_signal, check_fs, nan_if_undefined, positive_int, require,
                      signatures)

__all__ = ["sample_entropy", "permutation_entropy", "spectral_entropy", "svd_entropy", "lempel_ziv"]

#: Above this order the ordinal patterns are counted by sorting their codes instead of in a table
#: of ``order!`` slots (8! = 40320 slots is still small; 9! would be 2.9 MB per call).
_MAX_TABLE_ORDER = 8
#: Largest order whose pattern codes (< order!) fit in an int64.
_MAX_PERMUTATION_ORDER = 20


def _in_unit_interval(value: float) -> float:
    """A normalized entropy, kept in [0, 1]: rounding can put a maximal one an ulp above 1."""
    return min(max(value, 0.0), 1.0)


# --------------------------------------------------------------------------- sample entropy

#: Lags processed side by side by the sample-entropy kernel: their comparisons for one ``j`` read
#: consecutive samples, so the inner loop vectorizes (3x faster than one lag at a time).
_LAG_BLOCK = 64


@njit(signatures(lambda a: float64(a, int64, float64)), cache=True, nogil=True)
def _sample_entropy(x, order, tolerance):
    """``-ln(A/B)``; ``nan`` when ``B == 0``, ``inf`` when only ``A == 0``.

    For each lag, ``run`` is the number of consecutive samples ending at ``j`` with
    ``|x[j] - x[j + lag]| < tolerance``: the template pair ``(j - m + 1, j - m + 1 + lag)`` matches
    for length ``m`` exactly when ``run >= m``. One comparison per pair and lag, no matrix.
    Templates start at ``0 .. n - m - 1`` for both lengths (the last ``m``-template has no
    ``m + 1`` continuation and is left out, Richman & Moorman 2000).

    Lags go in blocks of :data:`_LAG_BLOCK`: for each ``j`` the block's comparisons read
    ``x[j + lag0 : j + lag0 + width]``, contiguous, up to the last ``j`` every lag of the block
    reaches; then each lag finishes its own tail. The counts are those of one lag at a time."""
    n = x.size
    run = np.zeros(_LAG_BLOCK, np.int64)
    count_m = np.zeros(_LAG_BLOCK, np.int64)
    count_m1 = np.zeros(_LAG_BLOCK, np.int64)
    for lag0 in range(1, n - order, _LAG_BLOCK):
        width = min(_LAG_BLOCK, n - order - lag0)
        run[:] = 0
        common = n - 1 - (lag0 + width - 1)  # every lag of the block runs j up to at least here
        for j in range(common):
            xj = x[j]
            ahead = x[j + lag0: j + lag0 + width]  # a slice: no negative-index check to block SIMD
            for k in range(width):
                r = (run[k] + 1) * (abs(xj - ahead[k]) < tolerance)
                run[k] = r
                count_m[k] += r >= order
                count_m1[k] += r > order
        for k in range(width):
            lag = lag0 + k
            last = n - 1 - lag  # x[last + lag] is the last sample
            r = run[k]
            for j in range(common, last):
                r = (r + 1) * (abs(x[j] - x[j + lag]) < tolerance)
                count_m[k] += r >= order
                count_m1[k] += r > order
            # the pair ending at the last sample is an (m+1)-match only; its m-prefix ends at
            # j = last - 1 and was counted above, the m-template starting one later has no continuation
            r = (r + 1) * (abs(x[last] - x[last + lag]) < tolerance)
            count_m1[k] += r > order
    matches_m = count_m.sum()
    matches_m1 = count_m1.sum()
    if matches_m == 0:
        return np.nan
    if matches_m1 == 0:
        return np.inf
    return log(matches_m / matches_m1)  # = -ln(A/B), and +0.0 rather than -0.0 when A == B


@nan_if_undefined
def sample_entropy(x, fs, order: int = 2, r: float = 0.2) -> float:
    r"""Sample entropy (SampEn): how unpredictable the next sample is given the last ``order``.

    The negative log of the conditional probability that two stretches of the signal that stay
    within ``r`` standard deviations of each other for ``order`` samples still do at the next one.
    Near 0 for periodic signals, about 2.2 for uniform white noise at the defaults; larger means
    less regular, less self-similar dynamics.

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz. Unused (SampEn is per sample, not a rate) but validated, so that
        every metric has the same signature.
    order : int, default 2
        Template length :math:`m`.
    r : float, default 0.2
        Tolerance as a fraction of the population standard deviation of ``x``.

    Returns
    -------
    float
        SampEn in nats; ``nan`` when no pair of templates matches for ``order`` or ``order + 1``
        samples (the log would be of 0 or of 0/0), or on a short, constant or non-finite window.

    Notes
    -----
    With templates :math:`u_m(i) = (x_i, \dots, x_{i+m-1})` for :math:`i = 0 \dots N-m-1` (the
    same :math:`N - m` starting points for lengths :math:`m` and :math:`m+1`), Chebyshev distance
    and tolerance :math:`\rho = r\,\sigma_x`,

    .. math::
        B = \#\{i < j : \|u_m(i) - u_m(j)\|_\infty < \rho\}, \quad
        A = \#\{i < j : \|u_{m+1}(i) - u_{m+1}(j)\|_\infty < \rho\}, \quad
        \mathrm{SampEn} = -\ln \frac{A}{B}.

    Self-matches are excluded. Matching is strict (``< rho``) as in PhysioNet's ``sampenc``,
    antropy and nolds (``closed=False``); implementations that use ``<=`` differ only on exact
    ties at distance :math:`\rho`. :math:`m = 2`, :math:`r = 0.2` are Richman & Moorman's and
    PhysioNet's defaults. The kernel counts runs of matching samples along each lag, as
    PhysioNet's code does: O(N^2) time, O(1) extra memory.

    References
    ----------
    Richman, J. S., & Moorman, J. R. (2000). Physiological time-series analysis using approximate
    entropy and sample entropy. Am. J. Physiol. Heart Circ. Physiol., 278(6), H2039-H2049.
    """
    x = as_signal(x)
    check_fs(fs)
    order = positive_int(order, "order")
    if not (np.isfinite(r) and r > 0):
        raise ValueError(f"r must be a positive fraction of the standard deviation, got {r!r}")
    require(x, order + 2)  # at least one pair of (m+1)-templates
    value = _sample_entropy(x, order, float(r) * x.std())
    if isnan(value):
        raise Undefined("no_template_matches", f"no template matches of length {order}")
    if isinf(value):
        raise Undefined("no_template_matches", f"no template matches of length {order + 1}")
    return value


# --------------------------------------------------------------------------- permutation entropy

@njit(signatures(lambda a: float64(a, int64, int64)), cache=True, nogil=True)
def _permutation_entropy_bits(x, order, delay):
    """Shannon entropy (bits) of the ordinal patterns of ``order`` samples ``delay`` apart.

    A pattern is coded by its Lehmer code: for each position, the number of later samples in the
    pattern that are strictly smaller. Equal samples thus keep their order of appearance, the
    ranking of a stable argsort (antropy's convention)."""
    n_patterns = x.size - (order - 1) * delay
    codes = np.empty(n_patterns, dtype=np.int64)
    for i in range(n_patterns):
        code = 0
        for a in range(order):
            pivot = x[i + a * delay]
            smaller_later = 0
            for b in range(a + 1, order):
                smaller_later += x[i + b * delay] < pivot
            code = code * (order - a) + smaller_later
        codes[i] = code

    sum_c_log_c = 0.0  # sum over patterns of count * ln(count)
    if order <= _MAX_TABLE_ORDER:
        n_codes = 1
        for k in range(2, order + 1):
            n_codes *= k
        counts = np.zeros(n_codes, dtype=np.int64)
        for i in range(n_patterns):
            counts[codes[i]] += 1
        for c in counts:
            if c > 1:
                sum_c_log_c += c * log(c)
    else:
        codes.sort()
        run = 1
        for i in range(1, n_patterns + 1):
            if i < n_patterns and codes[i] == codes[i - 1]:
                run += 1
            else:
                if run > 1:
                    sum_c_log_c += run * log(run)
                run = 1
    # H = -sum p ln p with p = c / n  ==  ln n - sum(c ln c) / n
    return (log(n_patterns) - sum_c_log_c / n_patterns) / log(2.0)


@nan_if_undefined
def permutation_entropy(x, fs, order: int = 3, delay: int = 1, normalize: bool = True) -> float:
    r"""Permutation entropy: how evenly the signal visits the possible up/down orderings.

    Counts the ordinal patterns (rank orders) of ``order`` samples ``delay`` apart. Near 0 for a
    monotone or strongly repetitive signal, near 1 (normalized) for white noise, where all
    ``order!`` patterns are equally likely. Depends only on the ranks, so it is unchanged by any
    increasing transform of the amplitude (gain, offset) and robust to outliers.

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz. Unused (the entropy is per pattern) but validated.
    order : int, default 3
        Pattern length :math:`D` (2 to 20).
    delay : int, default 1
        Lag :math:`\tau` between the samples of a pattern, in samples.
    normalize : bool, default True
        Divide by :math:`\log_2 D!` so the value lies in [0, 1]; otherwise bits.

    Returns
    -------
    float
        Permutation entropy; ``nan`` on a window shorter than one pattern, constant or non-finite.

    Notes
    -----
    With :math:`p(\pi)` the relative frequency of ordinal pattern :math:`\pi` among the
    :math:`N - (D-1)\tau` patterns :math:`(x_i, x_{i+\tau}, \dots, x_{i+(D-1)\tau})`,

    .. math:: H = -\frac{1}{\log_2 D!} \sum_{\pi} p(\pi) \log_2 p(\pi).

    Ties are broken by position (the earlier of two equal samples ranks lower), as a stable
    argsort does and as antropy does. :math:`D = 3, \tau = 1` are antropy's defaults and need only
    a few dozen samples per pattern (Bandt & Pompe recommend :math:`N \gg D!`).

    References
    ----------
    Bandt, C., & Pompe, B. (2002). Permutation entropy: a natural complexity measure for time
    series. Phys. Rev. Lett., 88(17), 174102.
    """
    x = as_signal(x)
    check_fs(fs)
    order = positive_int(order, "order", 2)
    if order > _MAX_PERMUTATION_ORDER:
        raise ValueError(f"order must be at most {_MAX_PERMUTATION_ORDER}, got {order}")
    delay = positive_int(delay, "delay")
    require(x, (order - 1) * delay + 1)
    bits = _permutation_entropy_bits(x, order, delay)
    if not normalize:
        return bits
    return _in_unit_interval(bits / log2(factorial(order)))


# --------------------------------------------------------------------------- spectral entropy

@functools.lru_cache(maxsize=16)
def _periodic_hann(nperseg: int) -> np.ndarray:
    """``scipy.signal.get_window("hann", nperseg)``: the periodic Hann window Welch uses."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(nperseg) / nperseg)
    window.setflags(write=False)
    return window


def _one_sided_power(spectra: np.ndarray, nfft: int) -> np.ndarray:
    """Squared magnitude of ``rfft`` output with the negative frequencies folded in, up to the
    constant density scaling, which the normalization cancels."""
    power = spectra.real ** 2 + spectra.imag ** 2
    # every bin but DC (and Nyquist when nfft is even) stands for a positive and a negative frequency
    power[..., 1:nfft // 2 + nfft % 2] *= 2.0
    return power


@nan_if_undefined
def spectral_entropy(x, fs, method: str = "fft", nperseg: int | None = None,
                     normalize: bool = True) -> float:
    r"""Spectral entropy: how spread out the power spectrum is.

    The Shannon entropy of the power spectrum normalized to a probability distribution over
    frequency. Near 0 for a pure tone, where all power is in one bin; near 1 (normalized) for a
    flat, white spectrum (about 0.94 for one periodogram of white noise, whose bins scatter around
    the flat level; closer to 1 with Welch averaging).

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz. It sets the frequency axis; the entropy of the normalized spectrum
        does not depend on it, but it is validated.
    method : {"fft", "welch"}, default "fft"
        ``"fft"``: the periodogram of the whole window (``scipy.signal.periodogram``).
        ``"welch"``: Welch's average of periodic-Hann-windowed periodograms over half-overlapping
        segments of ``nperseg`` samples (``scipy.signal.welch`` defaults).
    nperseg : int, optional
        Welch segment length; default ``min(256, len(x))`` as scipy. Only for ``"welch"``.
    normalize : bool, default True
        Divide by :math:`\log_2` of the number of frequency bins so the value lies in [0, 1];
        otherwise bits.

    Returns
    -------
    float
        Spectral entropy; ``nan`` on a window shorter than 2 samples (or than ``nperseg``),
        constant or non-finite.

    Notes
    -----
    Each segment has its mean removed (so the DC bin is empty and the value is offset
    invariant). With :math:`P_k` the one-sided power in bin :math:`k = 0 \dots K-1`
    (:math:`K = \lfloor n/2 \rfloor + 1` for a segment of :math:`n` samples),

    .. math:: H = -\frac{1}{\log_2 K} \sum_k p_k \log_2 p_k, \qquad p_k = P_k / \sum_j P_j,

    with :math:`0 \log 0 = 0` and the DC bin included in :math:`K`, as antropy. The periodogram
    is the default because it resolves the whole window; Welch trades resolution for a less
    noisy estimate.

    References
    ----------
    Inouye, T., et al. (1991). Quantification of EEG irregularity by use of the entropy of the
    power spectrum. Electroencephalogr. Clin. Neurophysiol., 79(3), 204-210.
    """
    x = as_signal(x)
    check_fs(fs)
    if method == "fft":
        if nperseg is not None:
            raise ValueError("nperseg applies to method='welch' only")
        require(x, 2)
        power = _one_sided_power(np.fft.rfft(x - x.mean()), x.size)
    elif method == "welch":
        if nperseg is None:
            require(x, 2)
            nperseg = min(256, x.size)
        else:
            nperseg = positive_int(nperseg, "nperseg", 2)
            require(x, nperseg)
        segments = sliding_window_view(x, nperseg)[::nperseg - nperseg // 2]
        segments = segments - segments.mean(axis=1, keepdims=True)
        spectra = np.fft.rfft(segments * _periodic_hann(nperseg), axis=1)
        power = _one_sided_power(spectra, nperseg).mean(axis=0)
    else:
        raise ValueError(f"method must be 'fft' or 'welch', got {method!r}")
    total = power.sum()
    if not total > 0:
        raise Undefined("no_power", "no power outside DC")
    p = power[power > 0] / total
    bits = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: a single bin gives 0, not -0
    return _in_unit_interval(bits / log2(power.size)) if normalize else bits


# --------------------------------------------------------------------------- SVD entropy

@njit(signatures(lambda a: float64(a, int64, int64)), cache=True, nogil=True)
def _svd_entropy_bits(x, order, delay):
    """Shannon entropy (bits) of the normalized singular values of the delay-embedding matrix.

    The tall ``n_rows x order`` matrix is first reduced to its ``order x order`` triangular factor
    by Householder QR (same singular values, backward stable, unlike squaring it into a Gram
    matrix), whose few singular values LAPACK then computes: O(n order^2) time, no n-by-n
    factor."""
    n_rows = x.size - (order - 1) * delay
    columns = np.empty((order, n_rows))  # column c of the embedding is x[c*delay :][:n_rows]
    for c in range(order):
        for i in range(n_rows):
            columns[c, i] = x[i + c * delay]
    triangle = np.zeros((order, order))
    for c in range(order):
        v = columns[c]  # the Householder vector lives in v[c:]
        norm2 = 0.0
        for i in range(c, n_rows):
            norm2 += v[i] * v[i]
        pivot = v[c]
        alpha = -sqrt(norm2) if pivot >= 0 else sqrt(norm2)  # the sign that avoids cancellation
        triangle[c, c] = alpha
        v[c] = pivot - alpha
        v_norm2 = 2.0 * (norm2 - alpha * pivot)  # |v|^2 after the update, without another pass
        if v_norm2 == 0.0:  # the column is already zero below the diagonal
            for later in range(c + 1, order):
                triangle[c, later] = columns[later, c]
            continue
        for later in range(c + 1, order):
            w = columns[later]
            dot = 0.0
            for i in range(c, n_rows):
                dot += v[i] * w[i]
            scale = 2.0 * dot / v_norm2
            for i in range(c, n_rows):
                w[i] -= scale * v[i]
            triangle[c, later] = w[c]
    singular_values = np.linalg.svd(triangle)[1]
    total = singular_values.sum()
    if not total > 0:  # squares underflowed (samples near 1e-160 and below)
        return np.nan
    bits = 0.0
    for s in singular_values:
        p = s / total
        if p > 0:
            bits -= p * log(p)
    return bits / log(2.0)


@nan_if_undefined
def svd_entropy(x, fs, order: int = 3, delay: int = 1, normalize: bool = True) -> float:
    r"""SVD entropy: how many independent directions the delay-embedded trajectory needs.

    The entropy of the singular-value spectrum of the delay-embedding matrix. Near 0 when one
    direction dominates (a slow, smooth signal), near 1 (normalized) for white noise, whose
    embedding fills all ``order`` directions equally.

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz. Unused but validated.
    order : int, default 3
        Embedding dimension :math:`D` (number of singular values).
    delay : int, default 1
        Embedding lag :math:`\tau` in samples.
    normalize : bool, default True
        Divide by :math:`\log_2 D` so the value lies in [0, 1]; otherwise bits.

    Returns
    -------
    float
        SVD entropy; ``nan`` when the window has fewer than ``order`` embedding vectors, is
        constant or non-finite.

    Notes
    -----
    With :math:`\sigma_1 \dots \sigma_D` the singular values of the
    :math:`(N - (D-1)\tau) \times D` matrix of rows
    :math:`(x_i, x_{i+\tau}, \dots, x_{i+(D-1)\tau})` and
    :math:`\bar\sigma_k = \sigma_k / \sum_j \sigma_j`,

    .. math:: H = -\frac{1}{\log_2 D} \sum_k \bar\sigma_k \log_2 \bar\sigma_k.

    As in antropy the matrix is not centred: the value is scale invariant but *not* offset
    invariant (an offset adds a dominant direction). Defaults are antropy's.

    References
    ----------
    Roberts, S. J., Penny, W., & Rezek, I. (1999). Temporal and spatial complexity measures for
    electroencephalogram based brain-computer interfacing. Med. Biol. Eng. Comput., 37(1), 93-98.
    """
    x = as_signal(x)
    check_fs(fs)
    order = positive_int(order, "order", 2)
    delay = positive_int(delay, "delay")
    require(x, (order - 1) * delay + order)
    bits = _svd_entropy_bits(x, order, delay)
    if isnan(bits):
        raise Undefined("zero_denominator", "all singular values are zero")
    return _in_unit_interval(bits / log2(order)) if normalize else bits


# --------------------------------------------------------------------------- Lempel-Ziv

@njit(signatures(lambda a: float64(a, float64)), cache=True, nogil=True)
def _lempel_ziv_phrases(x, threshold):
    """Number of phrases in the LZ76 parsing of ``x > threshold`` (Kaspar & Schuster 1987)."""
    n = x.size
    bits = np.empty(n, dtype=np.uint8)
    for i in range(n):
        bits[i] = x[i] > threshold
    complexity = 1
    prefix_len = 1  # length of the part already parsed
    match_len = 1  # length of the current candidate phrase
    longest_match = 1
    pointer = 0  # start of the earlier copy being tried
    while prefix_len + match_len <= n:
        if bits[pointer + match_len - 1] == bits[prefix_len + match_len - 1]:
            match_len += 1
        else:
            longest_match = max(match_len, longest_match)
            pointer += 1
            if pointer == prefix_len:  # no earlier copy extends further: a new phrase
                complexity += 1
                prefix_len += longest_match
                pointer = 0
                longest_match = 1
            match_len = 1
    if match_len != 1:  # the sequence ended inside a phrase
        complexity += 1
    return float(complexity)


@nan_if_undefined
def lempel_ziv(x, fs, normalize: bool = True) -> float:
    r"""Lempel-Ziv complexity: how many new patterns the signal's up/down-of-median sequence has.

    The number of distinct phrases in the LZ76 parsing of the signal binarized at its median.
    Low for periodic or slowly varying signals, which keep repeating earlier phrases; near 1
    (normalized) for white noise.

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz. Unused but validated.
    normalize : bool, default True
        Multiply the phrase count by :math:`\log_2 n / n`, its asymptotic value for a random
        binary sequence; otherwise the raw count.

    Returns
    -------
    float
        LZ complexity; ``nan`` on a window shorter than 2 samples, constant or non-finite.

    Notes
    -----
    With :math:`b_i = 1` if :math:`x_i > \mathrm{median}(x)` else 0 and :math:`c(n)` the number
    of phrases of the Lempel-Ziv (1976) parsing of :math:`b` (Kaspar & Schuster's algorithm),

    .. math:: \mathrm{LZ} = c(n) \frac{\log_2 n}{n}.

    Median binarization makes the value invariant to any increasing amplitude transform. Equals
    ``antropy.lziv_complexity((x > np.median(x)).astype(int), normalize=True)``.

    References
    ----------
    Lempel, A., & Ziv, J. (1976). On the complexity of finite sequences. IEEE Trans. Inf.
    Theory, 22(1), 75-81. Kaspar, F., & Schuster, H. G. (1987). Easily calculable measure for
    the complexity of spatiotemporal patterns. Phys. Rev. A, 36(2), 842-848.
    """
    x = as_signal(x)
    check_fs(fs)
    require(x, 2)
    phrases = _lempel_ziv_phrases(x, float(np.median(x)))
    n = x.size
    return phrases * np.log2(n) / n if normalize else phrases
