#!/usr/bin/env python
"""Metrics benchmark: nw2's Numba engine against nolds/antropy on the same windows, in one run.

Windows: real recordings from the sample registry (as ``nw2 ingest`` stores them: 100 Hz, linear
trend removed, z-scored) and synthetic systems (logistic map, Henon map, Lorenz flow, white and pink
noise), at 1024 and 4096 samples. Every figure is a median over windows (and ``--repeat`` timings of
each), after one warm-up call, so Numba's compilation and nolds' imports are not timed.

Sections:

1. per metric and for the whole suite: seconds per window for nw2 and for the reference engine
   (``pipeline.metrics.reference``: nolds or antropy with the same parameters), and their ratio;
2. scaling of the O(n^2) metrics (Lyapunov exponent, correlation dimension, sample entropy, and the
   shared neighbour pass of the first two) at 1024, 2048, 4096 and 8192 samples;
3. peak RSS of a fresh process that runs the whole suite on an 8192-sample window;
4. time from interpreter start to the first result in a fresh process (kernels cached on disk);
5. ``nw2 metrics`` over a store of real recordings, windows per second with 1 and 2 Dask workers.

Usage::

    .venv/bin/python benchmarks/metrics_bench.py           # the figures in docs/performance.md
    .venv/bin/python benchmarks/metrics_bench.py --quick   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from nw2.pipeline import samples  # noqa: E402
from nw2.pipeline.metrics import reference, suite, systems  # noqa: E402
from nw2.pipeline.metrics.dynamics import lyapunov_and_dimension  # noqa: E402

#: Real recordings at least 4096 samples long at 100 Hz: (sample, channel, start s).
REAL = [("mitbih_208", 0, 10.0), ("eegmmi_s001r02", 0, 5.0), ("resp_opensignals", 0, 5.0),
        ("daphnet_s06r02", 0, 20.0), ("heartpy_ppg_long", 0, 60.0)]
#: Which package the reference engine uses per metric (for the table).
PACKAGE = {"largest_lyapunov": "nolds", "correlation_dimension": "nolds", "hurst_rs": "nolds", "dfa": "nolds",
           "chaos_01": "numpy"}
N2_METRICS = ("largest_lyapunov", "correlation_dimension", "sample_entropy")


def windows(n: int, n_real: int) -> list[tuple[str, np.ndarray]]:
    out = [(f"{name}[{ch}]", samples.sample_window(name, ch, t0, n)) for name, ch, t0 in REAL[:n_real]]
    out += [("logistic", systems.logistic(n)), ("henon", systems.henon(n)), ("lorenz", systems.lorenz(n)),
            ("white", systems.white_noise(n)), ("pink", systems.pink_noise(n))]
    return out


def per_window(fn, items, repeat: int) -> float:
    """Median over the windows of the seconds one ``fn(x)`` takes: each window is timed ``repeat``
    times, each timing a loop long enough (>= 20 ms) that microsecond metrics are measured as well
    as slow ones, and the best timing is kept. Both engines are timed the same way."""
    fn(items[0][1])  # warm-up: compilation, imports, caches
    return statistics.median(min(_timed(fn, x) for _ in range(repeat)) for _, x in items)


def _timed(fn, x, budget: float = 0.02) -> float:
    calls, elapsed = 0, 0.0
    t = time.perf_counter()
    while elapsed < budget:
        fn(x)
        calls += 1
        elapsed = time.perf_counter() - t
    return elapsed / calls


def section_speed(sizes, n_real, repeat, ref_windows) -> None:
    print("\n== 1. Seconds per window: nw2 (Numba) against the reference engine, same parameters ==")
    fs = 100.0
    for n in sizes:
        items = windows(n, n_real)
        ref_items = items[:ref_windows] if ref_windows else items
        items = ref_items  # both engines on the same windows, so the ratio compares like with like
        print(f"\n-- {n} samples, {len(items)} windows: {', '.join(k for k, _ in items)} --")
        print(f"{'metric':<24}{'reference':>10}{'nw2 ms':>10}{'ref ms':>11}{'ref/nw2':>9}")
        total_nw2 = total_ref = 0.0
        for name in suite.METRICS:
            params = suite.resolved_params([name], None)[name]
            ours = per_window(lambda x: suite.METRICS[name](x, fs, **params), items, repeat)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = per_window(lambda x: reference.REFERENCE[name](x, fs, **params), ref_items, repeat)
            total_nw2 += ours
            total_ref += theirs
            print(f"{name:<24}{PACKAGE.get(name, 'antropy'):>10}{ours * 1e3:>10.3f}{theirs * 1e3:>11.3f}"
                  f"{theirs / ours:>9.1f}")
        whole = per_window(lambda x: suite.measure(x, fs), items, repeat)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            whole_ref = per_window(lambda x: reference.measure(x, fs), ref_items, repeat)
        print(f"{'whole suite (measure)':<24}{'':>10}{whole * 1e3:>10.3f}{whole_ref * 1e3:>11.3f}"
              f"{whole_ref / whole:>9.1f}   (sum of the rows above: nw2 {total_nw2 * 1e3:.3f}, "
              f"reference {total_ref * 1e3:.3f} ms)")


def section_scaling(sizes, repeat) -> None:
    print("\n== 2. Scaling of the O(n^2) metrics (Lorenz x, fs = 100) ==")
    fs = 100.0
    fns = {name: (lambda name: lambda x: suite.METRICS[name](x, fs))(name) for name in N2_METRICS}
    fns["lyapunov_and_dimension"] = lambda x: lyapunov_and_dimension(x, fs)
    print(f"{'metric':<24}" + "".join(f"{n:>10}" for n in sizes) + "   ratios t(2n)/t(n) (4.0 = n^2)")
    for name, fn in fns.items():
        ts = [per_window(fn, [("lorenz", systems.lorenz(n))], repeat) for n in sizes]
        ratios = ", ".join(f"{b / a:.2f}" for a, b in zip(ts, ts[1:]))
        print(f"{name:<24}" + "".join(f"{t * 1e3:>8.1f}ms" for t in ts) + f"   {ratios}")


_CHILD = """
import sys, time
t0 = time.perf_counter()

