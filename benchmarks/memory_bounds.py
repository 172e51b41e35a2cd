#!/usr/bin/env python
"""Memory of ``nw2 ingest`` on long recordings and large tables: is it bounded, or does it grow with the file?

Each case is ingested in a fresh process (``ingest()`` with the ``sync`` scheduler, so the one process is what a
Dask worker would be; metrics off) while a thread samples the process's anonymous resident memory
(``RssAnon`` in ``/proc/self/status``, every 5 ms: the memory the process allocated, not the page cache of the
file it reads). The figure is the peak above the process's footprint just before ``ingest()`` started (the
imports).

Cases (made here, in ``--dir``), each in three lengths:

- ``edf``: a single-channel ECG-like EDF at 1 kHz (pyedflib) of 1 hour (3.6 M samples: just under one piece,
  ``max_piece_samples`` 4 M), ``--hours`` (10) and twice that (20 hours, 72 M samples);
- ``npy``: the same signals as ``.npy`` arrays (``--fs``);
- ``csv``: a table with a time column and four channels at 1 kHz of a tenth of ``--csv-mb``, ``--csv-mb`` (200)
  and twice that, and the ``--csv-mb`` table gzipped (``.csv.gz``); one more reference is ``polars.read_csv``
  of the ``--csv-mb`` table in a fresh process: what loading it whole costs.

Bounded means the peak stops growing with the file: the doubled case's peak over the big one's (``x2``) is near
1, whatever the length. The ratios are printed, measured in the same run.

Usage::

    .venv/bin/python benchmarks/memory_bounds.py                 # the figures in docs/performance.md (~6 min)
    .venv/bin/python benchmarks/memory_bounds.py --hours 1 --csv-mb 40   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_CHILD = r"""
import json, sys, threading, time
peak = [0.0]
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024
def watch():
    while True:
        peak[0] = max(peak[0], anon()); time.sleep(0.005)
kind, path, out, fs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
if kind == "whole":
    import polars as pl
    base = anon(); threading.Thread(target=watch, daemon=True).start(); t0 = time.perf_counter()
    df = pl.read_csv(path, infer_schema_length=10000)
    rows = df.height
else:
    from nw2.pipeline.ingest import ingest
    from nw2.pipeline.spec import spec_from_dict
    import nw2.pipeline.pieces  # the readers, SciPy and pyarrow: imported before the baseline
    source = {"dataset": "long", "paths": [path], "modality": "ecg"}
    if kind == "npy":
        source["fs"] = fs
    spec = spec_from_dict({"name": "memory", "sources": [source]}, where="benchmark")
    base = anon(); threading.Thread(target=watch, daemon=True).start(); t0 = time.perf_counter()
    result = ingest(spec, out, scheduler="sync", progress=False, metrics=False, overwrite=True)
    rows = result.windows
    assert result.count("ingested") == 1, result.manifest
