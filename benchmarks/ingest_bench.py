#!/usr/bin/env python
"""Ingest benchmark: throughput, 1 -> 2 worker speedup, cost against a bare Parquet write, peak RSS.

The input is built from the real recordings of the sample registry (``nw2 samples list``), in four
formats, one after another:

- ``npz``: MIT-BIH record 208, one ECG lead at 360 Hz (NumPy archive with an ``fs`` scalar);
- ``edf``: PhysioNet EEGMMIDB S001R02, 64 EEG channels at 160 Hz (EDF written with pyedflib);
- ``opensignals``: biosignalsplux 3-axis accelerometer at 1000 Hz (OpenSignals text);
- ``csv``: pyphysio ECG/EDA/BVP/respiration at 2048 Hz (comma-separated with a header row).

Every file must differ in content (work pieces are keyed by the file's checksum), so file ``i`` of a
format holds that recording tiled ``--reps`` times and circularly shifted by an offset of its own:
real signal throughout, one seam per repetition.

Runs, each into a fresh store, all with the preprocessing/window settings of ``corpus_specs/demo.yaml``:

1. ``--files N`` files on a local Dask cluster with 1 worker, then with 2 workers, ``--repeat`` times
   interleaved (the machine is a shared VM: medians are reported, and every run is listed);
2. a bare ``pyarrow.parquet.write_table`` of the windows that run produced (same schema, compression,
   dictionary columns and row-group size as ``WindowStore.write_part``, one file, single-threaded), as the
   floor for writing those bytes;
3. ``--scale`` x N files with 2 workers, to show peak RSS does not grow with the number of files.

Times are wall clock (``time.perf_counter``) around the whole ``ingest()`` call ("total"); the
cluster start and stop are timed separately by wrapping ``Executor.__enter__``/``__exit__`` from this
script (the pipeline is not modified), and "work" is the total without them. CPU seconds of the driver
and of each worker between cluster start and stop show whether the workers were kept busy. Peak RSS is
sampled every 50 ms over the driver and all its child processes (the Dask worker processes) by a
background thread.

Usage::

    .venv/bin/python benchmarks/ingest_bench.py            # default: 24 files, about 3 min on 2 cores
    .venv/bin/python benchmarks/ingest_bench.py --quick    # a small smoke run (~20 s)
    .venv/bin/python benchmarks/ingest_bench.py --files 4 --repeat 1 --scale 1 --profile   # where time goes
"""

from __future__ import annotations

import argparse
import bz2
import io
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

try:
    import psutil
