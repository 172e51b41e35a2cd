"""One writer per artifact (issue 16: two ingests with other window settings both passed the settings check and
mixed their windows in one store; two nw2 balance to one --out both exited 0, one result silently replaced)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import SMALL, nw2, ok
from nw2.core.errors import BusyError
from nw2.core.locks import exclusive, lock_path


@pytest.fixture()
def recording(sample, tmp_path) -> Path:
    path = tmp_path / "g.npy"
    np.save(path, np.load(sample("mitbih_208"))["ecg"][:360 * 60].astype(np.float64))
    return path


def _busy(result, target: Path) -> None:
    assert result.exit_code == 1, result.output
    assert f"{target}: is being written by another nw2 process (" in result.output, result.output
    assert f"pid {os.getpid()} on " in result.output  # the holder named


def test_a_second_writer_of_a_store_is_refused_naming_the_first(recording, tmp_path):
    store = tmp_path / "S"
    with exclusive(store, "nw2 ingest"):
        _busy(nw2("ingest", recording, "--fs", 360, "--modality", "ecg", "--window", 512, "--out", store,
                  "--scheduler", "sync", "--no-progress"), store)
        assert not store.exists()  # refused before anything was written
    ok("ingest", recording, "--fs", 360, "--modality", "ecg", "--out", store, "--scheduler", "sync", "--no-progress")
    assert not lock_path(store).exists()  # released and removed
    with exclusive(store, "nw2 ingest"):
        _busy(nw2("metrics", store, "--scheduler", "sync", "--no-progress"), store)
        corpus = tmp_path / "C"
        ok("balance", store, "--out", corpus, "--fraction", "0.5", "--no-report")  # reading it is not writing it
        with exclusive(corpus, "nw2 balance"):
            _busy(nw2("balance", store, "--out", corpus, "--fraction", "0.5", "--overwrite"), corpus)
            run = tmp_path / "run"
            with exclusive(run, "nw2 pretrain"):
                _busy(nw2("pretrain", corpus, "--out", run, *SMALL, "--epochs", "1"), run)


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
