#!/usr/bin/env python
"""The intervention target at scale: does conditioning on the known future forcing lower the forecast error where
the forcing changes inside the horizon, and does a model with intervention inputs lose anything on windows that
have none?

The whole chain, on ``corpus_specs/interventions.yaml`` (driven oscillators, twin-well Duffing and dose responses
whose forcing switches every 0.4-1.2 s, next to autonomous Lorenz, Rossler and logistic windows without any):

1. ``nw2 ingest`` (metrics included) and ``nw2 balance --strategy random --fraction 1`` (every training window;
   the corpus carries their forcing rows);
2. ``nw2 pretrain`` twice with one seed and step budget: ``with`` takes the forcing as a known-ahead input
   (``--intervention-inputs forcing``), ``without`` is the same model without intervention inputs;
3. ``nw2 evaluate`` of both on the val and test windows (parameter bands no training window saw).

It prints, per horizon, the mean MSE of the ``with`` model given the forcing, the same model with it withheld,
the ``without`` model and AR(16), on the held-out windows whose forcing changes inside the horizon, on those whose
forcing holds still, and on the windows without interventions, with 95% bootstrap intervals of the ratios over
the subjects (parameter bands: the independent units), and writes them to ``OUT/interventions.json``.

Usage::

    .venv/bin/python benchmarks/interventions.py --out /tmp/ivbench            # about 15 minutes on 2 cores
    .venv/bin/python benchmarks/interventions.py --out /tmp/ivbench --epochs 4  # quicker, weaker
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
SPEC = ROOT / "corpus_specs" / "interventions.yaml"
REPLICATES = 2000


def nw2(*args) -> None:
    command = [sys.executable, "-m", "nw2.cli", *map(str, args)]
    print("$ nw2", " ".join(map(str, args)), flush=True)
    subprocess.run(command, check=True)


def per_window(run: Path, data: Path) -> pl.DataFrame:
    from nw2.model.evaluate import EvalConfig, evaluate

    result = evaluate(run, data, EvalConfig(split="val,test", probe=False, trained_baselines=False,
                                            out=str(run / "eval-val-test")), progress=False)
    return result.per_window


def ratio_interval(num: np.ndarray, den: np.ndarray, units: np.ndarray, seed: int) -> tuple[float, float, float]:
    """mean(num) / mean(den) and its 95% percentile interval, resampling the units (not the windows)."""
    names, inverse = np.unique(units, return_inverse=True)
    n_sum = np.bincount(inverse, weights=num, minlength=names.size)
    d_sum = np.bincount(inverse, weights=den, minlength=names.size)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, names.size, (REPLICATES, names.size))
    ratios = n_sum[draws].sum(1) / d_sum[draws].sum(1)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(num.sum() / den.sum()), float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="working folder (store, corpus, runs)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = args.out
    store, corpus = out / "store", out / "corpus"
    if not (store / "manifest.json").exists():
        nw2("ingest", SPEC, "--out", store)
    if not (corpus / "corpus.json").exists():
        nw2("balance", store, "--out", corpus, "--strategy", "random", "--fraction", "1", "--no-report")
    runs = {"with": ["--intervention-inputs", "forcing"], "without": []}
    for name, flags in runs.items():
        if not (out / name / "model" / "config.json").exists():
            nw2("pretrain", corpus, "--out", out / name, "--epochs", args.epochs, "--seed", args.seed, "--no-progress",
                *flags)
    # the windows' kind (0 none, 1 forcing unchanged over the horizon, 2 changing inside it) from the evaluation
    frames = {name: per_window(out / name, corpus) for name in runs}
    metrics = json.loads((out / "with" / "eval-val-test" / "metrics.json").read_text())
    kinds = frames["with"].select("window_id", "horizon", "intervention")
    w = frames["with"].select("window_id", "horizon", "subject", "mse", "mse_without_interventions", "mse_ar")
    wo = frames["without"].select("window_id", "horizon", pl.col("mse").alias("mse_model_without_inputs"))
    table = w.join(wo, on=["window_id", "horizon"]).join(kinds, on=["window_id", "horizon"])
    report: dict = {"epochs": args.epochs, "seed": args.seed,
                    "evaluated": metrics["data"]["evaluated"], "groups": {}}
    print(f"\nheld-out windows: {metrics['data']['evaluated']} (val and test); MSE per horizon, ratios with 95% "
          f"bootstrap intervals over subjects")
    for kind, label in ((2, "forcing changes inside the horizon"), (1, "forcing unchanged over the horizon"),
                        (0, "no interventions")):
        part = table.filter(pl.col("intervention") == kind)
        if part.height == 0:
            continue
        n = part.select("window_id").n_unique()
        print(f"\n{label}: {n} windows of {part.select('subject').n_unique()} subjects")
        print(f"{'horizon':>8} {'with':>8} {'withheld':>9} {'without':>8} {'AR(16)':>8}   with/withheld          "
              f"with/without")
        rows = []
        for h in sorted(part.get_column("horizon").unique().to_list()):
            p = part.filter(pl.col("horizon") == h)
            units = p.get_column("subject").to_numpy()
            a = p.get_column("mse").to_numpy()
            b = p.get_column("mse_without_interventions").to_numpy()
            c = p.get_column("mse_model_without_inputs").to_numpy()
            ar = p.get_column("mse_ar").to_numpy()
            r1 = ratio_interval(a, b, units, args.seed)
            r2 = ratio_interval(a, c, units, args.seed + 1)
            print(f"{h:>8} {a.mean():8.4f} {b.mean():9.4f} {c.mean():8.4f} {ar.mean():8.4f}   "
                  f"{r1[0]:.3f} [{r1[1]:.3f}, {r1[2]:.3f}]   {r2[0]:.3f} [{r2[1]:.3f}, {r2[2]:.3f}]")
            rows.append({"horizon": int(h), "with": float(a.mean()), "withheld": float(b.mean()),
                         "without_inputs": float(c.mean()), "ar": float(ar.mean()),
                         "with_over_withheld": r1, "with_over_without_inputs": r2})
        report["groups"][label] = {"windows": int(n), "by_horizon": rows}
    (out / "interventions.json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten: {out / 'interventions.json'}")


if __name__ == "__main__":
    main()
