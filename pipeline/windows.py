"""Windowing, window quality checks, subject-disjoint split assignment and deterministic ids."""

from __future__ import annotations

from collections import Counter

import numpy as np

from nw2.core.hashing import content_id
from nw2.pipeline.spec import SplitSpec, WindowSpec

#: Why a window was dropped; the manifest counts each.
DROP_REASONS = ("missing", "flat", "clipped")


def group_id(dataset: str, subject: str, record: str, start_index: int, length: int, fs: float) -> str:
    """Id shared by all channels cut from the same record and time span."""
    return content_id("group", dataset, subject, record, start_index, length, repr(float(fs)))


def window_id(group: str, channel: str) -> str:
    return content_id("window", group, channel)


def assign_split(dataset: str, subject: str, split: SplitSpec) -> str:
    """``train``/``val``/``test`` from a hash of the subject key: every window of a subject lands in
    the same split, on every machine, whatever else is ingested."""
    key = f"{dataset}/{subject}"
    if key in split.fixed:
        return split.fixed[key]
    u = int(content_id("split", split.seed, key)[:15], 16) / 16**15
    if u < split.train:
        return "train"
    if u < split.train + split.val:
        return "val"
    return "test"


def window_starts(first: int, n_windows_max: int, stride: int) -> np.ndarray:
    return first + stride * np.arange(n_windows_max)


def flat_fraction(x: np.ndarray, min_run: int) -> float:
    """Fraction of ``x`` lying in runs of identical values at least ``min_run`` samples long."""
    if x.size < 2:
        return 1.0
    change = np.flatnonzero(np.diff(x) != 0)
    bounds = np.concatenate([[0], change + 1, [x.size]])
    runs = np.diff(bounds)
    return float(runs[runs >= max(2, min_run)].sum() / x.size)


def clipped_fraction(x: np.ndarray) -> float:
    """Fraction of samples at the window's own minimum or maximum: a saturated sensor piles up
    there, a healthy signal touches each extreme a handful of times."""
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return 0.0
    lo, hi = finite.min(), finite.max()
    if lo == hi:
        return 1.0
    at_edge = (finite == lo).sum() + (finite == hi).sum()
    # Two samples (one minimum, one maximum) are always there and are not clipping.
    return float(max(0, at_edge - 2) / finite.size)


def quality_problem(source: np.ndarray, missing: float, spec: WindowSpec, fs_source: float) -> str | None:
    """The reason to drop a window, judged on its source-rate samples, or ``None`` to keep it."""
    if missing > spec.max_missing:
        return "missing"
    finite = source[np.isfinite(source)]
    if flat_fraction(finite, int(round(spec.flat_run_s * fs_source))) > spec.max_flat:
        return "flat"
    if clipped_fraction(finite) > spec.max_clipped:
        return "clipped"
    return None


def _check_starts(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    starts = np.asarray(starts, dtype=np.int64)
    if starts.size and (starts.min() < 0 or starts.max() + length > x.size):
        raise ValueError("every window x[s:s + length] must lie inside x")
    return starts


def _all_finite(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """Whether each window ``x[s:s + length]`` (inside ``x``) holds only finite samples."""
    nonfinite = ~np.isfinite(x)
    if not nonfinite.any():
        return np.ones(starts.size, bool)
    count = np.concatenate([[0], np.cumsum(nonfinite, dtype=np.int64)])
    return count[starts + length] == count[starts]


def flat_fractions(x: np.ndarray, starts: np.ndarray, length: int, min_run: int) -> np.ndarray:
    """``[flat_fraction(x[s:s + length], min_run) for s in starts]`` without cutting the windows.

    The runs of identical values inside a window are the runs of the whole signal cut at the
    window's edges, and a run shorter than ``min_run`` in the signal is shorter in every window. So
    the long runs are found once; a window counts those lying wholly inside it and, for the first
    and last run it touches, the part inside it if that part is still long enough.
    """
    x = np.asarray(x)
    starts = _check_starts(x, starts, length)
    if length < 2:
        return np.ones(starts.size)
    m = max(2, min_run)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(x) != 0) + 1, [x.size]])
    long = np.flatnonzero(np.diff(bounds) >= m)
    r0, r1 = bounds[long], bounds[long + 1]
    a, b = starts, starts + length
    first = np.searchsorted(r1, a, side="right")  # first run ending after the window's start
    stop = np.searchsorted(r0, b, side="left")  # runs starting before the window's end: < stop
    cum = np.concatenate([[0], np.cumsum(r1 - r0)])
    total = cum[stop] - cum[first]
    if r0.size == 0:
        return total / length
    for idx, edge in ((first, stop > first), (stop - 1, stop - 1 > first)):
        i = np.where(edge, idx, 0)
        inside = np.minimum(b, r1[i]) - np.maximum(a, r0[i])
        total -= np.where(edge, (r1[i] - r0[i]) - np.where(inside >= m, inside, 0), 0)
    return total / length


