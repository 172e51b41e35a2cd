"""Windowing, window quality checks, subject-disjoint split assignment and deterministic ids."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np

from pipeline.spec import SplitSpec, WindowSpec

#: Why a window was dropped; the manifest counts each.
DROP_REASONS = ("missing", "flat", "clipped")


def content_id(*parts: object) -> str:
    """A 128-bit hex id from the parts' text: the same provenance gives the same id everywhere."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


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
