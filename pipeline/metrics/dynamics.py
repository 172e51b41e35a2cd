"""Invariants of the reconstructed attractor: largest Lyapunov exponent (Rosenstein) and correlation
dimension (Grassberger-Procaccia), sharing one streamed pass over the pairs of embedded vectors.

Both need the distances between all pairs of delay vectors ``X_i``. The kernel streams over the
pairs ``i < j`` with ``|i - j| > min_tsep`` without ever holding an ``n x n`` matrix (memory is
``O(n + number of radii)``; the delay vectors are read from ``x`` in place), and from each distance
updates the nearest neighbours of ``i`` and ``j`` (for the Lyapunov exponent) and a histogram over
the radii (for the correlation sum). Each row ``i`` is taken in chunks of columns ``j`` whose squared
distances are summed together, coordinate by coordinate (SIMD), each pair in the plain sum's order,
so every distance, neighbour and count is exactly the one-pair-at-a-time computation's.
"""

from __future__ import annotations

import math

import numpy as np
from numba import int64, njit

from ._common import (F8, Reason, Undefined, as_signal, check_fs, lstsq_slope, nan_if_undefined, positive_int,
                      require, signatures)
from .embedding import Embedding, check_vectors, resolve_embedding

#: Steps (samples) over which neighbouring trajectories are followed; nolds' default. In the
#: linear (exponential-divergence) region for flows sampled at a few tens of samples per
#: characteristic time; too long for maps, whose divergence saturates within about
#: ``log(attractor size / neighbour distance) / lambda`` steps -- choose it explicitly there.
DEFAULT_TRAJECTORY_LEN = 20

#: Default radii of the correlation sum: a grid from ``R_GRID[0]`` to ``R_GRID[1]`` times
#: ``sd * sqrt(emb_dim)`` (the Euclidean norm over ``emb_dim`` coordinates grows as
#: ``sqrt(emb_dim)``), each radius ``R_FACTOR`` times the last (nolds' factor) ...
R_GRID, R_FACTOR = (0.01, 1.0), 1.03
#: ... of which the fit keeps those where ``C_RANGE[0] <= C(r) <= C_RANGE[1]``: above the floor
#: where too few pairs make ``log C`` noisy (1e-3 is still hundreds of pairs in a 1024-sample
#: window) and below the saturation of ``C`` at the size of the attractor.
C_RANGE = (1e-3, 0.1)

I8 = int64[::1]


#: Row chunk of the pair pass: the squared distances of one chunk stay in L1 through all its passes.
CHUNK = 512


@njit(signatures(lambda a: int64(a, int64, int64, int64, int64, int64, F8, int64, int64, I8, I8, F8, I8)),
      cache=True, nogil=True)
