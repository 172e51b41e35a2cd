"""Faults survived (issue 16): a ``kill -9`` of the whole process group mid-stage, a Dask worker killed mid-ingest,
a full disk (``RLIMIT_FSIZE``: a write past it fails with ``EFBIG``, as on a full disk), and an interrupted
``nw2 experiment``. After each, the same command (without the fault) finishes with the bytes of an uninterrupted
run, and nothing of the faulted run is left beside or inside the artifact. ``tests/test_train.py`` holds the killed
``nw2 pretrain``."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from helpers import DEMO, SMALL, artifact_digests, ok, tree_bytes

#: Forty small pieces: an ingest that takes seconds, long enough on two workers to be cut in the middle.
SPEC = {"name": "faults", "sources": [{"kind": "synthetic", "generator": "dysts", "systems": [], "windows": 2,
                                       "sweeps": {"Logistic": {"r": [3.5, 4.0], "steps": 40}}, "chunk": 4}],
        "preprocess": {"target_fs": 100}, "windows": {"length": 256, "stride": 256}, "metrics": {"enabled": False}}
PIECES = 40
METRICS = ["--metrics", "sample_entropy,dfa"]
BALANCE = ["--fraction", "0.5"]
#: A run's files that hold wall times as a whole: TensorBoard's (named by host and time), and the digests of its
#: checkpoints (which record the seconds each step took; ``artifact_digests`` compares them without).
TIMED = ("tensorboard/*", "checkpoints/*.sha256")
#: A small model trained for a few steps, and a small evaluation of it.
EVALUATE = ["--max-windows", "24", "--horizons", "32", "--bootstrap", "50", "--no-trained-baselines", "--no-progress"]


#: ``nw2 ARGS`` that, just before it renames a directory named like ``PATTERN`` (a glob) into place, touches
#: ``PAUSED`` and sleeps: a corpus or report written whole under its temporary name and not yet published, the
#: instant to kill it at whatever the machine's speed (the write takes a fraction of a second). It hooks the rename
#: only and changes nothing the stage computes. ``python -c HOLDING PATTERN PAUSED ARGS...``.
HOLDING = textwrap.dedent("""
    import fnmatch, os, sys, time
    from pathlib import Path
    pattern, paused = sys.argv[1], Path(sys.argv[2])
    rename = os.rename

    def held(src, dst, *args, **kwargs):
        if fnmatch.fnmatch(os.path.basename(src), pattern):
            paused.write_text(str(src))
            time.sleep(600)
        return rename(src, dst, *args, **kwargs)

    os.rename = held
    from nw2.cli import main
    sys.argv = ["nw2", *sys.argv[3:]]
    main()
""")


def _started(args, cwd: Path, fsize: int | None = None, hold: tuple[str, Path] | None = None) -> subprocess.Popen:
    """``nw2 ARGS`` in a session of its own (so ``killpg`` reaches it and its workers, not pytest), its stderr in a
    file (a pipe nobody reads would stall it); ``fsize``: the largest file it may write (``RLIMIT_FSIZE``);
    ``hold``: ``(PATTERN, PAUSED)`` of :data:`HOLDING`."""
    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    err = tempfile.TemporaryFile("w+")
    how = ["-c", HOLDING, hold[0], str(hold[1])] if hold else ["-m", "nw2.cli"]
    proc = subprocess.Popen([sys.executable, *how, *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=err, start_new_session=True, preexec_fn=limit)
    proc.err = err  # type: ignore[attr-defined]
    return proc


def _stderr(proc: subprocess.Popen) -> str:
    proc.err.seek(0)  # type: ignore[attr-defined]
    return proc.err.read()  # type: ignore[attr-defined]


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the fault: " + _stderr(proc)[-3000:]
        assert time.monotonic() < deadline, "no progress to cut"
        time.sleep(0.02)


def _killed_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    """``kill -9`` of the process's whole group (driver, Dask workers, torch's loader processes) once ``ready()``;
    returns when none of them is left."""
    try:
        _wait_for(proc, ready, timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it ended before: the assertion above says how
            pass
        proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert proc.returncode == -signal.SIGKILL


def _finished(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, list[str]]:
    """Exit status and stderr lines (blank ones dropped) of a run left to end."""
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, [ln for ln in _stderr(proc).splitlines() if ln.strip()]


def _markers(store: Path) -> int:
    return len(list((store / "_progress").glob("*.json")))


def _hidden(folder: Path) -> list[str]:
    """The hidden entries of ``folder`` (temporaries, locks), sorted."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


