"""The Numba kernels of the ``kmeans`` and ``coverage`` strategies (:mod:`pipeline.balance.strategies`).

Kept apart so that importing the strategy registry (which :mod:`pipeline.spec` and the command line
do, for the names and parameters) does not load Numba; the strategies import this module on first use.
"""

from __future__ import annotations

import numpy as np
from numba import float64, int64, njit, types


# One signature for any layout, read-only or not (a writeable array matches the read-only type), so
# features handed over zero-copy from Arrow/polars need no copy.
@njit(int64[::1](types.Array(float64, 2, "A", readonly=True), float64[:, ::1]), cache=True, nogil=True)
def nearest_centre(x, centres):  # pragma: no cover - compiled
    """Index of the nearest centre (squared Euclidean, ties to the lowest index) of each row; -1 for a
    row with a non-finite coordinate. O(1) memory beyond the output."""
    n, dims = x.shape
    k = centres.shape[0]
    out = np.empty(n, np.int64)
    for i in range(n):
        best = np.inf
        arg = -1
        for c in range(k):
            d = 0.0
            for j in range(dims):
                diff = x[i, j] - centres[c, j]
                d += diff * diff
            if d < best:
                best = d
                arg = c
        out[i] = arg
    return out


@njit(int64[::1](float64[:, ::1], int64, int64), cache=True, nogil=True)
def farthest_points(xt, start, size):  # pragma: no cover - compiled
    """Greedy k-center on the columns of ``xt`` (dims x n): ``size`` positions, from ``start``, each
    next the farthest (squared Euclidean) from those chosen; ties go to the lowest position.

    ``best[i]`` is the squared distance of point i to its nearest chosen point (-1 once chosen, which
    no distance undercuts); each step updates it with the last chosen point and takes its argmax.
    The distance and the update run as separate loops over contiguous rows so they vectorize."""
    dims, n = xt.shape
    best = np.full(n, np.inf)
    chosen = np.empty(size, np.int64)
    chosen[0] = start
    best[start] = -1.0
    d = np.empty(n)
    for s in range(1, size):
        last = chosen[s - 1]
        centre = xt[0, last]
        row = xt[0]
        for i in range(n):
            diff = row[i] - centre
            d[i] = diff * diff
        for j in range(1, dims):
            centre = xt[j, last]
            row = xt[j]
            for i in range(n):
                diff = row[i] - centre
                d[i] += diff * diff
        top = -0.5
        for i in range(n):
            v = min(best[i], d[i])
            best[i] = v
            top = max(top, v)
        arg = 0
        while best[arg] != top:
            arg += 1
        chosen[s] = arg
        best[arg] = -1.0
    return chosen
