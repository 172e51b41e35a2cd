"""One writer or many readers per artifact (issue 16: two ingests with other window settings both passed the settings
check and mixed their windows in one store; two nw2 balance to one --out both exited 0, one result silently replaced;
an ingest or metrics run into a store that nw2 balance was reading went unnoticed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import SMALL, nw2, ok
from nw2.core.errors import BusyError
from nw2.core.locks import exclusive, lock_path, shared


@pytest.fixture()
def recording(sample, tmp_path) -> Path:
    path = tmp_path / "g.npy"
    np.save(path, np.load(sample("mitbih_208"))["ecg"][:360 * 60].astype(np.float64))
    return path


def _busy(result, target: Path) -> None:
    assert result.exit_code == 1, result.output
    assert f"{target}: is being written by another nw2 process (" in result.output, result.output
    assert f"pid {os.getpid()} on " in result.output  # the holder named


def test_a_second_writer_of_a_store_is_refused_naming_the_first_and_so_is_a_reader(recording, tmp_path):
    store = tmp_path / "S"
    with exclusive(store, "nw2 ingest"):
        _busy(nw2("ingest", recording, "--fs", 360, "--modality", "ecg", "--window", 512, "--out", store,
                  "--scheduler", "sync", "--no-progress"), store)
        assert not store.exists()  # refused before anything was written
    ok("ingest", recording, "--fs", 360, "--modality", "ecg", "--out", store, "--scheduler", "sync", "--no-progress")
    assert not lock_path(store).exists()  # released and removed
    corpus, run = tmp_path / "C", tmp_path / "run"
    with exclusive(store, "nw2 ingest"):
        _busy(nw2("metrics", store, "--scheduler", "sync", "--no-progress"), store)
        # a reader of a store being written is refused too, and told to come back
        _busy(read := nw2("balance", store, "--out", corpus, "--fraction", "0.5", "--no-report"), store)
        assert "; wait for it to end, then run this again" in read.output and not corpus.exists()
    ok("balance", store, "--out", corpus, "--fraction", "0.5", "--no-report")
    with exclusive(corpus, "nw2 balance"):
        _busy(nw2("balance", store, "--out", corpus, "--fraction", "0.5", "--overwrite"), corpus)
        _busy(nw2("pretrain", corpus, "--out", run, *SMALL, "--epochs", "1"), corpus)  # its corpus being written
        with exclusive(run, "nw2 pretrain"):
            _busy(nw2("pretrain", corpus, "--out", run, *SMALL, "--epochs", "1"), run)
    assert not run.exists()


def test_a_lock_dies_with_its_process_even_under_kill_9(recording, tmp_path):
    store = tmp_path / "S"
    holder = subprocess.Popen([sys.executable, "-c", f"from nw2.core.locks import exclusive; import time\n"
                               f"with exclusive({str(store)!r}, 'holder'):\n    print('held', flush=True); "
                               f"time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=rf"\(holder, pid {holder.pid} on "):
            with exclusive(store):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(store).exists()  # left behind by the killed holder, and no longer held by anyone
    ok("ingest", recording, "--fs", 360, "--modality", "ecg", "--out", store, "--scheduler", "sync", "--no-progress")
    assert not lock_path(store).exists()


def test_two_concurrent_ingests_with_other_settings_never_mix_their_windows(recording, tmp_path):
    store = tmp_path / "S"
    procs = [subprocess.Popen([sys.executable, "-m", "nw2.cli", "ingest", str(recording), "--fs", "360",
                               "--modality", "ecg", "--window", str(w), "--out", str(store), "--scheduler", "sync",
                               "--no-progress", "--no-metrics"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for w in (512, 1024)]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in outcomes)
    assert codes == [0, 1], outcomes  # one refused: busy, or (when the other was done already) other settings
    refused = [err for rc, err in outcomes if rc == 1]
    assert all("is being written by another nw2 process" in e or "was built with other preprocessing, window" in e
               for e in refused), refused
    import polars as pl

    assert pl.read_parquet(store / "data" / "*.parquet").get_column("length").n_unique() == 1


def _holding(kind: str, target: Path) -> subprocess.Popen:
    """Another process holding the ``kind`` (exclusive, shared) lock of ``target`` until its stdin closes (then it
    lets go as a finished stage does)."""
    proc = subprocess.Popen([sys.executable, "-c", f"from nw2.core.locks import {kind}; import sys\n"
                             f"with {kind}({str(target)!r}, 'nw2 balance'):\n    print('held', flush=True); "
                             f"sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _let_go(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_a_reader_of_a_store_refuses_ingest_and_metrics_in_one_line_and_a_second_reader_goes_on(
        recording, demo_store, tmp_path):
    reader = _holding("shared", demo_store)  # as nw2 balance, pretrain and evaluate hold the store they read
    try:
        for args in (("ingest", recording, "--fs", 360, "--modality", "ecg", "--out", demo_store, "--scheduler",
                      "sync", "--no-progress"), ("metrics", demo_store, "--scheduler", "sync", "--no-progress")):
            result = nw2(*args)
            assert result.exit_code == 1
            lines = [line for line in result.output.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith(
                f"error: {demo_store}: is being read by another nw2 process (nw2 balance, pid {reader.pid} on "), lines
            assert lines[0].endswith("; wait for it to end, or choose another --out"), lines
        ok("balance", demo_store, "--out", tmp_path / "C", "--fraction", "0.5", "--no-report")  # readers share it
        assert lock_path(demo_store).exists()  # the first reader still holds it: the second left its file
    finally:
        _let_go(reader)
    assert not lock_path(demo_store).exists()  # the last one out removed it


def test_readers_share_a_lock_and_only_the_last_one_out_removes_its_file(tmp_path):
    target = tmp_path / "S"
    with shared(target, "nw2 balance"):
        with shared(target, "nw2 pretrain"):  # locks are per open file: two in one process are two readers
            with pytest.raises(BusyError, match=r"S: is being read by another nw2 process \(nw2 pretrain, pid "):
                with exclusive(target):
                    pass
        assert lock_path(target).exists()  # removing it would let a writer lock a new file beside the reader
        with pytest.raises(BusyError, match="is being read by another nw2 process"):
            with exclusive(target):
                pass
    assert not lock_path(target).exists()
    writer = _holding("exclusive", target)
    try:
        with pytest.raises(BusyError, match=rf"is being written by another nw2 process \(nw2 balance, pid "
                                            rf"{writer.pid} on .*\); wait for it to end, then run this again$"):
            with shared(target):
                pass
    finally:
        _let_go(writer)
    assert not lock_path(target).exists()


def test_readers_coming_and_going_at_once_never_refuse_each_other(tmp_path):
    """A leaving reader holds the lock exclusive for an instant to remove its file; one arriving then tries again."""
    target = tmp_path / "S"
    loop = (f"from nw2.core.locks import shared\nfor _ in range(400):\n    with shared({str(target)!r}):\n"
            f"        pass\n")
    procs = [subprocess.Popen([sys.executable, "-c", loop], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    assert [(p.wait(timeout=120), p.stderr.read()) for p in procs] == [(0, "")] * 3
    with exclusive(target):  # whatever two readers leaving at once left, a writer takes it, and removes it
        pass
    assert not lock_path(target).exists()
