#!/usr/bin/env python
"""Balance benchmark: every ``nw2 balance`` strategy on 10 million synthetic metric rows, time and peak RSS.

The rows are made here, not ingested: ``--rows`` (default 10,000,000) rows in the shape
``pipeline.balance.space.load_rows`` returns (``part``, ``row``, ``window_id``, ``group_id``, ``dataset``,
``subject``, ``record``, ``modality``, ``split`` and the 13 metric columns of ``pipeline.metrics.suite.METRICS``,
null where undefined; stored as float32, as the metrics stage writes them). The metrics are skewed (gamma noise) and multi-modal (each row belongs to one
of four dynamical regimes whose frequencies depend on its dataset, from 60 % down to 2 %), with heavy-tailed
outliers and 0.1-3 % nulls per metric. They are written once as a Parquet window store of those columns only
(no ``samples``), 1,000,000 rows per part in 1024-row row groups (``artifacts.store.parquet_bytes``: zstd, page checksums, as every store part), with a
minimal ``store.json`` and ``metrics.json``, so every run reads them through ``load_rows``' lazy polars scan as
``nw2 balance`` does.

Sections:

1. references, in a fresh process: a plain polars scan of the metric columns, ``load_rows`` on the same store,
   and ``np.random.default_rng(0).choice(rows, size, replace=False)`` (the cost floor of any subsample);
2. per strategy, each in a fresh process (so one run's peak RSS cannot hide another's): ``load_rows``, then the
   timed balancing work: the float32 column-major metric matrix and ``build_features`` (quantile transform
   of the 13 metrics, PCA to 3 dims; for ``coverage`` the spec's default space, the robust z-scores of the
   13 metrics, which are also its grid's dimensions), ``fit_grid`` + ``cells`` (5 bins per dim), the ``Candidates``, and
   ``select(strategy, size=--size)``; every row is a candidate (the stage balances only the train split; here
   all 10 million rows are balanced, the harder case). Peak RSS is the process's ``VmHWM``
   (``/proc/self/status``), so it includes the loaded table;
3. ``kmeans`` and ``coverage`` again at 1,000,000 rows (the first part of the store), with the scale they used
   (kmeans fits on ``fit_sample`` rows; coverage: its mode, exact greedy k-center on a pool of ``pool`` rows or
   two-level with ``centres`` Voronoi cells);
4. with ``--stage``, per strategy in a fresh process, the whole ``nw2 balance`` stage (``balance()``: the
   spec's defaults, ``dedup`` off because the store has no samples, no report), wall time and peak RSS.

Ratios are against the references of section 1, measured in the same run; the issue's targets (every
strategy: under 60 s and under 4 GB at 10 million rows, size 1 million) are checked.

Usage::

    .venv/bin/python benchmarks/balance_bench.py            # the figures in docs/performance.md (a few minutes)
    .venv/bin/python benchmarks/balance_bench.py --quick    # 1,000,000 rows, size 100,000: a smoke run
    .venv/bin/python benchmarks/balance_bench.py --rows 3000000 --size 300000 --strategies grid,inverse
    .venv/bin/python benchmarks/balance_bench.py --stage   # section 4 too: the whole stage per strategy
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]

#: The 13 metrics of ``pipeline.metrics.suite.METRICS``, in its order.
METRICS = ("largest_lyapunov", "correlation_dimension", "sample_entropy", "permutation_entropy", "spectral_entropy",
           "svd_entropy", "lempel_ziv", "hurst_rs", "dfa", "higuchi_fd", "katz_fd", "petrosian_fd", "chaos_01")
STRATEGIES = ("random", "stratified", "grid", "inverse", "temperature", "kmeans", "coverage")
#: Strategies with the issue's targets at 10 million rows: all of them.
TARGETED = STRATEGIES
TARGET_S = 60.0
TARGET_MIB = 4096.0
PART_ROWS = 1_000_000
SEED = 0

#: Synthetic datasets: (name, modality, share of the rows, regime probabilities).
DATASETS = [
    ("eegmmi", "eeg", 0.40, (0.70, 0.20, 0.08, 0.02)),
    ("mitbih", "ecg", 0.20, (0.10, 0.75, 0.13, 0.02)),
    ("ptbxl", "ecg", 0.12, (0.15, 0.60, 0.20, 0.05)),
    ("daphnet", "acc", 0.10, (0.30, 0.10, 0.55, 0.05)),
    ("pamap2", "acc", 0.08, (0.25, 0.15, 0.55, 0.05)),
    ("heartpy", "ppg", 0.05, (0.05, 0.30, 0.05, 0.60)),
    ("wesad", "eda", 0.04, (0.10, 0.10, 0.10, 0.70)),
    ("bidmc", "resp", 0.01, (0.20, 0.20, 0.20, 0.40)),
]
#: Per regime, per metric: (location, scale) of the gamma-skewed value.
REGIMES = np.array([
    # lyapunov   corr_dim     sampen        permen        spec_ent      svd_ent       lziv
    # hurst         dfa           higuchi       katz          petrosian       chaos_01
    [(0.5, 0.3), (2.5, 0.4), (0.3, 0.10), (0.55, 0.03), (0.35, 0.05), (0.30, 0.05), (0.15, 0.04),
     (0.95, 0.04), (1.40, 0.08), (1.08, 0.02), (1.2, 0.10), (1.005, 0.002), (0.05, 0.05)],
    [(1.5, 0.4), (4.5, 0.6), (0.9, 0.20), (0.80, 0.04), (0.60, 0.06), (0.55, 0.06), (0.45, 0.06),
     (0.75, 0.05), (1.00, 0.10), (1.45, 0.08), (1.8, 0.20), (1.015, 0.003), (0.40, 0.10)],
    [(2.5, 0.3), (7.0, 0.5), (1.45, 0.15), (0.93, 0.02), (0.80, 0.04), (0.75, 0.05), (0.75, 0.06),
     (0.60, 0.05), (0.90, 0.08), (1.75, 0.05), (2.6, 0.30), (1.025, 0.003), (0.85, 0.06)],
    [(4.0, 0.8), (8.5, 0.8), (2.0, 0.30), (0.98, 0.01), (0.92, 0.03), (0.90, 0.03), (0.95, 0.05),
     (0.50, 0.04), (0.55, 0.10), (1.95, 0.03), (3.5, 0.40), (1.035, 0.002), (0.97, 0.02)],
])
#: Fraction of nulls per metric (undefined on the window).
NULLS = (0.001, 0.03, 0.01, 0.001, 0.001, 0.001, 0.001, 0.005, 0.002, 0.001, 0.001, 0.001, 0.02)
assert REGIMES.shape == (4, len(METRICS), 2) and len(NULLS) == len(METRICS)


# -- the synthetic rows ---------------------------------------------------------------------------
def synthetic(n: int, seed: int = SEED) -> pl.DataFrame:
    """``n`` rows in ``load_rows``' shape (metrics as float64 with nulls), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    shares = np.array([d[2] for d in DATASETS])
    ds = rng.choice(len(DATASETS), size=n, p=shares / shares.sum()).astype(np.int8)
    probs = np.array([d[3] for d in DATASETS])
    # regime per row: inverse-CDF on its dataset's regime probabilities
    cdf = np.cumsum(probs, axis=1)[ds]
    regime = (rng.random(n)[:, None] > cdf[:, :-1]).sum(axis=1).astype(np.int8)
    del cdf
    cols = {}
    for j, name in enumerate(METRICS):
        loc, scale = REGIMES[regime, j, 0], REGIMES[regime, j, 1]
        v = loc + scale * (rng.standard_gamma(2.0, n) - 2.0) / np.sqrt(2.0)   # right-skewed, unit variance
        out = rng.random(n) < 0.002                                           # heavy-tailed outliers
        v[out] += rng.standard_cauchy(int(out.sum())) * 5 * REGIMES[:, j, 1].mean()
        v[rng.random(n) < NULLS[j]] = np.nan
        cols[name] = pl.Series(name, v, nan_to_null=True)
        del loc, scale, v, out
    subject = rng.integers(0, 5000, n, dtype=np.int32)
    split_of_subject = np.array(["train"] * 8 + ["val", "test"])[np.arange(5000) % 10]
    names = np.array([d[0] for d in DATASETS])
    mods = np.array([d[1] for d in DATASETS])
    idx = pl.int_range(0, n, dtype=pl.Int64, eager=True)
    frame = pl.DataFrame({
        "part": pl.Series((np.arange(n) // PART_ROWS).astype(np.int32)),
        "row": idx % PART_ROWS,
        "window_id": idx.cast(pl.String).str.zfill(32),
        "group_id": (idx // 3).cast(pl.String).str.zfill(31).str.pad_start(32, "g"),
        "dataset": pl.Series(names[ds]),
        "subject": pl.Series(subject).cast(pl.String).str.pad_start(4, "0").str.pad_start(5, "s"),
        "modality": pl.Series(mods[ds]),
        "split": pl.Series(split_of_subject[subject]),
    })
    # a record is one recording: a subject's file of one dataset
    frame = frame.with_columns(pl.format("{}/{}", "dataset", "subject").alias("record"))
    frame = frame.with_columns(pl.format("data/part-{}.parquet", pl.col("part").cast(pl.String)
                                         .str.pad_start(5, "0")).alias("part"))
    return frame.with_columns(**cols)


def write_store(frame: pl.DataFrame, root: Path) -> None:
    """``frame`` as a window store of metric columns only: parts of ``PART_ROWS`` rows, 1024-row row groups."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    store_cols = ["window_id", "group_id", "dataset", "subject", "record", "modality", "split", *METRICS]
    from nw2.artifacts.store import parquet_bytes

    for i, part in enumerate(frame.partition_by("part", maintain_order=True)):
        # with the store's own Parquet settings (page checksums included), so a read verifies what balance verifies
        table = part.select(store_cols).with_columns(pl.col(list(METRICS)).cast(pl.Float32)).to_arrow()
        (root / "data" / f"part-{i:05d}.parquet").write_bytes(parquet_bytes(table))
    write_meta(root, frame.height)


def write_meta(root: Path, rows: int) -> None:
    (root / "manifest.json").write_text(json.dumps({"schema_version": 1, "inputs": []}))  # a finished ingest
    (root / "store.json").write_text(json.dumps({
        "format": "nw2-window-store", "schema_version": 1, "nw2_version": "0.1.0",
        "spec_fingerprint": "balance-bench", "preprocess": {}, "windows": {}, "split": {}}, indent=2))
    (root / "metrics.json").write_text(json.dumps({
        "metrics_version": 1, "engine": "numba", "names": list(METRICS), "params": {}, "fingerprints": {},
        "parts": max(1, -(-rows // PART_ROWS)), "rows": rows, "failed_parts": [], "defined": {}, "undefined": {}}, indent=2))


# -- the child processes ------------------------------------------------------------------------------
def hwm_mib() -> float:
    """Peak RSS of this process in MiB (unlike ru_maxrss, not inherited from the parent)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_hwm() -> bool:
    """Reset this process's peak RSS to its current RSS (``/proc/self/clear_refs``, Linux >= 4.0), so the
    next ``hwm_mib()`` is the peak of what follows; False where that is not allowed (peaks then cumulative)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child_reference(store: str, size: int) -> dict:
    from nw2.pipeline.balance import space

    parts = sorted(str(p) for p in Path(store, "data").glob("part-*.parquet"))
    t = time.perf_counter()
    scanned = pl.scan_parquet(parts).select(list(METRICS)).collect()
    scan = time.perf_counter() - t
    rows = scanned.height
    del scanned
    gc.collect()
    t = time.perf_counter()
    pl.scan_parquet(parts).select([*space.ROW_COLUMNS, *METRICS]).collect()
    scan_all = time.perf_counter() - t
    gc.collect()
    t = time.perf_counter()
    frame = space.load_rows(store, list(METRICS))
    load = time.perf_counter() - t
    assert frame.height == rows, (frame.height, rows)
    del frame
    gc.collect()
    t = time.perf_counter()
    np.random.default_rng(0).choice(rows, size, replace=False)
    choice = time.perf_counter() - t
    return {"rows": rows, "scan_s": scan, "scan_all_s": scan_all, "load_rows_s": load, "choice_s": choice, "peak_mib": hwm_mib()}


def child_strategy(store: str, strategy: str, size: int, head: int | None) -> dict:
    """One strategy's selection phase as ``pipeline.balance.stage.balance`` runs it (all rows candidates)."""
    from nw2.pipeline.balance import bins, space, strategies
    from nw2.pipeline.balance.stage import SELECTION_COLUMNS, name_codes

    t0 = time.perf_counter()
    frame = space.load_rows(store, list(METRICS), SELECTION_COLUMNS)  # the columns the stage reads
    if head is not None:
        frame = frame.head(head)
    load = time.perf_counter() - t0
    base = rss_mib()
    peaks = [hwm_mib()]
    reset_hwm()
    t1 = time.perf_counter()
    # as the stage: the metrics float32 and column-major, out of the table
    values = frame.select([pl.col(m).cast(pl.Float32).fill_null(np.nan) for m in METRICS]).to_numpy(order="fortran")
    frame = frame.drop(METRICS)
    spec = space.FeatureSpec(metrics=METRICS)
    if strategy == "coverage":
        # coverage: the spec's default space, the robust z-scores of all 13 metrics, grid cut on them too
        spec = space.FeatureSpec(metrics=METRICS, pca=None, scale="robust")
    feats = space.build_features(values, spec)
    del values
    t2 = time.perf_counter()
    grid = bins.fit_grid(feats.z, feats.defined, spec.bins)
    cells = grid.cells(feats.z, feats.defined)
    t3 = time.perf_counter()
    cand = strategies.Candidates(z=feats.z, cells=cells,
                                 dataset=name_codes(frame.get_column("dataset"))[0],
                                 modality=name_codes(frame.get_column("modality"))[0])
    t4 = time.perf_counter()
    peaks.append(hwm_mib())
    before_select = rss_mib()
    reset_hwm()
    sel = strategies.select(strategy, cand, size, SEED)
    t5 = time.perf_counter()
    select_peak = hwm_mib()
    peaks.append(select_peak)
    rnd = strategies.select("random", cand, len(sel.index), SEED)
    stats = bins.balance_stats(cells[sel.index], cells)
    stats_rnd = bins.balance_stats(cells[rnd.index], cells)
    t6 = time.perf_counter()
    assert len(sel.index) == size, (len(sel.index), size)
    return {"strategy": strategy, "rows": frame.height, "size": size, "load_s": load, "features_s": t2 - t1,
            "grid_s": t3 - t2, "candidates_s": t4 - t3, "select_s": t5 - t4, "stats_s": t6 - t5,
            "work_s": t6 - t1, "base_mib": base, "peak_mib": max(*peaks, hwm_mib()),
            "features_peak_mib": peaks[1], "select_extra_mib": select_peak - before_select,
            "scale": scale_of(strategy, frame.height, size, feats.z.shape[1]),
            "normalized_entropy": float(stats["normalized_entropy"]),
            "normalized_entropy_random": float(stats_rnd["normalized_entropy"]),
            "occupied_cells": int(stats["occupied_cells"])}


def child_stage(store: str, strategy: str, size: int) -> dict:
    """The whole ``nw2 balance`` stage (``pipeline.balance.stage.balance``) with its defaults but
    ``dedup: false`` (the synthetic store has no ``samples`` to hash) and no report: read, features, grid,
    selection, the independent-diversity section, and the copy of the corpus rows."""
    from nw2.pipeline.balance.stage import balance
    from nw2.pipeline.spec import BalanceSpec

    out = Path(tempfile.mkdtemp(prefix="nw2-balance-bench-out-")) / "corpus"
    try:
        t = time.perf_counter()
        result = balance(store, str(out), BalanceSpec(strategy=strategy, size=size, dedup=False), report=False)
        wall = time.perf_counter() - t
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return {"strategy": strategy, "size": size, "stage_s": wall, "peak_mib": hwm_mib(),
            "candidates": result.info["candidates"], "corpus_rows": result.rows}


def scale_of(strategy: str, rows: int, size: int, dims: int) -> str:
    """What a strategy worked on, from its defaults (``strategies.DEFAULT_PARAMS``)."""
    from nw2.pipeline.balance import strategies

    params = strategies.DEFAULT_PARAMS.get(strategy, {})
    if strategy == "kmeans":
        fit = params["fit_sample"]
        return (f"k={params['k']} clusters fitted by mini-batch k-means ({params['iterations']} steps of "
                f"{params['batch']:,} rows) on {min(fit, rows):,} of {rows:,} rows (fit_sample), then every "
                f"row assigned")
    if strategy == "coverage":
        pool = min(params["pool"], rows)
        if size <= pool and size * pool * dims <= params["exact_budget"]:
            return f"exact greedy k-center on a pool of {pool:,} of {rows:,} rows (pool), {dims} dims"
        return (f"two-level: {min(params['centres'], size):,} centres by exact k-center on a pool of {pool:,} rows, "
                f"all {rows:,} rows assigned to their nearest centre, equal quotas per Voronoi cell, "
                f"farthest-point within cells up to exact_budget={params['exact_budget']:.0e}; {dims} dims")
    return f"all {rows:,} rows"


def _row(r: dict, ref: dict) -> str:
    return (f"{r['strategy']:<12}{r['size']:>10,}{r['load_s']:>8.2f}{r['features_s']:>8.2f}{r['grid_s']:>8.2f}"
            f"{r['candidates_s']:>8.2f}{r['select_s']:>9.2f}{r['stats_s']:>8.2f}{r['work_s']:>8.2f}"
            f"{r['work_s'] / ref['choice_s']:>8.0f}{r['peak_mib']:>10,.0f}{r['base_mib']:>9,.0f}"
            f"{r['features_peak_mib']:>9,.0f}{r['select_extra_mib']:>9,.0f}"
            f"{r['normalized_entropy']:>8.3f}{r['normalized_entropy_random']:>8.3f}")


def _meets(r: dict) -> bool:
    return r["load_s"] + r["work_s"] < TARGET_S and r["peak_mib"] < TARGET_MIB


def _verdict(r: dict) -> str:
    secs, peak = r["load_s"] + r["work_s"], r["peak_mib"]
    why = [f"{secs:.1f} s" + (" >= 60 s" if secs >= TARGET_S else ""),
           f"{peak:,.0f} MiB" + (f" >= {TARGET_MIB:,.0f} MiB" if peak >= TARGET_MIB else "")]
    return "  " + ("PASS" if _meets(r) else "FAIL") + f" ({', '.join(why)})"


def run_child(*args: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


# -- main -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="synthetic rows (default 10,000,000)")
    ap.add_argument("--size", type=int, default=None, help="target size (default rows / 10)")
    ap.add_argument("--quick", action="store_true", help="1,000,000 rows, size 100,000")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated (default: all seven)")
    ap.add_argument("--keep", default=None, help="write the synthetic store here and keep it (default: a temp dir)")
    ap.add_argument("--stage", action="store_true",
                    help="also run the whole balance stage per strategy (section 4; about 1.5 min each at 10M rows)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        kind, store, *rest = args.child
        if kind == "reference":
            out = child_reference(store, int(rest[0]))
        elif kind == "stage":
            out = child_stage(store, rest[0], int(rest[1]))
        else:
            head = int(rest[1]) if len(rest) > 1 and rest[1] != "-" else None
            out = child_strategy(store, kind, int(rest[0]), head)
        print(json.dumps(out))
        return 0

    rows = 1_000_000 if args.quick else args.rows
    size = args.size or max(rows // 10, 1)
    chosen = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(STRATEGIES))
    if unknown:
        ap.error(f"unknown strategies {unknown}; valid: {', '.join(STRATEGIES)}")
    command = " ".join(shlex.quote(a) for a in [sys.executable, *(sys.argv if argv is None
                                                                  else ["balance_bench.py", *argv])])
    import psutil  # noqa: F401  (only for the machine line)

    mem = psutil.virtual_memory().total / 2**30
    print(f"machine: {os.cpu_count()} CPUs, {mem:.1f} GiB RAM, {platform.platform()}, python "
          f"{platform.python_version()}, numpy {np.__version__}, polars {pl.__version__}")
    t_all = time.perf_counter()
    scratch = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nw2-balance-bench-"))
    store = scratch / "store"
    try:
        print(f"\n== 0. {rows:,} synthetic metric rows -> a Parquet store of metric columns ({store}) ==")
        t = time.perf_counter()
        frame = synthetic(rows)
        made = time.perf_counter() - t
        t = time.perf_counter()
        if store.exists():
            shutil.rmtree(store)
        write_store(frame, store)
        wrote = time.perf_counter() - t
        nulls = {m: frame.get_column(m).null_count() for m in METRICS}
        mix = frame.group_by("dataset").len().sort("len", descending=True)
        del frame
        gc.collect()
        disk = sum(p.stat().st_size for p in (store / "data").glob("*.parquet")) / 2**20
        print(f"made in {made:.1f} s, written in {wrote:.1f} s: {len(list((store / 'data').glob('*.parquet')))} "
              f"parts, {disk:.0f} MiB on disk")
        print("nulls per metric: " + ", ".join(f"{m} {n:,} ({100 * n / rows:.1f} %)" for m, n in nulls.items()))
        print("rows per dataset: " + ", ".join(f"{d} {n:,}" for d, n in mix.iter_rows()))

        print(f"\n== 1. References (fresh process): {rows:,} rows, size {size:,} ==")
        ref = run_child("reference", str(store), str(size))
        print(f"polars scan_parquet(...).collect() of the {len(METRICS)} metric columns: {ref['scan_s']:.2f} s")
        print(f"the same of the columns load_rows reads (6 string + {len(METRICS)} metric): {ref['scan_all_s']:.2f} s")
        print(f"load_rows (those columns + part, row; metrics as float32 with nulls): {ref['load_rows_s']:.2f} s "
              f"({ref['load_rows_s'] / ref['scan_all_s']:.2f}x the bare scan of the same columns)")
        print(f"np.random.default_rng(0).choice({rows:,}, {size:,}, replace=False): {ref['choice_s']:.3f} s")
        print(f"peak RSS of that process: {ref['peak_mib']:,.0f} MiB")

        print(f"\n== 2. Strategies, each in a fresh process: {rows:,} candidate rows, size {size:,}, PCA to 3 dims "
              f"(coverage: all {len(METRICS)} robust dims), 5 bins per dim ==")
        print(f"{'strategy':<12}{'size':>10}{'load s':>8}{'feat s':>8}{'grid s':>8}{'cand s':>8}{'select s':>9}"
              f"{'stats s':>8}{'work s':>8}{'/choice':>8}{'peak MiB':>10}{'(table)':>9}{'(feat)':>9}{'sel +':>9}"
              f"{'H_norm':>8}{'(rand)':>8}"
              f"  target")
        results = []
        for s in chosen:
            r = run_child(s, str(store), str(size), "-")
            results.append(r)
            print(_row(r, ref) + (_verdict(r) if s in TARGETED else ""))
        print("load s = load_rows; work s = feat (metric matrix + quantile transform + PCA) + grid (fit + cells) + "
              "cand (Candidates) + select + stats (a random draw of the same size and the balance statistics of both, "
              "as the stage computes them); /choice = work s over the plain rng.choice of section 1; (table) = RSS "
              "after load_rows; (feat) = peak RSS while making the features, grid and candidates; sel + = peak RSS of select above the RSS before it (the strategy's own memory); H_norm, (rand) = normalized entropy of the grid occupancy of the selection and of "
              "the random draw; target = load + work < 60 s and peak < 4096 MiB")
        for r in results:
            if r["strategy"] in ("kmeans", "coverage"):
                print(f"{r['strategy']}: select {r['select_s']:.2f} s for {r['size']:,} rows; scale: {r['scale']}")

        small = [s for s in chosen if s in ("kmeans", "coverage")]
        if small and rows > PART_ROWS:
            one = scratch / "store-1m"
            if one.exists():
                shutil.rmtree(one)
            (one / "data").mkdir(parents=True)
            shutil.copy(store / "data" / "part-00000.parquet", one / "data" / "part-00000.parquet")
            write_meta(one, PART_ROWS)
            size1 = PART_ROWS // 10
            print(f"\n== 3. kmeans and coverage at {PART_ROWS:,} rows (the store's first part) ==")
            for s in small:
                r = run_child(s, str(one), str(size1), "-")
                print(_row(r, ref))
                print(f"    scale: {r['scale']}")
        if args.stage:
            print(f"\n== 4. The whole stage, balance(), each in a fresh process: {rows:,} rows (those of the train split "
                  f"are the candidates), size {size:,}, the spec's defaults but dedup off (no samples) and no report ==")
            print(f"{'strategy':<12}{'candidates':>12}{'corpus rows':>13}{'stage s':>9}{'peak MiB':>10}  60 s / 4 GB")
            for s in chosen:
                r = run_child("stage", str(store), s, str(size))
                met = r["stage_s"] < TARGET_S and r["peak_mib"] < TARGET_MIB
                print(f"{s:<12}{r['candidates']:>12,}{r['corpus_rows']:>13,}{r['stage_s']:>9.1f}{r['peak_mib']:>10,.0f}"
                      f"  {'PASS' if met else 'FAIL'}")
        failed = [r["strategy"] for r in results if r["strategy"] in TARGETED and not _meets(r)]
        if rows >= 10_000_000:
            print(f"\ntargets at {rows:,} rows: " + ("all met" if not failed else f"missed by {', '.join(failed)}"))
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{time.perf_counter() - t_all:.0f} s in all; command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
