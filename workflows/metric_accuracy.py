"""How well the chaos metrics match the truth, on the windows of a synthetic store.

The windows of a ``kind: synthetic`` dysts source carry their system's true largest Lyapunov exponent and
regime (``docs/window_store.md``); dysts annotates its flows' correlation dimension. This module scores any
estimator's columns against them, for nw2's metrics and for nolds' estimators run on the same windows
(``benchmarks/metric_accuracy.py`` prints their tables):

- ``lyapunov_spearman``: Spearman rank correlation of the estimate with ``true_lyapunov``, over every window
  with a known exponent;
- ``lyapunov_median_error`` and ``lyapunov_within_25``: on chaotic windows (``regime`` chaotic or
  hyperchaotic), the median of ``|estimate - truth| / truth`` and the share of windows with at most 25%;
- ``auroc_<metric>``: how well the metric separates ``chaotic``/``hyperchaotic`` from ``periodic`` windows (the
  probability that a chaotic window scores above a periodic one; ties count half);
- ``dimension_spearman``: Spearman of each flow's median ``correlation_dimension`` (noise-free windows at its
  default parameters) with dysts' annotated correlation dimension.

Windows of one system are not independent (they share its dynamics), so every interval is a percentile
bootstrap over systems: a replicate draws systems with replacement and takes all their windows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.stats import rankdata, spearmanr

CHAOTIC = ("chaotic", "hyperchaotic")
#: The column names of one estimator in the frame: its Lyapunov exponent (per second), correlation dimension
#: and 0-1 test (``None`` where the estimator has none).
Columns = Mapping[str, str | None]


@dataclass(frozen=True)
class Figure:
    """One figure with its bootstrap interval over systems and the counts behind it."""

    value: float
    low: float
    high: float
    windows: int
    systems: int

    def text(self, digits: int = 2) -> str:
        if not np.isfinite(self.value):
            return "n/a"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the ``positive`` class (Mann-Whitney U / (n+ n-))."""
    scores, positive = np.asarray(scores, float), np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _median_error(estimate, truth) -> float:
    estimate, truth = np.asarray(estimate, float), np.asarray(truth, float)
    return float(np.median(np.abs(estimate - truth) / np.abs(truth))) if truth.size else float("nan")


def _within_25(estimate, truth) -> float:
    estimate, truth = np.asarray(estimate, float), np.asarray(truth, float)
    return float(np.mean(np.abs(estimate - truth) <= 0.25 * np.abs(truth))) if truth.size else float("nan")


def _bootstrap(frame: pl.DataFrame, statistic: Callable[[pl.DataFrame], float], resamples: int, seed: int,
               confidence: float) -> Figure:
    """``statistic`` on ``frame`` and its percentile interval over resampled systems."""
    value = statistic(frame) if frame.height else float("nan")
    systems = frame.get_column("system").unique().sort().to_list() if frame.height else []
    if not systems or not np.isfinite(value):
        return Figure(value, float("nan"), float("nan"), frame.height, len(systems))
    groups = {k[0]: g for k, g in frame.group_by("system", maintain_order=True)}
    rng = np.random.default_rng(seed)
    replicates = []
    for _ in range(resamples):
        drawn = rng.integers(0, len(systems), len(systems))
        sample = pl.concat([groups[systems[i]] for i in drawn])
        replicates.append(statistic(sample))
    replicates = np.asarray(replicates, float)
    replicates = replicates[np.isfinite(replicates)]
    alpha = (1 - confidence) / 2
    low, high = (np.quantile(replicates, [alpha, 1 - alpha]) if replicates.size else (np.nan, np.nan))
    return Figure(value, float(low), float(high), frame.height, len(systems))


