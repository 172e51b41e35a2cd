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
from typing import NamedTuple

import numpy as np
from numba import float64, int64, njit, types

from ._common import (F8, Reason, Undefined, as_signal, check_fs, lstsq_slope, nan_if_undefined, positive_int,
                      require, signatures)
from .embedding import Embedding, check_vectors, mean_period, resolve_embedding

#: nolds' default ``trajectory_len`` (steps followed and fitted from ``k = 0``); nw2's default
#: until the fit region was chosen from the curve (see :func:`divergence_fit`). It stays the
#: length of :func:`default_trajectory_len`, for comparisons with nolds at its own default.
DEFAULT_TRAJECTORY_LEN = 20

#: The default divergence curve (``trajectory_len=None``) is followed out to this many mean
#: periods of the signal, capped at a quarter of the embedded vectors: far enough for flows to
#: saturate (on 135 dysts flows at 3000 samples the curve covers 90% of its rise after a median
#: 4.9 mean periods, 8.6 at the 75th percentile), short for maps (mean period ~4 samples) ...
HORIZON_PERIODS = 8
#: ... and evaluated on at most ``GRID_INTERVALS + 1`` equally spaced steps ``k = 0, s, 2s, ...``
#: (``s = ceil((horizon - 1) / GRID_INTERVALS)``, about 8 per mean period on flows, every step
#: on maps), so its cost stays that of 65 steps whatever the horizon.
GRID_INTERVALS = 64
#: The fitted stretch spans at least this many mean periods (and :data:`MIN_FIT_POINTS` points):
#: the curve of a flow oscillates at the signal's own frequencies and starts with a short bump
#: (the separation turning into the unstable direction); a shorter window fits those, not the
#: trend (Lorenz x at 100 Hz: local slope up to 2.9 /s in the first 0.1 s, against 0.906).
FIT_SPAN_PERIODS = 0.5
MIN_FIT_POINTS = 3
#: The fitted stretch ends no later than the first step at which ``y(k)`` has risen by this
#: fraction of its total rise ``max y - y(0)``: beyond it the separations approach the size of
#: the attractor and the curve bends over into saturation.
SATURATION_FRACTION = 0.8

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


@njit(cache=True, nogil=True)
def _pair_distances2(x, emb_dim, lag, i, j, step, n_points, d2):
    """``d2[p] = |X_{i+k} - X_{j+k}|^2`` at ``k = p * step``, summed over the coordinates in order."""
    for p in range(n_points):
        d2[p] = 0.0
    for d in range(emb_dim):
        a, b = i + d * lag, j + d * lag
        for p in range(n_points):
            diff = x[a + p * step] - x[b + p * step]
            d2[p] += diff * diff


@njit(signatures(lambda a: int64(a, int64, int64, I8, int64, int64, int64, types.boolean, F8)), cache=True,
      nogil=True)
def _divergence(x, emb_dim, lag, nn_index, n_searched, step, n_points, paired, mean_log):
    """``mean_log[p]`` = mean over ``i < n_searched`` of ``log |X_{i+k} - X_{nn(i)+k}|`` at
    ``k = p * step`` (``p < n_points``), zero distances left out (``-inf`` when all are zero).
    Returns the number of finite entries.

    Pair by pair, each step's sum taken over ``i`` in increasing order and each ``d^2`` over the
    coordinates in increasing order: with ``paired=False`` every entry is bit for bit the sum of
    a step-by-step loop (nw2's explicit-``trajectory_len`` values). ``paired=True`` (the default
    curve) takes one logarithm per two neighbour pairs, ``log(d_a^2 d_b^2)``, where the product
    stays within ``(1e-300, 1e300)``: the same sum to rounding (~1e-16 relative), half the
    logarithms, which are most of the cost."""
    total = np.zeros(n_points)
    count = np.zeros(n_points, dtype=np.int64)
    d2a = np.empty(n_points)
    d2b = np.empty(n_points)
    i = 0
    while i < n_searched:
        _pair_distances2(x, emb_dim, lag, i, nn_index[i], step, n_points, d2a)
        if paired and i + 1 < n_searched:
            _pair_distances2(x, emb_dim, lag, i + 1, nn_index[i + 1], step, n_points, d2b)
            for p in range(n_points):
                u, v = d2a[p], d2b[p]
                w = u * v
                if 1e-300 < w < 1e300:  # both > 0, no underflow or overflow
                    total[p] += 0.5 * math.log(w)
                    count[p] += 2
                else:
                    if u > 0.0:
                        total[p] += 0.5 * math.log(u)
                        count[p] += 1
                    if v > 0.0:
                        total[p] += 0.5 * math.log(v)
                        count[p] += 1
            i += 2
            continue
        for p in range(n_points):
            if d2a[p] > 0.0:
                total[p] += 0.5 * math.log(d2a[p])
                count[p] += 1
        i += 1
    n_finite = 0
    for p in range(n_points):
        if count[p] > 0:
            mean_log[p] = total[p] / count[p]
            n_finite += 1
        else:
            mean_log[p] = -np.inf
    return n_finite


