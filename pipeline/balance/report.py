"""The balance report: what ``nw2 balance`` did, in Markdown with three PNG plots.

``write_report(out_dir, before, after, info)`` writes into ``out_dir`` (a local path or any fsspec URL):

- ``metrics.png``   per metric, the density of the candidates (before) and of the corpus (after) on common bins,
                    with the number of undefined (null) values of each;
- ``occupancy.png`` 2-D occupancy of the first two feature dimensions' quantile bins, before and after, on one
                    colour scale (decoded from ``bin_id`` through the grid when ``bin_id`` holds grid cells; else,
                    e.g. for ``kmeans`` whose ``bin_id`` is a cluster id, quantile bins of the first two metrics);
- ``mix.png``       dataset and modality shares before and after;
- ``report.md``     the settings, the balance statistics of the selection against a random draw of the same size,
                    rows per split, the dataset/modality mix, and the plots with how to read them.

*Before* is the candidate rows the strategy chose from; *after* is the corpus rows of the same splits, weighted by
``sample_weight`` (all 1 in a subsampled corpus, so the weighted and the plain counts agree; with
``--weights-only`` the weights are the sampling weights, and *after* is the distribution a trainer sampling by them
sees). Rows of splits that were carried through unchanged appear in the rows-per-split table only.

The PNGs are byte-identical across runs: figures are drawn on ``matplotlib.figure.Figure`` with an explicit Agg
canvas (no pyplot, no global backend switch), under matplotlib's default style whatever the user's matplotlibrc
says, at a fixed size and dpi, with no ``Software`` entry in the PNG metadata.
"""

from __future__ import annotations

import io
import math
import posixpath
from collections.abc import Sequence

import fsspec
import matplotlib
import matplotlib.style
import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Okabe & Ito's colour-blind-safe palette: before, after, and the rest.
BEFORE_COLOR = "#0072B2"   # blue
AFTER_COLOR = "#E69F00"    # orange
HEATMAP_CMAP = "cividis"   # perceptually uniform and readable with any colour-vision deficiency
DPI = 100
HIST_BINS = 40
#: Percentiles of the candidates' defined values that bound the histogram range (outliers go to the end bins).
CLIP_PERCENTILES = (0.5, 99.5)

_STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 12,
    "axes.spines.top": False, "axes.spines.right": False, "svg.hashsalt": "nw2",
}

#: The statistics of ``info["balance_stats"]``, in table order, with which direction is better.
STATS = [
    ("normalized_entropy", "normalized entropy of cell occupancy (H / ln cells occupied before)", "higher"),
    ("fraction_of_cells_kept", "fraction of the occupied cells kept", "higher"),
    ("kl_to_uniform", "KL divergence to uniform over the cells occupied before (nats)", "lower"),
    ("effective_regimes", "effective number of regimes exp(H)", "higher"),
    ("occupied_cells", "occupied cells", "higher"),
]


# -- entry point ----------------------------------------------------------------------------------
def write_report(out_dir: str, before: pl.DataFrame, after: pl.DataFrame, info: dict) -> list[str]:
    """Write ``metrics.png``, ``occupancy.png``, ``mix.png`` and ``report.md`` into ``out_dir``; returns those
    names (relative to ``out_dir``) in that order."""
    metrics = list(info.get("metrics") or [])
    if not metrics:
        raise ValueError("report: info['metrics'] names no metric")
    missing = [m for m in metrics if m not in before.columns or m not in after.columns]
    if missing:
        raise ValueError(f"report: metric columns {missing} missing from the frames")
    splits = _compared_splits(before, info)
    b = _prepare(before, splits, weighted=False)
    a = _prepare(after, splits, weighted=True)

    occupancy = _occupancy(b, a, info, metrics)
    files = {
        "metrics.png": _png(_metrics_figure(b, a, metrics, info)),
        "occupancy.png": _png(_occupancy_figure(occupancy, info)),
        "mix.png": _png(_mix_figure(b, a)),
    }
    files["report.md"] = _markdown(before, after, b, a, splits, info, metrics, occupancy).encode()

    fs, root = fsspec.core.url_to_fs(str(out_dir))
    fs.makedirs(root, exist_ok=True)
    for name, data in files.items():
        with fs.open(posixpath.join(root, name), "wb") as fh:
            fh.write(data)
    return list(files)


