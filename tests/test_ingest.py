"""``nw2 ingest`` end to end through the CLI, on the real sample recordings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from helpers import DEMO, nw2, tree_bytes
from nw2.pipeline.spec import load_spec


def manifest(store: Path) -> dict[str, dict]:
    return {e["path"]: e for e in json.loads((store / "manifest.json").read_text())["inputs"]}


def test_demo_spec_builds_a_store_from_four_formats(demo_store):
    entries = manifest(demo_store)
    spec = load_spec(DEMO)
    assert len(entries) == len(spec.sources)
    ingested = {e["format"] for e in entries.values() if e["status"] == "ingested"}
    assert {"numpy", "edf", "opensignals", "csv"} <= ingested
    # The EDA sample is a real flat line (two distinct values in 29 s): dropped, and said so.
    eda = entries["sample:eda_slow"]
    assert eda["status"] == "skipped" and eda["dropped"]["flat"] > 0 and "flat" in eda["reason"]
    table = pq.read_table(demo_store / "data")
    assert table.num_rows == sum(e["windows"] for e in entries.values())
    assert len(set(table["window_id"].to_pylist())) == table.num_rows
    lengths = {len(s) for s in table["samples"].to_pylist()[:50]}
    assert lengths == {spec.windows.length}
    # Ingest ends with the metrics stage: every metric has a column, mostly filled.
    from nw2.pipeline.metrics import METRICS

    summary = json.loads((demo_store / "metrics.json").read_text())
    assert summary["names"] == list(METRICS) and summary["rows"] == table.num_rows
    for name in METRICS:
        assert table[name].null_count < table.num_rows * 0.1, name


def test_store_is_readable_without_nw2(demo_store):
    """pyarrow, polars and DuckDB read the store in a fresh interpreter that never imports nw2."""
    code = textwrap.dedent(f"""
        import sys, duckdb, polars as pl, pyarrow.dataset as ds
        store = {str(demo_store)!r}
        n_arrow = ds.dataset(store + "/data", format="parquet").count_rows()
        n_polars = pl.scan_parquet(store + "/data/*.parquet").select(pl.len()).collect().item()
        n_duck = duckdb.sql(f"select count(*) from read_parquet('{{store}}/data/*.parquet')").fetchall()[0][0]
        groups = duckdb.sql(f"select count(distinct group_id) from read_parquet('{{store}}/data/*.parquet')").fetchall()[0][0]
        assert n_arrow == n_polars == n_duck > 0 and 0 < groups < n_arrow, (n_arrow, n_polars, n_duck, groups)
        assert not any(m == "pipeline" or m.startswith("pipeline.") for m in sys.modules)
        print(n_arrow)
    """)
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr


def test_groups_tie_channels_of_one_window(demo_store):
    table = pq.read_table(demo_store / "data", columns=["group_id", "record", "channel", "start_s", "split", "subject"])
    rows = table.to_pylist()
    eeg = [r for r in rows if r["record"] == "S001R02"]
    by_group = {}
    for r in eeg:
        by_group.setdefault(r["group_id"], set()).add(r["channel"])
    assert max(len(v) for v in by_group.values()) == 64
    # Subject-disjoint splits: one subject never lands in two splits.
    splits = {}
    for r in rows:
        splits.setdefault(r["subject"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())


def test_normalization_keeps_the_scale(demo_store, sample):
    table = pq.read_table(demo_store / "data", filters=[("dataset", "=", "mitbih")]).to_pylist()
    row = min(table, key=lambda r: r["start_s"])
    restored = np.asarray(row["samples"], np.float64) * row["scale"] + row["offset"]
    assert abs(np.mean(row["samples"])) < 1e-4 and abs(np.std(row["samples"]) - 1) < 1e-3
    assert row["unit"] == "mV" and 0.05 < row["scale"] < 5  # an ECG in millivolts
    assert np.ptp(restored) == pytest.approx(np.ptp(row["samples"]) * row["scale"], rel=1e-5)


def test_local_cluster_and_sync_give_identical_stores(demo_store, tmp_path):
    out = tmp_path / "local"
    result = nw2("ingest", DEMO, "--out", out, "--workers", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert tree_bytes(out) == tree_bytes(demo_store)


def test_rerun_skips_and_an_interrupted_run_resumes(demo_store_copy):
    out = demo_store_copy
    before = tree_bytes(out)
    # A rerun finds every piece finished and rewrites nothing but the same manifest.
    assert nw2("ingest", DEMO, "--out", out, "--scheduler", "sync", "--no-progress").exit_code == 0
    assert tree_bytes(out) == before
    # Simulate a run killed midway: half the pieces lost their part and marker, no manifest yet.
    markers = sorted((out / "_progress").glob("*.json"))
    for marker in markers[::2]:
        part = out / "data" / f"part-{marker.stem}.parquet"
        part.unlink(missing_ok=True)
        marker.unlink()
    (out / "manifest.json").unlink()
    assert nw2("ingest", DEMO, "--out", out, "--scheduler", "sync", "--no-progress").exit_code == 0
    assert tree_bytes(out) == before


def test_a_deleted_or_truncated_part_is_written_again_not_trusted_to_its_marker(demo_store_copy):
    """Issue 16: a deleted part went unnoticed (ingest printed 1167 windows over 987 rows), because its completion
    marker was trusted. A marker whose part is gone or holds other rows no longer counts as done."""
    out = demo_store_copy
    before = tree_bytes(out)
    parts = sorted((out / "data").glob("part-*.parquet"))
    parts[0].unlink()
    data = parts[1].read_bytes()
    parts[1].write_bytes(data[: len(data) // 2])
    result = nw2("ingest", DEMO, "--out", out, "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output
    assert tree_bytes(out) == before                           # both written again, byte for byte


def test_changed_settings_need_overwrite(demo_store_copy):
    out = demo_store_copy
    result = nw2("ingest", DEMO, "--out", out, "--scheduler", "sync", "--window", "512")
    assert result.exit_code == 1 and "--overwrite" in result.output
    result = nw2("ingest", DEMO, "--out", out, "--scheduler", "sync", "--window", "512", "--stride", "512",
                 "--overwrite", "--no-progress")
    assert result.exit_code == 0
    assert pq.read_table(out / "data", columns=["length"])["length"].to_pylist()[0] == 512


def test_existing_dask_scheduler_on_loopback(sample, tmp_path):
    from distributed import LocalCluster

    path = sample("mitbih_208")
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        result = nw2("ingest", path, "--out", tmp_path / "remote", "--fs", "360", "--modality", "ecg",
                     "--scheduler", cluster.scheduler_address, "--no-progress")
    assert result.exit_code == 0, result.output
    sync = nw2("ingest", path, "--out", tmp_path / "sync", "--fs", "360", "--modality", "ecg",
               "--scheduler", "sync", "--no-progress")
    assert sync.exit_code == 0
    assert tree_bytes(tmp_path / "remote") == tree_bytes(tmp_path / "sync")


def test_a_huge_file_is_split_into_pieces(sample, tmp_path):
    spec = tmp_path / "split.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: split
        max_piece_samples: 50000
        sources: [{{dataset: medical, sample: pyphysio_medical}}]
    """))
    whole = tmp_path / "spec_whole.yaml"
    whole.write_text(spec.read_text().replace("50000", "4000000"))
    assert nw2("ingest", spec, "--out", tmp_path / "a", "--scheduler", "sync", "--no-progress").exit_code == 0
    assert nw2("ingest", whole, "--out", tmp_path / "b", "--scheduler", "sync", "--no-progress").exit_code == 0
    pieces = manifest(tmp_path / "a")["sample:pyphysio_medical"]["pieces"]
    assert pieces > 4 and manifest(tmp_path / "b")["sample:pyphysio_medical"]["pieces"] == 1
    a = pq.read_table(tmp_path / "a" / "data").sort_by("window_id")
    b = pq.read_table(tmp_path / "b" / "data").sort_by("window_id")
    assert a["window_id"].to_pylist() == b["window_id"].to_pylist()
    # Pieces read 2 s beyond their windows, so filters settle; windows agree up to sub-sample alignment.
    for xa, xb in zip(a["samples"].to_pylist()[::7], b["samples"].to_pylist()[::7]):
        assert np.corrcoef(xa, xb)[0, 1] > 0.99