def figures(frame: pl.DataFrame, columns: Columns, annotated_dimension: Mapping[str, float] | None = None,
            resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, Figure]:
    """The figures of one estimator (``columns``: ``{"lyapunov": col, "dimension": col, "chaos_01": col}``) on
    the windows of ``frame`` (rows with ``system``, ``regime``, ``true_lyapunov`` and the estimator's columns).

    ``annotated_dimension`` maps flows to dysts' correlation dimension; ``frame`` rows of those flows with
    ``default`` true (the setting's parameters are the system's defaults) and no noise give the dimension figure.
    """
    out: dict[str, Figure] = {}
    lyap = columns.get("lyapunov")
    known = frame.filter(pl.col("true_lyapunov").is_not_null())
    if lyap:
        rows = known.filter(pl.col(lyap).is_not_null() & pl.col(lyap).is_finite())
        out["lyapunov_spearman"] = _bootstrap(
            rows, lambda f: _spearman(f[lyap], f["true_lyapunov"]), resamples, seed, confidence)
        chaotic = rows.filter(pl.col("regime").is_in(CHAOTIC) & (pl.col("true_lyapunov") > 0))
        out["lyapunov_median_error"] = _bootstrap(
            chaotic, lambda f: _median_error(f[lyap], f["true_lyapunov"]), resamples, seed, confidence)
        out["lyapunov_within_25"] = _bootstrap(
            chaotic, lambda f: _within_25(f[lyap], f["true_lyapunov"]), resamples, seed, confidence)
    for name in ("lyapunov", "chaos_01"):
        col = columns.get(name)
        if not col:
            continue
        rows = known.filter(pl.col("regime").is_in((*CHAOTIC, "periodic")) & pl.col(col).is_not_null()
                            & pl.col(col).is_finite())
        out[f"auroc_{name}"] = _bootstrap(
            rows, lambda f, c=col: auroc(f[c], f["regime"].is_in(CHAOTIC)), resamples, seed, confidence)
    dim = columns.get("dimension")
    if dim and annotated_dimension:
        rows = (frame.filter(pl.col("default") & (pl.col("noise") == 0) & pl.col(dim).is_not_null()
                             & pl.col("system").is_in(list(annotated_dimension)))
                .group_by("system").agg(pl.col(dim).median()).sort("system"))
        rows = rows.with_columns(pl.col("system").replace_strict(annotated_dimension, return_dtype=pl.Float64)
                                 .alias("annotated"))
        out["dimension_spearman"] = _bootstrap(
            rows, lambda f: _spearman(f[dim], f["annotated"]), resamples, seed, confidence)
    return out


#: What each figure is, for the tables.
DESCRIPTIONS = {
    "lyapunov_spearman": "Spearman, `largest_lyapunov` vs `true_lyapunov` (every window with a known exponent)",
    "lyapunov_median_error": "median relative error of `largest_lyapunov`, chaotic windows",
    "lyapunov_within_25": "share of chaotic windows within 25% of `true_lyapunov`",
    "auroc_lyapunov": "AUROC, chaotic vs periodic, `largest_lyapunov`",
    "auroc_chaos_01": "AUROC, chaotic vs periodic, `chaos_01`",
    "dimension_spearman": "Spearman, `correlation_dimension` (median per flow) vs dysts' annotated dimension",
}
#: The targets of issue 12 (ground truth for dynamics): ``(>= or <=, bound)``.
TARGETS = {"lyapunov_spearman": (">=", 0.9), "lyapunov_median_error": ("<=", 0.30), "auroc_lyapunov": (">=", 0.95),
           "auroc_chaos_01": (">=", 0.95), "dimension_spearman": (">=", 0.75)}


def markdown(results: Mapping[str, Mapping[str, Figure]]) -> str:
    """A table: one row per figure, one column per estimator (``results``: ``{estimator: figures}``)."""
    names = list(results)
    lines = ["| figure | target | " + " | ".join(names) + " | windows (systems) |",
             "|---|---|" + "---|" * len(names) + "---|"]
    for key, text in DESCRIPTIONS.items():
        cells = [results[n][key].text() if key in results[n] else "n/a" for n in names]
        if all(c == "n/a" for c in cells):
            continue
        first = next(results[n][key] for n in names if key in results[n])
        target = f"{TARGETS[key][0]} {TARGETS[key][1]:g}" if key in TARGETS else ""
        lines.append(f"| {text} | {target} | " + " | ".join(cells) + f" | {first.windows} ({first.systems}) |")
    return "\n".join(lines)


