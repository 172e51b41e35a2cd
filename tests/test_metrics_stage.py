"""``nw2 metrics`` through the CLI on a store of real recordings: columns, reasons, skipping,
refreshing, resuming, engines and schedulers."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from nw2.pipeline.metrics import compute_all
from nw2.pipeline.metrics.stage import METADATA_KEY, REASON_COLUMN, MetricsPlan, process_part
from nw2.pipeline.metrics.suite import METRICS
from nw2.pipeline.store import Store
from tests.test_ingest import nw2, tree_bytes

#: A few metrics keep these tests quick; the suite as a whole is covered in test_metrics_suite.py.
FEW = ["sample_entropy", "permutation_entropy", "dfa", "katz_fd"]


def write_spec(tmp_path: Path, metrics: dict | None = None) -> Path:
    spec = {"name": "metrics-test",
            "sources": [{"dataset": "mitbih", "sample": "mitbih_208"},
                        {"dataset": "heartpy", "sample": "heartpy_ppg"}],
            "windows": {"length": 1024, "stride": 1024}, "max_piece_samples": 40_000}
    if metrics is not None:
        spec["metrics"] = metrics
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def bare_store(tmp_path_factory):
    """A store without metrics: MIT-BIH ECG and a PPG, cut into several parts."""
    tmp = tmp_path_factory.mktemp("metrics")
    out = tmp / "store"
    result = nw2("ingest", write_spec(tmp), "--out", out, "--scheduler", "sync", "--no-progress", "--no-metrics")
    assert result.exit_code == 0, result.output
    assert len(list((out / "data").glob("part-*.parquet"))) >= 3
    return out


@pytest.fixture
def store(bare_store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(bare_store, copy)
    return copy


def read(store: Path):
    return pq.read_table(store / "data")


def test_ingest_without_metrics_has_no_metric_columns(bare_store, tmp_path):
    assert not set(METRICS) & set(read(bare_store).column_names)
    assert not (bare_store / "metrics.json").exists()
    # The spec can switch the stage off too.
    spec = tmp_path / "off.yaml"
    spec.write_text(yaml.safe_dump({"name": "off", "sources": [{"dataset": "heartpy", "sample": "heartpy_ppg"}],
                                    "metrics": {"enabled": False}}))
    assert nw2("ingest", spec, "--out", tmp_path / "off", "--scheduler", "sync", "--no-progress").exit_code == 0
    assert not (tmp_path / "off" / "metrics.json").exists()


def test_metrics_adds_nullable_float32_columns_that_match_compute_all(store):
    result = nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output
    table = read(store)
    for name in FEW:
        assert table.schema.field(name).type == pa.float32() and table.schema.field(name).nullable
    assert table.schema.field(REASON_COLUMN).type == pa.string()
    # The stored value is compute_all's on the stored samples, rounded to float32.
    rows = table.slice(0, 5).to_pylist()
    for row in rows:
        expected = compute_all(np.asarray(row["samples"], np.float32), row["fs"], FEW)
        for name in FEW:
            assert row[name] == pytest.approx(np.float32(expected[name]), rel=1e-6)
    summary = json.loads((store / "metrics.json").read_text())
    assert summary["names"] == FEW and summary["rows"] == table.num_rows and summary["engine"] == "numba"


def test_rerun_skips_parts_and_changed_parameters_refresh_only_that_metric(store, tmp_path):
    assert nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress").exit_code == 0
    before = tree_bytes(store / "data")
    first = read(store).sort_by("window_id")
    again = nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress")
    assert again.exit_code == 0 and "0 computed" in again.output
    assert tree_bytes(store / "data") == before

    spec = write_spec(tmp_path, {"names": FEW, "params": {"sample_entropy": {"r": 0.3}}})
    changed = nw2("metrics", store, "--spec", spec, "--scheduler", "sync", "--no-progress")
    assert changed.exit_code == 0, changed.output
    table = read(store).sort_by("window_id")
    summary = json.loads((store / "metrics.json").read_text())
    assert summary["params"]["sample_entropy"]["r"] == 0.3
    # Only sample entropy was recomputed: the other columns are the same numbers as before.
    for name in ("permutation_entropy", "dfa", "katz_fd"):
        assert table[name].equals(first[name])
    assert not table["sample_entropy"].equals(first["sample_entropy"])
    ref = pq.read_table([p for p in (store / "data").glob("*.parquet")][0])
    meta = json.loads(ref.schema.metadata[METADATA_KEY])
    assert set(meta["fingerprints"]) == set(FEW)
    plan = MetricsPlan.build(FEW, {"sample_entropy": {"r": 0.3}})
    assert meta["fingerprints"]["sample_entropy"] == plan.fingerprint("sample_entropy")
    assert meta["fingerprints"]["dfa"] == MetricsPlan.build(FEW).fingerprint("dfa")
    x = np.asarray(table["samples"][0].as_py(), np.float32)
    assert table["sample_entropy"][0].as_py() == pytest.approx(
        compute_all(x, 100.0, ["sample_entropy"], {"sample_entropy": {"r": 0.3}})["sample_entropy"], rel=1e-6)


def test_an_interrupted_run_resumes_with_the_parts_left(store):
    plan = MetricsPlan.build(FEW)
    parts = Store(str(store)).parts()
    first = process_part(parts[0], str(store), plan)  # as if a run died after its first part
    assert first["computed"] == FEW and first["error"] is None
    result = nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0
    assert f"{len(parts) - 1} computed, 1 already up to date" in result.output


def test_undefined_metrics_are_null_with_a_reason(store):
    """A constant window (made by hand in one part) gets nulls and the reason, not NaN or inf."""
    st = Store(str(store))
    rel = st.parts()[0]
    table = st.read_table(rel)
    flat = pa.array([[0.5] * 1024] + table["samples"].to_pylist()[1:], pa.list_(pa.float32()))
    st.write_table(rel, table.set_column(table.column_names.index("samples"), "samples", flat))
    assert nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress").exit_code == 0
    row = st.read_table(rel).slice(0, 1).to_pylist()[0]
    assert all(row[n] is None for n in ("sample_entropy", "dfa"))
    assert "constant" in row[REASON_COLUMN] and "sample_entropy: " in row[REASON_COLUMN]
    summary = json.loads((store / "metrics.json").read_text())
    assert summary["undefined"]["sample_entropy: constant signal"] == 1
    assert summary["defined"]["sample_entropy"] == summary["rows"] - 1
    others = st.read_table(rel).slice(1)
    assert others["sample_entropy"].null_count == 0
    assert not any(math.isinf(v) for v in others["sample_entropy"].to_pylist())


def test_reference_engine_fills_the_same_columns_close_to_numba(store, tmp_path):
    other = tmp_path / "reference"
    shutil.copytree(store, other)
    names = ["sample_entropy", "permutation_entropy", "katz_fd"]
    assert nw2("metrics", store, "--metrics", ",".join(names), "--scheduler", "sync", "--no-progress").exit_code == 0
    result = nw2("metrics", other, "--metrics", ",".join(names), "--engine", "reference", "--scheduler", "sync",
                 "--no-progress")
    assert result.exit_code == 0, result.output
    a, b = read(store).sort_by("window_id"), read(other).sort_by("window_id")
    for name in names:
        np.testing.assert_allclose(a[name].to_numpy(), b[name].to_numpy(), rtol=1e-4, atol=1e-6)
    assert json.loads((other / "metrics.json").read_text())["engine"] == "reference"


def test_local_cluster_and_sync_write_identical_parts(store, tmp_path):
    other = tmp_path / "cluster"
    shutil.copytree(store, other)
    assert nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress").exit_code == 0
    assert nw2("metrics", other, "--metrics", ",".join(FEW), "--workers", "2", "--no-progress").exit_code == 0
    assert tree_bytes(store / "data") == tree_bytes(other / "data")


def test_bad_requests_get_one_line_errors(store, tmp_path):
    unknown = nw2("metrics", store, "--metrics", "lyapunov", "--scheduler", "sync")
    assert unknown.exit_code == 1 and "unknown metric 'lyapunov'" in unknown.output
    assert "largest_lyapunov" in unknown.output
    engine = nw2("metrics", store, "--engine", "fast", "--scheduler", "sync")
    assert engine.exit_code == 1 and "unknown engine 'fast'" in engine.output
    missing = nw2("metrics", tmp_path / "nothing", "--scheduler", "sync")
    assert missing.exit_code == 1 and "not a window store" in missing.output
    spec = write_spec(tmp_path, {"params": {"dfa": {"window": 3}}})
    bad_param = nw2("metrics", store, "--spec", spec, "--scheduler", "sync")
    assert bad_param.exit_code == 1 and "unknown parameter 'window'" in bad_param.output
    assert len(bad_param.output.strip().splitlines()) == 1
