r"""Independent diversity: is a balanced corpus more diverse than a random draw, by measures it did not use?

A strategy that balances on some features will look balanced on those features almost by construction
(its own grid cells, its own clusters). :func:`independent_diversity` measures the selected rows in
ways the strategies never look at, and measures ``draws`` seeded random draws of the same size from
the same candidates the same way, so the ``corpus.json`` section it returns shows both side by side:
every measure has a ``"selection"`` value and a ``"random"`` one (mean and sd over the draws).

Measures
--------
Space
    All metric columns the store has (not only the balancing features), each standardized robustly by
    the candidates' defined values, :math:`s_j(x) = \mathrm{clip}((x - \mathrm{med}_j) / \mathrm{IQR}_j,
    -5, 5)` with :math:`\mathrm{IQR}_j = q_{0.75} - q_{0.25}` (1 where it is 0). This is deliberately
    *not* the quantile transform the strategies balance in. Non-finite values are undefined; a column
    undefined on every candidate is dropped (``space.dropped``); a row with any undefined kept column is
    left out of ``coverage`` and ``clusters`` (``space.rows_left_out``).
coverage
    How close every part of the candidates' space comes to a selected row. For a candidate :math:`i`
    and the set :math:`S` of distinct selected rows (with ``weights``: those with weight > 0), both in
    the space above with :math:`d` columns,

    .. math:: c_i = \min_{s \in S} \lVert s(x_i) - s(x_s) \rVert_2 \,/\, \sqrt{d}

    (divided by :math:`\sqrt d` so the scale does not grow with the number of metrics); reported as the
    mean, 90th percentile (linear interpolation) and max of :math:`c_i` over the query rows. The query
    rows are all defined candidates when there are at most ``coverage_sample`` of them, otherwise a
    seeded uniform sample of that many (``np.random.default_rng([seed, 1299709])``), the *same* rows
    for the selection and every random draw, so the comparison is paired. The nearest neighbours are
    exact (``scipy.spatial.cKDTree``); the sample only bounds the number of queries, because exact
    search in 10+ dimensions costs tens of microseconds per query. Lower is better.
clusters
    Mini-batch k-means (:func:`pipeline.balance.strategies.fit_minibatch_kmeans`) with ``k`` centres,
    fitted in the space above on all defined candidates or a sample of at most ``cluster_sample`` of
    them, with ``np.random.default_rng([seed, 104729])`` (sample, seeding and batches); every defined
    candidate gets its nearest centre. With :math:`p_c` the (weighted) share of the selection's defined
    rows in cluster :math:`c` and :math:`N` the clusters occupied by the candidates (``k`` unless the
    data hold fewer distinct points): ``entropy`` :math:`H = -\sum_c p_c \ln p_c`,
    ``normalized_entropy`` :math:`H / \ln N`, ``occupied`` the clusters holding a selected row
    (:func:`pipeline.balance.bins.balance_stats`). Higher is more diverse.
held_out_metrics
    Metrics that are not among ``balancing_metrics`` (and not dropped): at most 3 of them, those with
    the most defined candidates (ties by name). Each is cut into ``cells_per_dim`` equal-count cells
    at the quantiles of its own defined candidates (:func:`pipeline.balance.bins.fit_grid`), the joint
    cell of a row is its cells read as base-``cells_per_dim`` digits, and a row undefined on any of them
    falls in the extra cell -1 (as in :mod:`pipeline.balance.bins`). ``entropy`` and ``normalized_entropy``
    :math:`H / \ln N` with :math:`N` the cells occupied by the candidates, and ``occupied`` cells, of the
    selection's cells. With no held-out metric, ``metrics`` is ``[]``, ``reason`` says why and
    ``selection``/``random`` are ``null``.
ground_truth
    Over the candidates with known dynamics (synthetic rows: at least one truth field not null), the
    label :math:`\ell` = ``"system|regime|band"`` (the fields given, in ``truth``'s order; a null field
    as the empty string). ``entropy`` and ``normalized_entropy`` :math:`H / \ln L` (:math:`L` labels
    among the candidates), ``represented`` (labels holding a selected row), and
    ``rarest_decile_share``: with the labels sorted by candidate count ascending (ties by label), the
    rarest decile :math:`R` is the first :math:`\lceil L / 10 \rceil` of them, and the share is
    :math:`\sum_{i \in \mathrm{sel},\, \ell_i \in R} w_i / \sum_{i \in \mathrm{sel}} w_i` over the
    selection's truth rows. ``null`` measures (and a ``reason``) when there is no truth.
composition
    Per ``dataset`` and ``modality`` the share of the selection, of the random draws (mean) and of the
    candidates in each value (every value of the candidates listed; each sums to 1). For the other
    groups (``subject``, ``record``: many values) the largest share of one value (``max_share``) and the
    number of distinct values (``distinct``). A group passed as ``None`` is ``null``.

Random draws
    Draw :math:`r = 0 \dots` ``draws`` - 1 takes ``len(selected)`` candidates with
    ``np.random.default_rng([seed, 7919, r])`` (``choice`` without replacement when
    ``len(selected) <= n``, else ``integers`` with replacement), whatever the strategy, so two corpora
    built with the same seed are compared with the same baseline. Draws are unweighted. A random summary
    is ``{"mean": ..., "sd": ...}`` over the draws where the measure is defined (sd with ``ddof=1``, 0
    for a single draw).

Weights (``weights_only`` corpora): the selection's shares, entropies and composition are weighted
by ``weights``; coverage uses the selected rows with weight > 0.

Shape of the returned dict (floats rounded to 6 significant digits, ``null`` for undefined)::

    {"candidates": int, "selected": int, "weighted": bool, "draws": int, "seed": int,
     "space": {"metrics": [str], "dropped": [str], "scale": str, "median": [float], "iqr": [float],
               "rows_used": int, "rows_left_out": int},
     "coverage": {"query_rows": int, "sample_seed": [seed, 1299709], "reason"?: str,
                  "selection": {"mean", "p90", "max": float, "rows": int} | null,
                  "random": {"mean", "p90", "max", "rows": {"mean", "sd"}} | null},
     "clusters": {"k": int, "centres": int, "reference_clusters": int, "fit_rows": int,
                  "seed": [seed, 104729], "reason"?: str,
                  "selection": {"entropy", "normalized_entropy": float, "occupied": int, "rows": int} | null,
                  "random": {same keys: {"mean", "sd"}} | null},
     "held_out_metrics": {"metrics": [str], "cells_per_dim": int, "reference_cells": int, "reason"?: str,
                          "selection": {"entropy", "normalized_entropy", "occupied"} | null,
                          "random": {same keys: {"mean", "sd"}} | null},
     "ground_truth": {"labels": "system|regime|band" | null, "rows_with_truth": int,
                      "reference_labels": int, "rarest_decile": [str], "reason"?: str,
                      "selection": {"entropy", "normalized_entropy", "represented", "rarest_decile_share",
                                    "rows"} | null,
                      "random": {same keys: {"mean", "sd"}} | null},
     "composition": {"dataset": {"selection": {value: share}, "random": {value: mean share},
                                 "candidates": {value: share}},
                     "modality": {same},
                     "subject": {"selection": {"max_share", "distinct"}, "random": {"max_share": {"mean",
                                 "sd"}, "distinct": {"mean", "sd"}}, "candidates": {"max_share", "distinct"}},
                     "record": {same as subject}}}

Determinism: every random choice comes from generators seeded as above and consumed in a fixed order,
and nearest-neighbour distances and k-means assignments do not depend on the number of threads, so the
same inputs give the same dict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from nw2.core.jsonable import jsonable
from nw2.pipeline.balance.bins import Grid, balance_stats, fit_grid
from nw2.pipeline.balance.space import ROBUST_CLIP, float_values, robust_scale
from nw2.pipeline.balance.strategies import KmeansParams, _nearest, fit_minibatch_kmeans

#: Second words of the seed sequences, so each use of ``seed`` has its own stream (primes, arbitrary).
DRAW_STREAM = 7919
CLUSTER_STREAM = 104729
COVERAGE_STREAM = 1299709
#: Held-out metrics measured at most (the joint cell count is ``cells_per_dim ** HELD_OUT_MAX``).
HELD_OUT_MAX = 3
#: Groups reported as a share per value; the others as max share and distinct count.
SHARE_GROUPS = ("dataset", "modality")
SCALE = f"standardized (median / IQR, clipped at ±{ROBUST_CLIP:g})"


# -- small helpers ---------------------------------------------------------------------------------
def _clean(obj):
    """Numpy scalars to Python ones and floats rounded, recursively (ints and strings kept)."""
    return jsonable(obj, 6)


def _summarize(per_draw: list[dict | None]) -> dict | None:
    """``{key: {"mean", "sd"}}`` over the draws where the measure is defined (sd with ddof=1)."""
    defined = [m for m in per_draw if m is not None]
    if not defined:
        return None
    out = {}
    for key in defined[0]:
        v = np.array([float(m[key]) for m in defined])
        out[key] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0}
    return out


def _factorize(values) -> tuple[np.ndarray, list[str]]:
    """Codes 0..g-1 and the value of each code as a string (sorted); None becomes ``"None"``. A pair
    ``(codes, names)`` (integer codes into sorted names, as the stage keeps its columns) is taken as it is."""
    if isinstance(values, tuple):
        codes, names = values
        return np.asarray(codes).astype(np.int64, copy=False), [str(v) for v in names]
    arr = np.asarray(values)
    if arr.dtype == object:
        # Object arrays of str (polars/pyarrow) sort slowly and refuse None; fixed-width unicode does neither.
        arr = arr.astype(str)
    uniq, codes = np.unique(arr, return_inverse=True)
    return codes.reshape(-1).astype(np.int64, copy=False), [str(v) for v in uniq.tolist()]


def _is_null(values: np.ndarray) -> np.ndarray:
    """None or NaN, element-wise, for an object/string/float array of truth values."""
    arr = np.asarray(values)
    if arr.dtype == object:
        # ``v != v`` is True only for NaN (a float null some readers give instead of None).
        return np.equal(arr, None) | (arr != arr)
    if arr.dtype.kind == "f":
        return np.isnan(arr)
    return np.zeros(arr.shape, bool)


def random_draws(n: int, size: int, seed: int, draws: int) -> list[np.ndarray]:
    """The seeded random baselines: draw ``r`` takes ``size`` of ``n`` candidate indices with
    ``np.random.default_rng([seed, DRAW_STREAM, r])``, without replacement when ``size <= n``."""
    out = []
    for r in range(draws):
        rng = np.random.default_rng([int(seed), DRAW_STREAM, r])
        if size <= n:
            out.append(np.asarray(rng.choice(n, size, replace=False), dtype=np.int64))
        else:
            out.append(rng.integers(0, n, size, dtype=np.int64))
    return out


# -- the space -------------------------------------------------------------------------------------
def robust_space(metrics: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    r"""The standardized space: :math:`\mathrm{clip}((x - \mathrm{med}) / \mathrm{IQR}, -5, 5)` per column.

    Parameters
    ----------
    metrics : ndarray, shape (n, d)
        Raw metric values (float32 or float64), non-finite where undefined.
    names : sequence of str, length d

    Returns
    -------
    z : ndarray, shape (n, d'), C-contiguous
        The kept columns (those defined on at least one row), standardized; NaN where undefined.
    defined : ndarray of bool, shape (n,)
        Rows with every kept column defined.
    info : dict
        ``metrics`` (kept names), ``dropped`` (all-undefined names), ``scale``, ``median``, ``iqr``,
        ``rows_used``, ``rows_left_out``.
    """
    x = float_values(metrics)
    finite = np.isfinite(x)  # float32 or float64: widened a column at a time below
    keep = finite.any(axis=0)
    kept = [str(n) for n, k in zip(names, keep) if k]
    dropped = [str(n) for n, k in zip(names, keep) if not k]
    z = np.empty((x.shape[0], len(kept)), np.float64)
    medians, iqrs = [], []
    for out_j, j in enumerate(np.flatnonzero(keep)):
        zj, med, iqr = robust_scale(x[:, j])  # the balancing space's own helper: one definition
        z[:, out_j] = zj
        medians.append(float(med))
        iqrs.append(float(iqr))
    defined = finite[:, keep].all(axis=1) if kept else np.zeros(x.shape[0], bool)
    info = {"metrics": kept, "dropped": dropped, "scale": SCALE, "median": medians, "iqr": iqrs,
            "rows_used": int(defined.sum()), "rows_left_out": int((~defined).sum())}
    return z, defined, info


# -- the measures of one set of rows ---------------------------------------------------------------
def coverage_stats(queries: np.ndarray, points: np.ndarray, workers: int = -1) -> dict | None:
    r"""Mean, p90 and max over the query rows of :math:`\min_s \lVert q - s \rVert_2 / \sqrt d`.

    Exact nearest neighbours with ``scipy.spatial.cKDTree`` (queries in ``workers`` threads: each query
    is independent, so the result does not depend on their number). ``None`` without points or queries.
    """
    from scipy.spatial import cKDTree

    if points.shape[0] == 0 or queries.shape[0] == 0:
        return None
    d = queries.shape[1]
    if d == 0:
        return {"mean": 0.0, "p90": 0.0, "max": 0.0, "rows": int(points.shape[0])}
    # Fixed build options: the tree's shape never depends on anything but the points.
    tree = cKDTree(points, leafsize=16, balanced_tree=False, compact_nodes=False)
    dist, _ = tree.query(queries, k=1, workers=workers)
    dist = dist / math.sqrt(d)
    return {"mean": float(dist.mean()), "p90": float(np.quantile(dist, 0.9)), "max": float(dist.max()),
            "rows": int(points.shape[0])}


def _cell_stats(cells: np.ndarray, reference: np.ndarray, weights: np.ndarray | None) -> dict | None:
    """Entropy, normalized entropy and occupied cells of ``cells`` against ``reference``
    (:func:`balance_stats`); ``None`` when nothing (or no weight) is left."""
    if cells.size == 0 or (weights is not None and not weights.sum() > 0):
        return None
    s = balance_stats(cells, reference, weights)
    return {"entropy": s["entropy"], "normalized_entropy": s["normalized_entropy"],
            "occupied": s["occupied_cells"]}


def _shares(codes: np.ndarray, n_groups: int, weights: np.ndarray | None) -> np.ndarray:
    mass = np.bincount(codes, weights=weights, minlength=n_groups).astype(np.float64)
    total = mass.sum()
    return mass / total if total > 0 else mass


# -- the sections ----------------------------------------------------------------------------------
def _coverage_section(z, defined, selected, weights, draws, seed, coverage_sample, workers) -> dict:
    rows = np.flatnonzero(defined)
    sample_seed = [int(seed), COVERAGE_STREAM]
    section: dict = {"query_rows": 0, "sample_seed": sample_seed}
    if rows.size == 0:
        return {**section, "reason": "no candidate has every metric defined", "selection": None, "random": None}
    if coverage_sample is not None and rows.size > coverage_sample:
        rng = np.random.default_rng(sample_seed)
        rows = np.sort(rng.choice(rows, coverage_sample, replace=False))
    queries = np.ascontiguousarray(z[rows])
    section["query_rows"] = int(rows.size)

    def points(index: np.ndarray) -> np.ndarray:
        index = np.unique(index)                     # a row drawn twice is one point
        return np.ascontiguousarray(z[index[defined[index]]])

    chosen = selected if weights is None else selected[weights > 0]
    section["selection"] = coverage_stats(queries, points(chosen), workers)
    section["random"] = _summarize([coverage_stats(queries, points(r), workers) for r in draws])
    if section["selection"] is None:
        section["reason"] = "no selected row has every metric defined"
    return section


def _clusters_section(z, defined, selected, weights, draws, seed, k, cluster_sample) -> dict:
    rows = np.flatnonzero(defined)
    cseed = [int(seed), CLUSTER_STREAM]
    section: dict = {"k": int(k), "centres": 0, "reference_clusters": 0, "fit_rows": 0, "seed": cseed}
    if rows.size == 0 or z.shape[1] == 0:
        return {**section, "reason": "no candidate has every metric defined", "selection": None, "random": None}
    rng = np.random.default_rng(cseed)
    fit_rows = rows if rows.size <= cluster_sample else np.sort(rng.choice(rows, cluster_sample, replace=False))
    centres = fit_minibatch_kmeans(np.ascontiguousarray(z[fit_rows]), int(k), rng,
                                   KmeansParams.batch, KmeansParams.iterations)
    labels = _nearest(z, centres)                    # -1 on undefined rows
    reference = labels[rows]
    section.update(centres=int(centres.shape[0]), reference_clusters=int(np.unique(reference).size),
                   fit_rows=int(fit_rows.size))

    def stats(index: np.ndarray, w: np.ndarray | None) -> dict | None:
        keep = defined[index]
        out = _cell_stats(labels[index[keep]], reference, None if w is None else w[keep])
        if out is not None:
            out["rows"] = int(keep.sum())
        return out

    section["selection"] = stats(selected, weights)
    section["random"] = _summarize([stats(r, None) for r in draws])
    if section["selection"] is None:
        section["reason"] = "no selected row has every metric defined"
    return section


def _held_out_section(x, info, balancing, selected, weights, draws, cells_per_dim) -> dict:
    kept = info["metrics"]
    used = set(balancing)
    candidates = [(j, name) for j, name in enumerate(kept) if name not in used]
    section: dict = {"metrics": [], "cells_per_dim": int(cells_per_dim), "reference_cells": 0}
    if not candidates:
        reason = ("every metric is a balancing feature" if kept else "no metric is defined on any candidate")
        return {**section, "reason": reason, "selection": None, "random": None}
    finite = {j: int(np.isfinite(x[:, j]).sum()) for j, _ in candidates}
    # Most defined values first, then by name: a fixed choice that keeps the joint cells few.
    chosen = sorted(candidates, key=lambda c: (-finite[c[0]], c[1]))[:HELD_OUT_MAX]
    cols = [j for j, _ in chosen]
    values = x[:, cols]
    finite_values = np.isfinite(values)
    # Cut points per metric on that metric's own defined values (each has some: all-NaN columns are
    # dropped), so disjoint NaN patterns cannot leave a metric without cuts.
    grid = Grid([fit_grid(values[:, [j]], finite_values[:, j], int(cells_per_dim)).edges[0]
                 for j in range(values.shape[1])], int(cells_per_dim))
    cells = grid.cells(values, finite_values.all(axis=1))     # -1 where a held-out metric is undefined
    section.update(metrics=[name for _, name in chosen], reference_cells=int(np.unique(cells).size))
    section["selection"] = _cell_stats(cells[selected], cells, weights)
    section["random"] = _summarize([_cell_stats(cells[r], cells, None) for r in draws])
    return section


def _truth_labels(truth: Mapping | None, n: int) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """The fields used, whether each row has truth, its label code (-1 without) and the label names."""
    fields = [] if truth is None else [name for name, arr in truth.items() if arr is not None]
    has = np.zeros(n, bool)
    if not fields:
        return fields, has, np.full(n, -1, np.int64), []
    strings = []
    for name in fields:
        arr = np.asarray(truth[name], dtype=object)
        if arr.shape != (n,):
            raise ValueError(f"truth[{name!r}] must have shape ({n},), got {arr.shape}")
        null = _is_null(arr)
        has |= ~null
        strings.append(np.where(null, "", arr).astype(str))
    rows = np.flatnonzero(has)
    # Joint code field by field, re-factorized each time so it stays small.
    joint = np.zeros(rows.size, np.int64)
    for s in strings:
        _, c = np.unique(s[rows], return_inverse=True)
        joint = joint * (int(c.max()) + 1 if c.size else 1) + c.reshape(-1)
        _, joint = np.unique(joint, return_inverse=True)
        joint = joint.reshape(-1).astype(np.int64)
    first = rows[np.unique(joint, return_index=True)[1]]     # a row of each label, to spell it
    names = ["|".join(s[i] for s in strings) for i in first]
    code = np.full(n, -1, np.int64)
    code[rows] = joint
    return fields, has, code, names


def _truth_section(truth, n, selected, weights, draws) -> dict:
    fields, has, code, names = _truth_labels(truth, n)
    section: dict = {"labels": "|".join(fields) if fields else None, "rows_with_truth": int(has.sum()),
                     "reference_labels": len(names), "rarest_decile": []}
    if not has.any():
        reason = "no ground-truth columns" if not fields else "no candidate has ground truth"
        return {**section, "reason": reason, "selection": None, "random": None}
    reference = code[has]
    counts = np.bincount(reference, minlength=len(names))
    order = sorted(range(len(names)), key=lambda c: (int(counts[c]), names[c]))
    rare = order[:math.ceil(len(names) / 10)]
    is_rare = np.zeros(len(names), bool)
    is_rare[rare] = True
    section["rarest_decile"] = [names[c] for c in rare]

    def stats(index: np.ndarray, w: np.ndarray | None) -> dict | None:
        keep = has[index]
        c = code[index[keep]]
        ww = None if w is None else w[keep]
        out = _cell_stats(c, reference, ww)
        if out is None:
            return None
        mass = np.ones(c.size) if ww is None else ww
        share = float(mass[is_rare[c]].sum() / mass.sum())
        return {"entropy": out["entropy"], "normalized_entropy": out["normalized_entropy"],
                "represented": out["occupied"], "rarest_decile_share": share, "rows": int(keep.sum())}

    section["selection"] = stats(selected, weights)
    section["random"] = _summarize([stats(r, None) for r in draws])
    if section["selection"] is None:
        section["reason"] = "no selected row has ground truth"
    return section


def _composition_section(groups: Mapping | None, n, selected, weights, draws) -> dict:
    out: dict = {}
    for key, values in (groups or {}).items():
        if values is None:
            out[key] = None
            continue
        shape = np.shape(values[0] if isinstance(values, tuple) else values)
        if shape != (n,):
            raise ValueError(f"groups[{key!r}] must have shape ({n},), got {shape}")
        codes, names = _factorize(values)
        g = len(names)
        cand = _shares(codes, g, None)
        sel = _shares(codes[selected], g, weights)
        rand = [_shares(codes[r], g, None) for r in draws]
        if key in SHARE_GROUPS:
            mean = np.mean(rand, axis=0)
            out[key] = {"selection": dict(zip(names, sel.tolist())), "random": dict(zip(names, mean.tolist())),
                        "candidates": dict(zip(names, cand.tolist()))}
        else:
            def conc(s: np.ndarray) -> dict:
                return {"max_share": float(s.max()), "distinct": int((s > 0).sum())}
            out[key] = {"selection": conc(sel), "random": _summarize([conc(s) for s in rand]),
                        "candidates": conc(cand)}
    return out


# -- entry point -----------------------------------------------------------------------------------
def independent_diversity(metrics: np.ndarray, metric_names: Sequence[str], balancing_metrics: Sequence[str],
                          selected: np.ndarray, groups: Mapping | None = None, truth: Mapping | None = None,
                          seed: int = 0, draws: int = 5, k: int = 32, cells_per_dim: int = 4,
                          weights: np.ndarray | None = None, coverage_sample: int | None = 10_000,
                          cluster_sample: int = 200_000, workers: int = -1) -> dict:
    """The ``independent_diversity`` section of ``corpus.json``: the measures of the module docstring
    for the selection and for ``draws`` seeded random draws of the same size.

    Parameters
    ----------
    metrics : ndarray, shape (n, d)
        Every metric column of the store on the candidate rows, NaN where undefined (float32 or float64;
        best column-major, as it is standardized a column at a time).
    metric_names : sequence of str, length d
    balancing_metrics : sequence of str
        The metrics the strategy balanced on; the others are the held-out metrics.
    selected : ndarray of int, shape (m,)
        Indices into the candidates (may repeat, with replacement).
    groups : mapping of str to ndarray (n,), optional
        ``dataset``, ``modality`` (shares), ``subject``, ``record`` (concentration): codes or strings, or a
        pair ``(codes, names)`` of integer codes into the sorted value names.
    truth : mapping of str to ndarray (n,) or None, optional
        ``system``, ``regime``, ``band`` per candidate, None where unknown; None: no ground truth.
    seed : int
        Non-negative; seeds the draws, the clusters and the coverage sample.
    draws : int
        Random draws in the baseline.
    k : int
        k-means clusters.
    cells_per_dim : int
        Quantile cells per held-out metric.
    weights : ndarray of float, shape (m,), optional
        Per-selected-row weights (``weights_only``): the selection's measures are weighted.
    coverage_sample : int or None
        Query rows of the coverage at most (None: every defined candidate, exact but slow at millions).
    cluster_sample : int
        Rows the k-means is fitted on at most.
    workers : int
        Threads of the nearest-neighbour queries (-1: all); the result does not depend on it.

    Returns
    -------
    dict
        JSON-ready (Python ints, floats rounded to 6 significant digits, strings, lists, None).

    Raises
    ------
    ValueError
        Shapes that disagree, an empty selection, indices out of range, bad weights, a negative seed,
        or a non-positive ``draws``, ``k``, ``cells_per_dim``, ``coverage_sample`` or ``cluster_sample``.
    """
    x = float_values(metrics)
    if x.ndim != 2:
        raise ValueError(f"metrics must be a 2-D (candidates, metrics) array, got shape {x.shape}")
    n = x.shape[0]
    names = [str(v) for v in metric_names]
    if len(names) != x.shape[1]:
        raise ValueError(f"{len(names)} metric names for {x.shape[1]} metric columns")
    for label, value in (("draws", draws), ("k", k), ("cells_per_dim", cells_per_dim),
                         ("cluster_sample", cluster_sample)) + ((("coverage_sample", coverage_sample),)
                                                                if coverage_sample is not None else ()):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{label} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    sel = np.asarray(selected)
    if sel.ndim != 1 or sel.size == 0 or (sel.dtype.kind not in "iu"):
        raise ValueError("selected must be a non-empty 1-D array of integer indices")
    sel = sel.astype(np.int64, copy=False)
    if n == 0 or sel.min() < 0 or sel.max() >= n:
        raise ValueError(f"selected indices must lie in [0, {n})")
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != sel.shape:
            raise ValueError(f"weights must have shape {sel.shape}, got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError("weights must be finite, non-negative and not all zero")

    z, defined, space = robust_space(x, names)
    baseline = random_draws(n, sel.size, int(seed), int(draws))
    kept = np.isin(names, space["metrics"])
    kept_x = x if kept.all() else x[:, kept]        # the raw columns of ``space["metrics"]``, in order
    out = {
        "candidates": n, "selected": int(sel.size), "weighted": w is not None, "draws": int(draws),
        "seed": int(seed), "space": space,
        "coverage": _coverage_section(z, defined, sel, w, baseline, seed, coverage_sample, workers),
        "clusters": _clusters_section(z, defined, sel, w, baseline, seed, k, cluster_sample),
        "held_out_metrics": _held_out_section(kept_x, space, balancing_metrics, sel, w, baseline, cells_per_dim),
        "ground_truth": _truth_section(truth, n, sel, w, baseline),
        "composition": _composition_section(groups, n, sel, w, baseline),
    }
    return _clean(out)