def _pair_pass(x, emb_dim, lag, min_tsep, n_vectors, n_searched, radii2, shift, base, table, nn_index,
               nn_dist2, counts):
    """One pass over the pairs ``i < j < n_vectors`` with ``j - i > min_tsep``.

    Nearest neighbours: for ``i < n_searched``, ``nn_index[i]`` becomes the ``j < n_searched``
    (outside the Theiler window) of smallest squared distance ``nn_dist2[i]``; among ties the
    smallest ``j``, as ``argmin`` would give (candidates arrive in increasing order of index).
    Correlation sum: ``counts[k]`` counts the pairs with ``radii2[k-1] < d^2 <= radii2[k]``
    (``radii2`` increasing); the cumulative sum gives ``#{pairs : d <= r_k}``. ``shift, base,
    table`` locate ``k`` without a search over all radii (see :func:`_radius_table`).
    Returns the number of pairs visited.

    Row by row, in chunks of :data:`CHUNK` columns: the squared distances of ``X_i`` to a chunk
    are summed with the coordinate loop outside and the column loop inside (contiguous reads of
    ``x``, no reduction: it vectorizes without fastmath, and each pair still sums its coordinates
    in increasing order, so ``d^2`` is bit for bit the plain sum); then the neighbour updates and
    the histogram read the chunk. Memory ``O(CHUNK)`` besides the outputs.
    """
    n_radii = radii2.size
    r2_max = radii2[n_radii - 1] if n_radii > 0 else -1.0
    for i in range(n_searched):
        nn_index[i] = -1
        nn_dist2[i] = np.inf
    # the columns that matter: all for the correlation sum, j < n_searched for the neighbours only
    j_end = n_vectors if n_radii > 0 else min(n_vectors, n_searched)
    d2 = np.empty(CHUNK)
    d2_bits = d2.view(np.int64)  # d2 >= 0, so its bit patterns (int64) order as its values do
    scalar = np.empty(1)
    scalar_bits = scalar.view(np.int64)
    near = np.empty(CHUNK, dtype=np.int64)
    n_pairs = 0
    for i in range(n_vectors):
        j_first = i + min_tsep + 1
        if j_first >= n_vectors:
            break
        n_pairs += n_vectors - j_first
        for j0 in range(j_first, j_end, CHUNK):
            width = min(CHUNK, j_end - j0)
            # (slices: a bare loop index is known to be >= 0, so no wraparound check blocks SIMD;
            # four coordinates per sweep of the chunk, each added in turn: the plain sum's order)
            for t in range(width):
                d2[t] = 0.0
            k = 0
            while k + 4 <= emb_dim:
                a, b, c, e = x[i + k * lag], x[i + (k + 1) * lag], x[i + (k + 2) * lag], x[i + (k + 3) * lag]
                s = j0 + k * lag
                xa, xb = x[s:s + width], x[s + lag:s + lag + width]
                xc, xe = x[s + 2 * lag:s + 2 * lag + width], x[s + 3 * lag:s + 3 * lag + width]
                for t in range(width):
                    da, db, dc, de = a - xa[t], b - xb[t], c - xc[t], e - xe[t]
                    d2[t] = (((d2[t] + da * da) + db * db) + dc * dc) + de * de
                k += 4
            while k < emb_dim:
                a = x[i + k * lag]
                s = j0 + k * lag
                xa = x[s:s + width]
                for t in range(width):
                    da = a - xa[t]
                    d2[t] += da * da
                k += 1
            if j0 < n_searched:  # then i < n_searched too
                w = min(width, n_searched - j0)
                nd, ni = nn_dist2[j0:j0 + w], nn_index[j0:j0 + w]
                for t in range(w):  # candidate i of each j: select, not branch, so it vectorizes
                    d = d2[t]
                    old = nd[t]
                    better = d < old
                    nd[t] = d if better else old
                    ni[t] = i if better else ni[t]
                lowest = d2_bits[0]  # candidates j of i: the chunk's minimum (integer, vectorizes) ...
                for t in range(1, w):
                    b = d2_bits[t]
                    lowest = b if b < lowest else lowest
                scalar_bits[0] = lowest
                if scalar[0] < nn_dist2[i]:  # ... and only when it improves, its first index
                    t = 0
                    while d2_bits[t] != lowest:
                        t += 1
                    nn_dist2[i] = d2[t]
                    nn_index[i] = j0 + t
            if n_radii > 0:
                m = 0
                for t in range(width):  # the few columns within the largest radius, branch-free
                    near[m] = t
                    m += d2[t] <= r2_max
                for s in range(m):
                    t = near[s]
                    b = (d2_bits[t] >> shift) - base
                    if b < 0:
                        b = 0
                    lo, hi = table[b], min(table[b + 1], n_radii - 1)  # first k with radii2[k] >= d2
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if radii2[mid] >= d2[t]:
                            hi = mid
                        else:
                            lo = mid + 1
                    counts[lo] += 1
    return n_pairs


#: Largest bucket table of :func:`_radius_table`.
TABLE_SIZE = 1 << 16


