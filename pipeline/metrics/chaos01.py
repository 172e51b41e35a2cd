"""The Gottwald-Melbourne 0-1 test for chaos (correlation method) of one window.

The samples ``phi(j)`` drive the random-walk-like translation variables
``p_c(n) = sum_{j<=n} phi(j) cos(j c)``, ``q_c(n) = sum_{j<=n} phi(j) sin(j c)``. Their mean square
displacement stays bounded when the dynamics is regular and grows linearly in ``n`` when it is
chaotic; ``K`` is the correlation between ``n`` and that displacement, near 0 or near 1.

Oversampled continuous flows look regular to the test (Gottwald & Melbourne 2009), so by default the
window is first thinned to about 10 samples per mean period (see :func:`auto_downsample`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from numba import complex128, float64, int64, njit, none

from ._common import F8, Undefined, as_signal, check_fs, nan_if_undefined, positive_int, require, signatures

#: Number of random frequencies ``c`` whose ``K_c`` the median is taken over (Gottwald & Melbourne 2009).
DEFAULT_N_C = 100

#: ``c`` is drawn uniformly from this interval: away from the resonances at ``c = 0`` and ``c = pi``.
C_LOW, C_HIGH = math.pi / 5, 4 * math.pi / 5

#: Fewest samples (after downsampling) the test is run on. In our trials on 20 sines and 20
#: two-tone quasi-periodic signals of random frequencies, 100 samples kept every ``K`` below 0.2
#: (chaotic maps and white noise gave ``K >= 0.99``); at 80 samples regular signals reached 0.93.
MIN_SAMPLES = 100

#: The kernel's rotation recurrence for ``cos(jc), sin(jc)`` restarts from the exact values this often.
RESYNC = 64


@njit(float64(float64[::1], int64, float64), cache=True, nogil=True)
def _growth_correlation(msd, ncut, lag_mean):
    """``K_c``: the correlation of ``D_c(n)`` (``msd[1..ncut]``) with the lag ``n``; ``nan`` when
    ``D_c`` is constant. Shared by the direct and the FFT kernels."""
    d_mean = 0.0
    for lag in range(1, ncut + 1):
        d_mean += msd[lag]
    d_mean /= ncut
    sxy, sxx, syy = 0.0, 0.0, 0.0
    for lag in range(1, ncut + 1):
        u = lag - lag_mean
        v = msd[lag] - d_mean
        sxy += u * v
        sxx += u * u
        syy += v * v
    return sxy / math.sqrt(sxx * syy) if syy > 0.0 else np.nan


@njit(signatures(lambda a: float64[::1](a, F8, int64)), cache=True, nogil=True)
def _k_per_c_direct(phi, cs, ncut):
    """``K_c`` for each ``c`` in ``cs``: the correlation of ``n = 1..ncut`` with
    ``D_c(n) = M_c(n) - mean(phi)^2 (1 - cos n c) / (1 - cos c)``; nan where ``D_c`` is constant.
    The mean square displacement summed directly: ``O(N ncut)`` per ``c``."""
    n = phi.size
    mean = 0.0
    for j in range(n):
        mean += phi[j]
    mean /= n
    p = np.empty(n)
    q = np.empty(n)
    msd = np.empty(ncut + 1)  # msd[lag], lag = 1..ncut
    out = np.empty(cs.size)
    lag_mean = (ncut + 1) / 2.0
    for k in range(cs.size):
        c = cs[k]
        # cos/sin((j+1) c) by rotating with e^{ic}, recomputed exactly every RESYNC steps: the trig
        # calls cost more than the rest at n = 1024, and the drift stays below ~RESYNC * 1e-16.
        rot_cos, rot_sin = math.cos(c), math.sin(c)
        cos_jc, sin_jc = 1.0, 0.0
        sp, sq = 0.0, 0.0
        for j in range(n):
            if (j + 1) % RESYNC == 0:
                cos_jc, sin_jc = math.cos((j + 1) * c), math.sin((j + 1) * c)
            else:
                cos_jc, sin_jc = cos_jc * rot_cos - sin_jc * rot_sin, sin_jc * rot_cos + cos_jc * rot_sin
            sp += phi[j] * cos_jc
            sq += phi[j] * sin_jc
            p[j] = sp
            q[j] = sq
        # Sum over j outer, lag inner: every msd[lag] is its own accumulator, so the inner loop has no
        # reduction and vectorizes; each sum still runs in increasing j, as the plain formula's.
        msd[:] = 0.0
        for j in range(n - 1):
            pj, qj = p[j], q[j]
            for lag in range(1, min(ncut, n - 1 - j) + 1):
                dp = p[j + lag] - pj
                dq = q[j + lag] - qj
                msd[lag] += dp * dp + dq * dq
        for lag in range(1, ncut + 1):
            msd[lag] = msd[lag] / (n - lag) - mean * mean * (1.0 - math.cos(lag * c)) / (1.0 - math.cos(c))
        out[k] = _growth_correlation(msd, ncut, lag_mean)
    return out


F8_2D = float64[:, ::1]
C16_2D = complex128[:, ::1]


@njit(signatures(lambda a: none(a, F8, F8_2D, F8_2D)), cache=True, nogil=True)
def _walks(phi, cs, pq, energy):
    """The translation variables of every ``c``, each centred (``M_c`` only sees differences, and a
    walk without its mean keeps the FFT's rounding small), zero-padded, and the cumulative sums of
    their energy: ``pq[k, j] = p_k(j)``, ``pq[K + k, j] = q_k(j)`` for ``j < N`` (``K`` the number of
    ``c``), zero for ``j >= N``; ``energy[k, j] = sum_{i<j} p_k(i)^2 + q_k(i)^2``."""
    n = phi.size
    n_c = cs.size
    for k in range(n_c):
        c = cs[k]
        rot_cos, rot_sin = math.cos(c), math.sin(c)  # as in _k_per_c_direct
        cos_jc, sin_jc = 1.0, 0.0
        sp, sq = 0.0, 0.0
        tp, tq = 0.0, 0.0
        for j in range(n):
            if (j + 1) % RESYNC == 0:
                cos_jc, sin_jc = math.cos((j + 1) * c), math.sin((j + 1) * c)
            else:
                cos_jc, sin_jc = cos_jc * rot_cos - sin_jc * rot_sin, sin_jc * rot_cos + cos_jc * rot_sin
            sp += phi[j] * cos_jc
            sq += phi[j] * sin_jc
            pq[k, j] = sp
            pq[n_c + k, j] = sq
            tp += sp
            tq += sq
        tp /= n
        tq /= n
        total = 0.0
        energy[k, 0] = 0.0
        for j in range(n):
            a = pq[k, j] - tp
            b = pq[n_c + k, j] - tq
            pq[k, j] = a
            pq[n_c + k, j] = b
            total += a * a + b * b
            energy[k, j + 1] = total
        for j in range(n, pq.shape[1]):
            pq[k, j] = 0.0
            pq[n_c + k, j] = 0.0


@njit([none(C16_2D, F8_2D)], cache=True, nogil=True)
def _power(spectra, out):
    """``out[k] = |spectra[k]|^2 + |spectra[K + k]|^2`` (``K`` rows of ``out``)."""
    n_c = out.shape[0]
    for k in range(n_c):
        for j in range(out.shape[1]):
            a, b = spectra[k, j], spectra[n_c + k, j]
            out[k, j] = a.real * a.real + a.imag * a.imag + b.real * b.real + b.imag * b.imag


@njit(signatures(lambda a: float64[::1](a, F8, int64, F8_2D, F8_2D)), cache=True, nogil=True)
def _k_from_products(phi, cs, ncut, lagged, energy):
    """``K_c`` from ``lagged[k, n] = sum_j p(j+n) p(j) + q(j+n) q(j)`` and the cumulative energy:
    ``(N - n) M_c(n) = E(N) - E(n) + E(N - n) - 2 lagged(n)``; the rest as :func:`_k_per_c_direct`."""
    n = phi.size
    mean = 0.0
    for j in range(n):
        mean += phi[j]
    mean /= n
    msd = np.empty(ncut + 1)
    out = np.empty(cs.size)
    lag_mean = (ncut + 1) / 2.0
    for k in range(cs.size):
        c = cs[k]
        for lag in range(1, ncut + 1):
            m = (energy[k, n] - energy[k, lag] + energy[k, n - lag] - 2.0 * lagged[k, lag]) / (n - lag)
            msd[lag] = m - mean * mean * (1.0 - math.cos(lag * c)) / (1.0 - math.cos(c))
        out[k] = _growth_correlation(msd, ncut, lag_mean)
    return out


def _k_per_c_fft(phi: np.ndarray, cs: np.ndarray, ncut: int) -> np.ndarray:
    """:func:`_k_per_c_direct` with the lagged products ``sum_j p(j+n) p(j)`` as autocorrelations by
    real FFTs of a fast length ``>= N + ncut`` (no wrap-around up to lag ``ncut``), and the squares
    from cumulative sums: ``O(N log N)`` per ``c`` instead of ``O(N ncut)``.

    The frequencies go in batches whose arrays stay small (:data:`FFT_BATCH_BYTES`): freshly mapped
    memory for all ``c`` at once costs more in page faults than the FFTs themselves."""
    n = phi.size
    size = scipy.fft.next_fast_len(n + ncut, real=True)
    batch = max(1, FFT_BATCH_BYTES // (16 * size))
    out = np.empty(cs.size)
    for b0 in range(0, cs.size, batch):
        part = cs[b0:b0 + batch]
        pq = np.empty((2 * part.size, size))
        energy = np.empty((part.size, n + 1))
        _walks(phi, part, pq, energy)
        power = np.empty((part.size, size // 2 + 1))
        _power(scipy.fft.rfft(pq, axis=1), power)
        out[b0:b0 + batch] = _k_from_products(phi, part, ncut, scipy.fft.irfft(power, size, axis=1), energy)
    return out


#: Bytes of the padded walks of one batch of frequencies in :func:`_k_per_c_fft`.
FFT_BATCH_BYTES = 1 << 18


#: Largest ``ncut`` for the direct sum: below about 650 samples at the default ``ncut = N/10`` it
#: beats the FFT's fixed costs (measured on 2 cores: 1.3 against 1.1 ms at N = 600, 100 c).
DIRECT_MAX_NCUT = 64


def _k_per_c(phi: np.ndarray, cs: np.ndarray, ncut: int) -> np.ndarray:
    """``K_c`` for each ``c`` in ``cs`` (see :func:`_k_per_c_direct`): the direct sum for short
    windows, the FFT beyond (same values to about 1e-12, see the tests)."""
    if ncut <= DIRECT_MAX_NCUT:
        return _k_per_c_direct(phi, cs, ncut)
    return _k_per_c_fft(phi, cs, ncut)


def mean_period(x: np.ndarray) -> float:
    """Mean period of ``x`` in samples: the inverse of the power-weighted mean frequency (cycles per
    sample) of its periodogram, mean removed, zero frequency excluded. The quantity of
    :func:`pipeline.metrics.embedding.mean_period`, without its zero padding to ``2n - 1``, which
    only interpolates the spectrum and is a slow (prime) FFT length at ``n = 4096``."""
    power = np.abs(np.fft.rfft(x - x.mean()))[1:] ** 2
    freqs = np.arange(1, power.size + 1) / x.size
    return float(power.sum() / np.sum(freqs * power))


def auto_downsample(x: np.ndarray) -> int:
    """The automatic downsampling step (samples) of :func:`chaos_01`: ``ceil(T / 10)`` with ``T`` the
    :func:`mean_period` of ``x`` in samples.

    The test probes the spectrum of the signal at the frequencies ``c`` in ``(pi/5, 4 pi/5)`` radians
    per sample; thinning by this step moves the mean frequency ``2 pi / T`` up to at least the lower
    edge ``pi/5`` (at most 10 samples per mean period remain). Maps and noise (``T`` about 2 to 4
    samples) are left alone. Raises :class:`~pipeline.metrics._common.Undefined` when fewer than
    :data:`MIN_SAMPLES` samples would remain: the window is too oversampled for its length.
    """
    step = max(1, math.ceil(mean_period(x) / 10.0))
    kept = -(-x.size // step)  # len(x[::step])
    if kept < MIN_SAMPLES:
        raise Undefined("oversampled", f"oversampled: thinning by {step} (mean period / 10) leaves {kept}"
                                       f" < {MIN_SAMPLES} samples")
    return step


def _frequencies(c, n_c, seed) -> np.ndarray:
    if c is not None:
        cs = np.atleast_1d(np.asarray(c, dtype=np.float64)).ravel()
        if cs.size == 0 or not np.all((cs > 0) & (cs <= np.pi)):
            raise ValueError(f"c must be frequencies in (0, pi], got {c!r}")
        return np.ascontiguousarray(cs)
    n_c = positive_int(n_c, "n_c")
    if seed is None or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(int(seed)).uniform(C_LOW, C_HIGH, n_c)


@nan_if_undefined
def chaos_01(x, fs, c=None, n_c=DEFAULT_N_C, seed=0, cutoff=None, downsample=None) -> float:
    """Gottwald-Melbourne 0-1 test for chaos, correlation method: ``K`` near 0 regular, near 1 chaotic.

    A regular (periodic or quasi-periodic) signal keeps the translation variables ``(p_c, q_c)``
    bounded; a chaotic one makes them diffuse like a random walk, so their mean square displacement
    grows linearly. ``K`` is a binary-like answer, not a rate: values between the two ends mean the
    window is too short, too noisy, or oversampled. Stochastic noise also gives ``K`` near 1: the
    test assumes deterministic dynamics.

    Parameters
    ----------
    x : array_like
        One window of the signal (1-D).
    fs : float
        Sampling rate in Hz; validated only, ``K`` is dimensionless.
    c : float or sequence of float, optional
        Explicit frequencies in ``(0, pi]``; when given, ``n_c`` and ``seed`` are ignored.
    n_c : int
        Number of frequencies drawn uniformly in ``(pi/5, 4 pi/5)``; default 100.
    seed : int
        Seed of ``np.random.default_rng`` for those draws; fixed default, so ``K`` is deterministic.
    cutoff : int, optional
        Largest displacement lag ``ncut``; default ``N // 10`` of the (downsampled) length ``N``.
    downsample : int, optional
        Keep every ``downsample``-th sample first. Default (``None``): automatic,
        ``ceil(mean period / 10)`` (see :func:`auto_downsample`); 1 for maps and noise. Pass 1 to
        test the samples as they are.

    Returns
    -------
    float
        ``K`` in ``[0, 1]``; nan when too few samples remain after downsampling (fewer than 100), the
        window is constant, non-finite, or oversampled beyond what its length allows.

    Notes
    -----
    With ``phi(j)``, ``j = 1..N`` the (downsampled) samples and ``c`` a frequency:

    .. math::

        p_c(n) = \\sum_{j=1}^{n} \\phi(j) \\cos(jc), \\qquad q_c(n) = \\sum_{j=1}^{n} \\phi(j) \\sin(jc),

        M_c(n) = \\frac{1}{N-n} \\sum_{j=1}^{N-n} [p_c(j+n) - p_c(j)]^2 + [q_c(j+n) - q_c(j)]^2,

        D_c(n) = M_c(n) - \\bar\\phi^2 \\frac{1 - \\cos nc}{1 - \\cos c},

        K_c = \\operatorname{corr}(n, D_c(n)),\\ n = 1..n_{cut}, \\qquad K = \\operatorname{median}_c K_c.

    Subtracting the oscillatory term (the displacement a constant mean alone produces) is what makes
    the correlation method converge fast. ``n_cut = N/10`` and 100 values of ``c`` in
    ``(pi/5, 4 pi/5)`` are the paper's recommendations; frequencies whose ``D_c`` is constant are
    skipped. A correlation can be negative, which for this test only means "no growth", so ``K`` is
    clipped to ``[0, 1]``.

    Downsampling: a flow sampled many times per characteristic time has almost no power at the
    frequencies ``c`` probes (the test reads, in effect, the power spectrum at ``c``), and the test
    wrongly answers "regular". The automatic step ``ceil(T/10)``, ``T`` the mean period in samples,
    brings the power-weighted mean frequency of the thinned signal into that band. The Lorenz ``x``
    coordinate sampled at ``dt = 0.01`` (``T`` about 150 samples) gives ``K`` near 0 as sampled and
    near 1 thinned by its step of about 15 (from 2048 samples on); a window too short to be thinned
    that far while keeping 100 samples is undefined rather than wrongly "regular". A thinned
    sequence that is almost constant (the step divides a period) is undefined too.

    References
    ----------
    G. A. Gottwald and I. Melbourne, "A new test for chaos in deterministic systems",
    Proc. R. Soc. A 460, 603-611 (2004).
    G. A. Gottwald and I. Melbourne, "On the implementation of the 0-1 test for chaos",
    SIAM J. Appl. Dyn. Syst. 8, 129-145 (2009).
    """
    phi, cs, ncut = _prepare(x, fs, c, n_c, seed, cutoff, downsample)
    return _median_k(_k_per_c(phi, cs, ncut))


def _prepare(x, fs, c, n_c, seed, cutoff, downsample):
    """Validated ``(phi, cs, ncut)``: the thinned samples, the frequencies and the largest lag."""
    x = as_signal(x)
    check_fs(fs)
    cs = _frequencies(c, n_c, seed)
    if cutoff is not None:
        cutoff = positive_int(cutoff, "cutoff", minimum=2)
    if downsample is not None:
        downsample = positive_int(downsample, "downsample")
    require(x, MIN_SAMPLES)
    step = auto_downsample(x) if downsample is None else downsample
    phi = np.ascontiguousarray(x[::step])
    if phi.size < MIN_SAMPLES:
        raise Undefined("too_short", f"too short after downsampling by {step} ({phi.size} < {MIN_SAMPLES} samples)")
    if phi.std() <= 1e-9 * x.std():
        raise Undefined("constant", f"constant after downsampling by {step} (step divides a period)")
    ncut = phi.size // 10 if cutoff is None else cutoff
    if ncut >= phi.size:
        raise Undefined("too_short", f"cutoff {ncut} not below the {phi.size} samples")
    return phi, cs, ncut


def _median_k(k_c: np.ndarray) -> float:
    k_c = k_c[np.isfinite(k_c)]
    if k_c.size == 0:
        raise Undefined("degenerate_fit", "mean square displacement constant at every c")
    return float(np.clip(np.median(k_c), 0.0, 1.0))


@nan_if_undefined
def chaos_01_numpy(x, fs, c=None, n_c=DEFAULT_N_C, seed=0, cutoff=None, downsample=None) -> float:
    """:func:`chaos_01` with ``K_c`` written out in NumPy, line by line as in Gottwald & Melbourne
    (2009) and P. Matthews' ``z1test.m``: the stand-in for a reference package (none has the test).
    Same validation, downsampling and median; 25 to 50 times slower."""
    phi, cs, ncut = _prepare(x, fs, c, n_c, seed, cutoff, downsample)
    j = np.arange(1, phi.size + 1)
    lags = np.arange(1, ncut + 1)
    k_c = np.empty(cs.size)
    for i, freq in enumerate(cs):
        p = np.cumsum(phi * np.cos(j * freq))
        q = np.cumsum(phi * np.sin(j * freq))
        msd = np.array([np.mean((p[m:] - p[:-m]) ** 2 + (q[m:] - q[:-m]) ** 2) for m in lags])
        d = msd - phi.mean() ** 2 * (1 - np.cos(lags * freq)) / (1 - np.cos(freq))
        k_c[i] = np.corrcoef(lags, d)[0, 1] if np.ptp(d) > 0 else np.nan
    return _median_k(k_c)
