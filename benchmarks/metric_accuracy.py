#!/usr/bin/env python
"""Chaos metrics against the ground truth: nw2's estimators and nolds' on the windows of a synthetic store.

Ingests a spec with dysts sources (default ``corpus_specs/synthetic.yaml``; ``--store`` reuses a store that
already has metrics), then scores on its dysts windows (``workflows/metric_accuracy.py`` defines the figures):

- nw2: the store's metric columns (``nw2 ingest`` computed them with the default parameters);
- nolds: ``lyap_r`` and ``corr_dim`` at nolds' own defaults (``emb_dim=10`` as nw2, ``fit="poly"`` instead of
  the random RANSAC fit, so that the figures are reproducible), run on the same stored windows; nolds has no
  0-1 test.

Every interval is a 95% bootstrap over systems. Noise-free windows and all windows are reported apart.

Usage::

    .venv/bin/python benchmarks/metric_accuracy.py                      # the tables, on corpus_specs/synthetic.yaml
    .venv/bin/python benchmarks/metric_accuracy.py --store runs/synthetic   # an existing store with metrics
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _nolds_pair(args):
    x, fs = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import nolds

        x = np.asarray(x, dtype=np.float64)
        try:
            lyap = nolds.lyap_r(x, emb_dim=10, fit="poly") * fs
        except Exception:
            lyap = float("nan")
        try:
            dim = nolds.corr_dim(x, emb_dim=10, fit="poly")
        except Exception:
            dim = float("nan")
    return float(lyap), float(dim)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "corpus_specs" / "synthetic.yaml"))
    parser.add_argument("--store", help="an existing store with metrics (skips the ingest)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--no-nolds", action="store_true", help="nw2's figures only")
    args = parser.parse_args()

    import polars as pl

    from nw2.pipeline.ingest import ingest
    from nw2.pipeline.spec import load_spec
    from nw2.pipeline.synthetic.systems import system_info
    from nw2.workflows.metric_accuracy import figures, markdown, synthetic_windows

    store = args.store
    if store is None:
        store = tempfile.mkdtemp(prefix="nw2-accuracy-") + "/store"
        t0 = time.perf_counter()
        ingest(load_spec(args.spec), store, workers=args.workers, progress=True)
        print(f"ingested {args.spec} with metrics into {store} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    frame = synthetic_windows(store, samples=not args.no_nolds)
    columns = {"nw2": {"lyapunov": "largest_lyapunov", "dimension": "correlation_dimension", "chaos_01": "chaos_01"}}
    if not args.no_nolds:
        t0 = time.perf_counter()
        jobs = list(zip(frame.get_column("samples").to_list(), frame.get_column("fs").to_list()))
        with ProcessPoolExecutor(args.workers) as pool:
            pairs = list(pool.map(_nolds_pair, jobs, chunksize=16))
        frame = frame.with_columns(pl.Series("nolds_lyapunov", [p[0] for p in pairs]),
                                   pl.Series("nolds_dimension", [p[1] for p in pairs])).drop("samples")
        print(f"nolds on {len(jobs)} windows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        columns["nolds"] = {"lyapunov": "nolds_lyapunov", "dimension": "nolds_dimension", "chaos_01": None}
    annotated = {}
    for system in frame.get_column("system").unique().to_list():
        value = system_info(system).annotated.get("correlation_dimension")
        if value is not None and np.isfinite(value):
            annotated[system] = float(value)
    regimes = frame.group_by("regime").len().sort("regime")
    print("windows by regime: " + ", ".join(f"{r} {n}" for r, n in regimes.iter_rows()))
    for title, part in (("noise-free windows", frame.filter(pl.col("noise") == 0)), ("all windows", frame)):
        results = {name: figures(part, cols, annotated, resamples=args.resamples) for name, cols in columns.items()}
        print(f"\n### {title}\n")
        print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
