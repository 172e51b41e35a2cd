"""Scores relative to seasonal naive, win rates and differences against each baseline, with intervals from a
bootstrap over independent units (``metrics.json``'s ``forecast.relative``; ``docs/evaluate.md``).

Windows of one recording (or one synthetic system and parameter band) are not independent: an interval over
windows is as narrow as if every window were a new subject. So every interval here resamples **units**
(the row's ``subject``; its ``record`` where the subject is null; the window itself where both are) with
replacement, and every statistic is recomputed on the windows of the drawn units (a unit drawn twice counts
twice).

Each statistic is given two ways:

- ``windows``: the mean over windows (every window counts once);
- ``groups``: the mean over **groups** of each group's mean, where a row's group is its ground-truth
  ``system`` when it has one, else its ``dataset`` (so a model cannot win by doing well on the most common
  kind of window). A group with no window in a replicate is left out of that replicate's mean.

Statistics per forecaster ``m`` and horizon (and the mean over horizons, ``"mean"``):

- ``mse``, ``mae``: the mean errors;
- ``mase``: :math:`\\mathrm{MAE}_m / q`, with :math:`q = \\frac{1}{n-s}\\sum_{t \\ge s} |x_t - x_{t-s}|` the
  in-sample MAE of seasonal naive on the window's own context (:math:`s` its seasonal period, 1 without
  one; a window with :math:`q = 0` is left out), as GIFT-Eval and fev scale errors;
- ``relative_mae``, ``relative_mse``: the geometric mean over groups of
  :math:`\\overline{e_m}_g / \\overline{e_{\\mathrm{sn}}}_g` (a group's mean error over seasonal naive's on the
  same windows), as fev aggregates tasks; below 1 is better than seasonal naive;
- ``win_rate`` of each model forecaster against each other forecaster ``b``: the share of windows where
  :math:`e_m < e_b` on MSE (a tie counts one half);
- ``difference`` of MSE and MAE, model forecaster less baseline: below 0 means the model is better; its
  ``outcome`` is ``beats`` when the whole interval is below 0, ``worse`` when it is above, else ``matches``
  (null without an interval).

An interval is ``{"mean", "lo", "hi"}``: the statistic on every window, and the 2.5 and 97.5 percentiles of
:data:`REPLICATES` replicates drawn with ``np.random.default_rng([seed, 3])``. With one unit no interval
exists: ``lo`` and ``hi`` are null.
"""

from __future__ import annotations

import numpy as np

__all__ = ["REPLICATES", "CONFIDENCE", "Units", "unit_label", "group_label", "make_units", "in_sample_scale",
           "relative_section"]

#: Bootstrap replicates and the confidence of the percentile intervals.
REPLICATES = 1000
CONFIDENCE = 0.95
#: The reference forecaster of the relative scores.
REFERENCE = "seasonal_naive"