def _slope(u: np.ndarray, v: np.ndarray, what: str) -> float:
    """Least-squares slope of ``v`` against ``u`` (nolds ``fit="poly"``), over finite ``v``."""
    keep = np.isfinite(v)
    u, v = u[keep], v[keep]
    if u.size < 2:
        raise Undefined("degenerate_fit", f"{what}: fewer than 2 points to fit")
    return float(lstsq_slope(np.ascontiguousarray(u, np.float64), np.ascontiguousarray(v, np.float64), u.size))


@njit(float64(F8, F8, int64, float64, I8), cache=True, nogil=True)
def _steepest_stretch(k, y, n_fit, saturation, bounds):
    """Largest least-squares slope of ``y`` on ``k`` over ``n_fit`` consecutive points that end no
    later than the first point where ``y`` reaches ``y[0] + saturation * (max y - y[0])`` (or at
    point ``n_fit - 1``, whichever is later; all points when there are fewer). ``bounds`` gets the
    first and last index of that stretch (the first of equal slopes). ``k.size >= 2``."""
    n = k.size
    top = y[0]
    for v in y:
        top = max(top, v)
    threshold = y[0] + saturation * (top - y[0])
    end = 0
    while y[end] < threshold:
        end += 1
    end = min(max(end, n_fit - 1), n - 1)
    n_fit = max(2, min(n_fit, end + 1))
    best = -np.inf
    bounds[0], bounds[1] = 0, n_fit - 1
    for a in range(end - n_fit + 2):
        s = lstsq_slope(k[a:], y[a:], n_fit)
        if s > best:
            best = s
            bounds[0], bounds[1] = a, a + n_fit - 1
    return best


class DivergencePlan(NamedTuple):
    """Where the default divergence curve is evaluated: ``k = 0, step, ..., (n_points - 1) step``;
    ``period`` is the signal's mean period in samples (``ceil``), the time scale of the fit."""

    step: int
    n_points: int
    period: int

    @property
    def reserve(self) -> int:
        """Vectors at the end that are followed but not searched: the last step."""
        return (self.n_points - 1) * self.step