def _killed_publishing(args, out: Path, tmp: Path) -> None:
    """``nw2 ARGS`` killed with SIGKILL when its corpus or report ``out`` is written whole in its temporary folder
    beside ``out``, just before that folder is renamed into place."""
    paused = tmp / "paused"
    proc = _started(args, tmp, hold=(f".{out.name}.tmp-*", paused))
    _killed_when(proc, paused.exists)
    paused.unlink()


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "faults.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.fixture(scope="module")
def whole(spec) -> Path:
    """The spec ingested without a fault (one process): the bytes every faulted ingest must end with."""
    out = spec.parent / "whole"
    ok("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress")
    assert _markers(out) == PIECES
    return out


@pytest.fixture(scope="module")
def whole_metrics(whole) -> Path:
    """``whole`` with the metrics computed without a fault."""
    out = Path(shutil.copytree(whole, whole.parent / "whole-metrics"))
    ok("metrics", out, *METRICS, "--scheduler", "sync", "--no-progress")
    return out


# -- kill -9 ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_an_ingest_killed_with_sigkill_finishes_on_rerun_with_the_bytes_of_an_uninterrupted_run(spec, whole,
                                                                                                 tmp_path):
    cut = tmp_path / "cut"
    proc = _started(["ingest", spec, "--out", cut, "--workers", "2", "--no-progress"], tmp_path)
    _killed_when(proc, lambda: _markers(cut) >= 5)
    assert not (cut / "manifest.json").exists() and _markers(cut) < PIECES  # killed in the middle
    ok("ingest", spec, "--out", cut, "--scheduler", "sync", "--no-progress")
    assert tree_bytes(cut) == tree_bytes(whole)
    assert _hidden(tmp_path) == []  # the killed run's lock file went with the rerun's


@pytest.mark.slow
def test_a_metrics_run_killed_with_sigkill_finishes_on_rerun_with_the_bytes_of_an_uninterrupted_run(
        whole, whole_metrics, tmp_path):
    import pyarrow.parquet as pq

    cut = Path(shutil.copytree(whole, tmp_path / "cut"))

    def rewritten() -> bool:  # some part holds the metric columns, and not every part yet
        held = ["dfa" in pq.read_schema(p).names for p in (cut / "data").glob("part-*.parquet")]
        return any(held) and not all(held)

    proc = _started(["metrics", cut, *METRICS, "--workers", "2", "--no-progress"], tmp_path)
    _killed_when(proc, rewritten)
    assert not (cut / "metrics.json").exists()
    ok("metrics", cut, *METRICS, "--scheduler", "sync", "--no-progress")
    assert tree_bytes(cut) == tree_bytes(whole_metrics)


@pytest.fixture(scope="module")
def balanced(demo_store, tmp_path_factory) -> Path:
    """The demo store balanced without a fault (``BALANCE``)."""
    out = tmp_path_factory.mktemp("faults-corpus") / "C"
    ok("balance", demo_store, "--out", out, *BALANCE)
    return out