def test_output_to_fsspec_urls(sample, tmp_path):
    """`--out` takes fsspec URLs: a file:// URL and an in-memory file system give the same parts."""
    import fsspec

    from nw2.pipeline.ingest import ingest
    from nw2.pipeline.spec import spec_from_dict

    spec = spec_from_dict({"name": "url", "sources": [{"dataset": "mitbih", "sample": "mitbih_208"}]})
    local = ingest(spec, f"file://{tmp_path}/url", scheduler="sync", progress=False)
    memory = ingest(spec, "memory://nw2-test/store", scheduler="sync", progress=False)
    assert local.windows == memory.windows > 0
    mem = fsspec.filesystem("memory")
    parts = sorted(mem.glob("/nw2-test/store/data/*.parquet"))
    assert [p.rsplit("/", 1)[1] for p in parts] == sorted(p.name for p in (tmp_path / "url" / "data").iterdir())
    assert mem.cat(parts[0]) == next((tmp_path / "url" / "data").iterdir()).read_bytes()
    mem.rm("/nw2-test", recursive=True)


@pytest.mark.parametrize("scheduler", ["sync", "local"])
def test_map_then_returns_results_in_input_order(scheduler):
    """The pipelined two-step map (plans, then each plan's pieces without a barrier) gives the same
    nested results whatever order tasks finish in; local workers run with one polars thread and
    import the modules they are told to while they start."""
    import time

    from nw2.pipeline.executor import Executor

    items = [[3.14, 1.52, 2.25], [], [9.87], [5.55, 4.44, 7.77, 6.66]]
    with Executor(scheduler, workers=2, progress=False, imports=("nw2.pipeline.pieces",)) as ex:
        firsts, seconds = ex.map_then(sorted, items, round, lambda r: r, desc="a", then_desc="b",
                                      size=lambda v: int(v), fn_kwargs={"reverse": True},
                                      then_kwargs={"ndigits": 1})
        assert firsts == [sorted(i, reverse=True) for i in items]
        assert seconds == [[round(v, 1) for v in f] for f in firsts]
        assert ex.map(round, [1.25, 2.75], desc="c", ndigits=1) == [1.2, 2.8]
        if scheduler == "local":
            polars_threads = ex._client.run(lambda: __import__("os").environ.get("POLARS_MAX_THREADS"))
            assert set(polars_threads.values()) == {"1"}
            deadline = time.monotonic() + 60
            while not all(ex._client.run(lambda: "nw2.pipeline.pieces" in __import__("sys").modules).values()):
                assert time.monotonic() < deadline, "workers did not import pipeline.pieces"
                time.sleep(0.2)
    assert "NW2_WORKER_IMPORTS" not in os.environ


