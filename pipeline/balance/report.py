"""The balance report: what ``nw2 balance`` did, in Markdown with three PNG plots.

``write_report(out_dir, before, after, info)`` writes into ``out_dir`` (a local path or any fsspec URL):

- ``metrics.png``   per metric, the density of the candidates (before) and of the corpus (after) on common bins,
                    with the number of undefined (null) values of each;
- ``occupancy.png`` 2-D occupancy of the first two feature dimensions' quantile bins, before and after, on one
                    colour scale: the grid cells of ``bin_id`` decoded (base ``bins_per_dim`` digits, first dimension
                    most significant, as ``bins.Grid.cells`` numbers them) and summed over the other dimensions; for
                    ``kmeans``, whose ``bin_id`` is a cluster id, each corpus row takes the grid cell its store row has
                    in ``before``; only when ``info`` gives no grid, quantile bins of the first two metrics instead
                    (the figure and report.md say which);
- ``mix.png``       dataset and modality shares before and after;
- ``report.md``     the settings (with the PCA loadings), the balance statistics of the candidates, the selection and
                    a random draw of the same size with the gain, rows per split, the dataset/modality mix, and the
                    plots with a sentence each on how to read them.

``before`` is the store rows as ``space.load_rows`` gives them plus ``bin_id`` (their grid cell); ``after`` the corpus
rows (repeats possible) plus ``bin_id`` and ``sample_weight``. The comparisons use the balanced splits
(``info["balanced_splits"]``; all splits of ``before`` when not given) -- before: the candidates (less the rows with
an undefined metric under ``nan_policy: exclude``), after: the corpus rows of those splits, weighted by
``sample_weight`` (all 1 in a subsampled corpus, so weighted and plain counts agree; with ``--weights-only`` the
sampling weights, i.e. what a trainer drawing by them sees). Carried-through splits appear in the rows-per-split table.

The PNGs are byte-identical across runs: figures are drawn and saved through ``pipeline.plots`` (explicit Agg
canvas, fixed style, size and dpi, no ``Software`` metadata).
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Sequence

import fsspec
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from nw2.core.plots import DPI, png_bytes, report_style

#: Okabe & Ito's colour-blind-safe palette: before, after, and the rest.
BEFORE_COLOR = "#0072B2"   # blue
AFTER_COLOR = "#E69F00"    # orange
HEATMAP_CMAP = "cividis"   # perceptually uniform and readable with any colour-vision deficiency
HIST_BINS = 40
#: Percentiles of the candidates' defined values that bound the histogram range (outliers go to the end bins).
CLIP_PERCENTILES = (0.5, 99.5)


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
    if info.get("nan_policy") == "exclude":
        # The candidates are the rows with every chosen metric defined; the others were left out.
        b = b.filter(pl.all_horizontal(pl.col(m).is_not_null() & pl.col(m).is_not_nan() for m in metrics))
    a = _prepare(after, splits, weighted=True)

    occupancy = _occupancy(b, a, info, metrics)
    # Drawn and saved under matplotlib's default style plus ours, whatever the user's matplotlibrc says;
    # the context restores the caller's rcParams afterwards.
    with report_style():
        files = {
            "metrics.png": png_bytes(_metrics_figure(b, a, metrics, info)),
            "occupancy.png": png_bytes(_occupancy_figure(occupancy, info)),
            "mix.png": png_bytes(_mix_figure(b, a)),
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
    """``(bins, dims)`` of the quantile grid, or None when ``info`` does not say."""
    bins = info.get("bins_per_dim")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        return None
    dims = info.get("dims")
    if not isinstance(dims, int) or dims < 1:
        dims = min(int(info["pca"]), len(metrics)) if info.get("pca") else len(metrics)
    return bins, dims


def _is_cluster_id(info: dict) -> bool:
    """Whether the selected rows' ``bin_id`` is a cluster id rather than a grid cell (kmeans)."""
    kind = info.get("bin_id")
    return (isinstance(kind, str) and "cluster" in kind) or info.get("strategy") == "kmeans"


