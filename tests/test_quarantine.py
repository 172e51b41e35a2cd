"""An input that kills its workers is recorded as failed and quarantined, the run goes on, and later runs skip it
while it is unchanged (issue 16, "one hostile file sinks the run")."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import dask
import distributed  # noqa: F401  (its defaults in dask's config before a test sets one of them, so that leaving
# the test's dask.config.set does not remove the whole distributed section)

from nw2.pipeline.executor import Executor, WorkerLost
from nw2.pipeline.ingest import ingest
from nw2.pipeline.spec import spec_from_dict


def test_a_task_that_kills_its_worker_is_a_result_for_the_caller_not_the_end_of_the_run():
    """A second-step task whose worker process dies (here it kills itself, as the kernel's OOM killer or a crash in
    a C library would) is given to ``then_lost`` once Dask gives up on it; every other task's result is kept."""

    def square_or_die(x):
        if x == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return x * x

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with Executor("local", workers=2, progress=False) as ex:
            firsts, seconds = ex.map_then(list, [[1, 2], [3]], square_or_die, lambda r: r, desc="a", then_desc="b",
                                          then_lost=lambda sub, lost: ("lost", sub, lost.attempts))  # killed once among the others, once alone
            assert firsts == [[1, 2], [3]]
            assert seconds == [[1, ("lost", 2, 2)], [9]]
            with pytest.raises(WorkerLost, match="its worker process died 2 times"):
                ex.map_then(list, [[2]], square_or_die, lambda r: r, desc="a", then_desc="b")


def _npy(path: Path, seconds: float, fs: float = 1000.0) -> Path:
    t = np.arange(int(seconds * fs)) / fs
    np.save(path, np.sin(2 * np.pi * 1.2 * t) + 0.1 * np.sin(2 * np.pi * 7 * t))
    return path


@pytest.mark.slow
def test_a_file_too_big_for_its_workers_memory_is_quarantined_and_skipped_on_rerun(tmp_path: Path):
    """With 320 MB per worker (about 210 MB of it the imports), an hour at 1 kHz in one piece (3.6 M samples)
    outgrows its worker: the file is failed and quarantined, the 2-minute one next to it is ingested, a rerun skips
    the big one without starting it, and ``retry_quarantined`` with more memory ingests it."""
    data = tmp_path / "data"
    data.mkdir()
    _npy(data / "long.npy", 60 * 60)
    _npy(data / "short.npy", 120)
    spec = spec_from_dict({"name": "q", "sources": [{"dataset": "d", "paths": ["data"], "fs": 1000.0,
                                                     "modality": "ecg"}], "base_dir": str(tmp_path)},
                          where="test")
    out = str(tmp_path / "S")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        first = ingest(spec, out, workers=1, progress=False, metrics=False, worker_memory="320MB")
    by = {e["path"]: e for e in first.manifest}
    assert by["data/short.npy"]["status"] == "ingested"
    assert by["data/long.npy"]["status"] == "failed"
    assert "quarantined: its worker process died" in by["data/long.npy"]["reason"]
    assert "--retry-quarantined" in by["data/long.npy"]["reason"]
    assert by["data/long.npy"]["quarantine"]["bytes"] == (data / "long.npy").stat().st_size

    again = ingest(spec, out, workers=1, progress=False, metrics=False, worker_memory="320MB")
    assert {e["path"]: e for e in again.manifest}["data/long.npy"] == by["data/long.npy"]  # skipped, as recorded
    manifest = json.loads((tmp_path / "S" / "manifest.json").read_text())
    assert [e["status"] for e in manifest["inputs"]] == ["failed", "ingested"]

    retried = ingest(spec, out, workers=1, progress=False, metrics=False, worker_memory="2GB", retry_quarantined=True)
    by = {e["path"]: e for e in retried.manifest}
    assert by["data/long.npy"]["status"] == "ingested" and "quarantine" not in by["data/long.npy"]