class Units:
    """Integer unit and group codes per window, and the bootstrap's draw counts ``(replicates, units)``."""

    def __init__(self, unit: np.ndarray, group: np.ndarray, unit_names: list[str], group_names: list[str],
                 replicates: int, seed: int):
        self.unit, self.group = unit, group
        self.unit_names, self.group_names = unit_names, group_names
        self.n_units, self.n_groups = len(unit_names), len(group_names)
        rng = np.random.default_rng([seed, 3])
        U = self.n_units
        self.counts = (np.stack([np.bincount(rng.integers(0, U, U), minlength=U) for _ in range(replicates)])
                       .astype(np.float64) if U > 1 and replicates > 0 else np.zeros((0, U)))

    def _sums(self, weights: np.ndarray) -> np.ndarray:
        """Per (unit, group) sums of ``weights`` (W,): (units, groups), so a replicate is one matrix product."""
        cell = self.unit * self.n_groups + self.group
        return np.bincount(cell, weights=weights, minlength=self.n_units * self.n_groups).reshape(
            self.n_units, self.n_groups)

    def interval(self, values: np.ndarray, how: str) -> dict:
        """The ``windows`` or ``groups`` mean of ``values`` (W,) (NaN: left out) and its bootstrap interval."""
        ok = np.isfinite(values)
        if not ok.any():
            return {"mean": None, "lo": None, "hi": None}
        s, n = self._sums(np.where(ok, values, 0.0)), self._sums(ok.astype(np.float64))
        point = _aggregate(s.sum(0, keepdims=True), n.sum(0, keepdims=True), how)[0]
        if self.counts.shape[0] == 0:
            return {"mean": point, "lo": None, "hi": None}
        reps = _aggregate(self.counts @ s, self.counts @ n, how)
        return _interval(point, reps)

    def ratio_interval(self, num: np.ndarray, den: np.ndarray) -> dict:
        """The geometric mean over groups of ``mean(num) / mean(den)`` per group, and its interval."""
        ok = np.isfinite(num) & np.isfinite(den)
        if not ok.any():
            return {"mean": None, "lo": None, "hi": None}
        a, b = self._sums(np.where(ok, num, 0.0)), self._sums(np.where(ok, den, 0.0))
        point = _geomean_ratio(a.sum(0, keepdims=True), b.sum(0, keepdims=True))[0]
        if self.counts.shape[0] == 0:
            return {"mean": point, "lo": None, "hi": None}
        return _interval(point, _geomean_ratio(self.counts @ a, self.counts @ b))


def _aggregate(sums: np.ndarray, counts: np.ndarray, how: str) -> np.ndarray:
    """Per replicate row: the window mean (``windows``) or the mean of group means (``groups``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if how == "windows":
            return sums.sum(1) / counts.sum(1)
        means = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.nan)
        return np.nanmean(means, axis=1) if means.shape[1] else np.full(means.shape[0], np.nan)


def _geomean_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: exp of the mean over groups (with b > 0 and a > 0) of log(a / b) (both sums of one group's
    windows, so the ratio of sums is the ratio of means)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = (a > 0) & (b > 0)
        logs = np.where(ok, np.log(np.where(ok, a, 1.0) / np.where(ok, b, 1.0)), 0.0)
        k = ok.sum(1)
        return np.where(k > 0, np.exp(logs.sum(1) / np.maximum(k, 1)), np.nan)


def _interval(point: float, reps: np.ndarray) -> dict:
    reps = reps[np.isfinite(reps)]
    if not np.isfinite(point):
        return {"mean": None, "lo": None, "hi": None}
    if reps.size == 0:
        return {"mean": float(point), "lo": None, "hi": None}
    lo, hi = np.quantile(reps, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return {"mean": float(point), "lo": float(lo), "hi": float(hi)}


def _codes(values) -> tuple[np.ndarray, list[str]]:
    names, code = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return code.reshape(-1).astype(np.int64), [str(n) for n in names]


def unit_label(subject, record, window_id) -> str:
    """A window's independent unit: its subject, else its record, else the window itself."""
    if subject is not None:
        return f"subject:{subject}"
    return f"record:{record}" if record is not None else f"window:{window_id}"


def group_label(system, dataset) -> str:
    """A window's group, the kind of window that counts once in a ``groups`` average: its ground-truth system,
    else its dataset."""
    return f"system:{system}" if system is not None else f"dataset:{dataset}"


def make_units(window_id, subject, record, system, dataset, replicates: int = REPLICATES, seed: int = 0
               ) -> tuple[Units, dict]:
    """The :class:`Units` of the evaluated windows (each argument a sequence over windows, None entries
    allowed but in ``window_id`` and ``dataset``) and how they were formed, for ``metrics.json``."""
    n = len(window_id)
    subject = list(subject) if subject is not None else [None] * n
    record = list(record) if record is not None else [None] * n
    system = list(system) if system is not None else [None] * n
    units = [unit_label(s, r, w) for s, r, w in zip(subject, record, window_id)]
    groups = [group_label(s, d) for s, d in zip(system, dataset)]
    unit, unit_names = _codes(units)
    group, group_names = _codes(groups)
    u = Units(unit, group, unit_names, group_names, replicates, seed)
    kinds = {k: sum(name.startswith(k + ":") for name in unit_names) for k in ("subject", "record", "window")}
    info = {"unit": "subject, else record, else the window", "units": u.n_units, "units_by_kind": kinds,
            "group": "ground-truth system, else dataset", "groups": u.n_groups,
            "bootstrap": {"over": "units", "replicates": int(replicates) if u.n_units > 1 else 0,
                          "confidence": CONFIDENCE, "seed": [int(seed), 3]}}
    return u, info