def hwm():  # peak RSS of this process in MiB; unlike ru_maxrss, it does not inherit the parent's
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

import numpy as np
from nw2.pipeline.metrics import compute_all
t1 = time.perf_counter()
x = np.random.default_rng(0).standard_normal({n}) if {white} else np.load({path!r})
base = hwm()
t2 = time.perf_counter()
values = compute_all(x, 100.0)
t3 = time.perf_counter()
print(base, hwm(), t1 - t0, t3 - t2, t3 - t0 - (t2 - t1))
"""


def _child(n: int, path: str = "") -> tuple[float, ...]:
    """``(rss after imports and the window, peak rss, import s, compute_all s, import + compute s,
    wall s)`` of a fresh interpreter; the window is white noise, or a Lorenz window from ``path``."""
    t = time.perf_counter()
    code = _CHILD.format(n=n, white=not path, path=path)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    wall = time.perf_counter() - t
    return (*map(float, done.stdout.split()), wall)


def section_memory_and_start() -> None:
    print("\n== 3. Peak RSS of a fresh process running the whole suite on one Lorenz window ==")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1024, 8192):
            path = str(Path(tmp) / f"lorenz-{n}.npy")
            np.save(path, systems.lorenz(n))
            base, peak, *_ = _child(n, path)
            print(f"{n:>5} samples: {peak:.0f} MiB peak (after imports and loading the window: {base:.0f} MiB; "
                  f"the suite added {peak - base:.1f} MiB)")
    print("\n== 4. A fresh process to its first result (kernels compiled on an earlier run, cached on disk) ==")
    for i in range(1, 4):
        _, _, imports, first, to_result, wall = _child(1024)
        print(f"run {i}: {to_result:.2f} s from the first line of the script to the first result "
              f"({imports:.2f} s imports, {first * 1e3:.1f} ms for compute_all on 1024 samples); "
              f"{wall:.2f} s wall for the whole process, interpreter start and exit included")


def section_stage() -> None:
    print("\n== 5. nw2 metrics over a store of real recordings (all metrics, local Dask cluster) ==")
    from nw2.pipeline.executor import executor
    from nw2.pipeline.ingest import ingest
    from nw2.pipeline.metrics.stage import MetricsPlan, run_metrics
    from nw2.pipeline.spec import spec_from_dict

    scratch = Path(tempfile.mkdtemp(prefix="nw2-metrics-bench-"))
    try:
        # Small pieces, so the store has enough parts for two workers to share.
        spec = spec_from_dict({"name": "bench", "sources": [
            {"dataset": "mitbih", "sample": "mitbih_208"}, {"dataset": "eegmmi", "sample": "eegmmi_s001r02"},
            {"dataset": "heartpy", "sample": "heartpy_ppg_long"}],
            "windows": {"length": 1024, "stride": 512}, "max_piece_samples": 100_000})
        base = scratch / "store"
        ingest(spec, str(base), scheduler="sync", progress=False, metrics=False)
        plan = MetricsPlan.build()
        runs = {}
        for workers in (1, 2, 1, 2):  # interleaved, medians reported
            store = scratch / f"store-{len(runs)}"
            shutil.copytree(base, store)
            t = time.perf_counter()
            with executor("local", workers, progress=False) as ex:
                t_work = time.perf_counter()
                result = run_metrics(str(store), plan, ex)
                work = time.perf_counter() - t_work
            total = time.perf_counter() - t
            runs.setdefault(workers, []).append((total, work, result.rows, len(result.parts)))
            shutil.rmtree(store)
        for workers, got in runs.items():
            total = statistics.median(g[0] for g in got)
            work = statistics.median(g[1] for g in got)
            rows, parts = got[0][2], got[0][3]
            print(f"{workers} worker{'s' if workers > 1 else ' '}: {rows} windows in {parts} parts; median of "
                  f"{len(got)}: {total:.1f} s with cluster start/stop ({rows / total:.0f} windows/s), "
                  f"{work:.1f} s without ({rows / work:.0f} windows/s)")
        one, two = (statistics.median(g[1] for g in runs[w]) for w in (1, 2))
        print(f"speedup 2 workers / 1 worker without cluster start/stop: {one / two:.2f}x")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1024 samples only, fewer windows, no store run")
    ap.add_argument("--repeat", type=int, default=3, help="timings per window, best kept (default 3)")
    args = ap.parse_args(argv)
    command = " ".join(shlex.quote(a) for a in [sys.executable, *(sys.argv if argv is None else ["metrics_bench.py", *argv])])
    import numba

    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {numba.__version__}")
    t = time.perf_counter()
    if args.quick:
        section_speed([1024], 2, 1, 3)
        section_scaling([1024, 2048], 1)
        section_memory_and_start()
    else:
        section_speed([1024, 4096], len(REAL), args.repeat, None)
        section_scaling([1024, 2048, 4096, 8192], args.repeat)
        section_memory_and_start()
        section_stage()
    print(f"\n{time.perf_counter() - t:.0f} s in all; command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