def _radius_table(radii2: np.ndarray) -> tuple[int, int, np.ndarray]:
    """Buckets of squared distances by the leading bits of their float64 pattern (exponent and the
    first mantissa bits: 64 buckets per octave, fewer if the radii span too many octaves), and per
    bucket ``b`` the first radius at or above its lower edge: the ``k`` of a ``d^2`` in bucket ``b``
    lies in ``table[b] .. table[b + 1]``, mostly a single candidate. ``(shift, base, table)`` with
    ``b = (bits(d^2) >> shift) - base``. The kernel still compares ``d^2 <= r_k^2`` exactly."""
    if radii2.size == 0:
        return 0, 0, np.zeros(1, dtype=np.int64)
    bits = radii2.view(np.int64)
    shift = 52 - 6
    while (bits[-1] >> shift) - (bits[0] >> shift) + 1 > TABLE_SIZE:
        shift += 1
    base = int(bits[0] >> shift)
    span = int(bits[-1] >> shift) - base + 1
    edges = ((base + np.arange(span + 1, dtype=np.int64)) << shift).view(np.float64)
    return shift, base, np.searchsorted(radii2, edges, side="left").astype(np.int64)


@njit(signatures(lambda a: int64(a, int64, int64, I8, int64, int64, F8)), cache=True, nogil=True)
def _divergence(x, emb_dim, lag, nn_index, n_searched, trajectory_len, mean_log):
    """``mean_log[k]`` = mean over ``i < n_searched`` of ``log |X_{i+k} - X_{nn(i)+k}|``, zero
    distances left out (``-inf`` when all are zero). Returns the number of finite entries."""
    n_finite = 0
    for k in range(trajectory_len):
        total = 0.0
        count = 0
        for i in range(n_searched):
            j = nn_index[i]
            d2 = 0.0
            for d in range(emb_dim):
                diff = x[i + k + d * lag] - x[j + k + d * lag]
                d2 += diff * diff
            if d2 > 0.0:
                total += 0.5 * math.log(d2)
                count += 1
        if count > 0:
            mean_log[k] = total / count
            n_finite += 1
        else:
            mean_log[k] = -np.inf
    return n_finite


def _slope(u: np.ndarray, v: np.ndarray, what: str) -> float:
    """Least-squares slope of ``v`` against ``u`` (nolds ``fit="poly"``), over finite ``v``."""
    keep = np.isfinite(v)
    u, v = u[keep], v[keep]
    if u.size < 2:
        raise Undefined("degenerate_fit", f"{what}: fewer than 2 points to fit")
    return float(lstsq_slope(np.ascontiguousarray(u, np.float64), np.ascontiguousarray(v, np.float64), u.size))


def _validate_rvals(rvals) -> np.ndarray | None:
    if rvals is None:
        return None
    r = np.asarray(rvals, dtype=np.float64)
    if r.ndim != 1 or r.size < 2 or not np.all(np.isfinite(r)) or np.any(r <= 0) or np.any(np.diff(r) <= 0):
        raise ValueError("rvals must be at least 2 increasing positive finite radii")
    return np.ascontiguousarray(r)