def _grid_cells(b: pl.DataFrame, a: pl.DataFrame, info: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Grid cells of the before and after rows, or None when they cannot be had from ``bin_id``.

    Before's ``bin_id`` is its grid cell. After's is too, except for kmeans (a cluster id): there each
    after-row takes the grid cell of the same store row (``part``, ``row``) before."""
    if "bin_id" not in b.columns or "bin_id" not in a.columns:
        return None
    cb = b.get_column("bin_id").cast(pl.Int64).to_numpy()
    if not _is_cluster_id(info):
        return cb, a.get_column("bin_id").cast(pl.Int64).to_numpy()
    if not {"part", "row"} <= set(b.columns) & set(a.columns):
        return None
    # Join on integer keys: the part's code (few distinct paths) and the row within it.
    codes = {p: i for i, p in enumerate(sorted(b.get_column("part").unique().to_list()))}
    code = pl.col("part").replace_strict(codes, default=-1, return_dtype=pl.Int64).alias("_part")
    key = b.select(code, pl.col("row").cast(pl.Int64), pl.col("bin_id").cast(pl.Int64).alias("_cell"))
    key = key.unique(["_part", "row"], keep="first", maintain_order=True)
    joined = a.select(code, pl.col("row").cast(pl.Int64)).join(key, on=["_part", "row"], how="left",
                                                               maintain_order="left")
    cells = joined.get_column("_cell")
    if cells.null_count():
        return None
    return cb, cells.to_numpy()


def _occupancy(b: pl.DataFrame, a: pl.DataFrame, info: dict, metrics: list[str]) -> dict:
    """2-D (weighted) counts before/after of the first two feature dims' quantile bins, and how they were got."""
    shape = _grid_shape(info, metrics)
    got = _grid_cells(b, a, info) if shape is not None and shape[1] >= 2 else None
    if got is not None:
        bins, k = shape
        cb, ca = got
        if all(c.size == 0 or (c.min() >= -1 and c.max() < bins ** k) for c in got):
            labels = ["PC1", "PC2"] if info.get("pca") else metrics[:2]
            out = {"source": "grid", "bins": bins, "k": k, "via_join": _is_cluster_id(info),
                   "labels": [f"{lab} (quantile bin of the feature)" for lab in labels]}
            for key, cells, frame in (("before", cb, b), ("after", ca, a)):
                out[key] = _count2d(cells, frame.get_column("_w").to_numpy(), bins, k)
            return out
    # Fallback: quantile bins of the first two metrics, cut on the candidates' defined values.
    bins = shape[0] if shape is not None else 5
    names = metrics[:2] if len(metrics) >= 2 else metrics[:1] * 2
    edges = []
    for m in names:
        v = _values(b, m)
        v = v[np.isfinite(v)]
        edges.append(np.quantile(v, np.arange(1, bins) / bins) if v.size else np.zeros(bins - 1))
    out = {"source": "ranks", "bins": bins, "k": 2, "via_join": False,
           "labels": [f"{m} (quantile bin of the metric)" for m in names]}
    for key, frame in (("before", b), ("after", a)):
        x, y = _values(frame, names[0]), _values(frame, names[1])
        ok = np.isfinite(x) & np.isfinite(y)
        ix = np.searchsorted(edges[0], x, side="right")
        iy = np.searchsorted(edges[1], y, side="right")
        cells = np.where(ok, ix * bins + iy, -1)
        out[key] = _count2d(cells, frame.get_column("_w").to_numpy(), bins, 2)
    return out


def _decode(cells: np.ndarray, bins: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins of dims 0 and 1 of grid cells >= 0: the cell id is the bins read as the digits of a base-``bins``
    number, first dimension most significant (``bins.Grid.cells``), i.e. row-major ``unravel_index``."""
    coords = np.unravel_index(cells, (bins,) * k)
    return coords[0], coords[1]


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

def _fmt_n(x: float) -> str:
    return f"{int(round(x)):,}" if abs(x - round(x)) < 1e-9 else f"{x:,.1f}"


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
                    ax.stairs(dens, edges, color=color, alpha=0.15, fill=True, label="_fill")
        else:
            ax.text(0.5, 0.5, "no defined value", ha="center", va="center", transform=ax.transAxes)
        ub, ua = float(wb[~okb].sum()), float(wa[~oka].sum())
        pb = 100 * ub / max(float(wb.sum()), 1e-300)
        pa_ = 100 * ua / max(float(wa.sum()), 1e-300)
        ax.set_title(f"{m}\nundefined (null): before {_fmt_n(ub)} ({pb:.1f} %), after {_fmt_n(ua)} ({pa_:.1f} %)")
        ax.set_xlabel(f"{m} value")
        ax.set_ylabel("density")
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
    fig.suptitle(f"Metric distributions before and after '{info.get('strategy', '?')}': density over the defined "
                 f"values (after weighted by sample_weight);\nbins span the candidates' {CLIP_PERCENTILES[0]}-"
                 f"{CLIP_PERCENTILES[1]} percentile range, values beyond it are counted in the end bins")
    return fig


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
    k = occ["k"]
    if occ["source"] == "grid":
        how = ("each row's grid cell (kmeans' bin_id is a cluster id)" if occ["via_join"]
               else "grid cells from bin_id")
        if k > 2:
            how += f", summed over the other {k - 2} dim" + ("s" if k > 3 else "")
    else:
        how = "quantile bins of the first two metrics (bin_id not decodable into a 2-D grid)"
    fig.suptitle(f"2-D occupancy of the first two feature dims\n({how})")
    return fig


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
    weights_only = bool(info.get("weights_only"))
    pca, explained = info.get("pca"), info.get("explained_variance")
    lines = [f"# Balance report: strategy `{strategy}`", ""]

    # What was done.
    if pca:
        ev = ", ".join(f"{100 * float(e):.1f} %" for e in explained) if explained else "not recorded"
        space = (f"each quantile-transformed ((rank - 1/2) / count), then reduced by PCA to {occ.get('k', pca)} "
                 f"dimensions (explained variance per component: {ev}), each re-quantiled to [0, 1]")
    else:
        space = "each quantile-transformed ((rank - 1/2) / count), every metric one dimension (no PCA)"
    shape = _grid_shape(info, metrics)
    grid = (f"a grid of {shape[0]} equal-count quantile bins per dimension ({shape[0]}^{shape[1]} = "
            f"{shape[0] ** shape[1]:,} cells)" if shape else "a quantile grid")
    store = info.get("store") if isinstance(info.get("store"), dict) else {}
    what = []
    if store:
        what.append(f"- Store `{store.get('name', '?')}` (fingerprint `{str(store.get('fingerprint', '?'))[:16]}`), "
                    f"{store.get('rows', before.height):,} rows in {store.get('parts', '?')} parts.")
    if weights_only:
        target = "every candidate kept once with its sampling weight (`--weights-only`)"
    else:
        size = info.get("size")
        target = f"target size {size:,}" if isinstance(size, int) else "target size n/a"
        if info.get("fraction") is not None:
            target += f" (fraction {info['fraction']})"
        target += ", with replacement" if info.get("replace") else ", without replacement"
    params = info.get("params") or {}
    ptext = (", parameters " + ", ".join(f"{k}={v}" for k, v in sorted(params.items()))) if params else ""
    what.append(f"- Strategy **{strategy}**, seed {info.get('seed')}, {target}{ptext}.")
    what.append(f"- Balancing space: {len(metrics)} metrics ({', '.join(f'`{m}`' for m in metrics)}), {space}; "
                f"{grid}. Windows with an undefined chosen metric: "
                + {"own_bin": "kept, in a cell of their own (the undefined bin, id -1).",
                   "exclude": "left out of the balanced splits."}.get(info.get("nan_policy"), "policy not recorded."))
    distinct = _distinct(a)
    what.append(f"- **Before**: the {b.height:,} candidate rows of the balanced split(s) "
                f"({', '.join(splits) or 'none'}). **After**: the {a.height:,} corpus rows of those split(s)"
                + (f" ({distinct:,} distinct store rows)" if distinct != a.height else "")
                + (f", total sample_weight {_fmt_n(float(a.get_column('_w').sum()))}" if weights_only else "")
                + ". Other splits are carried through unchanged and are left out of the comparisons below.")
    if weights_only:
        what.append("- After-distributions, shares and statistics are weighted by `sample_weight`: what a trainer "
                    "drawing rows in proportion to the weights sees.")
    lines += ["## What was done", ""] + what + [""]
    components = info.get("components")
    if pca and components:
        ev = list(explained or [])
        rows = [[f"PC{i + 1}", f"{100 * float(ev[i]):.1f} %" if i < len(ev) else "n/a",
                 *(f"{float(w):+.2f}" for w in comp)] for i, comp in enumerate(components)]
        lines += ["PCA loadings on the quantile-transformed metrics (what each feature dimension measures):", ""]
        lines += _table(["component", "explained variance", *metrics], rows) + [""]

    # Balance statistics.
    stats = info.get("balance_stats") or {}
    sel, rnd = stats.get("selection") or {}, stats.get("random") or {}
    cand = stats.get("candidates") or _before_stats(b, occ)
    rnd_label = "uniform weights" if weights_only else "random (same size)"
    header = ["statistic", "candidates (before)", "selection", rnd_label, "gain (selection - " +
              ("uniform" if weights_only else "random") + ")", "better when", "better?"]
    rows = []
    for key, label, better in STATS:
        sv, rv = sel.get(key), rnd.get(key)
        gain, verdict = "n/a", "n/a"
        if sv is not None and rv is not None:
            d = float(sv) - float(rv)
            both_int = isinstance(sv, (int, np.integer)) and isinstance(rv, (int, np.integer))
            gain = f"{int(d):+d}" if both_int else f"{d:+.4f}"
            verdict = "tie" if d == 0 else ("yes" if (d > 0) == (better == "higher") else "no")
        rows.append([label, _num(cand.get(key)), _num(sv), _num(rv), gain, better, verdict])
    n_ref = cand.get("reference_cells") or cand.get("occupied_cells")
    lines += ["## Balance statistics", "",
              "Occupancy of the grid cells by the selected rows, over the "
              + (f"{n_ref:,} " if isinstance(n_ref, int) else "")
              + "cells the candidates occupy (the undefined bin counts as one when present); natural logs. "
              + ("The uniform column is every candidate with weight 1." if weights_only else
                 "The random column is a uniform draw of the same size from the same candidates and seed.")
              + " Entropy and effective regimes are the higher the more evenly the rows spread over the cells.", ""]
    lines += _table(header, rows) + [""]

    # Rows per split.
    cb, ca = _counts(before, "split"), _counts(after, "split")
    ub = _counts(before.filter(pl.any_horizontal(pl.col(m).is_null() | pl.col(m).is_nan() for m in metrics)),
                 "split") if before.height else {}
    rows = []
    for split in sorted(set(cb) | set(ca)):
        role = "balanced" if split in splits else "carried through"
        rows.append([split, role, f"{cb[split]:,}" if split in cb else "n/a", f"{ub.get(split, 0):,}",
                     f"{ca.get(split, 0):,}"])
    rows.append(["**all**", "", f"{before.height:,}", f"{sum(ub.values()):,}", f"{after.height:,}"])
    lines += ["## Rows per split", "",
              "Before: the store rows the report was given; undefined: those with an undefined chosen metric"
              + (" (left out of the candidates)" if info.get("nan_policy") == "exclude" else "")
              + "; after: the corpus rows (a row drawn twice with replacement counts twice).", ""]
    lines += _table(["split", "role", "before", "undefined before", "after"], rows) + [""]

    lines += _diversity_lines(info.get("independent_diversity"))

    # Mix.
    lines += ["## Dataset and modality mix", "",
              f"Rows and shares of the compared split(s) ({', '.join(splits) or 'none'})"
              + ("; after-shares weighted by `sample_weight`." if weights_only else "."), ""]
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
              "(dashed orange) on the same bins spanning the candidates' "
              f"{CLIP_PERCENTILES[0]}-{CLIP_PERCENTILES[1]} percentile range (values beyond it are counted in the "
              "end bins): where the orange curve lies above the blue one the corpus holds relatively more windows "
              "with those values than the candidates did, and each panel's title gives each side's undefined "
              f"(null) count (before -> after: {und}).", "",
              "![2-D occupancy before and after](occupancy.png)", ""]
    if occ["source"] == "grid":
        dims = "the first two PCA components" if pca else f"`{metrics[0]}` and `{metrics[1]}`"
        how = (f"the grid cells of the rows decoded into the bins of {dims}"
               + (f" and summed over the other {occ['k'] - 2} dimension(s)" if occ["k"] > 2 else "")
               + (" (kmeans' `bin_id` is a cluster id, so each corpus row takes the grid cell of its store row)"
                  if occ["via_join"] else " (from `bin_id`)"))
    else:
        second = metrics[1] if len(metrics) > 1 else metrics[0]
        how = (f"{occ['bins']} quantile bins each of `{metrics[0]}` and `{second}` cut on the candidates' values "
               "(`bin_id` could not be decoded into two grid dimensions here)")
    lines += [f"Each square is the percentage of rows in one of {occ['bins']} x {occ['bins']} bins, from {how}, on "
              "one colour scale for both panels, so a more even after-panel (fewer very light or very dark squares) "
              "means a more even spread over these two dimensions; the undefined bin's share, not drawn, is in "
              "each panel's title.", "",
              "![Dataset and modality mix](mix.png)", "",
              "The bars give each dataset's and each modality's percentage of the rows before (blue) and after "
              "(orange, hatched), so a balancing strategy that shifts the sources shows as bars of unequal length "
              "(the tables above give the numbers).", ""]
    return "\n".join(lines)


#: The rows of the independent-diversity table: (section, key, what it is, better when higher).
_DIVERSITY_ROWS = (
    ("coverage", "p90", "p90 distance from a candidate to its nearest selected row", False),
    ("coverage", "mean", "mean distance from a candidate to its nearest selected row", False),
    ("clusters", "normalized_entropy", "entropy over k-means clusters of all candidates, normalized", True),
    ("held_out_metrics", "normalized_entropy", "cell entropy over metrics that were not balanced on", True),
    ("ground_truth", "normalized_entropy", "entropy over true regimes (system, regime, band), normalized", True),
    ("ground_truth", "represented", "true regimes represented", True),
    ("ground_truth", "rarest_decile_share", "share of the rarest decile of true regimes", True),
)


def _diversity_lines(div: dict | None) -> list[str]:
    """The ``independent_diversity`` section of corpus.json as a table: selection against random draws."""
    if not div:
        return []
    rows = []
    for section, key, text, higher in _DIVERSITY_ROWS:
        part = div.get(section) or {}
        sel, rnd = part.get("selection"), part.get("random")
        if not sel or not rnd or key not in sel:
            continue
        r = rnd[key]
        better = (sel[key] > r["mean"]) if higher else (sel[key] < r["mean"])
        rows.append([text, _num(sel[key]), f"{_num(r['mean'])} ± {_num(r['sd'])}", "yes" if better else "no"])
    comp = (div.get("composition") or {}).get("dataset") or {}
    if comp.get("selection"):
        top = max(comp["selection"], key=lambda k: (comp["selection"][k], k))
        rows.append([f"largest dataset share (`{top}`)", _num(comp["selection"][top]),
                     _num(comp.get("random", {}).get(top, float("nan"))), ""])
    if not rows:
        return []
    return ["## Independent diversity", "",
            f"Measures the strategy's grid does not enter, for the selection and for {div.get('draws')} uniform random "
            "draws of the same size (mean ± sd), in the space of all the store's metrics, robust-scaled "
            "(`corpus.json` `independent_diversity`, `docs/corpus_format.md`). Coverage is measured in the space "
            "the default `coverage` strategy selects in; the clusters, held-out metrics and true regimes are "
            "independent of it.", ""] + _table(["measure", "selection", "random", "better than random"], rows) + [""]


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
        from nw2.pipeline.balance.bins import balance_stats
    except ImportError:
        return {}
    cells = b.get_column("bin_id").to_numpy().astype(np.int64)
    return balance_stats(cells, cells)
