"""Interrupted stages (Ctrl-C, SIGTERM): one nw2 line saying what is kept and how to finish, exit 130, no worker
tracebacks; the unfinished store is refused by every later stage, and finishing it gives the bytes of an
uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from helpers import nw2, ok, tree_bytes

#: Enough settings that two workers take several seconds, each a small piece.
SPEC = {"name": "long", "sources": [{"kind": "synthetic", "generator": "dysts", "systems": [], "windows": 2,
                                     "sweeps": {"Logistic": {"r": [3.5, 4.0], "steps": 400}}, "chunk": 4}],
        "preprocess": {"target_fs": 100}, "windows": {"length": 256, "stride": 256}, "metrics": {"enabled": False}}


def _started(args, cwd: Path) -> subprocess.Popen:
    # a session of its own, so the signal reaches it and its workers as a terminal's Ctrl-C would, and not pytest
    return subprocess.Popen([sys.executable, "-m", "nw2.cli", *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _interrupt_when(proc: subprocess.Popen, ready, sig=signal.SIGINT, timeout: float = 120) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.stderr.read()
        assert time.monotonic() < deadline, "no progress to interrupt"
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interrupt")
    path = root / "long.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_an_interrupted_ingest_says_so_in_one_line_is_refused_downstream_and_finishes_as_one_run(spec, tmp_path, sig):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    ok("ingest", spec, "--out", whole, "--scheduler", "sync", "--no-progress")
    proc = _started(["ingest", spec, "--out", cut, "--workers", "2", "--no-progress"], spec.parent)
    rc, err = _interrupt_when(proc, lambda: len(list((cut / "_progress").glob("*.json"))) >= 3, sig)
    assert rc == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"interrupted: {cut} keeps "), err
    assert "no manifest.json, so later stages refuse it; finish it with the same nw2 ingest command" in lines[0]
    assert not (cut / "manifest.json").exists()
    for stage in (["metrics", cut, "--no-progress"], ["balance", cut, "--out", tmp_path / "C", "--fraction", "0.5"]):
        refused = nw2(*stage)
        assert refused.exit_code == 1
        assert "its nw2 ingest did not finish (no manifest.json;" in refused.output, refused.output
    ok("ingest", spec, "--out", cut, "--scheduler", "sync", "--no-progress")
    assert tree_bytes(cut) == tree_bytes(whole)


@pytest.mark.slow
def test_an_interrupted_metrics_run_leaves_no_metrics_json_and_finishes_as_one_run(spec, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for out in (whole, cut):
        ok("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress")
    ok("metrics", whole, "--metrics", "sample_entropy,dfa", "--scheduler", "sync", "--no-progress")

    def rewritten() -> bool:  # a part already holds the metric columns: the run is under way
        import pyarrow.parquet as pq

        return any("dfa" in pq.read_schema(p).names for p in (cut / "data").glob("part-*.parquet"))

    proc = _started(["metrics", cut, "--metrics", "sample_entropy,dfa", "--workers", "2", "--no-progress"],
                    spec.parent)
    rc, err = _interrupt_when(proc, rewritten)
    assert rc == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0] == (f"interrupted: {cut} keeps the parts rewritten so far and no "
                                            f"metrics.json, so nw2 balance refuses it; finish with: nw2 metrics {cut}")
    refused = nw2("balance", cut, "--out", tmp_path / "C", "--fraction", "0.5")
    assert refused.exit_code == 1 and "an nw2 metrics run on it did not finish" in refused.output
    ok("metrics", cut, "--metrics", "sample_entropy,dfa", "--scheduler", "sync", "--no-progress")
    assert tree_bytes(cut) == tree_bytes(whole)


def test_balance_refuses_a_part_whose_metrics_are_not_what_metrics_json_records(spec, tmp_path):
    from nw2.pipeline.metrics.stage import MetricsPlan, process_part
    from nw2.pipeline.spec import MetricsSpec

    store = tmp_path / "S"
    ok("ingest", spec, "--out", store, "--scheduler", "sync", "--no-progress")
    ok("metrics", store, "--metrics", "sample_entropy,dfa", "--scheduler", "sync", "--no-progress")
    info = (store / "metrics.json").read_bytes()
    # what an interrupted `nw2 metrics --engine reference` leaves: one part rewritten, the old metrics.json
    part = sorted((store / "data").glob("part-*.parquet"))[1]
    plan = MetricsPlan.from_spec(MetricsSpec(names=("dfa",), engine="reference"))
    assert process_part(f"data/{part.name}", str(store), plan)["error"] is None
    (store / "metrics.json").write_bytes(info)
    refused = nw2("balance", store, "--out", tmp_path / "C", "--metrics", "dfa,sample_entropy",
                  "--fraction", "0.5")
    assert refused.exit_code == 1
    assert f"data/{part.name} holds dfa computed with other settings than metrics.json records" in refused.output
    assert json.loads(info)["engine"] == "numba"


@pytest.mark.slow
def test_an_interrupted_balance_writes_nothing_and_says_so_in_one_line(demo_store, tmp_path):
    from nw2.core.locks import lock_path

    out = tmp_path / "C"
    proc = _started(["balance", demo_store, "--out", out, "--fraction", "0.5"], tmp_path)
    rc, err = _interrupt_when(proc, lambda: lock_path(out).exists())  # it has started: its lock is taken
    assert rc == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"interrupted: no new corpus was written to {out} (it appears whole or not at all; an earlier "
                     f"one there is unchanged); rerun the same nw2 balance command"], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no corpus, no temporary folder, no lock left


def _synthetic(dataset: str, steps: int) -> dict:
    """A spec of SPEC's settings (one store can hold both) whose source is its own dataset: ``steps`` settings."""
    source = {**SPEC["sources"][0], "dataset": dataset, "sweeps": {"Logistic": {"r": [3.5, 4.0], "steps": steps}}}
    return {**SPEC, "name": dataset, "sources": [source]}