def default_trajectory_len(n: int, emb: Embedding) -> int:
    """:data:`DEFAULT_TRAJECTORY_LEN`, capped at a quarter of the embedded vectors (and >= 2) so
    that the followed steps never take most of a short window."""
    return max(2, min(DEFAULT_TRAJECTORY_LEN, emb.n_vectors(n) // 4))


def radius_grid(x: np.ndarray, emb_dim: int) -> np.ndarray:
    """The candidate radii of the default correlation sum (see :data:`R_GRID`)."""
    count = int(math.floor(math.log(R_GRID[1] / R_GRID[0]) / math.log(R_FACTOR) + 1e-9)) + 1
    return float(x.std()) * math.sqrt(emb_dim) * R_GRID[0] * R_FACTOR ** np.arange(count)


_NO_SCALING = f"correlation sum: fewer than 2 radii with {C_RANGE[0]:g} <= C(r) <= {C_RANGE[1]:g}"


def _default_fit(counts: np.ndarray, n_pairs: int) -> np.ndarray:
    """Mask of the grid radii whose correlation sum lies in :data:`C_RANGE`."""
    c = np.cumsum(counts) / n_pairs
    return (c >= C_RANGE[0]) & (c <= C_RANGE[1])


def default_rvals(x, fs, emb: Embedding) -> np.ndarray:
    """The radii the default correlation dimension of ``x`` is fitted on: the :func:`radius_grid`
    radii with ``C(r)`` in :data:`C_RANGE` under the embedding ``emb`` (one pass over the pairs).
    Passing them as ``rvals`` gives the same dimension; the reference engine hands them to nolds."""
    x = as_signal(x)
    check_fs(fs)
    require(x, 4)
    grid = radius_grid(x, emb.emb_dim)
    _, counts, n_pairs = _run(x, emb, 0, grid)
    keep = _default_fit(counts, n_pairs)
    if np.count_nonzero(keep) < 2:
        raise Undefined("no_scaling_region", _NO_SCALING)
    return grid[keep]


class LyapunovAndDimension(tuple):
    """``(largest_lyapunov, correlation_dimension)``; ``reasons`` maps ``"lyapunov"`` and/or
    ``"dimension"`` to why that one is ``nan`` (a :class:`~pipeline.metrics._common.Reason`)."""

    reasons: dict[str, Reason]

    def __new__(cls, lyapunov: float, dimension: float, reasons: dict[str, Reason]):
        self = super().__new__(cls, (lyapunov, dimension))
        self.reasons = reasons
        return self


def _prepare(x, fs, emb_dim, lag, min_tsep, trajectory_len, rvals, want_lyapunov):
    """Coerce and validate; resolve the embedding (with the Lyapunov reserve when wanted)."""
    x = as_signal(x)
    fs = check_fs(fs)
    if trajectory_len is not None:
        trajectory_len = positive_int(trajectory_len, "trajectory_len", minimum=2)
    rvals = _validate_rvals(rvals)
    reserve = trajectory_len - 1 if want_lyapunov and trajectory_len is not None else 0
    emb = resolve_embedding(x, fs, emb_dim, lag, min_tsep, reserve=reserve)
    if want_lyapunov and trajectory_len is None:
        trajectory_len = default_trajectory_len(x.size, emb)
        check_vectors(x.size, emb, trajectory_len - 1)
    return x, fs, emb, trajectory_len, rvals


def _run(x: np.ndarray, emb: Embedding, n_searched: int, radii):
    """The shared pass; returns ``(nn_index, counts, n_pairs)``."""
    radii2 = np.empty(0) if radii is None else radii * radii
    nn_index = np.empty(n_searched, dtype=np.int64)
    nn_dist2 = np.empty(n_searched)
    counts = np.zeros(radii2.size, dtype=np.int64)
    shift, base, table = _radius_table(radii2)
    n_pairs = _pair_pass(x, emb.emb_dim, emb.lag, emb.min_tsep, emb.n_vectors(x.size), n_searched,
                         radii2, shift, base, table, nn_index, nn_dist2, counts)
    return nn_index, counts, n_pairs


def _lyapunov_from(x, fs, emb, trajectory_len, nn_index) -> float:
    mean_log = np.empty(trajectory_len)
    _divergence(x, emb.emb_dim, emb.lag, nn_index, nn_index.size, trajectory_len, mean_log)
    return _slope(np.arange(trajectory_len, dtype=np.float64), mean_log, "divergence") * fs


def _dimension_from(radii, counts, n_pairs, default: bool) -> float:
    if default:
        keep = _default_fit(counts, n_pairs)
        if np.count_nonzero(keep) < 2:
            raise Undefined("no_scaling_region", _NO_SCALING)
    else:
        keep = np.cumsum(counts) > 0
        if np.count_nonzero(keep) < 2:
            raise Undefined("no_scaling_region", "correlation sum: fewer than 2 radii with a pair inside")
    # the normalisation of C(r) is a constant offset in log C: it does not change the slope
    return _slope(np.log(radii[keep]), np.log(np.cumsum(counts)[keep].astype(np.float64)), "correlation sum")


@nan_if_undefined
def largest_lyapunov(x, fs, emb_dim=None, lag=None, min_tsep=None, trajectory_len=None) -> float:
    r"""Largest Lyapunov exponent (per second) by the method of Rosenstein et al. (1993).

    The mean exponential rate at which nearby states of the reconstructed dynamics separate: > 0 for
    chaos (sensitive dependence on initial conditions; its inverse is a prediction horizon), about
    0 for periodic or quasi-periodic signals. Noise gives a positive value too, so read it together
    with a determinism measure.

    Parameters
    ----------
    x : array_like
        The signal (1-D).
    fs : float
        Sampling rate in Hz; the exponent per step is multiplied by it.
    emb_dim, lag, min_tsep : int, optional
        Delay embedding (dimension, lag in samples, Theiler window in samples); defaults from
        :func:`~pipeline.metrics.embedding.resolve_embedding` (10, autocorrelation ``1/e`` lag,
        mean period).
    trajectory_len : int, optional
        Steps over which the divergence is followed and fitted (>= 2); default
        :func:`default_trajectory_len`: 20 as nolds, capped at a quarter of the vectors.

    Returns
    -------
    float
        Exponent in 1/s; ``nan`` when undefined (window too short for the embedding, constant,
        non-finite samples, every divergence zero).

    Notes
    -----
    With delay vectors :math:`X_i`, each :math:`X_i` among the first
    :math:`M - \text{trajectory\_len} + 1` gets its Euclidean nearest neighbour
    :math:`X_{\hat\jmath(i)}` among them with :math:`|i - \hat\jmath| > \text{min\_tsep}`; then

    .. math:: y(k) = \big\langle \ln \lVert X_{i+k} - X_{\hat\jmath(i)+k} \rVert \big\rangle_i,
              \qquad \lambda_1 = f_s \cdot \frac{\mathrm{d}y}{\mathrm{d}k}

    with the slope of the least-squares line over :math:`k = 0 \dots \text{trajectory\_len} - 1`
    (zero distances left out of the mean). This is nolds ``lyap_r(..., fit="poly")`` times ``fs``.
    The fit starts at ``k = 0``: on flows the first steps hold a transient while the separation
    turns into the unstable direction, so the estimate depends on ``trajectory_len`` and on the
    embedding window ``(emb_dim - 1) lag``; an embedding window near the mean period and a fit
    over a fraction of it work best (see the tests). For maps choose ``trajectory_len`` below the
    saturation time.

    References
    ----------
    M. T. Rosenstein, J. J. Collins, C. J. De Luca, "A practical method for calculating largest
    Lyapunov exponents from small data sets", Physica D 65:117-134 (1993).
    """
    x, fs, emb, trajectory_len, _ = _prepare(x, fs, emb_dim, lag, min_tsep, trajectory_len, None, True)
    nn_index, _, _ = _run(x, emb, emb.n_vectors(x.size) - trajectory_len + 1, None)
    return _lyapunov_from(x, fs, emb, trajectory_len, nn_index)


@nan_if_undefined
def correlation_dimension(x, fs, emb_dim=None, lag=None, min_tsep=None, rvals=None) -> float:
    r"""Correlation dimension by the Grassberger-Procaccia algorithm.

    The fractal dimension of the reconstructed attractor as seen by pairs of states: about 1 for a
    periodic signal (a closed curve), a non-integer value for a strange attractor, and growing with
    the embedding dimension without saturating for noise, which fills every dimension offered.

    Parameters
    ----------
    x : array_like
        The signal (1-D).
    fs : float
        Sampling rate in Hz (validated; lags, Theiler window and the dimension need no time unit).
    emb_dim, lag, min_tsep : int, optional
        Delay embedding; defaults from :func:`~pipeline.metrics.embedding.resolve_embedding`.
        ``min_tsep=0`` counts every pair ``i != j``.
    rvals : array_like, optional
        Increasing radii (in the units of ``x``), all used where ``C(r) > 0`` (as nolds). Default:
        the radii of :func:`radius_grid` (``0.01`` to ``1`` times ``sd sqrt(emb_dim)``, factor
        1.03) at which ``1e-3 <= C(r) <= 0.1`` (:data:`C_RANGE`), see Notes.

    Returns
    -------
    float
        The slope of :math:`\log C(r)` against :math:`\log r`; ``nan`` when undefined (window too
        short, constant, non-finite, fewer than two radii to fit).

    Notes
    -----
    .. math:: C(r) = \frac{\#\{(i, j) : i < j,\ j - i > \text{min\_tsep},\
                     \lVert X_i - X_j \rVert \le r\}}{\#\{(i, j) : i < j,\ j - i > \text{min\_tsep}\}},
              \qquad D_2 = \frac{\mathrm{d} \log C(r)}{\mathrm{d} \log r}

    fitted by least squares (nolds ``fit="poly"``). Default radii: nolds uses ``0.1`` to ``0.5 sd``
    whatever the embedding dimension; at ``emb_dim=10`` those radii hold no pair at all on noise or
    on most real 1024-sample windows (``nan``) and very few on the Lorenz system (slope 13 instead
    of 2). The scaling region is where ``C`` is small but still counts hundreds of pairs, so the
    default fit is restricted to ``1e-3 <= C(r) <= 0.1`` on a grid that scales with
    ``sqrt(emb_dim)``; :func:`default_rvals` gives the radii it keeps.

    References
    ----------
    P. Grassberger and I. Procaccia, "Measuring the strangeness of strange attractors", Physica D
    9:189-208 (1983); J. Theiler, "Spurious dimension from correlation integrals of filtered
    noise", Phys. Rev. A 34:2427 (1986) (the window ``|i - j| > min_tsep``).
    """
    x, fs, emb, _, rvals = _prepare(x, fs, emb_dim, lag, min_tsep, None, rvals, False)
    radii = radius_grid(x, emb.emb_dim) if rvals is None else rvals
    _, counts, n_pairs = _run(x, emb, 0, radii)
    return _dimension_from(radii, counts, n_pairs, default=rvals is None)


def lyapunov_and_dimension(x, fs, emb_dim=None, lag=None, min_tsep=None, trajectory_len=None,
                           rvals=None) -> LyapunovAndDimension:
    """Both :func:`largest_lyapunov` and :func:`correlation_dimension` from one embedding and one
    pass over the pairs, which gives the nearest neighbours and the correlation-sum counts at once.

    The embedding is resolved once (with the Lyapunov reserve of ``trajectory_len - 1`` vectors)
    and the same Theiler window serves both; each value equals the single function's with the same
    parameters. Policy: a failure common to both (bad window, too short for the embedding) raises
    :class:`~pipeline.metrics._common.Undefined`; a failure of one fit only gives ``nan`` in its
    place, with the reason in ``result.reasons``, so that the other value is not lost. Bad
    parameters raise ``ValueError``. The result unpacks as ``lyap, dim = ...``.
    """
    x, fs, emb, trajectory_len, rvals = _prepare(x, fs, emb_dim, lag, min_tsep, trajectory_len, rvals, True)
    radii = radius_grid(x, emb.emb_dim) if rvals is None else rvals
    nn_index, counts, n_pairs = _run(x, emb, emb.n_vectors(x.size) - trajectory_len + 1, radii)
    values, reasons = {}, {}
    for name, compute in (("lyapunov", lambda: _lyapunov_from(x, fs, emb, trajectory_len, nn_index)),
                          ("dimension", lambda: _dimension_from(radii, counts, n_pairs, rvals is None))):
        try:
            values[name] = compute()
        except Undefined as why:
            values[name], reasons[name] = float("nan"), why.reason
    return LyapunovAndDimension(values["lyapunov"], values["dimension"], reasons)