#: Source samples cut at a time by ``clipped_fractions`` (a 2 MiB block of float64).
_CLIP_BLOCK = 1 << 18
#: From this window length on, ``clipped_fractions`` goes window by window on views of the signal:
#: copying long windows into a block costs more than a Python step per window.
_CLIP_ROW_BY_ROW = 3072


def clipped_fractions(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """``[clipped_fraction(x[s:s + length]) for s in starts]``: row-wise minimum, maximum and counts
    on blocks of windows (long windows one at a time, on views of ``x``); windows holding non-finite
    samples go through :func:`clipped_fraction`."""
    x = np.asarray(x)
    starts = _check_starts(x, starts, length)
    return _clipped_fractions(x, starts, length, _all_finite(x, starts, length))


def _clipped_fractions(x: np.ndarray, starts: np.ndarray, length: int, finite: np.ndarray) -> np.ndarray:
    out = np.empty(starts.size)
    for r in np.flatnonzero(~finite):
        out[r] = clipped_fraction(x[starts[r]:starts[r] + length])
    rows = np.flatnonzero(finite)
    if length == 0 or rows.size == 0:
        out[rows] = 0.0
        return out
    if length >= _CLIP_ROW_BY_ROW:
        at_edge, lo, hi = np.empty(rows.size, np.int64), np.empty(rows.size, x.dtype), np.empty(rows.size, x.dtype)
        for k, s in enumerate(starts[rows].tolist()):
            w = x[s:s + length]
            lo[k], hi[k] = w.min(), w.max()
            at_edge[k] = np.count_nonzero(w == lo[k]) + np.count_nonzero(w == hi[k])
        out[rows] = np.where(lo == hi, 1.0, np.maximum(0, at_edge - 2) / length)
        return out
    view = np.lib.stride_tricks.sliding_window_view(x, length)
    step = max(1, _CLIP_BLOCK // length)
    for i in range(0, rows.size, step):
        sel = rows[i:i + step]
        w = view[starts[sel]]
        lo, hi = w.min(axis=1), w.max(axis=1)
        at_edge = np.count_nonzero(w == lo[:, None], axis=1) + np.count_nonzero(w == hi[:, None], axis=1)
        out[sel] = np.where(lo == hi, 1.0, np.maximum(0, at_edge - 2) / length)
    return out


def quality_problems(source: np.ndarray, starts: np.ndarray, length: int, missing: np.ndarray,
                     spec: WindowSpec, fs_source: float) -> list[str | None]:
    """:func:`quality_problem` of many windows of one channel at once:
    ``[quality_problem(source[max(0, s):s + length], m, spec, fs_source) for s, m in zip(starts, missing)]``.

    Windows wholly inside ``source`` and free of non-finite samples (nearly all) are judged by
    :func:`flat_fractions` and :func:`clipped_fractions`; the others one by one.
    """
    source = np.asarray(source)
    starts = np.asarray(starts, dtype=np.int64)
    missing = np.asarray(missing, dtype=np.float64)
    out: list[str | None] = [None] * starts.size
    if starts.size == 0:
        return out
    is_missing = missing > spec.max_missing
    inside = (starts >= 0) & (starts + length <= source.size)
    fast = np.zeros(starts.size, bool)
    fast[inside] = _all_finite(source, starts[inside], length)
    fast &= ~is_missing & (length >= 2)
    for r in np.flatnonzero(is_missing):
        out[r] = "missing"
    for r in np.flatnonzero(~fast & ~is_missing):
        s = int(starts[r])
        out[r] = quality_problem(source[max(0, s):s + length], float(missing[r]), spec, fs_source)
    rows = np.flatnonzero(fast)
    flat = flat_fractions(source, starts[rows], length, int(round(spec.flat_run_s * fs_source))) > spec.max_flat
    for r in rows[flat]:
        out[r] = "flat"
    rows = rows[~flat]
    clipped = _clipped_fractions(source, starts[rows], length, np.ones(rows.size, bool))
    for r in rows[clipped > spec.max_clipped]:
        out[r] = "clipped"
    return out


def window_label(labels: np.ndarray | None) -> str | None:
    """The most frequent per-sample label in a window (ties: the smallest as text), or ``None``."""
    if labels is None or labels.size == 0:
        return None
    values = [str(v) for v in labels.tolist() if not (isinstance(v, float) and v != v)]
    if not values:
        return None
    counts = Counter(values)
    best = max(counts.values())
    return min(v for v, c in counts.items() if c == best)