def _interrupted_here(args, ready, timeout: float = 120):
    """``nw2 ARGS`` in this process (with ``--scheduler sync``: no process to start, nothing to import again), sent
    a real SIGINT, as a terminal's Ctrl-C, once ``ready()`` holds; its result."""
    running, sent = threading.Event(), threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while running.is_set() and time.monotonic() < deadline:
            if ready() and running.is_set():
                sent.set()
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    running.set()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = nw2(*args)
    finally:
        running.clear()
        watcher.join()
    assert sent.is_set(), "the run ended before it could be interrupted: " + result.output
    return result


def test_an_interrupted_ingest_into_a_store_keeps_the_earlier_ingests_inputs_in_the_manifest(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump(_synthetic("a", 4)))
    b.write_text(yaml.safe_dump(_synthetic("b", 40)))
    store = tmp_path / "S"
    ok("ingest", a, "--out", store, "--scheduler", "sync", "--no-progress")
    listed_a = json.loads((store / "manifest.json").read_text())["inputs"]
    done_a = len(list((store / "_progress").glob("*.json")))
    cut = _interrupted_here(["ingest", b, "--out", store, "--scheduler", "sync", "--no-progress"],
                            lambda: len(list((store / "_progress").glob("*.json"))) >= done_a + 2)
    assert cut.exit_code == 130 and "no manifest.json, so later stages refuse it" in cut.output, cut.output
    # unfinished as before (every later stage refuses it), and its earlier manifest set aside, not deleted
    assert not (store / "manifest.json").exists() and (store / "manifest.previous.json").exists()
    ok("ingest", b, "--out", store, "--scheduler", "sync", "--no-progress")
    inputs = json.loads((store / "manifest.json").read_text())["inputs"]
    assert [e for e in inputs if e["dataset"] == "a"] == listed_a  # before: gone with the deleted manifest
    assert {e["dataset"] for e in inputs} == {"a", "b"}
    rows = pl.scan_parquet(store / "data" / "*.parquet").select(pl.len()).collect().item()
    assert sum(e["windows"] for e in inputs) == rows
    assert not (store / "manifest.previous.json").exists()  # gone once the new manifest is written


def test_an_interrupted_metrics_run_keeps_the_earlier_metrics_parameters(tmp_path):
    spec = tmp_path / "b.yaml"
    spec.write_text(yaml.safe_dump(_synthetic("b", 20)))
    store = tmp_path / "S"
    ok("ingest", spec, "--out", store, "--scheduler", "sync", "--no-progress")
    ok("metrics", store, "--metrics", "dfa", "--scheduler", "sync", "--no-progress")
    dfa = json.loads((store / "metrics.json").read_text())["params"]["dfa"]
    assert dfa is not None

    def rewritten() -> bool:  # a part holds sample_entropy: the run is under way
        return any("sample_entropy" in pq.read_schema(p).names for p in (store / "data").glob("part-*.parquet"))

    cut = _interrupted_here(["metrics", store, "--metrics", "sample_entropy", "--scheduler", "sync",
                             "--no-progress"], rewritten)
    assert cut.exit_code == 130 and "no metrics.json, so nw2 balance refuses it" in cut.output, cut.output
    assert not (store / "metrics.json").exists() and (store / "metrics.previous.json").exists()
    refused = nw2("balance", store, "--out", tmp_path / "C", "--fraction", "0.5")
    assert refused.exit_code == 1 and "an nw2 metrics run on it did not finish" in refused.output
    rebuilt = tmp_path / "R"  # --overwrite removes the set-aside files with the rest of what nw2 wrote
    shutil.copytree(store, rebuilt)
    ok("ingest", spec, "--out", rebuilt, "--overwrite", "--scheduler", "sync", "--no-progress")
    assert sorted(p.name for p in rebuilt.iterdir()) == ["_progress", "data", "manifest.json", "store.json"]
    ok("metrics", store, "--metrics", "sample_entropy", "--scheduler", "sync", "--no-progress")
    info = json.loads((store / "metrics.json").read_text())
    assert set(info["names"]) == {"sample_entropy", "dfa"}
    assert info["params"]["dfa"] == dfa  # before: null, its metrics.json deleted by the interrupted run
    assert info["params"]["sample_entropy"] is not None
    assert not (store / "metrics.previous.json").exists()