def in_sample_scale(ctx: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Per context, the in-sample MAE of seasonal naive: mean ``|x_t - x_{t-s}|`` over ``t >= s``, ``s`` the
    context's period (1 where it is 0); NaN where that is 0 (below 1e-12 of the context's largest magnitude:
    rounding) or ``s`` is not shorter than the context."""
    x = np.asarray(ctx, np.float64)
    B, n = x.shape
    s = np.where(np.asarray(period) > 0, np.asarray(period), 1).astype(np.int64)
    out = np.full(B, np.nan)
    for lag in np.unique(s):
        rows = np.flatnonzero(s == lag)
        if lag >= n:
            continue
        q = np.abs(x[rows, lag:] - x[rows, :-lag]).mean(1)
        out[rows] = np.where(q > 1e-12 * np.abs(x[rows]).max(1), q, np.nan)
    return out


def _outcome(diff: dict) -> str | None:
    if diff["mean"] is None:
        return None
    if diff["lo"] is None:
        return None     # one unit: no interval, so no outcome
    return "beats" if diff["hi"] < 0 else "worse" if diff["lo"] > 0 else "matches"


def relative_section(scores: dict, mase_scale: np.ndarray, horizons, methods, model_methods, units: Units,
                     info: dict) -> dict:
    """``forecast.relative`` from ``scores[method][metric]`` (W, horizons) of the evaluated windows and their
    in-sample scales (W,) (:func:`in_sample_scale`)."""
    cols = [str(h) for h in horizons] + ["mean"]

    def columns(a: np.ndarray) -> list[np.ndarray]:
        with np.errstate(invalid="ignore"):
            mean = np.where(np.isfinite(a).all(1), a.mean(1), np.nan)
        return [a[:, j] for j in range(a.shape[1])] + [mean]

    def both(values: np.ndarray) -> dict:
        return {"windows": units.interval(values, "windows"), "groups": units.interval(values, "groups")}

    cols_of = {m: {metric: columns(scores[m][metric]) for metric in ("mse", "mae")} for m in methods}
    per = {}
    for m in methods:
        mse, mae = cols_of[m]["mse"], cols_of[m]["mae"]
        entry = {c: {"mse": both(mse[j]), "mae": both(mae[j]), "mase": both(mae[j] / mase_scale)}
                 for j, c in enumerate(cols)}
        if REFERENCE in cols_of:
            ref_mse, ref_mae = cols_of[REFERENCE]["mse"], cols_of[REFERENCE]["mae"]
            for j, c in enumerate(cols):
                entry[c]["relative_mse"] = units.ratio_interval(mse[j], ref_mse[j])
                entry[c]["relative_mae"] = units.ratio_interval(mae[j], ref_mae[j])
        per[m] = entry

    against = {}
    for m in model_methods:
        if m not in methods:
            continue
        against[m] = {}
        for b in methods:
            if b == m:
                continue
            entry = {}
            for j, c in enumerate(cols):
                am, bm = cols_of[m]["mse"][j], cols_of[b]["mse"][j]
                with np.errstate(invalid="ignore"):
                    win = np.where(np.isfinite(am) & np.isfinite(bm), (am < bm) + 0.5 * (am == bm), np.nan)
                e = {"win_rate": both(win)}
                for metric in ("mse", "mae"):
                    d = cols_of[m][metric][j] - cols_of[b][metric][j]
                    diff = {how: units.interval(d, how) for how in ("windows", "groups")}
                    e[f"{metric}_difference"] = {how: {**v, "outcome": _outcome(v)} for how, v in diff.items()}
                entry[c] = e
            against[m][b] = entry
    return {**info, "reference": REFERENCE, "horizons": cols, "methods": per, "against": against}
