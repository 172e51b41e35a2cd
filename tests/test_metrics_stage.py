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

from helpers import nw2, tree_bytes, vouch
from nw2.pipeline.metrics import UNDEFINED_KINDS, compute_all
from nw2.pipeline.metrics.stage import METADATA_KEY, REASON_COLUMN, REASON_TYPE, MetricsPlan, process_part
from nw2.pipeline.metrics.suite import METRICS
from nw2.artifacts.store import SCHEMA_VERSION, WindowStore
from nw2.core.errors import Nw2Error

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
    assert table.schema.field(REASON_COLUMN).type == REASON_TYPE
    assert REASON_TYPE == pa.list_(pa.struct([("metric", pa.string()), ("kind", pa.string()),
                                               ("detail", pa.string())]))
    for part in sorted((store / "data").glob("part-*.parquet")):
        assert pq.read_schema(part).metadata[b"nw2.schema_version"] == str(SCHEMA_VERSION).encode() == b"4"
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


def test_the_python_api_takes_a_metrics_spec_and_writes_what_the_command_line_does(store, tmp_path):
    from nw2.pipeline.metrics.stage import compute_metrics
    from nw2.pipeline.spec import MetricsSpec

    other = tmp_path / "other"
    shutil.copytree(store, other)
    assert nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress").exit_code == 0
    result = compute_metrics(str(other), MetricsSpec(names=tuple(FEW)), scheduler="sync", progress=False)
    assert result.plan == MetricsPlan.build(FEW) and result.computed_parts == len(result.parts) and not result.failed
    assert tree_bytes(other / "data") == tree_bytes(store / "data")
    assert (other / "metrics.json").read_bytes() == (store / "metrics.json").read_bytes()
    r = {"sample_entropy": {"r": 0.3}}
    assert MetricsPlan.from_spec(MetricsSpec(names=tuple(FEW), params=r, engine="reference")) == \
        MetricsPlan.build(FEW, r, "reference")
    with pytest.raises(Nw2Error, match="metrics: "):
        compute_metrics(str(other), MetricsSpec(names=("lyapunov",)), scheduler="sync", progress=False)
    with pytest.raises(TypeError, match="must be a MetricsSpec"):
        compute_metrics(str(other), FEW, scheduler="sync", progress=False)


def test_an_interrupted_run_resumes_with_the_parts_left(store):
    plan = MetricsPlan.build(FEW)
    parts = WindowStore(str(store)).parts()
    first = process_part(parts[0], str(store), plan)  # as if a run died after its first part
    assert first["computed"] == FEW and first["error"] is None
    result = nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0
    assert f"{len(parts) - 1} computed, 1 already up to date" in result.output


def test_undefined_metrics_are_null_with_a_reason(store):
    """A constant and a 2-sample window (made by hand in one part) get nulls and structured reasons
    (metric, kind, detail), not NaN or inf; metrics.json counts them per metric and kind."""
    st = WindowStore(str(store))
    rel = st.parts()[0]
    table = st.read_table(rel)
    flat = pa.array([[0.5] * 1024, [0.1, 0.7]] + table["samples"].to_pylist()[2:], pa.list_(pa.float32()))
    st.replace_part(rel, table.set_column(table.column_names.index("samples"), "samples", flat))
    result = nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "undefined (null) this run: sample_entropy 2, permutation_entropy 2, dfa 2, katz_fd 2" in result.output
    part = pq.read_table(store / rel)
    assert part.schema.field(REASON_COLUMN).type == REASON_TYPE
    constant, short = part.slice(0, 2).to_pylist()
    assert all(constant[n] is None and short[n] is None for n in FEW)
    assert constant[REASON_COLUMN] == [{"metric": n, "kind": "constant", "detail": "constant signal"} for n in FEW]
    assert [(e["metric"], e["kind"]) for e in short[REASON_COLUMN]] == [(n, "too_short") for n in FEW]
    assert all(e["detail"].startswith("too short") for e in short[REASON_COLUMN])
    # Read back with pyarrow alone: a list of structs, null on a row where every metric is defined.
    column = part.column(REASON_COLUMN).combine_chunks()
    assert pa.types.is_list(column.type) and pa.types.is_struct(column.type.value_type)
    assert column.null_count == part.num_rows - 2 and column.slice(2).null_count == part.num_rows - 2
    entries = column.flatten()
    assert entries.field("metric").to_pylist() == FEW * 2
    assert set(entries.field("kind").to_pylist()) == {"constant", "too_short"} <= set(UNDEFINED_KINDS)
    summary = json.loads((store / "metrics.json").read_text())
    assert summary["undefined"] == {n: {"constant": 1, "too_short": 1} for n in FEW}
    assert summary["defined"]["sample_entropy"] == summary["rows"] - 2
    others = part.slice(2)
    assert others["sample_entropy"].null_count == 0
    assert not any(math.isinf(v) for v in others["sample_entropy"].to_pylist())
    # A rerun that computes one metric again keeps the others' reasons, in column order.
    spec = write_spec(store.parent, {"names": FEW, "params": {"dfa": {"order": 2}}})
    assert nw2("metrics", store, "--spec", spec, "--scheduler", "sync", "--no-progress").exit_code == 0
    again = pq.read_table(store / rel).slice(0, 2).to_pylist()
    assert again[0][REASON_COLUMN] == constant[REASON_COLUMN]
    assert [e["metric"] for e in again[1][REASON_COLUMN]] == FEW
    assert json.loads((store / "metrics.json").read_text())["undefined"] == summary["undefined"]


