"""Bootstrap confidence intervals for comparing arms of an experiment.

Every arm is run with several seeds and evaluated on the same windows, so a score is a matrix
``(seeds, windows)`` per arm (or a vector ``(seeds,)`` for scores with no per-window value, such as a probe's
AUROC). One bootstrap replicate draws the independent **units** the windows belong to (subjects, records,
synthetic systems and bands: windows of one recording are not independent) with replacement once, shared by
the arms (the comparison is paired), every window of a drawn unit counting as often as its unit was drawn;
and, independently for each arm, its seeds with replacement. The statistic is the mean over the drawn seeds
and windows. Without units every window is its own unit. Intervals are percentile intervals of the
replicates.

With ``groups`` (each window's kind: its ground-truth system, else its dataset) the statistic is instead the
mean over groups of each group's mean, so that every kind of window counts once however many windows it has;
a group with no window in a replicate is left out of that replicate's mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "Comparison", "compare", "outcome"]


@dataclass(frozen=True)
class Interval:
    """A point estimate (the mean over every seed and window) and its bootstrap interval."""

    mean: float
    lo: float
    hi: float


@dataclass(frozen=True)
class Comparison:
    """Arm ``a`` against arm ``b`` on one score: each arm's interval and that of the difference a - b."""

    a: Interval
    b: Interval
    diff: Interval
    outcome: str
    """``beats``, ``matches`` (the interval of the difference holds 0) or ``worse``."""


def _as_matrix(x) -> np.ndarray:
    m = np.asarray(x, dtype=np.float64)
    return m[:, None] if m.ndim == 1 else m


def _codes(labels, W: int, what: str) -> np.ndarray:
    labels = np.asarray(labels, dtype=str)
    if labels.shape != (W,):
        raise ValueError(f"{what} must give one label per window ({W}), got shape {labels.shape}")
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _group_means(drawn: np.ndarray, X: np.ndarray, unit: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Per replicate (a row of unit draw counts, ``drawn`` (R, U)) and seed row of ``X`` (S, W): the mean over
    the groups present of each group's mean over the drawn windows: (R, S). Windows are first summed into
    their (unit, group) cells, so a replicate costs one pass over the cells, not over the windows."""
    n_groups = int(group.max()) + 1
    cell, cell_index = np.unique(unit * n_groups + group, return_inverse=True)
    cell_unit, cell_group = cell // n_groups, cell % n_groups  # cells sorted by unit, then group
    order = np.argsort(cell_group, kind="stable")
    starts = np.flatnonzero(np.r_[True, cell_group[order][1:] != cell_group[order][:-1]])
    size = np.bincount(cell_index, minlength=len(cell)).astype(np.float64)
    wc = drawn[:, cell_unit[order]].astype(np.float64)                     # (R, C) cells by group
    den = np.add.reduceat(wc * size[order], starts, axis=1)               # (R, G)
    present = den > 0
    safe = np.where(present, den, 1.0)
    out = np.empty((drawn.shape[0], X.shape[0]))
    for s in range(X.shape[0]):
        sums = np.bincount(cell_index, weights=X[s], minlength=len(cell))[order]
        num = np.add.reduceat(wc * sums, starts, axis=1)
        out[:, s] = np.where(present, num / safe, 0.0).sum(1) / np.maximum(present.sum(1), 1)
    return out


def compare(a, b, higher_is_better: bool, n_boot: int = 2000, confidence: float = 0.95,
            seed: int = 0, units=None, groups=None) -> Comparison:
    """Compare arm ``a`` with arm ``b`` on one score (``(seeds, windows)`` matrices with the same windows in
    the same order, or ``(seeds,)`` vectors). ``units``: each window's unit (any hashable labels, one per
    window), resampled instead of the windows. ``groups``: each window's group (labels): the statistic is
    the mean of the group means. Non-finite entries are not allowed: drop the windows first."""
    A, B = _as_matrix(a), _as_matrix(b)
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"the arms were scored on different windows ({A.shape[1]} and {B.shape[1]})")
    if not (np.isfinite(A).all() and np.isfinite(B).all()):
        raise ValueError("scores must be finite")
    rng = np.random.default_rng(seed)
    W = A.shape[1]
    code = np.arange(W) if units is None else _codes(units, W, "units")
    U = int(code.max()) + 1 if W else 0
    # a replicate's unit draw as a weight per window, so the per-seed means are one matrix product
    drawn = np.stack([np.bincount(rng.integers(0, U, U), minlength=U) for _ in range(n_boot)])  # (R, U)
    if groups is None:
        counts = drawn[:, code].astype(np.float64)
        counts /= np.maximum(counts.sum(1, keepdims=True), 1.0)                                # (R, W)
        per_seed_a, per_seed_b = counts @ A.T, counts @ B.T  # (R, S_a), (R, S_b)
        point_a, point_b = A.mean(), B.mean()
    else:
        g = _codes(groups, W, "groups")
        per_seed_a, per_seed_b = _group_means(drawn, A, code, g), _group_means(drawn, B, code, g)
        every = np.ones((1, U))  # every unit once: the point estimate
        point_a = float(_group_means(every, A.mean(0, keepdims=True), code, g)[0, 0])
        point_b = float(_group_means(every, B.mean(0, keepdims=True), code, g)[0, 0])
    sa = rng.integers(0, A.shape[0], (n_boot, A.shape[0]))
    sb = rng.integers(0, B.shape[0], (n_boot, B.shape[0]))
    rows = np.arange(n_boot)[:, None]
    ra, rb = per_seed_a[rows, sa].mean(1), per_seed_b[rows, sb].mean(1)
    q = [(1 - confidence) / 2, (1 + confidence) / 2]

    def interval(point: float, reps: np.ndarray) -> Interval:
        lo, hi = np.quantile(reps, q)
        return Interval(float(point), float(lo), float(hi))

    diff = interval(point_a - point_b, ra - rb)
    return Comparison(interval(point_a, ra), interval(point_b, rb), diff, outcome(diff, higher_is_better))


def outcome(diff: Interval, higher_is_better: bool) -> str:
    """``beats`` when the whole interval of a - b lies on the better side of 0, ``worse`` when it lies on
    the other, else ``matches``."""
    better_lo, better_hi = (diff.lo > 0, diff.hi < 0) if higher_is_better else (diff.hi < 0, diff.lo > 0)
    return "beats" if better_lo else "worse" if better_hi else "matches"
