#!/usr/bin/env python
"""Loader benchmark: windows/s of ``model.data.CorpusLoader`` alone (no model) over the demo corpus.

The demo corpus is built once into ``--work`` (``nw2 ingest corpus_specs/demo.yaml`` then ``nw2 balance``, about
15 s) unless ``--corpus`` names one. Each configuration reads ``--epochs`` epochs of the train split and reports:
samples/s (a sample: up to ``nvar`` channels of one group, what the model sees as one window), channel rows/s
(corpus rows), batches/s, and MB/s of float32 delivered. One untimed warm-up epoch first (imports, file opening).
Compare samples/s with the trainer's windows/s (``benchmarks/train_bench.py``): the issue asks for at least 10x.

Usage::

    .venv/bin/python benchmarks/loader_bench.py                         # demo corpus, 20 epochs per config
    .venv/bin/python benchmarks/loader_bench.py --corpus CORPUS --epochs 2 --window-size 4096 --nvar 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch



def build_demo(work: Path) -> Path:
    from typer.testing import CliRunner

    from nw2.cli import app

    store, corpus = work / "store", work / "corpus"
    runner = CliRunner()
    if not (corpus / "corpus.json").exists():
        if not (store / "metrics.json").exists():
            r = runner.invoke(app, ["ingest", "corpus_specs/demo.yaml", "--out", str(store), "--scheduler", "sync",
                                    "--no-progress"])
            assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["balance", str(store), "--spec", "corpus_specs/demo.yaml", "--out", str(corpus),
                                "--no-report", "--overwrite"])
        assert r.exit_code == 0, r.output
    return corpus


def run(corpus: Path, epochs: int, **kw) -> dict:
    from nw2.model.data import CorpusLoader, LoaderConfig

    loader = CorpusLoader(LoaderConfig(corpus=corpus, **kw))
    for _ in loader:  # warm-up epoch, not counted: first imports (pyarrow's pandas shims), file opening
        pass
    samples = rows = batches = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, mask in loader:
            samples += x.shape[0]
            rows += int(mask.sum())
            batches += 1
    dt = time.perf_counter() - t0
    return {**{k: v for k, v in kw.items()}, "epochs": epochs, "seconds": round(dt, 3),
            "samples_per_s": round(samples / dt), "rows_per_s": round(rows / dt), "batches_per_s": round(batches / dt, 1),
            "mb_per_s": round(rows * kw["window_size"] * 4 / dt / 1e6, 1), "samples_per_epoch": samples // epochs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, help="an existing corpus (default: build the demo corpus)")
    ap.add_argument("--work", type=Path, help="where to build the demo corpus (default: a temporary directory)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--window-size", type=int, default=1024)
    ap.add_argument("--nvar", type=int, default=10)
    ap.add_argument("--workers", default="0,1,2,4", help="num_workers values to run")
    ap.add_argument("--json", action="store_true", help="one JSON line per configuration")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus or build_demo(args.work or Path(tmp))
        for workers in [int(w) for w in args.workers.split(",")]:
            for weighted in (False, True):
                res = run(corpus, args.epochs, batch_size=args.batch_size, window_size=args.window_size,
                          nvar=args.nvar, shuffle_buffer=1024, weighted=weighted, num_workers=workers)
                if args.json:
                    print(json.dumps(res))
                else:
                    print(f"workers={workers} weighted={weighted!s:5}  {res['samples_per_s']:>8} samples/s  "
                          f"{res['rows_per_s']:>8} rows/s  {res['batches_per_s']:>7} batches/s  "
                          f"{res['mb_per_s']:>7} MB/s  ({res['samples_per_epoch']} samples/epoch, "
                          f"{res['seconds']} s)")


if __name__ == "__main__":
    main()