def _as_schema_1(store: Path) -> None:
    """Rewrite every part as nw2 metrics wrote it before schema version 2: the reasons as text."""
    for part in sorted((store / "data").glob("part-*.parquet")):
        table = pq.read_table(part)
        text = pa.array([None if not r else "; ".join(f"{e['metric']}: {e['detail']}" for e in r)
                         for r in table.column(REASON_COLUMN).to_pylist()], pa.string())
        table = table.set_column(table.column_names.index(REASON_COLUMN), REASON_COLUMN, text)
        meta = {**table.schema.metadata, b"nw2.schema_version": b"1"}
        pq.write_table(table.replace_schema_metadata(meta), part)
        vouch(part)


def test_a_schema_1_store_is_refreshed_by_a_rerun(store):
    assert nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress").exit_code == 0
    before = read(store).sort_by("window_id")
    summary = (store / "metrics.json").read_bytes()
    _as_schema_1(store)
    assert read(store).schema.field(REASON_COLUMN).type == pa.string()
    parts = len(WindowStore(str(store)).parts())
    result = nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"{parts} computed, 0 already up to date" in result.output  # the fingerprints alone said "done"
    after = read(store).sort_by("window_id")
    assert after.schema.field(REASON_COLUMN).type == REASON_TYPE
    assert after.equals(before)  # same numbers, same reasons, back in the structured form
    assert (store / "metrics.json").read_bytes() == summary


def test_a_schema_1_part_with_metrics_outside_the_run_is_refused_in_one_line(store):
    assert nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress").exit_code == 0
    _as_schema_1(store)
    result = nw2("metrics", store, "--metrics", "sample_entropy", "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if "schema-1" in line]
    assert len(errors) == len(WindowStore(str(store)).parts())
    assert "permutation_entropy, dfa, katz_fd" in errors[0] and "rerun nw2 metrics with them too" in errors[0]
    assert read(store).schema.field(REASON_COLUMN).type == pa.string()  # nothing was rewritten


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
    assert missing.exit_code == 1 and "no such store" in missing.output
    (tmp_path / "nothing").mkdir()
    missing = nw2("metrics", tmp_path / "nothing", "--scheduler", "sync")
    assert missing.exit_code == 1 and "not a window store (no store.json)" in missing.output
    spec = write_spec(tmp_path, {"params": {"dfa": {"window": 3}}})
    bad_param = nw2("metrics", store, "--spec", spec, "--scheduler", "sync")
    assert bad_param.exit_code == 1 and "unknown parameter 'window'" in bad_param.output
    assert len(bad_param.output.strip().splitlines()) == 1


def test_metrics_json_says_what_the_parts_hold_not_what_the_last_run_computed(store):
    """Issue 16: ``nw2 metrics S --metrics a,b`` rewrote metrics.json to list a and b while the parts held more,
    and after ``--engine reference`` on two metrics the whole store was labelled reference."""
    assert nw2("metrics", store, "--metrics", ",".join(FEW), "--scheduler", "sync", "--no-progress").exit_code == 0
    full = json.loads((store / "metrics.json").read_text())
    assert full["names"] == [n for n in METRICS if n in FEW] and full["engine"] == "numba"
    # a run of two of them changes nothing and lists all four still
    assert nw2("metrics", store, "--metrics", "dfa,katz_fd", "--scheduler", "sync", "--no-progress").exit_code == 0
    assert json.loads((store / "metrics.json").read_text()) == full
    # two recomputed by the reference engine: the store is mixed, and says which is which
    done = nw2("metrics", store, "--metrics", "sample_entropy,katz_fd", "--engine", "reference", "--scheduler",
               "sync", "--no-progress")
    assert done.exit_code == 0, done.output
    mixed = json.loads((store / "metrics.json").read_text())
    assert mixed["names"] == full["names"] and mixed["engine"] == "mixed"
    assert mixed["engines"] == {n: ("reference" if n in ("sample_entropy", "katz_fd") else "numba")
                                for n in full["names"]}
    assert mixed["params"] == full["params"] and mixed["defined"] == full["defined"]
    assert mixed["fingerprints"]["dfa"] == full["fingerprints"]["dfa"]
    assert mixed["fingerprints"]["katz_fd"] != full["fingerprints"]["katz_fd"]
    part = json.loads(pq.read_schema(next((store / "data").glob("*.parquet"))).metadata[METADATA_KEY])
    assert part["engine"] == "mixed" and part["engines"]["katz_fd"] == "reference"