# -- the compared rows ----------------------------------------------------------------------------
def _compared_splits(before: pl.DataFrame, info: dict) -> list[str]:
    """The splits compared before/after: the balanced splits if ``info`` names them, else those of ``before``."""
    named = info.get("balance_splits") or info.get("balanced_splits")
    if named:
        return sorted(str(s) for s in named)
    return sorted(before.get_column("split").unique().drop_nulls().to_list()) if before.height else []


def _prepare(frame: pl.DataFrame, splits: list[str], weighted: bool) -> pl.DataFrame:
    frame = frame.filter(pl.col("split").is_in(splits)) if splits else frame.clear()
    if weighted and "sample_weight" in frame.columns:
        w = pl.col("sample_weight").cast(pl.Float64)
    else:
        w = pl.lit(1.0, dtype=pl.Float64)
    return frame.with_columns(w.alias("_w"))


def _values(frame: pl.DataFrame, col: str) -> np.ndarray:
    return frame.get_column(col).cast(pl.Float64).to_numpy().astype(np.float64, copy=False)


def _shares(frame: pl.DataFrame, by: str) -> dict[str, tuple[int, float]]:
    """``{value: (rows, weighted share)}``."""
    if frame.height == 0:
        return {}
    g = frame.group_by(by).agg(pl.len().alias("n"), pl.col("_w").sum().alias("w")).sort(by)
    total = float(g.get_column("w").sum()) or 1.0
    return {str(k): (int(n), float(w) / total) for k, n, w in g.iter_rows()}


# -- 2-D occupancy ----------------------------------------------------------------------------------
def _grid_shape(info: dict, metrics: list[str]) -> tuple[int, int] | None:
    """``(bins, k)`` of the grid ``bin_id`` indexes, or None when ``bin_id`` is no grid cell (kmeans)."""
    if info.get("strategy") == "kmeans":
        return None
    bins = info.get("bins_per_dim")
    if not isinstance(bins, int) or bins < 1:
        return None
    k = info.get("pca") or len(metrics)
    k = min(int(k), len(metrics))
    return bins, k


