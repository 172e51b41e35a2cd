#!/usr/bin/env python
"""Does the sampling rate as an input (``rate_conditioning``) help on a corpus of windows of several rates?

The whole chain, on ``corpus_specs/rates.yaml`` (the demo's real recordings, each modality at its own rate: ECG
250 Hz, EEG 160, PPG 64, accelerometry 32, respiration 25, EDA 8, in 512-sample windows):

1. ``nw2 ingest`` (metrics included) and ``nw2 balance --strategy random --fraction 1`` (every training window);
2. ``nw2 pretrain`` twice with one seed, preset and step budget: ``with`` takes each window's rate as an input
   (``--rate-conditioning``), ``without`` is the same model without it;
3. ``nw2 evaluate`` of both on the val and test windows (subjects no training window came from).

It prints, per rate and horizon, the mean MSE of both models and AR(16) on the held-out windows, the ratio
with / without and its 95% bootstrap interval over the subjects (the independent units; the held-out split of
this store has few, so the intervals are wide), and writes them to ``OUT/rate_conditioning.json``.

Usage::

    .venv/bin/python benchmarks/rate_conditioning.py --out /tmp/ratebench             # about 10 minutes, 2 cores
    .venv/bin/python benchmarks/rate_conditioning.py --out /tmp/ratebench --epochs 10 --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "corpus_specs" / "rates.yaml"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from interventions import nw2, per_window, ratio_interval  # noqa: E402  (one helper per piece of maths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="working folder (store, corpus, runs)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds, each a pair of runs")
    ap.add_argument("--config", default="tiny", help="model preset")
    args = ap.parse_args()
    out = args.out
    store, corpus = out / "store", out / "corpus"
    if not (store / "manifest.json").exists():
        nw2("ingest", SPEC, "--out", store)
    if not (corpus / "corpus.json").exists():
        nw2("balance", store, "--out", corpus, "--strategy", "random", "--fraction", "1", "--no-report")
    rates = pl.read_parquet(corpus / "data" / "*.parquet", columns=["window_id", "fs"]).unique("window_id")
    frames = []
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:
        pair = {}
        for name, flags in {"with": ["--rate-conditioning"], "without": []}.items():
            run = out / f"{name}-{seed}"
            if not (run / "model" / "config.json").exists():
                nw2("pretrain", corpus, "--out", run, "--config", args.config, "--epochs", args.epochs, "--seed",
                    seed, "--no-progress", *flags)
            pair[name] = per_window(run, corpus).select("window_id", "horizon", "subject", "mse", "mse_ar")
        frames.append(pair["with"].join(pair["without"].select("window_id", "horizon",
                                                               pl.col("mse").alias("mse_without")),
                                        on=["window_id", "horizon"]).with_columns(pl.lit(seed).alias("seed")))
    table = pl.concat(frames).join(rates, on="window_id")
    report: dict = {"epochs": args.epochs, "seeds": seeds, "config": args.config, "rates": {}}
    print(f"\nheld-out windows (val and test) by rate: MSE with / without the rate as an input, AR(16), and the "
          f"ratio with 95% bootstrap intervals over subjects (seeds pooled)")
    print(f"{'rate':>8} {'horizon':>8} {'windows':>8} {'subjects':>9} {'with':>8} {'without':>8} {'AR(16)':>8}   "
          f"with/without")
    for fs in sorted(table.get_column("fs").unique().to_list()):
        rows = []
        for h in sorted(table.get_column("horizon").unique().to_list()):
            p = table.filter((pl.col("fs") == fs) & (pl.col("horizon") == h))
            if p.height == 0:
                continue
            units = p.get_column("subject").to_numpy()
            a, b = p.get_column("mse").to_numpy(), p.get_column("mse_without").to_numpy()
            ar = p.get_column("mse_ar").to_numpy()
            r = ratio_interval(a, b, units, 0)
            n, s = p.select("window_id").n_unique(), np.unique(units).size
            print(f"{fs:>6g}Hz {h:>8} {n:>8} {s:>9} {a.mean():8.4f} {b.mean():8.4f} {ar.mean():8.4f}   "
                  f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]")
            rows.append({"horizon": int(h), "windows": int(n), "subjects": int(s), "with": float(a.mean()),
                         "without": float(b.mean()), "ar": float(ar.mean()), "with_over_without": r})
        report["rates"][f"{fs:g} Hz"] = rows
    p = table
    units = p.get_column("subject").to_numpy()
    r = ratio_interval(p.get_column("mse").to_numpy(), p.get_column("mse_without").to_numpy(), units, 0)
    report["all"] = {"with_over_without": r}
    print(f"\nall rates and horizons: with/without {r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]")
    (out / "rate_conditioning.json").write_text(json.dumps(report, indent=2))
    print(f"written: {out / 'rate_conditioning.json'}")


if __name__ == "__main__":
    main()