def test_a_write_killed_mid_part_leaves_nothing_the_documented_readers_trip_on(demo_store_copy, monkeypatch):
    """A part write that never finished (here: interrupted at its final move, as a killed worker's never happens)
    leaves a temporary file; pyarrow, polars and DuckDB still read the store's ``data/*.parquet``. (A write that
    fails with an OSError, a full disk's, removes it: ``tests/test_faults.py``.)"""
    import duckdb
    import polars as pl

    from nw2.artifacts.store import WindowStore

    store = WindowStore(str(demo_store_copy))
    table = pq.read_table(next((demo_store_copy / "data").glob("*.parquet")))

    def killed(src, dst, **kwargs):
        raise KeyboardInterrupt  # what no cleanup follows (a kill -9 allows none at all)

    monkeypatch.setattr(store.fs, "mv", killed)
    with pytest.raises(KeyboardInterrupt):
        store.write_part("0" * 32, table)
    debris = [p.name for p in (demo_store_copy / "data").iterdir() if p.name.startswith(".tmp-")]
    assert len(debris) == 1 and debris[0].endswith(".parquet.partial")
    rows = sum(pq.read_metadata(p).num_rows for p in (demo_store_copy / "data").glob("*.parquet"))
    assert pl.scan_parquet(demo_store_copy / "data" / "*.parquet").select(pl.len()).collect().item() == rows
    con = duckdb.connect()
    assert con.execute(f"select count(*) from read_parquet('{demo_store_copy}/data/*.parquet')").fetchone()[0] == rows
