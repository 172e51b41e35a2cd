"""The Numba kernels of the ``kmeans`` and ``coverage`` strategies (:mod:`pipeline.balance.strategies`).

``nearest_centre`` (serial) and ``nearest_centre_parallel`` (``prange``, the same result) assign rows to
their nearest centre; ``farthest_points`` is the greedy k-center search (serial: a step is about a
millisecond, too short for a parallel region per step on shared cores); ``cell_farthest`` runs it
inside every Voronoi cell of coverage's two-level mode, cells in parallel. Every parallel kernel
decides each row (or cell) on its own, so its result does not depend on the number of threads.

Kept apart so that importing the strategy registry (which :mod:`pipeline.spec` and the command line
do, for the names and parameters) does not load Numba; the strategies import this module on first use.
"""

from __future__ import annotations

import numpy as np
from numba import float64, int64, njit, prange, set_parallel_chunksize, types


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


#: Rows per block of :func:`nearest_centre_parallel`: a block's coordinates, transposed, and its
#: running distances stay in L1/L2 while every centre streams past them.
_ASSIGN_BLOCK = 512


@njit(int64[::1](types.Array(float64, 2, "A", readonly=True), float64[:, ::1]), parallel=True, cache=True,
      nogil=True)
def nearest_centre_parallel(x, centres):  # pragma: no cover - compiled
    """:func:`nearest_centre`, in parallel: the same result (squared Euclidean distances summed over the
    dimensions in the same order, ties to the lowest index, -1 for a row with a non-finite coordinate),
    whatever the number of threads, since every row is decided on its own.

    The rows go in blocks of ``_ASSIGN_BLOCK`` (``prange`` over the blocks); a block is transposed
    (dims x rows, contiguous) and the centres are taken four at a time, so each pass over a coordinate
    row of the block updates four running distances (vectorized over the rows). O(n x k x dims) time,
    O(threads x block x dims) memory beyond the output."""
    n, dims = x.shape
    k = centres.shape[0]
    out = np.empty(n, np.int64)
    block = _ASSIGN_BLOCK
    kk = (k + 3) // 4 * 4
    cp = np.full((kk, dims), np.inf)             # padding centres: infinitely far, never nearest
    cp[:k] = centres
    n_blocks = (n + block - 1) // block
    for b in prange(n_blocks):
        lo = b * block
        m = min(n, lo + block) - lo
        xt = np.empty((dims, m))
        for i in range(m):
            for j in range(dims):
                xt[j, i] = x[lo + i, j]
        best = np.full(m, np.inf)
        arg = np.full(m, -1, np.int64)
        d0 = np.empty(m)
        d1 = np.empty(m)
        d2 = np.empty(m)
        d3 = np.empty(m)
        for c in range(0, kk, 4):
            v0, v1, v2, v3 = cp[c, 0], cp[c + 1, 0], cp[c + 2, 0], cp[c + 3, 0]
            r = xt[0]
            for i in range(m):
                t = r[i]
                e0, e1, e2, e3 = t - v0, t - v1, t - v2, t - v3
                d0[i] = e0 * e0
                d1[i] = e1 * e1
                d2[i] = e2 * e2
                d3[i] = e3 * e3
            for j in range(1, dims):
                v0, v1, v2, v3 = cp[c, j], cp[c + 1, j], cp[c + 2, j], cp[c + 3, j]
                r = xt[j]
                for i in range(m):
                    t = r[i]
                    e0, e1, e2, e3 = t - v0, t - v1, t - v2, t - v3
                    d0[i] += e0 * e0
                    d1[i] += e1 * e1
                    d2[i] += e2 * e2
                    d3[i] += e3 * e3
            for i in range(m):                   # branch-free running argmin, centres in index order
                bb = best[i]
                aa = arg[i]
                q = d0[i] < bb
                bb = d0[i] if q else bb
                aa = c if q else aa
                q = d1[i] < bb
                bb = d1[i] if q else bb
                aa = c + 1 if q else aa
                q = d2[i] < bb
                bb = d2[i] if q else bb
                aa = c + 2 if q else aa
                q = d3[i] < bb
                bb = d3[i] if q else bb
                aa = c + 3 if q else aa
                best[i] = bb
                arg[i] = aa
        for i in range(m):
            out[lo + i] = arg[i]
    return out


@njit(types.UniTuple(int64[::1], 2)(types.Array(float64, 2, "A", readonly=True), int64[::1], int64[::1],
                                    int64[::1], int64[::1], int64[::1], int64[::1]),
      parallel=True, cache=True, nogil=True)
def _cell_farthest(x, order, starts, first, quotas, pools, schedule):  # pragma: no cover - compiled
    """Per cell, ``quotas[c]`` rows: greedy farthest-point (:func:`farthest_points`) from the cell's first
    row over a pool of ``pools[c]`` of its rows.

    Cell ``c``'s rows are ``order[starts[c]:starts[c + 1]]`` (in random order); its pool is
    ``first[c]`` (its centre; -1: none, e.g. the undefined cell) followed by the other rows of the
    block in that order, ``pools[c]`` rows in all. With ``pools[c] <= quotas[c]`` (or a quota of 1, or
    no centre) the first ``quotas[c]`` pool rows are taken as they come (a uniform sample after the
    centre); otherwise the greedy runs on the pool's coordinates from its first row.

    Returns ``(rows, pick)``: the chosen rows, cell after cell (cell ``c`` at offset
    ``sum(quotas[:c])``), and each one's position in its cell's greedy order (0: the centre).
    Cells are independent (``prange`` over ``schedule``, the cells in decreasing cost, handed out one
    at a time: :func:`cell_farthest` sets the chunk size to 1), so the result does not depend on the
    number of threads."""
    n_cells = quotas.size
    dims = x.shape[1]
    offsets = np.zeros(n_cells + 1, np.int64)
    for c in range(n_cells):
        offsets[c + 1] = offsets[c] + quotas[c]
    rows = np.empty(offsets[n_cells], np.int64)
    pick = np.empty(offsets[n_cells], np.int64)
    for s in prange(n_cells):
        c = schedule[s]
        q = quotas[c]
        if q == 0:
            continue
        m = max(pools[c], q)
        pool = np.empty(m, np.int64)
        taken = 0
        if first[c] >= 0:
            pool[0] = first[c]
            taken = 1
        i = starts[c]
        while taken < m:
            if order[i] != first[c]:
                pool[taken] = order[i]
                taken += 1
            i += 1
        lo = offsets[c]
        if m == q or q == 1 or first[c] < 0:
            for p in range(q):
                rows[lo + p] = pool[p]
                pick[lo + p] = p
            continue
        xt = np.empty((dims, m))
        for p in range(m):
            for j in range(dims):
                xt[j, p] = x[pool[p], j]
        chosen = farthest_points(xt, 0, q)
        for p in range(q):
            rows[lo + p] = pool[chosen[p]]
            pick[lo + p] = p
    return rows, pick


def cell_farthest(x, order, starts, first, quotas, pools, schedule):
    """:func:`_cell_farthest` with the ``prange`` chunk size 1 (dynamic hand-out of the cells, which
    differ widely in cost), restored afterwards; see there for the arguments and the result."""
    old = set_parallel_chunksize(1)
    try:
        return _cell_farthest(x, order, starts, first, quotas, pools, schedule)
    finally:
        set_parallel_chunksize(old)