wall = time.perf_counter() - t0
time.sleep(0.02)
print(json.dumps({"peak_mb": peak[0] - base, "base_mb": base, "wall_s": wall, "rows": rows}))
"""


def _signal(seconds: float, fs: float, seed: int = 0) -> np.ndarray:
    """An ECG-like trace: a 1.1 Hz beat train with breathing wander and noise (its shape does not matter here)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    beat = np.exp(-((np.mod(t, 0.9) - 0.3) / 0.02) ** 2)
    return (beat + 0.2 * np.sin(2 * np.pi * 0.25 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float64)


def _edf(path: Path, x: np.ndarray, fs: float) -> None:
    import pyedflib

    with pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders([{"label": "ECG", "dimension": "mV", "sample_frequency": fs, "physical_min": -3.0,
                             "physical_max": 3.0, "digital_min": -32768, "digital_max": 32767}])
        w.writeSamples([x])


def _csv(path: Path, mb: float, fs: float) -> None:
    """About ``mb`` MB of ``time,ecg0..ecg3`` at ``fs`` Hz, written a block at a time."""
    rows_per_mb = 1e6 / 48  # about 48 bytes a row at these widths
    n = int(mb * rows_per_mb)
    with open(path, "w") as f:
        f.write("time,ecg0,ecg1,ecg2,ecg3\n")
        for lo in range(0, n, 500_000):
            hi = min(n, lo + 500_000)
            t = np.arange(lo, hi) / fs
            x = _signal((hi - lo) / fs, fs, seed=lo)
            block = np.column_stack([t, x, 0.5 * x, -x, x + 0.1])
            np.savetxt(f, block, fmt=["%.3f", "%.5f", "%.5f", "%.5f", "%.5f"], delimiter=",")


def _run(kind: str, path: Path, out: Path, fs: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path), str(out), str(fs)],
                          capture_output=True, text=True, env={**os.environ, "POLARS_MAX_THREADS": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {path.name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=10.0, help="length of the long EDF and .npy recordings")
    ap.add_argument("--fs", type=float, default=1000.0, help="their sampling rate (Hz)")
    ap.add_argument("--reference-hours", type=float, default=1.0, help="length of the reference recordings")
    ap.add_argument("--csv-mb", type=float, default=200.0, help="size of the large CSV (MB)")
    ap.add_argument("--dir", default=None, help="where the inputs and stores go (default: a temporary folder)")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="nw2-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    fs = args.fs
    t0 = time.perf_counter()
    long = _signal(args.hours * 3600, fs)
    np.save(work / "long.npy", long)
    _edf(work / "long.edf", long, fs)
    np.save(work / "double.npy", np.concatenate([long, long]))
    _edf(work / "double.edf", np.concatenate([long, long]), fs)
    short = long[: int(args.reference_hours * 3600 * fs)]
    np.save(work / "short.npy", short)
    _edf(work / "short.edf", short, fs)
    del long, short
    _csv(work / "big.csv", args.csv_mb, fs)
    _csv(work / "double.csv", 2 * args.csv_mb, fs)
    _csv(work / "small.csv", args.csv_mb / 10, fs)
    subprocess.run(["gzip", "-1", "-k", "-f", str(work / "big.csv")], check=True)
    subprocess.run(["gzip", "-1", "-k", "-f", str(work / "double.csv")], check=True)
    print(f"inputs made in {time.perf_counter() - t0:.0f} s in {work}: "
          + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.0f} MB" for p in sorted(work.glob("*.*"))
                      if p.is_file()))

    rows = []
    for label, kind, small, big, double in [("EDF", "edf", "short.edf", "long.edf", "double.edf"),
                                            ("NumPy", "npy", "short.npy", "long.npy", "double.npy"),
                                            ("CSV", "csv", "small.csv", "big.csv", "double.csv"),
                                            ("CSV (gzip)", "csv", "small.csv", "big.csv.gz", "double.csv.gz")]:
        rows.append((label, [(name, _run(kind, work / name, work / "stores" / f"{label}-{name}", fs))
                             for name in (small, big, double)]))
    whole = _run("whole", work / "big.csv", work / "unused", fs)

    print("\npeak memory of nw2 ingest above the process's footprint (RssAnon MB, sync scheduler, metrics off)")
    print(f"{'input':<11} | {'reference':<10} {'MB':>5} | {'big case':<11} {'MB':>5} {'wall s':>6} {'windows':>7} | "
          f"{'doubled':<13} {'MB':>5} {'wall s':>6} {'windows':>7} | x2")
    for label, ((small, a), (big, b), (double, c)) in rows:
        print(f"{label:<11} | {small:<10} {a['peak_mb']:5.0f} | {big:<11} {b['peak_mb']:5.0f} {b['wall_s']:6.1f} "
              f"{b['rows']:7d} | {double:<13} {c['peak_mb']:5.0f} {c['wall_s']:6.1f} {c['rows']:7d} | "
              f"{c['peak_mb'] / b['peak_mb']:4.2f}")
    size = (work / "big.csv").stat().st_size / 1e6
    csv_peak = rows[2][1][1][1]["peak_mb"]
    print(f"\npolars.read_csv of the whole big.csv ({size:.0f} MB): peak {whole['peak_mb']:.0f} MB "
          f"({whole['wall_s']:.1f} s); nw2's streamed ingest of it: {csv_peak:.0f} MB "
          f"({csv_peak / whole['peak_mb']:.2f} of loading it whole)")


if __name__ == "__main__":
    main()