#: The columns :func:`synthetic_windows` reads besides the metrics.
_READ = ("window_id", "system", "system_params", "true_lyapunov", "regime", "noise", "channel", "fs", "split")


def synthetic_windows(store_url: str, metrics: tuple[str, ...] = ("largest_lyapunov", "correlation_dimension",
                                                                  "chaos_01"), samples: bool = False) -> pl.DataFrame:
    """The store's windows of dysts systems (rows with a known ``true_lyapunov``; the ``forcing`` channels left
    out: they are an input, not an observation), with the metric columns, ``samples`` if asked, and ``default``:
    whether the setting's parameters are the system's defaults."""
    from nw2.artifacts.store import WindowStore
    from nw2.pipeline.synthetic.systems import resolve_params

    store = WindowStore(str(store_url))
    wanted = [*_READ, *metrics, *(("samples",) if samples else ())]
    tables = []
    for rel in store.parts():  # only the wanted columns are read (samples are most of a part)
        present = set(store.schema_of(rel).names)
        tables.append(pl.from_arrow(store.read_table(rel, [c for c in wanted if c in present])))
    frame = pl.concat(tables, how="diagonal").filter(pl.col("true_lyapunov").is_not_null()
                                                     & (pl.col("channel") != "forcing"))
    defaults = {s: json.dumps({k: float(v) for k, v in resolve_params(s, {}).items()}, sort_keys=True)
                for s in frame.get_column("system").unique().to_list()}
    return frame.with_columns((pl.col("system_params") == pl.col("system").replace_strict(defaults)).alias("default"))


def annotated_dimensions(frame: pl.DataFrame) -> dict[str, float]:
    """dysts' annotated correlation dimension of each system of ``frame`` that has one."""
    from nw2.pipeline.synthetic.systems import system_info

    out = {}
    for system in sorted(frame.get_column("system").unique().to_list()):
        value = system_info(system).annotated.get("correlation_dimension")
        if value is not None and np.isfinite(value):
            out[system] = float(value)
    return out


#: The columns :func:`with_nolds` adds, as :func:`figures` takes them.
NOLDS_COLUMNS = {"lyapunov": "nolds_lyapunov", "dimension": "nolds_dimension", "chaos_01": None}


def _nolds_pair(job: tuple) -> tuple[float, float]:
    """nolds' ``lyap_r`` (per second) and ``corr_dim`` of one window, NaN where nolds raises."""
    import warnings

    x, fs = job
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nolds

        x = np.asarray(x, dtype=np.float64)
        try:
            lyap = nolds.lyap_r(x, emb_dim=10, fit="poly") * fs
        except Exception:  # nolds raises on windows it cannot embed: that window has no estimate
            lyap = float("nan")
        try:
            dim = nolds.corr_dim(x, emb_dim=10, fit="poly")
        except Exception:
            dim = float("nan")
    return float(lyap), float(dim)


def with_nolds(frame: pl.DataFrame, workers: int = 1) -> pl.DataFrame:
    """``frame`` (with ``samples`` and ``fs``) plus nolds' estimates on the same windows, ``samples`` dropped.

    nolds at its own defaults (``lyap_r``: ``emb_dim=10`` as nw2, its fixed 20-step fit; ``corr_dim``: its
    radii), with ``fit="poly"`` instead of the random RANSAC fit so that the figures are reproducible; nolds
    has no 0-1 test.
    """
    jobs = list(zip(frame.get_column("samples").to_list(), frame.get_column("fs").to_list()))
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            pairs = list(pool.map(_nolds_pair, jobs, chunksize=16))
    else:
        pairs = [_nolds_pair(job) for job in jobs]
    return frame.with_columns(pl.Series("nolds_lyapunov", [p[0] for p in pairs], pl.Float64),
                              pl.Series("nolds_dimension", [p[1] for p in pairs], pl.Float64)).drop("samples")