def test_a_balance_killed_with_sigkill_leaves_a_temporary_folder_that_its_rerun_sweeps(demo_store, balanced,
                                                                                        tmp_path):
    out = tmp_path / "C"
    args = ["balance", demo_store, "--out", out, *BALANCE]
    _killed_publishing(args, out, tmp_path)
    left = _hidden(tmp_path)
    assert not out.exists() and any(n.startswith(".C.tmp-") for n in left), left  # kill -9 cannot clean up
    ok(*args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C"]  # no temporary folder, no lock
    assert tree_bytes(out) == tree_bytes(balanced)


@pytest.fixture(scope="module")
def trained(demo_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("faults-run") / "run"
    ok("pretrain", demo_corpus, "--out", run, *SMALL, "--epochs", "1")
    return run


@pytest.mark.slow
def test_an_evaluation_killed_with_sigkill_leaves_a_temporary_folder_that_its_rerun_sweeps(trained, demo_store,
                                                                                           tmp_path):
    out, first = tmp_path / "E", tmp_path / "first" / "E"
    ok("evaluate", trained, "--data", demo_store, "--out", first, *EVALUATE)
    args = ["evaluate", trained, "--data", demo_store, "--out", out, *EVALUATE]
    _killed_publishing(args, out, tmp_path)
    assert not out.exists() and any(n.startswith(".E.tmp-") for n in _hidden(tmp_path))
    ok(*args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["E", "first"]  # no temporary folder, no lock
    assert artifact_digests(out, skip=("speed.json",)) == artifact_digests(first, skip=("speed.json",))


#: The experiment's settings: two arms, two seeds, a few steps each.
EXPERIMENT = {"arms": [{"name": "grid", "strategy": "grid", "size": 100},
                       {"name": "random", "strategy": "random", "size": 200}],
              "seeds": [0, 1], "steps": 6, "model": {"window_size": 256, "patch_size": 32, "embed_dim": 32, "depth": 1,
                                                   "num_heads": 2, "decoder_embed_dim": 16, "decoder_num_heads": 2,
                                                   "nvar": 4, "rollout_steps": 2},
              "train": {"batch_size": 16, "blr": 0.01, "save_every_steps": 2}, "eval_split": "test",
              "horizons": [32], "max_windows": 24, "bootstrap": 100}


@pytest.fixture(scope="module")
def experiment(demo_store, tmp_path_factory) -> tuple[Path, Path]:
    """The experiment's spec, and the experiment run once without a fault (its output), written to ``out`` beside
    the spec and moved to ``whole``: a run records the path of its corpus, so the faulted one is run in ``out``."""
    tmp = tmp_path_factory.mktemp("faults-experiment")
    data = yaml.safe_load(DEMO.read_text())
    data["experiment"] = EXPERIMENT
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    ok("experiment", spec, "--store", demo_store, "--out", tmp / "out", "--no-progress")
    os.rename(tmp / "out", tmp / "whole")
    return spec, tmp / "whole"


def _experiment_digests(out: Path) -> dict[str, str]:
    # beside each step's output, the wall time it took (read into experiment.json's and report.md's wall times)
    return artifact_digests(out, skip=("runs/*/tensorboard/*", "runs/*/checkpoints/*.sha256", "evals/*/speed.json", "report.md", "*/.*.experiment-seconds.json"))


@pytest.mark.slow
def test_an_experiment_killed_with_sigkill_finishes_on_rerun_with_the_bytes_of_an_uninterrupted_run(
        experiment, demo_store, tmp_path):
    spec, whole = experiment
    out = whole.parent / "out"
    args = ["experiment", spec, "--store", demo_store, "--out", out, "--no-progress"]
    # in the middle of the second run's training, after its first checkpoint
    proc = _started(args, tmp_path)
    _killed_when(proc, lambda: any((out / "runs" / "random-seed0" / "checkpoints").glob("ckpt-*.pt")))
    assert not (out / "experiment.json").exists()
    ok(*args)
    assert _experiment_digests(out) == _experiment_digests(whole)
    report = [ln for ln in (out / "report.md").read_text().splitlines() if "Wall time" not in ln]
    assert report == [ln for ln in (whole / "report.md").read_text().splitlines() if "Wall time" not in ln]
    assert not [p for p in out.rglob(".*") if ".tmp" in p.name]  # no temporary of the killed run left


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_an_interrupted_experiment_says_in_one_line_what_it_kept_and_how_to_continue(demo_store, tmp_path, sig):
    data = yaml.safe_load(DEMO.read_text())
    data["experiment"] = EXPERIMENT
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    proc = _started(["experiment", spec, "--store", demo_store, "--out", out, "--no-progress"], tmp_path)
    _wait_for(proc, lambda: (out / "runs" / "grid-seed0" / "run.json").exists())  # the first corpus is drawn
    os.killpg(proc.pid, sig)
    rc, lines = _finished(proc, timeout=120)
    assert rc == 130, lines
    last = (f"interrupted: {out} keeps 1 corpora, 0 finished runs and 0 evaluations (each whole; a run cut short "
            f"resumes from its last checkpoint); continue with: nw2 experiment {spec} --out {out} --store {demo_store}")
    assert lines[-1] == last, lines
    assert all("Traceback" not in ln and "KeyboardInterrupt" not in ln for ln in lines), lines


# -- a Dask worker killed ----------------------------------------------------------------------------------------
def _workers(driver: int) -> list:
    """The local cluster's worker processes: the driver's children that multiprocessing spawned."""
    import psutil

    found = []
    for child in psutil.Process(driver).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_a_dask_worker_killed_mid_ingest_is_retried_and_the_store_is_an_uninterrupted_runs(spec, whole, tmp_path):
    out = tmp_path / "S"
    proc = _started(["ingest", spec, "--out", out, "--workers", "2", "--no-progress"], tmp_path)
    _wait_for(proc, lambda: _markers(out) >= 3 and len(_workers(proc.pid)) == 2)
    victim = _workers(proc.pid)[0]
    victim.send_signal(signal.SIGKILL)
    done_then = _markers(out)
    victim.wait(timeout=30)
    rc, lines = _finished(proc)
    assert rc == 0, lines
    assert done_then < PIECES  # pieces were still running when it died
    assert tree_bytes(out) == tree_bytes(whole)


# -- a full disk -------------------------------------------------------------------------------------------------
#: Larger than a store's or corpus's metadata files and a run's log, smaller than a part or a checkpoint.
LIMIT = 8 * 1024


def _no_half_written_file(root: Path) -> None:
    """Every visible part reads whole (its page checksums verified) and every checkpoint loads; no temporary file
    of a write is left."""
    import torch

    from nw2.core.parquet import read_checked

    for part in root.rglob("*.parquet"):
        read_checked(part)
    for ckpt in root.rglob("*.pt"):
        torch.load(ckpt, map_location="cpu", weights_only=False)
    assert not [p for p in root.rglob("*") if p.name.endswith((".partial", ".tmp"))]


def _refused_for_space(proc: subprocess.Popen, named: str) -> str:
    rc, lines = _finished(proc)
    assert rc == 1 and [ln for ln in lines if ln.startswith("error: ")] == lines[-1:], lines  # the last line
    assert not [ln for ln in lines if "Traceback" in ln or "Error" in ln], lines  # nothing raw before it
    lines = lines[-1:]
    assert lines[0].startswith(f"error: {named}") and "cannot write" in lines[0], lines
    assert "(File too large); make room on that disk" in lines[0], lines
    return lines[0]


def test_a_full_disk_stops_ingest_in_one_line_and_the_rerun_finishes_it(spec, whole, tmp_path):
    out = tmp_path / "S"
    proc = _started(["ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress"], tmp_path, fsize=LIMIT)
    line = _refused_for_space(proc, f"{out}/data/part-")
    assert line.endswith("then rerun the same command: what was finished is kept")
    _no_half_written_file(out)
    assert not (out / "manifest.json").exists()  # unfinished: later stages refuse it
    ok("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress")
    assert tree_bytes(out) == tree_bytes(whole)


@pytest.mark.slow
def test_a_full_disk_stops_metrics_in_one_line_and_the_rerun_finishes_it(whole, whole_metrics, tmp_path):
    out = Path(shutil.copytree(whole, tmp_path / "S"))
    proc = _started(["metrics", out, *METRICS, "--scheduler", "sync", "--no-progress"], tmp_path, fsize=LIMIT)
    _refused_for_space(proc, f"{out}/data/part-")
    _no_half_written_file(out)
    assert tree_bytes(out) == tree_bytes(whole)  # every part as it was: each is replaced whole, or not at all
    ok("metrics", out, *METRICS, "--scheduler", "sync", "--no-progress")
    assert tree_bytes(out) == tree_bytes(whole_metrics)


@pytest.mark.slow
def test_a_full_disk_stops_balance_in_one_line_and_leaves_nothing(demo_store, balanced, tmp_path):
    out = tmp_path / "C"
    args = ["balance", demo_store, "--out", out, *BALANCE]
    proc = _started(args, tmp_path, fsize=LIMIT)
    _refused_for_space(proc, f"{out}: cannot write the corpus")
    assert list(tmp_path.iterdir()) == []  # no corpus, no temporary folder, no lock
    ok(*args)
    assert tree_bytes(out) == tree_bytes(balanced)


@pytest.mark.slow
def test_a_full_disk_stops_pretrain_in_one_line_and_resume_finishes_it(demo_corpus, tmp_path):
    args = ["pretrain", demo_corpus, *SMALL, "--epochs", "1", "--save-every-steps", "2", "--keep-checkpoints", "0"]
    first, out = tmp_path / "first", tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "nw2.cli", *map(str, args), "--out", str(first)], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    proc = _started([*args, "--out", out], tmp_path, fsize=LIMIT)
    line = _refused_for_space(proc, f"{out}/checkpoints/ckpt-")
    assert line.endswith(f"then continue with: nw2 pretrain {demo_corpus} --out {out} --resume")
    _no_half_written_file(out)
    resumed = subprocess.run([sys.executable, "-m", "nw2.cli", "pretrain", str(demo_corpus), "--out", str(out),
                              "--resume", "--no-progress"], cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert artifact_digests(out, skip=TIMED) == artifact_digests(first, skip=TIMED)


@pytest.fixture()
def small_disk(tmp_path):
    """A 4 KiB tmpfs (a disk that fills after a few dozen TensorBoard events), unmounted after the test; skipped
    where this process may not mount one (not root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_under_tensorboard_stops_pretrain_in_one_line_and_resume_finishes_it(demo_corpus, tmp_path,
                                                                                       small_disk):
    """Before, TensorBoard's writer thread printed its traceback and the next call raised the raw OSError; a disk
    that filled between its two-minute flushes went unnoticed until the end."""
    args = ["pretrain", demo_corpus, *SMALL, "--epochs", "3", "--save-every-steps", "4", "--keep-checkpoints", "0"]
    first, out = tmp_path / "first", tmp_path / "run"
    # in processes of their own, as the interrupted run is: a run in this process after other tests may differ
    def run(*more) -> None:
        done = subprocess.run([sys.executable, "-m", "nw2.cli", *map(str, more)], cwd=tmp_path,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]

    run(*args, "--out", first, "--log-dir", tmp_path / "tb-first")
    proc = _started([*args, "--out", out, "--log-dir", small_disk / "tb"], tmp_path)
    code, lines = _finished(proc)
    assert code == 1 and not any("Traceback" in line or "Exception" in line for line in lines), lines
    assert lines[-1:] == [  # after the progress lines of the epochs it finished
        f"error: {small_disk}/tb: cannot write TensorBoard's event file (No space left on device); make room on that "
        f"disk (or raise the quota or file-size limit), then continue with: nw2 pretrain {demo_corpus} --out {out} "
        f"--resume"], lines
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
             if '"event": "step"' in line]
    assert 0 < max(steps) < 36  # it stopped mid-run (3 epochs of 12 steps), where the disk filled
    subprocess.run(["mount", "-o", "remount,size=1m", str(small_disk)], check=True)  # room made
    run("pretrain", demo_corpus, "--out", out, "--resume", "--no-progress")
    assert artifact_digests(out / "model") == artifact_digests(first / "model")
