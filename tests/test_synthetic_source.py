"""Synthetic spec sources (``kind: synthetic``): the spec, the ground-truth columns, the split by parameter
bands, determinism, resume, and bad settings recorded in the manifest while the rest goes on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from helpers import nw2, ok, read_all, tree_bytes
from nw2.artifacts.store import GROUND_TRUTH_COLUMNS, SCHEMA, SCHEMA_VERSION
from nw2.core.errors import SpecError
from nw2.pipeline.spec import SourceSpec, SyntheticSourceSpec, spec_from_dict

BASE = {"preprocess": {"target_fs": 100}, "windows": {"length": 256, "stride": 256}, "metrics": {"enabled": False}}


def _spec(tmp_path: Path, *sources: dict, **over) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "syn", "sources": list(sources), **BASE, **over}))
    return path


def _ingest(spec: Path, out: Path, *more):
    return nw2("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress", *more)


def test_sources_are_told_apart_by_kind():
    spec = spec_from_dict({"name": "x", "sources": [
        {"dataset": "d", "paths": ["a.csv"]},
        {"kind": "synthetic", "generator": "dysts", "systems": ["Lorenz"], "noise": [0, 0.1]}]})
    files, synthetic = spec.sources
    assert isinstance(files, SourceSpec) and files.kind == "files"
    assert isinstance(synthetic, SyntheticSourceSpec) and synthetic.noise == (0.0, 0.1)


@pytest.mark.parametrize("source, message", [
    ({"kind": "made-up"}, "sources[0].kind: 'made-up' is not one of files, synthetic"),
    ({"kind": "synthetic"}, "sources[0]: missing required field 'generator'"),
    ({"kind": "synthetic", "generator": "lorenz"}, "sources[0].generator: 'lorenz' is not one of dysts, physio"),
    ({"kind": "synthetic", "generator": "dysts", "paths": ["x"]}, "sources[0]: unknown field 'paths'"),
    ({"kind": "synthetic", "generator": "dysts", "noise": [-1]}, "sources[0].noise: give distinct noise levels"),
    ({"kind": "synthetic", "generator": "dysts", "sweeps": "all"}, "sources[0].sweeps: 'all': give a mapping"),
    ({"kind": "synthetic", "generator": "dysts", "sweeps": {"Lorenz": 3}}, "sources[0].sweeps.Lorenz: expected"),
    ({"kind": "synthetic", "generator": "dysts", "subjects": "people"}, "sources[0].subjects: 'people' is not one"),
    ({"kind": "synthetic", "generator": "dysts", "windows": 0}, "sources[0].windows: must be >= 1"),
])
def test_bad_synthetic_fields_are_named(source, message):
    with pytest.raises(SpecError) as err:
        spec_from_dict({"name": "x", "sources": [source]})
    assert message in str(err.value)


PHYSIO = {"kind": "synthetic", "generator": "physio", "systems": ["ecg", "rsp"], "windows": 2, "noise": [0.0, 0.2],
          "sweeps": {"ppg": {"heart_rate": [50, 120], "motion_amplitude": [0.0, 0.4], "steps": 2}}, "bands": 2}


def test_physio_rows_carry_their_system_and_no_invented_exponent(tmp_path):
    out = tmp_path / "store"
    result = _ingest(_spec(tmp_path, PHYSIO), out)
    assert result.exit_code == 0, result.output
    table = read_all(out)
    # ecg and rsp at defaults, ppg on a 2 x 2 grid; 2 noise levels, 2 windows each
    assert table.num_rows == (1 + 1 + 4) * 2 * 2
    assert table.schema.names == SCHEMA.names
    rows = table.to_pylist()
    assert {r["system"] for r in rows} == {"neurokit2.ecg_simulate", "neurokit2.rsp_simulate", "neurokit2.ppg_simulate"}
    assert {r["modality"] for r in rows} == {"ecg", "resp", "ppg"}
    assert all(r["true_lyapunov"] is None and r["regime"] is None for r in rows)
    assert {r["noise"] for r in rows} == {0.0, 0.2}
    ppg = [r for r in rows if r["channel"] == "ppg"]
    assert {json.loads(r["system_params"])["heart_rate"] for r in ppg} == {50.0, 120.0}
    # subjects: a default setting is its own, a sweep's steps fall in contiguous bands of its first parameter
    assert {r["subject"] for r in rows} == {"ecg/default", "rsp/default", "ppg/heart_rate+motion_amplitude/band0",
                                            "ppg/heart_rate+motion_amplitude/band1"}
    for subject in {r["subject"] for r in rows}:
        assert len({r["split"] for r in rows if r["subject"] == subject}) == 1
    assert pq.read_schema(next((out / "data").glob("part-*.parquet"))).metadata[b"nw2.schema_version"] == \
        str(SCHEMA_VERSION).encode()


def test_the_same_spec_gives_the_same_bytes_and_a_rerun_skips_every_setting(tmp_path):
    spec = _spec(tmp_path, PHYSIO)
    ok("ingest", spec, "--out", tmp_path / "a", "--scheduler", "sync", "--no-progress")
    ok("ingest", spec, "--out", tmp_path / "b", "--scheduler", "local", "--workers", "2", "--no-progress")
    assert tree_bytes(tmp_path / "a") == tree_bytes(tmp_path / "b")
    before = tree_bytes(tmp_path / "a")
    again = ok("ingest", spec, "--out", tmp_path / "a", "--scheduler", "sync", "--no-progress")
    assert tree_bytes(tmp_path / "a") == before, again.output
    other = _spec(tmp_path, {**PHYSIO, "seed": 1})
    ok("ingest", other, "--out", tmp_path / "c", "--scheduler", "sync", "--no-progress")
    assert read_all(tmp_path / "c").column("samples") != read_all(tmp_path / "a").column("samples")


def test_unknown_systems_and_parameters_fail_alone(tmp_path):
    bad = {"kind": "synthetic", "generator": "physio", "systems": ["ecg", "heart"], "windows": 1,
           "sweeps": {"rsp": {"tidal_volume": [1, 2], "steps": 2}, "eda": "ready", "ecg": {"heart_rate": 70}}}
    out = tmp_path / "store"
    result = _ingest(_spec(tmp_path, bad), out)
    assert result.exit_code == 0, result.output
    assert "synthetic:physio/heart: failed: unknown physio signal 'heart' (known: ecg, ppg, rsp, eda, emg)" \
        in result.output
    assert "synthetic:physio/rsp: failed: rsp: unknown parameter 'tidal_volume'" in result.output
    assert "synthetic:physio/ecg: failed: ecg: a sweep needs 'steps'" in result.output
    entries = {e["path"]: e for e in json.loads((out / "manifest.json").read_text())["inputs"]}
    assert entries["synthetic:physio/heart"]["status"] == "failed"
    assert entries["synthetic:physio/ecg"]["status"] == "ingested"  # its default setting
    assert sum(e["windows"] for e in entries.values()) == read_all(out).num_rows == 1 + 9  # ecg + eda's 3 x 3 grid


def test_recordings_have_null_ground_truth(demo_store):
    table = read_all(demo_store)
    for name in GROUND_TRUTH_COLUMNS:
        assert table.column(name).null_count == table.num_rows


def test_an_older_store_is_not_mixed_with_new_parts(tmp_path):
    out = tmp_path / "store"
    spec = _spec(tmp_path, {**PHYSIO, "systems": ["rsp"], "sweeps": {}})
    ok("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress")
    info = json.loads((out / "store.json").read_text())
    (out / "store.json").write_text(json.dumps({**info, "schema_version": 2}))
    result = _ingest(spec, out)
    assert result.exit_code == 1
    assert "was ingested with schema version 2" in result.output and "--overwrite" in result.output
    ok("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress", "--overwrite")


DYSTS = {"kind": "synthetic", "generator": "dysts", "systems": ["Lorenz"], "windows": 2, "noise": [0.0, 0.1],
         "sweeps": {"Logistic": {"r": [3.2, 4.6], "steps": 8}, "Duffing": {"gamma": [0.1, 0.6], "omega": 1.4, "steps": 2}}}


def test_dysts_rows_carry_the_true_exponent_per_second_and_the_regime(tmp_path):
    out = tmp_path / "store"
    result = _ingest(_spec(tmp_path, DYSTS), out)
    assert result.exit_code == 0, result.output
    rows = read_all(out).to_pylist()
    lorenz = [r for r in rows if r["system"] == "Lorenz"]
    assert {r["regime"] for r in lorenz} == {"chaotic"}
    # 0.906 per time unit, sampled 50 times per dysts period (1.5008 time units) at 100 Hz
    assert lorenz[0]["true_lyapunov"] == pytest.approx(0.906 * 1.5008 / 50 * 100, rel=0.02)
    logistic = {json.loads(r["system_params"])["r"]: r for r in rows if r["system"] == "Logistic" and r["noise"] == 0}
    assert logistic[3.2]["regime"] == "periodic" and logistic[3.2]["true_lyapunov"] < 0
    assert logistic[4.0]["regime"] == "chaotic"
    assert logistic[4.0]["true_lyapunov"] == pytest.approx(np.log(2) * 100, rel=0.01)  # per step x 100 Hz
    # r above 4 leaves [0, 1] and diverges: those settings fail by itself, named with its parameters
    assert sorted(logistic) == [3.2, 3.4, 3.6, 3.8, 4.0]
    entry = next(e for e in json.loads((out / "manifest.json").read_text())["inputs"] if "Logistic" in e["path"])
    assert entry["status"] == "failed" and entry["reason"].startswith("3 of 8 settings failed: Logistic r=4.2: ")
    assert "Logistic r=4.6: Logistic(r=4.6): the orbit diverged" in entry["reason"]
    # a forced oscillator's forcing is a channel of the same windows, never noised
    duffing = [r for r in rows if r["system"] == "Duffing"]
    assert {r["channel"] for r in duffing} == {"x0", "forcing"}
    by_group = {}
    for r in duffing:
        by_group.setdefault(r["group_id"], set()).add(r["channel"])
    assert all(channels == {"x0", "forcing"} for channels in by_group.values())
    clean = [r["samples"] for r in duffing if r["channel"] == "forcing" and r["noise"] == 0]
    noisy = [r["samples"] for r in duffing if r["channel"] == "forcing" and r["noise"] > 0]
    assert clean == noisy


def test_whole_systems_can_be_held_out(tmp_path):
    spec = _spec(tmp_path, {**DYSTS, "subjects": "systems", "sweeps": {"Logistic": {"r": [3.5, 4.0], "steps": 4}}},
                 split={"train": 0.5, "val": 0.25, "test": 0.25, "fixed": {"dysts/Logistic": "test"}})
    ok("ingest", spec, "--out", tmp_path / "store", "--scheduler", "sync", "--no-progress")
    rows = read_all(tmp_path / "store").to_pylist()
    assert {r["subject"] for r in rows} == {"Lorenz", "Logistic"}
    assert {r["split"] for r in rows if r["system"] == "Logistic"} == {"test"}