def _decode(cells: np.ndarray, bins: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin indices of dims 0 and 1 of grid cells (row-major over ``(bins,) * k``: dim 0 varies slowest, the
    layout of ``numpy.ravel_multi_index`` that ``bins.Grid.cells`` uses); the cells must be >= 0."""
    coords = np.unravel_index(cells, (bins,) * k)
    return coords[0], coords[1]


def _occupancy(b: pl.DataFrame, a: pl.DataFrame, info: dict, metrics: list[str]) -> dict:
    """2-D (weighted) counts before/after of the first two feature dims' quantile bins, and how they were got."""
    shape = _grid_shape(info, metrics)
    out: dict = {}
    if shape is not None and shape[1] >= 2 and "bin_id" in b.columns and "bin_id" in a.columns:
        bins, k = shape
        cb = b.get_column("bin_id").to_numpy().astype(np.int64)
        ca = a.get_column("bin_id").to_numpy().astype(np.int64)
        if np.all(cb < bins ** k) and np.all(ca < bins ** k) and np.all(cb >= -1) and np.all(ca >= -1):
            pca = info.get("pca")
            labels = (["PC1", "PC2"] if pca else metrics[:2])
            out = {"source": "grid", "bins": bins, "k": k,
                   "labels": [f"{lab} (quantile bin of the feature)" for lab in labels]}
            for key, cells, frame in (("before", cb, b), ("after", ca, a)):
                out[key] = _count2d(cells, frame.get_column("_w").to_numpy(), bins, k)
            return out
    # Fallback: quantile bins of the first two metrics, cut on the candidates' defined values.
    bins = info.get("bins_per_dim") if isinstance(info.get("bins_per_dim"), int) else 5
    bins = max(int(bins), 1)
    names = metrics[:2] if len(metrics) >= 2 else metrics[:1] * 2
    edges = []
    for m in names:
        v = _values(b, m)
        v = v[np.isfinite(v)]
        edges.append(np.quantile(v, np.arange(1, bins) / bins) if v.size else np.zeros(bins - 1))
    out = {"source": "ranks", "bins": bins, "k": 2,
           "labels": [f"{m} (quantile bin of the metric)" for m in names]}
    for key, frame in (("before", b), ("after", a)):
        x, y = _values(frame, names[0]), _values(frame, names[1])
        ok = np.isfinite(x) & np.isfinite(y)
        ix = np.searchsorted(edges[0], x, side="right")
        iy = np.searchsorted(edges[1], y, side="right")
        cells = np.where(ok, ix * bins + iy, -1)
        out[key] = _count2d(cells, frame.get_column("_w").to_numpy(), bins, 2)
    return out


def _count2d(cells: np.ndarray, w: np.ndarray, bins: int, k: int) -> dict:
    w = np.asarray(w, dtype=np.float64)
    defined = cells >= 0
    grid = np.zeros((bins, bins), dtype=np.float64)
    if defined.any():
        i, j = _decode(cells[defined], bins, k)
        np.add.at(grid, (i, j), w[defined])
    total = float(w.sum())
    return {"counts": grid, "undefined": float(w[~defined].sum()), "total": total}


# -- figures ----------------------------------------------------------------------------------------
def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _figure(width: float, height: float) -> Figure:
    with matplotlib.style.context(["default", _STYLE]):
        return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _styled(draw):
    """Run a drawing function under matplotlib's default style plus ours (whatever the user's rc says)."""
    def wrapped(*args, **kwargs):
        with matplotlib.style.context(["default", _STYLE]):
            return draw(*args, **kwargs)
    return wrapped


def _fmt_n(x: float) -> str:
    return f"{int(round(x)):,}" if abs(x - round(x)) < 1e-9 else f"{x:,.1f}"


@_styled
def _metrics_figure(b: pl.DataFrame, a: pl.DataFrame, metrics: list[str], info: dict) -> Figure:
    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = Figure(figsize=(4.0 * ncols, 3.0 * nrows + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    wb, wa = b.get_column("_w").to_numpy(), a.get_column("_w").to_numpy()
    for ax, m in zip(axes.flat, metrics):
        vb, va = _values(b, m), _values(a, m)
        okb, oka = np.isfinite(vb), np.isfinite(va)
        ref = vb[okb] if okb.any() else va[oka]
        if ref.size:
            lo, hi = np.percentile(ref, CLIP_PERCENTILES)
            if not hi > lo:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.linspace(lo, hi, HIST_BINS + 1)
            for v, ok, w, color, style, label in ((vb, okb, wb, BEFORE_COLOR, "-", "before (candidates)"),
                                                  (va, oka, wa, AFTER_COLOR, "--", "after (corpus)")):
                if ok.any() and w[ok].sum() > 0:
                    dens, _ = np.histogram(np.clip(v[ok], lo, hi), bins=edges, weights=w[ok], density=True)
                    ax.stairs(dens, edges, color=color, linestyle=style, linewidth=1.6, label=label,
                              fill=False)
                    ax.stairs(dens, edges, color=color, alpha=0.15, fill=True)
        else:
            ax.text(0.5, 0.5, "no defined value", ha="center", va="center", transform=ax.transAxes)
        ub, ua = float(wb[~okb].sum()), float(wa[~oka].sum())
        pb = 100 * ub / max(float(wb.sum()), 1e-300)
        pa_ = 100 * ua / max(float(wa.sum()), 1e-300)
        ax.set_title(m)
        ax.set_xlabel(f"{m} (values beyond the {CLIP_PERCENTILES[0]}-{CLIP_PERCENTILES[1]} % range "
                      "in the end bins)", fontsize=7)
        ax.set_ylabel("density")
        ax.text(0.98, 0.97, f"undefined (null):\nbefore {_fmt_n(ub)} ({pb:.1f} %)\nafter {_fmt_n(ua)} ({pa_:.1f} %)",
                ha="right", va="top", transform=ax.transAxes, fontsize=7,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9})
        ax.legend(loc="upper left", frameon=False)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle(f"Metric distributions before and after '{info.get('strategy', '?')}' "
                 f"(density over defined values; after weighted by sample_weight)")
    return fig


@_styled
def _occupancy_figure(occ: dict, info: dict) -> Figure:
    bins = occ["bins"]
    fig = Figure(figsize=(11.0, 5.0), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    shares = {}
    for key in ("before", "after"):
        c = occ[key]
        shares[key] = c["counts"] / c["total"] * 100 if c["total"] > 0 else c["counts"] * 0
    vmax = max(float(shares["before"].max()), float(shares["after"].max()), 1e-12)
    image = None
    for ax, key in zip(axes, ("before", "after")):
        s = shares[key]
        image = ax.imshow(s.T, origin="lower", cmap=HEATMAP_CMAP, vmin=0.0, vmax=vmax, aspect="equal",
                          extent=(0.5, bins + 0.5, 0.5, bins + 0.5), interpolation="nearest")
        if bins <= 10:
            for i in range(bins):
                for j in range(bins):
                    val = s[i, j]
                    ax.text(i + 1, j + 1, f"{val:.1f}", ha="center", va="center", fontsize=7,
                            color="black" if val > 0.6 * vmax else "white")
        ax.set_xticks(range(1, bins + 1))
        ax.set_yticks(range(1, bins + 1))
        ax.set_xlabel(occ["labels"][0])
        ax.set_ylabel(occ["labels"][1])
        c = occ[key]
        occupied = int((c["counts"] > 0).sum())
        und = 100 * c["undefined"] / c["total"] if c["total"] > 0 else 0.0
        name = "before (candidates)" if key == "before" else "after (corpus)"
        ax.set_title(f"{name}: {_fmt_n(c['total'])} rows\n{occupied} of {bins * bins} cells occupied; "
                     f"undefined bin {und:.1f} % (not drawn)")
    cb = fig.colorbar(image, ax=list(axes), shrink=0.85)
    cb.set_label("% of the rows in the cell (same scale both panels)")
    how = ("grid cells decoded from bin_id" if occ["source"] == "grid"
           else "quantile bins of the first two metrics (bin_id is no grid cell here)")
    extra = f", summed over the other {occ['k'] - 2} dims" if occ["source"] == "grid" and occ["k"] > 2 else ""
    fig.suptitle(f"2-D occupancy of the first two feature dims: {how}{extra}")
    return fig


@_styled
def _mix_figure(b: pl.DataFrame, a: pl.DataFrame) -> Figure:
    fig = Figure(figsize=(11.0, 4.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, by in zip(axes, ("dataset", "modality")):
        sb, sa = _shares(b, by), _shares(a, by)
        names = sorted(set(sb) | set(sa), key=lambda n: (-sb.get(n, (0, 0.0))[1], n))
        y = np.arange(len(names))
        h = 0.38
        pb = [100 * sb.get(n, (0, 0.0))[1] for n in names]
        pa_ = [100 * sa.get(n, (0, 0.0))[1] for n in names]
        ax.barh(y - h / 2, pb, height=h, color=BEFORE_COLOR, label="before (candidates)")
        ax.barh(y + h / 2, pa_, height=h, color=AFTER_COLOR, hatch="//", edgecolor="black", linewidth=0.4,
                label="after (corpus)")
        for yy, v in zip(y - h / 2, pb):
            ax.text(v, yy, f" {v:.1f}", va="center", fontsize=7)
        for yy, v in zip(y + h / 2, pa_):
            ax.text(v, yy, f" {v:.1f}", va="center", fontsize=7)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel("% of the rows (after weighted by sample_weight)")
        ax.set_title(f"{by} mix")
        ax.set_xlim(0, max(pb + pa_ + [1.0]) * 1.18)
        ax.legend(loc="lower right", frameon=False)
    fig.suptitle("Dataset and modality shares before and after")
    return fig


# -- Markdown ---------------------------------------------------------------------------------------
def _num(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x)).lower()
    if isinstance(x, (int, np.integer)):
        return f"{int(x)}"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4f}"


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _markdown(before, after, b, a, splits, info, metrics, occ) -> str:
    strategy = info.get("strategy", "?")
    lines = [f"# Balance report: strategy `{strategy}`", ""]
    # What was done.
    pca, explained = info.get("pca"), info.get("explained_variance")
    if pca:
        ev = ", ".join(f"{100 * float(e):.1f} %" for e in explained) if explained else "not recorded"
        space = (f"rank/quantile-transformed, reduced by PCA to {pca} dimensions (explained variance per "
                 f"component: {ev})")
    else:
        space = "rank/quantile-transformed, all metrics kept as dimensions (no PCA)"
    size = info.get("size")
    what = [f"- Strategy **{strategy}**, seed {info.get('seed')}, target size "
            f"{size if size is not None else 'none (weights only)'}."]
    for key, label in (("params", "parameters"), ("replace", "with replacement"),
                       ("weights_only", "weights only"), ("nan_policy", "undefined-metric policy")):
        if key in info and info[key] not in (None, {}, []):
            what.append(f"- {label.capitalize()}: `{info[key]}`.")
    what += [f"- Metrics ({len(metrics)}): {', '.join(f'`{m}`' for m in metrics)}; {space}; "
             f"{info.get('bins_per_dim')} quantile bins per dimension.",
             f"- Before: the {b.height:,} candidate rows of the balanced split(s) ({', '.join(splits) or 'none'}). "
             f"After: the {a.height:,} corpus rows of the same split(s)"
             + (f" ({_distinct(a):,} distinct)" if _distinct(a) != a.height else "")
             + f", total sample_weight {_fmt_n(float(a.get_column('_w').sum()))}."]
    lines += ["## What was done", ""] + what + [""]

    # Balance statistics.
    stats = info.get("balance_stats") or {}
    sel, rnd = stats.get("selection") or {}, stats.get("random") or {}
    before_stats = _before_stats(b, occ)
    header = ["statistic", "selection", "random (same size)", "gain (selection - random)", "better when", "better?"]
    if before_stats:
        header.insert(1, "candidates (before)")
    rows = []
    for key, label, better in STATS:
        s, r = sel.get(key), rnd.get(key)
        gain, verdict = "n/a", "n/a"
        if s is not None and r is not None:
            d = float(s) - float(r)
            gain = f"{d:+.4f}" if not isinstance(s, (int, np.integer)) or not isinstance(r, (int, np.integer)) \
                else f"{int(d):+d}"
            verdict = "tie" if d == 0 else ("yes" if (d > 0) == (better == "higher") else "no")
        row = [label, _num(s), _num(r), gain, better, verdict]
        if before_stats:
            row.insert(1, _num(before_stats.get(key)))
        rows.append(row)
    lines += ["## Balance statistics", "",
              "Occupancy of the grid cells (the undefined bin counts as a cell when present), selection against "
              "a uniform random draw of the same size from the same candidates, natural logs.", ""]
    lines += _table(header, rows) + [""]

    # Rows per split.
    cb = _counts(before, "split")
    ca = _counts(after, "split")
    rows = []
    for split in sorted(set(cb) | set(ca)):
        role = "balanced" if split in splits else "carried through"
        rows.append([split, role, f"{cb.get(split, 0):,}", f"{ca.get(split, 0):,}"])
    rows.append(["**all**", "", f"{before.height:,}", f"{after.height:,}"])
    lines += ["## Rows per split", "", "Before: the rows handed to the report as candidates; after: the corpus "
              "rows (a row drawn twice with replacement counts twice).", ""]
    lines += _table(["split", "role", "before", "after"], rows) + [""]

    # Mix.
    lines += ["## Dataset and modality mix", "",
              "Rows and shares of the compared splits; after-shares weighted by `sample_weight`.", ""]
    for by in ("dataset", "modality"):
        sb, sa = _shares(b, by), _shares(a, by)
        rows = []
        for name in sorted(set(sb) | set(sa), key=lambda n: (-sb.get(n, (0, 0.0))[1], n)):
            nb, pb = sb.get(name, (0, 0.0))
            na, pa_ = sa.get(name, (0, 0.0))
            rows.append([name, f"{nb:,}", f"{100 * pb:.1f} %", f"{na:,}", f"{100 * pa_:.1f} %",
                         f"{100 * (pa_ - pb):+.1f}"])
        lines += _table([by, "before rows", "before share", "after rows", "after share", "change (points)"], rows)
        lines += [""]

    # Plots.
    und = ", ".join(f"`{m}` {_undefined(b, m):,} -> {_undefined(a, m):,}" for m in metrics)
    lines += ["## Plots", "",
              "![Metric distributions before and after](metrics.png)", "",
              "Each panel is one metric's density over its defined values, before (solid blue) and after "
              "(dashed orange) on the same bins, whose range is the candidates' "
              f"{CLIP_PERCENTILES[0]}-{CLIP_PERCENTILES[1]} percentile span (values beyond it fall in the end bins); "
              "a flatter, wider after-curve means rare dynamics gained weight, and the box gives the undefined "
              f"(null) count of each. Undefined rows before -> after: {und}.", "",
              "![2-D occupancy before and after](occupancy.png)", ""]
    if occ["source"] == "grid":
        dims = "the first two PCA components" if pca else f"`{metrics[0]}` and `{metrics[1]}`"
        how = (f"the grid cells of `bin_id` decoded into the bins of {dims}"
               + (f", summed over the other {occ['k'] - 2} dimensions" if occ["k"] > 2 else ""))
    else:
        how = (f"quantile bins of `{metrics[0]}` and `{metrics[1] if len(metrics) > 1 else metrics[0]}` cut on the "
               "candidates (not decoded from `bin_id`, which here is "
               + ("a cluster id" if strategy == "kmeans" else "no grid cell of at least two dimensions") + ")")
    lines += [f"Each cell is the share of rows in one {occ['bins']} x {occ['bins']} bin, from {how}, on one colour "
              "scale for both panels; balancing shows as a more even after-panel (hot cells cooler, empty-looking "
              "cells filled), and the undefined bin's share is in each title.", "",
              "![Dataset and modality mix](mix.png)", "",
              "Bars give each dataset's and modality's share of the rows before (blue) and after (orange, hatched); "
              "a balancing strategy that ignores the source may shift these shares, which the table above "
              "quantifies.", ""]
    return "\n".join(lines)


def _distinct(frame: pl.DataFrame) -> int:
    if {"part", "row"} <= set(frame.columns):
        return frame.select(pl.struct("part", "row").n_unique()).item() if frame.height else 0
    return frame.height


def _counts(frame: pl.DataFrame, by: str) -> dict[str, int]:
    if frame.height == 0:
        return {}
    return {str(k): int(n) for k, n in frame.group_by(by).len().sort(by).iter_rows()}


def _undefined(frame: pl.DataFrame, m: str) -> int:
    return int((~np.isfinite(_values(frame, m))).sum())


def _before_stats(b: pl.DataFrame, occ: dict) -> dict:
    """The statistics of the candidates themselves (against themselves), when ``bin_id`` holds grid cells."""
    if occ.get("source") != "grid" or b.height == 0:
        return {}
    try:
        from pipeline.balance.bins import balance_stats
    except ImportError:
        return {}
    cells = b.get_column("bin_id").to_numpy().astype(np.int64)
    return balance_stats(cells, cells)
