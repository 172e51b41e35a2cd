#!/usr/bin/env python
"""Evaluation benchmark: windows/s of ``nw2 evaluate`` for the model, the adapted model and the baselines,
against a bare batched ``model.predict`` over the same windows in the same run.

It trains ``tiny`` for ``--epochs`` on the demo corpus (built once into ``--work`` unless ``--run`` and
``--data`` name existing ones), then evaluates the store's ``--split`` (default ``train``: the demo store's
largest split, 1059 windows; the model never saw most of them, but speed is what is measured here). The
figures are the evaluation's own ``speed.json`` (model forecasts, adapted forecasts, each baseline, the
embeddings of the latent distance); the reference is ``model.predict`` alone on the same windows, batched
the same way, after one warm-up pass.

Usage::

    .venv/bin/python benchmarks/evaluate_bench.py
    .venv/bin/python benchmarks/evaluate_bench.py --run runs/demo/run --data runs/demo/store --split train
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def bare_predict_rate(run: Path, data: Path, split: str, batch: int, horizon: int) -> dict:
    """model.predict alone over the split's windows (single channel, as the evaluation scores them)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nw2.model import Model

    model = Model.from_pretrained(run / "model")
    W = model.config.window_size
    rows = []
    for part in sorted((data / "data").glob("part-*.parquet")):
        t = pq.read_table(part, columns=["samples", "split"])
        t = t.filter(pc.equal(t.column("split"), split))
        rows += [np.asarray(s[:W], dtype=np.float32) for s in t.column("samples").to_pylist() if len(s) >= W]
    x = torch.from_numpy(np.stack(rows))[:, :, None]
    ctx = x[:, : W - horizon]

    def one_pass() -> None:
        for i in range(0, len(ctx), batch):
            model.predict(ctx[i:i + batch], horizon)

    one_pass()
    t0 = time.perf_counter()
    one_pass()
    dt = time.perf_counter() - t0
    return {"windows": len(ctx), "windows_per_s": round(len(ctx) / dt, 1)}


def main() -> None:
    from loader_bench import build_demo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="a trained run (default: train tiny on the demo corpus)")
    ap.add_argument("--data", type=Path, help="the store to evaluate on (default: the demo store)")
    ap.add_argument("--work", type=Path, help="where to build the demo store/corpus (default: a temporary dir)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp) / "demo"
        run, data = args.run, args.data
        if run is None or data is None:
            corpus = build_demo(work)
            data = data or work / "store"
            if run is None:
                from nw2.model.train import prepare, pretrain, resolve

                run = Path(tmp) / "run"
                m, c = resolve(corpus, run, "tiny", {"epochs": args.epochs})
                pretrain(prepare(m, c), progress=False, log=lambda s: None)
        from nw2.model.evaluate import EvalConfig, evaluate

        config = EvalConfig(split=args.split, batch_size=args.batch_size)
        evaluate(run, data, config.replace(out=Path(tmp) / "warm", max_windows=64),
                 progress=False)  # warm-up: imports, first model calls
        result = evaluate(run, data, config.replace(out=Path(tmp) / "eval"), progress=False)
        speed = result.speed
        horizon = max(result.metrics["protocol"]["horizons"])
        ref = bare_predict_rate(run, data, args.split, args.batch_size, horizon)
        print(json.dumps({"evaluate": speed, "bare_predict": ref}, sort_keys=True))
        print()
        print(f"{speed['windows']} windows of split {args.split}; reference: bare model.predict "
              f"{ref['windows_per_s']:.0f} windows/s")
        for key in sorted(k for k in speed if k.endswith("_windows_per_s") and speed[k] is not None):
            v = speed[key]
            print(f"{key[:-len('_windows_per_s')]:>20} {v:>12.0f} windows/s {v / ref['windows_per_s']:>8.2f}x bare predict")
        print(f"{'whole evaluation':>20} {speed['windows'] / speed['seconds_total']:>12.0f} windows/s "
              f"({speed['seconds_total']:.2f} s)")


if __name__ == "__main__":
    main()