def divergence_plan(x, fs, emb: Embedding, min_tsep=None) -> DivergencePlan:
    """The default horizon and grid of the divergence curve of ``x`` under ``emb``: a horizon of
    :data:`HORIZON_PERIODS` mean periods (at least 2 steps, at most a quarter of the vectors) on
    at most :data:`GRID_INTERVALS` equal intervals. ``min_tsep`` is the caller's argument: when
    it was ``None`` and the default Theiler window ``emb.min_tsep`` is not capped, that window
    is the ceil'd mean period and is reused (one FFT fewer). The reference engine follows nolds'
    curve as far (``trajectory_len = reserve + 1``) and keeps the same steps."""
    x = as_signal(x)
    n_vectors = emb.n_vectors(x.size)
    if min_tsep is None and 0 < emb.min_tsep < n_vectors // 4:
        period = emb.min_tsep  # = ceil(mean_period(x)), see resolve_embedding
    else:
        period = math.ceil(mean_period(x, fs))
    horizon = max(2, min(HORIZON_PERIODS * period, n_vectors // 4))
    step = -(-(horizon - 1) // GRID_INTERVALS)  # ceil: at most GRID_INTERVALS intervals
    return DivergencePlan(step, (horizon - 1) // step + 1, period)


def divergence_fit(k, y, plan: DivergencePlan) -> tuple[float, int, int]:
    """The default fit of a divergence curve ``y(k)`` (the steps of ``plan``; non-finite entries
    are left out): ``(slope per step, first k, last k)`` of the steepest stretch spanning
    :data:`FIT_SPAN_PERIODS` mean periods before saturation (see :func:`largest_lyapunov`, Notes).
    Both engines fit their curves with it. Raises ``Undefined("degenerate_fit")`` when fewer
    than 2 entries are finite."""
    k = np.asarray(k, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y)
    k, y = np.ascontiguousarray(k[keep]), np.ascontiguousarray(y[keep])
    if k.size < 2:
        raise Undefined("degenerate_fit", "divergence: fewer than 2 points to fit")
    n_fit = max(MIN_FIT_POINTS, math.ceil(FIT_SPAN_PERIODS * plan.period / plan.step) + 1)
    bounds = np.zeros(2, dtype=np.int64)
    slope = _steepest_stretch(k, y, n_fit, SATURATION_FRACTION, bounds)
    return float(slope), int(k[bounds[0]]), int(k[bounds[1]])


def _validate_rvals(rvals) -> np.ndarray | None:
    if rvals is None:
        return None
    r = np.asarray(rvals, dtype=np.float64)
    if r.ndim != 1 or r.size < 2 or not np.all(np.isfinite(r)) or np.any(r <= 0) or np.any(np.diff(r) <= 0):
        raise ValueError("rvals must be at least 2 increasing positive finite radii")
    return np.ascontiguousarray(r)


def default_trajectory_len(n: int, emb: Embedding) -> int:
    """:data:`DEFAULT_TRAJECTORY_LEN`, capped at a quarter of the embedded vectors (and >= 2) so
    that the followed steps never take most of a short window: nw2's former default, for
    comparisons with nolds' fixed fit (the default now is :func:`divergence_plan`)."""
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
    plan = None
    if want_lyapunov and trajectory_len is None:
        plan = divergence_plan(x, fs, emb, min_tsep)
        check_vectors(x.size, emb, plan.reserve)
    return x, fs, emb, _Steps(trajectory_len, plan), rvals


class _Steps(NamedTuple):
    """The steps the Lyapunov exponent follows: an explicit ``trajectory_len`` (every step from 0,
    fitted whole, as nolds) or the default :class:`DivergencePlan` (fitted by :func:`divergence_fit`)."""

    trajectory_len: int | None
    plan: DivergencePlan | None

    @property
    def reserve(self) -> int:
        return self.plan.reserve if self.plan is not None else (self.trajectory_len or 1) - 1


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


def _lyapunov_from(x, fs, emb, steps: _Steps, nn_index) -> float:
    if steps.plan is None:
        mean_log = np.empty(steps.trajectory_len)
        _divergence(x, emb.emb_dim, emb.lag, nn_index, nn_index.size, 1, steps.trajectory_len, False, mean_log)
        return _slope(np.arange(steps.trajectory_len, dtype=np.float64), mean_log, "divergence") * fs
    plan = steps.plan
    mean_log = np.empty(plan.n_points)
    _divergence(x, emb.emb_dim, emb.lag, nn_index, nn_index.size, plan.step, plan.n_points, True, mean_log)
    return divergence_fit(np.arange(plan.n_points) * plan.step, mean_log, plan)[0] * fs


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
        Steps over which the divergence is followed and fitted whole, from ``k = 0`` (>= 2), as
        nolds ``lyap_r(trajectory_len=...)``. Default ``None``: the curve is followed for 8 mean
        periods and the fit region is chosen from it (Notes).

    Returns
    -------
    float
        Exponent in 1/s; ``nan`` when undefined (window too short for the embedding, constant,
        non-finite samples, every divergence zero).

    Notes
    -----
    With delay vectors :math:`X_i` (:math:`M` of them) and a horizon of :math:`K` steps, each
    :math:`X_i` among the first :math:`M - K + 1` gets its Euclidean nearest neighbour
    :math:`X_{\hat\jmath(i)}` among them with :math:`|i - \hat\jmath| > \text{min\_tsep}`; then

    .. math:: y(k) = \big\langle \ln \lVert X_{i+k} - X_{\hat\jmath(i)+k} \rVert \big\rangle_i,
              \qquad \lambda_1 = f_s \cdot \frac{\mathrm{d}y}{\mathrm{d}k}

    (zero distances left out of the mean), the slope of a least-squares line through
    :math:`y(k)`. With ``trajectory_len = K`` the line is fitted over all of
    :math:`k = 0 \dots K - 1`: nolds ``lyap_r(..., fit="poly")`` times ``fs``.

    The default fits only where the separation grows exponentially. With :math:`P` the mean
    period in samples (``ceil`` of :func:`~pipeline.metrics.embedding.mean_period`), the curve is
    followed for :math:`K = \min(8P, \lfloor M/4 \rfloor)` steps (:data:`HORIZON_PERIODS`; at
    least 2), evaluated at :math:`k = 0, s, 2s, \dots \le K - 1` with
    :math:`s = \lceil (K - 1) / 64 \rceil` (:data:`GRID_INTERVALS`; the neighbours are searched
    among the vectors that can be followed to the last of these steps), and

    .. math:: \lambda_1 = f_s \max_{a} \operatorname{slope}\{(k_j, y(k_j)) : a \le j < a + L\},
              \qquad L = \max\big(3, \lceil P / (2s) \rceil + 1\big),
              \qquad a + L - 1 \le \max(e, L - 1)

    where :math:`e` is the first grid point with :math:`y(k_e) \ge y(0) + 0.8\,(\max_k y - y(0))`:
    the steepest stretch spanning half a mean period (:data:`FIT_SPAN_PERIODS`, at least
    :data:`MIN_FIT_POINTS` points) that ends before the curve has covered 80% of its rise
    (:data:`SATURATION_FRACTION`). Why: the curve is steepest in its exponential region, after the
    first steps (where the separation turns into the unstable direction) and before saturation
    (separations approaching the size of the attractor bend it over); on flows it oscillates at the
    signal's own frequencies and starts with a short bump, so the window spans half a period,
    which averages both (Lorenz x: local slope up to 2.9 /s in the first 0.1 s, 0.906 the truth).
    The constants were chosen on half of the dysts flows (the rest held out); fits from ``k = 0``
    to a fraction of the rise, or the longest initial stretch within a linearity tolerance, did
    worse there and on the maps, whose curve bends from the start. Measured (tests/test_lyapunov_accuracy.py): the
    logistic map 0.72 (1024 samples) and 0.90 (4096) of ln 2, Henon 0.82 and 0.95 of 0.42, Lorenz x
    at 100 Hz 1.09 and 1.13 of 0.906 /s. The steepest slope is itself limited by the embedding: with
    ``emb_dim=10`` the nearest neighbours of 1024 map samples are so far apart that the curve never
    rises faster than 0.44 per step on the logistic map. :func:`divergence_fit` is the rule, the
    reference engine applies it to nolds' curve.

    References
    ----------
    M. T. Rosenstein, J. J. Collins, C. J. De Luca, "A practical method for calculating largest
    Lyapunov exponents from small data sets", Physica D 65:117-134 (1993).
    """
    x, fs, emb, steps, _ = _prepare(x, fs, emb_dim, lag, min_tsep, trajectory_len, None, True)
    nn_index, _, _ = _run(x, emb, emb.n_vectors(x.size) - steps.reserve, None)
    return _lyapunov_from(x, fs, emb, steps, nn_index)


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

    The embedding is resolved once (with the Lyapunov reserve: ``trajectory_len - 1`` vectors, or
    the last step of :func:`divergence_plan`) and the same Theiler window serves both; each value
    equals the single function's with the same parameters. Policy: a failure common to both (bad
    window, too short for the embedding) raises :class:`~pipeline.metrics._common.Undefined`; a
    failure of one fit only gives ``nan`` in its place, with the reason in ``result.reasons``, so
    that the other value is not lost. Bad parameters raise ``ValueError``. The result unpacks as
    ``lyap, dim = ...``.
    """
    x, fs, emb, steps, rvals = _prepare(x, fs, emb_dim, lag, min_tsep, trajectory_len, rvals, True)
    radii = radius_grid(x, emb.emb_dim) if rvals is None else rvals
    nn_index, counts, n_pairs = _run(x, emb, emb.n_vectors(x.size) - steps.reserve, radii)
    values, reasons = {}, {}
    for name, compute in (("lyapunov", lambda: _lyapunov_from(x, fs, emb, steps, nn_index)),
                          ("dimension", lambda: _dimension_from(radii, counts, n_pairs, rvals is None))):
        try:
            values[name] = compute()
        except Undefined as why:
            values[name], reasons[name] = float("nan"), why.reason
    return LyapunovAndDimension(values["lyapunov"], values["dimension"], reasons)