except ImportError:  # a test extra of the package
    sys.exit("ingest_bench needs psutil: pip install psutil (or pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[1]

from nw2.pipeline import executor as executor_mod  # noqa: E402
from nw2.pipeline import samples  # noqa: E402
from nw2.pipeline.ingest import ingest  # noqa: E402
from nw2.pipeline.spec import spec_from_dict  # noqa: E402
from nw2.artifacts.store import ROW_GROUP_SIZE, WindowStore  # noqa: E402

#: (format tag, registry sample, file extension) in the order files cycle through them.
FORMATS = (
    ("npz", "mitbih_208", ".npz"),
    ("edf", "eegmmi_s001r02", ".edf"),
    ("opensignals", "sync_acc", ".txt"),
    ("csv", "pyphysio_medical", ".csv"),
)
#: Dictionary-encoded columns, as ``WindowStore.write_part`` writes them.
DICT_COLUMNS = ["dataset", "subject", "record", "channel", "modality", "unit", "split", "source"]


# ---- input files from the real recordings --------------------------------------------------------

class Recordings:
    """The real recordings, loaded once, and writers that emit shifted/tiled copies of them."""

    def __init__(self) -> None:
        paths = samples.fetch([name for _, name, _ in FORMATS])
        self.npz = np.load(paths["mitbih_208"])["ecg"].astype(np.float64)

        from pyedflib import highlevel
        sigs, headers, header = highlevel.read_edf(str(paths["eegmmi_s001r02"]))
        self.edf = np.stack(sigs, axis=1)  # (samples, 64)
        self.edf_headers = headers
        self.edf_header = {**header, "annotations": []}

        with open(paths["sync_acc"], "rb") as fh:
            self.os_header = b"".join(fh.readline() for _ in range(3))
        os_data = pl.read_csv(paths["sync_acc"], separator="\t", has_header=False, comment_prefix="#")
        os_data = os_data.select([c for c in os_data.columns if os_data[c].null_count() < os_data.height])
        self.os = os_data.to_numpy()  # nSeq, DI, CH1, CH2, CH3

        with bz2.open(paths["pyphysio_medical"], "rb") as fh:  # medical.txt.bz2
            text = fh.read()
        med = pl.read_csv(io.BytesIO(text), separator="\t", has_header=False,
                          new_columns=["ecg", "eda", "bvp", "resp"])
        self.csv = med.to_numpy()

    @staticmethod
    def _copy(x: np.ndarray, reps: int, copy: int) -> np.ndarray:
        n = x.shape[0]
        tiled = np.concatenate([x] * reps, axis=0)
        return np.roll(tiled, -((1 + 37 * copy) % n), axis=0)  # distinct for copy < n / 37

    def write(self, tag: str, path: Path, reps: int, copy: int) -> int:
        """Write copy number ``copy`` of format ``tag``; returns its sample count (all channels)."""
        if tag == "npz":
            x = self._copy(self.npz, reps, copy)
            np.savez(path, ecg=x, fs=np.float64(360.0))
            return x.size
        if tag == "edf":
            from pyedflib import highlevel
            x = self._copy(self.edf, reps, copy)
            highlevel.write_edf(str(path), [np.ascontiguousarray(x[:, j]) for j in range(x.shape[1])], self.edf_headers,
                                self.edf_header)
            return x.size
        if tag == "opensignals":
            x = self._copy(self.os, reps, copy)
            x[:, 0] = np.arange(x.shape[0]) % 16  # nSeq counter stays a counter
            with open(path, "wb") as fh:
                fh.write(self.os_header)
                pl.DataFrame(x.astype(np.int64), schema=["nSeq", "DI", "CH1", "CH2", "CH3"]).write_csv(
                    fh, separator="\t", include_header=False)
            return x.shape[0] * 3
        if tag == "csv":
            x = self._copy(self.csv, reps, copy)
            pl.DataFrame(x, schema=["ecg", "eda", "bvp", "resp"]).write_csv(path, float_precision=3)
            return x.size
        raise ValueError(tag)


def make_inputs(folder: Path, n_files: int, reps: int) -> list[tuple[str, str]]:
    """``n_files`` files under ``folder``; returns ``(format tag, path relative to folder)``."""
    rec = Recordings()
    shortest = min(rec.npz.shape[0], rec.edf.shape[0], rec.os.shape[0], rec.csv.shape[0])
    if (n_files // len(FORMATS) + 1) * 37 >= shortest:
        raise SystemExit(f"at most {shortest // 37 * len(FORMATS)} distinct files can be made")
    files = []
    for i in range(n_files):
        tag, sample, ext = FORMATS[i % len(FORMATS)]
        rel = f"{tag}/{i:04d}_{sample}{ext}"
        (folder / tag).mkdir(parents=True, exist_ok=True)
        rec.write(tag, folder / rel, reps, i // len(FORMATS))
        files.append((tag, rel))
    return files


def make_spec(folder: Path, files: list[tuple[str, str]]):
    """A spec over ``files`` with the preprocessing, window and split settings of the demo corpus."""
    demo = yaml.safe_load((ROOT / "corpus_specs" / "demo.yaml").read_text())
    options = {
        "npz": {"dataset": "bench_mitbih", "format": "numpy", "unit": "mV", "modality": "ecg"},
        "edf": {"dataset": "bench_eegmmi", "format": "edf"},
        "opensignals": {"dataset": "bench_acc", "format": "opensignals", "modality": "acc"},
        "csv": {"dataset": "bench_pyphysio", "format": "csv", "fs": 2048.0, "has_header": True,
                "delimiter": ","},
    }
    sources = []
    for tag, _, _ in FORMATS:
        paths = [rel for t, rel in files if t == tag]
        if paths:
            sources.append({**options[tag], "paths": paths})
    data = {"name": "ingest_bench", "sources": sources,
            **{k: demo[k] for k in ("preprocess", "windows", "split")}}
    return spec_from_dict(data, where="ingest_bench", base_dir=folder)


# ---- measurement ---------------------------------------------------------------------------------

class ClusterTimer:
    """Wraps ``Executor.__enter__``/``__exit__`` to time the cluster's start and stop and learn the
    worker PIDs; the pipeline code itself is untouched."""

    def __init__(self) -> None:
        self.start_s = self.stop_s = 0.0
        self.worker_pids: list[int] = []
        self.cpu_at_start: dict[int, float] = {}
        self.cpu_at_stop: dict[int, float] = {}
        cls = executor_mod.Executor
        self._enter, self._exit = cls.__enter__, cls.__exit__
        timer = self

        def enter(ex):
            t = time.perf_counter()
            out = timer._enter(ex)
            timer.start_s = time.perf_counter() - t
            if ex._client is not None:
                timer.worker_pids = sorted(ex._client.run(os.getpid).values())
            timer.cpu_at_start = timer._cpu()
            return out

        def exit_(ex, *exc):
            timer.cpu_at_stop = timer._cpu()
            t = time.perf_counter()
            out = timer._exit(ex, *exc)
            timer.stop_s = time.perf_counter() - t
            return out

        cls.__enter__, cls.__exit__ = enter, exit_

    def _cpu(self) -> dict[int, float]:
        """CPU seconds (user + system) so far of the driver and each worker process."""
        out = {}
        for pid in [os.getpid(), *self.worker_pids]:
            try:
                out[pid] = sum(psutil.Process(pid).cpu_times()[:2])
            except psutil.Error:
                pass
        return out

    def work_cpu(self) -> dict[int, float]:
        """CPU seconds each process spent between cluster start and cluster stop."""
        return {pid: self.cpu_at_stop.get(pid, 0.0) - t0 for pid, t0 in self.cpu_at_start.items()}

    def reset(self) -> None:
        self.start_s = self.stop_s = 0.0
        self.worker_pids = []
        self.cpu_at_start, self.cpu_at_stop = {}, {}


class RssMonitor:
    """Polls the RSS of this process and all its descendants every ``interval`` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.root = psutil.Process()
        self.peak: dict[int, int] = {}
        self.peak_total = 0
        self.samples = 0
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.interval):
                break

    def poll(self) -> None:
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            return
        total = 0
        for proc in procs:
            proc = self._procs.setdefault(proc.pid, proc)
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), rss)
        self.peak_total = max(self.peak_total, total)
        self.samples += 1

    def __enter__(self) -> "RssMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()


def run_ingest(spec, out: Path, workers: int, timer: ClusterTimer) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    timer.reset()
    with RssMonitor() as mon:
        t = time.perf_counter()
        result = ingest(spec, str(out), scheduler="local", workers=workers, overwrite=True, progress=False,
                        metrics=False)  # the metrics stage has its own benchmark
        total = time.perf_counter() - t
    bad = [e for e in result.manifest if e["status"] != "ingested"]
    if bad:
        raise SystemExit(f"ingest did not ingest everything: {bad[0]['path']}: {bad[0]['status']}: {bad[0]['reason']}")
    workers_rss = {pid: mon.peak.get(pid, 0) for pid in timer.worker_pids}
    others = {pid: rss for pid, rss in mon.peak.items() if pid != mon.root.pid and pid not in workers_rss}
    return {
        "workers": workers, "files": len(result.manifest), "total_s": total,
        "cluster_start_s": timer.start_s, "cluster_stop_s": timer.stop_s,
        "work_s": total - timer.start_s - timer.stop_s,
        "input_samples": sum(e["input_samples"] for e in result.manifest),
        "input_bytes": sum(e["bytes"] for e in result.manifest),
        "pieces": sum(e["pieces"] for e in result.manifest),
        "windows": result.windows,
        "rss_driver": mon.peak.get(mon.root.pid, 0), "rss_workers": workers_rss, "rss_others": others,
        "rss_total_peak": mon.peak_total, "rss_polls": mon.samples,
        # CPU seconds between cluster start and stop: the driver (scheduler, nannies, client, the RSS
        # monitor) and each worker
        "cpu_driver": timer.work_cpu().get(os.getpid(), 0.0),
        "cpu_workers": {pid: timer.work_cpu().get(pid, 0.0) for pid in timer.worker_pids},
    }


def bare_write(store_dir: Path, scratch: Path, repeats: int = 3) -> dict:
    """Time a single-threaded ``pq.write_table`` of the store's rows with ``WindowStore.write_part``'s options."""
    store = WindowStore(str(store_dir))
    parts = store.parts()
    table = pa.concat_tables([store.read_table(p) for p in parts])
    cpu, io_threads = pa.cpu_count(), pa.io_thread_count()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    times = []
    try:
        for i in range(repeats):
            target = scratch / f"bare-{i}.parquet"
            t = time.perf_counter()
            pq.write_table(table, target, row_group_size=ROW_GROUP_SIZE, compression="zstd",
                           use_dictionary=DICT_COLUMNS)
            times.append(time.perf_counter() - t)
            size = target.stat().st_size
            target.unlink()
    finally:
        pa.set_cpu_count(cpu)
        pa.set_io_thread_count(io_threads)
    return {"rows": table.num_rows, "write_s": statistics.median(times), "times": times, "bytes": size,
            "in_memory_bytes": table.nbytes, "parts": len(parts)}


def import_cost() -> tuple[float, float]:
    """Seconds a fresh process (Dask already imported, as in a worker) takes to import scipy.signal and
    scipy.ndimage, then the rest of what a worker's first ingest task imports."""
    import subprocess

    code = ("import time, distributed; t0 = time.perf_counter(); import scipy.signal, scipy.ndimage; "
            "t1 = time.perf_counter(); import pipeline.pieces; from pipeline.readers import reader_for; "
            f"[reader_for(f) for f in {[('numpy' if t == 'npz' else t) for t, _, _ in FORMATS]!r}]; "
            "print(t1 - t0, time.perf_counter() - t1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    scipy_s, rest_s = map(float, out.stdout.split())
    return scipy_s, rest_s


def profile_sync(spec, out: Path, top: int) -> None:
    """cProfile of an in-process (``sync``) ingest: where one worker's time goes."""
    import cProfile
    import pstats

    shutil.rmtree(out, ignore_errors=True)
    prof = cProfile.Profile()
    prof.enable()
    ingest(spec, str(out), scheduler="sync", overwrite=True, progress=False, metrics=False)
    prof.disable()
    stats = pstats.Stats(prof).strip_dirs()
    print(f"\n-- cProfile of a sync ingest (top {top} by own time) --")
    stats.sort_stats("tottime").print_stats(top)
    print(f"-- top {top} by cumulative time --")
    stats.sort_stats("cumulative").print_stats(top)


# ---- report --------------------------------------------------------------------------------------

def mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def _name(r: dict) -> str:
    return f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}, {r['files']} files"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=None, help="input files of the speedup runs (default 24; --quick 8)")
    ap.add_argument("--reps", type=int, default=None,
                    help="each file holds its recording tiled this many times (default 4; --quick 1)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="1-worker/2-worker run pairs, interleaved; medians are reported (default 3; --quick 1)")
    ap.add_argument("--scale", type=int, default=None,
                    help="the RSS run uses scale x --files files (default 4; --quick 2)")
    ap.add_argument("--quick", action="store_true", help="a small smoke run (8 files, no tiling, no repeats)")
    ap.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile an in-process ingest of one file per format")
    ap.add_argument("--no-malloc-trim", action="store_true",
                    help="experiment: start Dask workers without MALLOC_TRIM_THRESHOLD_=65536, which "
                         "distributed's nanny sets by default (distributed.nanny.pre-spawn-environ)")
    args = ap.parse_args(argv)
    files_n = args.files if args.files is not None else (8 if args.quick else 24)
    reps = args.reps if args.reps is not None else (1 if args.quick else 4)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    scale = args.scale if args.scale is not None else (2 if args.quick else 4)
    if min(files_n, reps, repeat, scale) < 1:
        ap.error("--files, --reps, --repeat and --scale must be >= 1")
    command = " ".join(shlex.quote(a) for a in [sys.executable, *(sys.argv if argv is None else ["ingest_bench.py", *argv])])

    scratch = args.out or Path(tempfile.mkdtemp(prefix="nw2-ingest-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    import dask
    import distributed  # the driver's import of Dask is not what the runs measure

    if args.no_malloc_trim:
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ})
    print(f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.1f} GiB RAM, "
          f"{platform.platform()}, {platform.processor() or platform.machine()}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, pyarrow {pa.__version__}, "
          f"polars {pl.__version__}, dask {dask.__version__}, distributed {distributed.__version__}")
    print(f"worker environment: {dask.config.get('distributed.nanny.pre-spawn-environ')}")
    timer = ClusterTimer()
    t_all = time.perf_counter()
    try:
        n_big = files_n * scale
        t = time.perf_counter()
        inputs = scratch / "inputs"
        shutil.rmtree(inputs, ignore_errors=True)
        files = make_inputs(inputs, n_big, reps)
        size = sum(p.stat().st_size for p in inputs.rglob("*") if p.is_file())
        print(f"inputs: {n_big} files, {size / 2**20:,.0f} MiB ({reps}x tiled real recordings), written in "
              f"{time.perf_counter() - t:.1f} s under {inputs}")
        spec_n = make_spec(inputs, files[:files_n])
        spec_big = make_spec(inputs, files)

        plan = [(w, spec_n) for _ in range(repeat) for w in (1, 2)] + [(2, spec_big)]
        runs = []
        for workers, spec in plan:
            n = sum(len(src.paths) for src in spec.sources)
            print(f"ingest, {workers} worker{'s' if workers > 1 else ''}, {n} files ...", end=" ", flush=True)
            run = run_ingest(spec, scratch / f"store-{len(runs)}", workers, timer)
            run["store"] = scratch / f"store-{len(runs)}"
            print(f"{run['total_s']:.1f} s ({run['work_s']:.1f} s without cluster start/stop), "
                  f"{run['windows']} windows", flush=True)
            runs.append(run)
            if len(runs) < len(plan) and run["store"] != scratch / "store-1":
                shutil.rmtree(run["store"], ignore_errors=True)  # keep the disk tidy; store-1 feeds the bare write
        ones = [r for r in runs[:-1] if r["workers"] == 1]
        twos = [r for r in runs[:-1] if r["workers"] == 2]
        big = runs[-1]
        if len({r["windows"] for r in runs[:-1]}) != 1:
            print(f"WARNING: runs over the same files made different window counts: {[r['windows'] for r in runs[:-1]]}")

        print("bare pyarrow write of the same windows ...", flush=True)
        bare = bare_write(scratch / "store-1", scratch)
        if bare["rows"] != twos[0]["windows"]:
            print(f"WARNING: store holds {bare['rows']} rows, manifest says {twos[0]['windows']} windows")

        if args.profile:
            per_format = [next(f for f in files[:files_n] if f[0] == tag) for tag, _, _ in FORMATS
                          if any(f[0] == tag for f in files[:files_n])]
            profile_sync(make_spec(inputs, per_format), scratch / "store-profile", 30)
    finally:
        if not args.keep and args.out is None:
            shutil.rmtree(scratch, ignore_errors=True)
    scipy_s, rest_s = import_cost()
    elapsed = time.perf_counter() - t_all

    def med(rs: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rs)

    # ---- tables ----
    print("\n== Ingest throughput (local Dask cluster, one single-threaded worker process per worker) ==")
    print(f"{'run':<24}{'pieces':>7}{'in samples':>13}{'windows':>9}{'total s':>9}{'start s':>8}{'stop s':>7}"
          f"{'work s':>8}{'Msamp/s':>9}{'win/s':>7}{'Msamp/s work':>13}{'win/s work':>11}")
    for r in [*ones, *twos, big]:
        print(f"{_name(r):<24}{r['pieces']:>7}{r['input_samples']:>13,}{r['windows']:>9,}"
              f"{r['total_s']:>9.2f}{r['cluster_start_s']:>8.2f}{r['cluster_stop_s']:>7.2f}{r['work_s']:>8.2f}"
              f"{r['input_samples'] / r['total_s'] / 1e6:>9.2f}{r['windows'] / r['total_s']:>7.0f}"
              f"{r['input_samples'] / r['work_s'] / 1e6:>13.2f}{r['windows'] / r['work_s']:>11.0f}")
    one_total, one_work = med(ones, "total_s"), med(ones, "work_s")
    two_total, two_work = med(twos, "total_s"), med(twos, "work_s")
    samples_n, windows_n = ones[0]["input_samples"], ones[0]["windows"]
    print(f"\nmedian of {repeat}: 1 worker {one_total:.2f} s total / {one_work:.2f} s work "
          f"({samples_n / one_total / 1e6:.2f} / {samples_n / one_work / 1e6:.2f} Msamples/s, "
          f"{windows_n / one_total:.0f} / {windows_n / one_work:.0f} windows/s); 2 workers {two_total:.2f} s total / "
          f"{two_work:.2f} s work ({samples_n / two_total / 1e6:.2f} / {samples_n / two_work / 1e6:.2f} Msamples/s, "
          f"{windows_n / two_total:.0f} / {windows_n / two_work:.0f} windows/s)")

    print("\nCPU seconds (user + system) between cluster start and stop:")
    for r in [*ones, *twos, big]:
        busy = " + ".join(f"{v:.1f}" for v in r["cpu_workers"].values())
        util = sum(r["cpu_workers"].values()) / (r["workers"] * r["work_s"])
        print(f"  {_name(r):<24} driver {r['cpu_driver']:5.1f} s, workers {busy} s "
              f"(worker CPU / (workers x work s) = {util:.0%})")

    sp_total = [a["total_s"] / b["total_s"] for a, b in zip(ones, twos)]
    sp_work = [a["work_s"] / b["work_s"] for a, b in zip(ones, twos)]
    sp_t, sp_w = one_total / two_total, one_work / two_work
    print(f"\nspeedup 2 workers / 1 worker, {files_n} files (ratio of medians; per pair "
          f"{', '.join(f'{x:.2f}' for x in sp_total)} total, {', '.join(f'{x:.2f}' for x in sp_work)} work):")
    print(f"  total (cluster start/stop included): {sp_t:.2f}x   target >= 1.7x: {'met' if sp_t >= 1.7 else 'MISSED'}")
    print(f"  work (cluster start/stop excluded):  {sp_w:.2f}x   target >= 1.7x: {'met' if sp_w >= 1.7 else 'MISSED'}")
    print(f"  {big['files']} files, 2 workers vs {files_n} files x {scale}, 1 worker: "
          f"{scale * one_work / big['work_s']:.2f}x work")
    print(f"  fixed costs per run that 2 workers do not halve: cluster start + stop "
          f"{med(ones, 'cluster_start_s') + med(ones, 'cluster_stop_s'):.2f} s (1 worker) / "
          f"{med(twos, 'cluster_start_s') + med(twos, 'cluster_stop_s'):.2f} s (2 workers); each fresh worker's "
          f"first task imports scipy.signal/ndimage ({scipy_s:.2f} s) and the pipeline and readers "
          f"({rest_s:.2f} s more), timed in a fresh process")

    print(f"\n== Bare pyarrow write of the same {bare['rows']:,} windows (one file, zstd, "
          f"row groups of {ROW_GROUP_SIZE}, single-threaded) ==")
    print(f"write_table: {bare['write_s']:.3f} s (median of {', '.join(f'{t:.3f}' for t in bare['times'])}), "
          f"{bare['rows'] / bare['write_s']:,.0f} windows/s, {mib(bare['in_memory_bytes'])} MiB in memory -> "
          f"{mib(bare['bytes'])} MiB on disk")
    for workers, total, work in ((1, one_total, one_work), (2, two_total, two_work)):
        for t, what in ((total, "total"), (work, "work ")):
            ratio = bare["write_s"] / t
            print(f"  bare_time / ingest_time, {workers} worker{'s' if workers > 1 else ' '}, {what}: {ratio:.4f} "
                  f"(ingest takes {1 / ratio:.0f}x the bare write; target >= 0.333: {'met' if ratio >= 1 / 3 else 'MISSED'})")

    print("\n== Peak RSS (MiB), polled every 50 ms over the driver and its child processes ==")
    print(f"{'run':<24}{'driver':>8}{'workers (each)':>16}{'worker max':>11}{'others':>8}"
          f"{'sum of peaks':>13}{'peak of sum':>12}")
    for r in [*ones, *twos, big]:
        each = " ".join(mib(v) for v in r["rss_workers"].values())
        wmax = max(r["rss_workers"].values(), default=0)
        others = sum(r["rss_others"].values())
        summed = r["rss_driver"] + sum(r["rss_workers"].values()) + others
        print(f"{_name(r):<24}{mib(r['rss_driver']):>8}{each:>16}{mib(wmax):>11}{mib(others):>8}"
              f"{mib(summed):>13}{mib(r['rss_total_peak']):>12}")
    w_small = max(max(r["rss_workers"].values(), default=0) for r in twos)
    w_big = max(big["rss_workers"].values(), default=0)
    d_small = max(r["rss_driver"] for r in twos)
    t_small = max(r["rss_total_peak"] for r in twos)
    print(f"\npeak RSS, {big['files']} vs {files_n} files (2 workers; the larger of the {files_n}-file runs): "
          f"worker max {w_big / w_small:.2f}x, driver {big['rss_driver'] / d_small:.2f}x, "
          f"whole tree {big['rss_total_peak'] / t_small:.2f}x (input grew {big['input_samples'] / samples_n:.1f}x)")
    print(f"\nbenchmark wall time: {elapsed:.0f} s")
    print(f"command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
