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
    .venv/bin/python benchmarks/metric_accuracy.py --store runs/synthetic --no-nolds --exclude ForcedVanDerPol
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "corpus_specs" / "synthetic.yaml"))
    parser.add_argument("--store", help="an existing store with metrics (skips the ingest)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--no-nolds", action="store_true", help="nw2's figures only")
    parser.add_argument("--exclude", default="", help="comma-separated systems left out of the figures")
    args = parser.parse_args()

    import polars as pl

    from nw2.pipeline.ingest import ingest
    from nw2.pipeline.spec import load_spec
    from nw2.workflows.metric_accuracy import (NOLDS_COLUMNS, annotated_dimensions, figures, markdown,
                                                synthetic_windows, with_nolds)

    store = args.store
    if store is None:
        store = tempfile.mkdtemp(prefix="nw2-accuracy-") + "/store"
        t0 = time.perf_counter()
        ingest(load_spec(args.spec), store, workers=args.workers, progress=True)
        print(f"ingested {args.spec} with metrics into {store} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    frame = synthetic_windows(store, samples=not args.no_nolds)
    excluded = [s for s in args.exclude.split(",") if s]
    if excluded:
        frame = frame.filter(~pl.col("system").is_in(excluded))
    columns = {"nw2": {"lyapunov": "largest_lyapunov", "dimension": "correlation_dimension", "chaos_01": "chaos_01"}}
    if not args.no_nolds:
        t0 = time.perf_counter()
        frame = with_nolds(frame, args.workers)
        print(f"nolds on {frame.height} windows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        columns["nolds"] = NOLDS_COLUMNS
    annotated = annotated_dimensions(frame)
    regimes = frame.group_by("regime").len().sort("regime")
    print("windows by regime: " + ", ".join(f"{r} {n}" for r, n in regimes.iter_rows()))
    for title, part in (("noise-free windows", frame.filter(pl.col("noise") == 0)), ("all windows", frame)):
        results = {name: figures(part, cols, annotated, resamples=args.resamples) for name, cols in columns.items()}
        print(f"\n### {title}\n")
        print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
