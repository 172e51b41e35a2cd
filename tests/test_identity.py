"""Each window once: a store holds every ``window_id`` once, checked at the end of every ingest, and its manifest
lists every input whose parts it holds (issue 16: re-ingesting a file with another modality or piece size gave
duplicate window ids that balance then drew), and two files with one stem are told apart or refused before anything
is read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from helpers import nw2, ok, tree_bytes


def _ecg(sample, path: Path, seconds: float = 600.0) -> Path:
    ecg = np.load(sample("mitbih_208"))["ecg"]
    np.save(path, ecg[: int(seconds * 360)].astype(np.float64))
    return path


def _refused_as_duplicate(result, store: Path) -> None:
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "\n" not in line and "is in it already, read with other settings (another modality, reader option or " \
           "piece size), which give the same window ids" in line, result.output
    # the ways out: the earlier ingest, another --out, and only then --overwrite (which drops every earlier ingest)
    assert "rerun the earlier ingest to finish it as it was, ingest the file read this way into another --out, or " \
           "rebuild this store with --overwrite" in line, line
    assert not (store / "manifest.json").exists()  # unfinished: nothing downstream takes the duplicates for data
    refused = nw2("balance", store, "--out", store.parent / "C", "--fraction", "0.5")
    assert refused.exit_code == 1 and "its nw2 ingest did not finish" in refused.output


def test_the_same_file_under_another_modality_is_refused_not_stored_twice(sample, tmp_path):
    g = _ecg(sample, tmp_path / "g.npy", 120)
    store = tmp_path / "S"
    ecg = ("ingest", g, "--fs", 360, "--modality", "ecg", "--out", store, "--no-metrics", "--scheduler", "sync",
           "--no-progress")
    ok(*ecg)
    before = tree_bytes(store)
    result = nw2("ingest", g, "--fs", 360, "--modality", "ppg", "--out", store, "--no-metrics", "--scheduler",
                 "sync", "--no-progress")
    _refused_as_duplicate(result, store)
    ok(*ecg)  # the refused run's parts are gone: the earlier ingest finishes the store as it was
    assert tree_bytes(store) == before
    ok("ingest", g, "--fs", 360, "--modality", "ppg", "--out", store, "--overwrite", "--no-metrics", "--scheduler",
       "sync", "--no-progress")
    rows = pl.read_parquet(store / "data" / "*.parquet")
    assert rows.get_column("window_id").is_unique().all() and set(rows.get_column("modality")) == {"ppg"}


def test_another_piece_size_is_refused_not_stored_twice(sample, tmp_path):
    _ecg(sample, tmp_path / "long.npy")
    store = tmp_path / "S"
    spec = {"name": "long", "sources": [{"dataset": "holter", "paths": ["long.npy"], "fs": 360, "modality": "ecg"}],
            "metrics": {"enabled": False}}
    for size, outcome in ((200_000, "ok"), (50_000, "refused")):
        path = tmp_path / f"spec-{size}.yaml"
        path.write_text(yaml.safe_dump({**spec, "max_piece_samples": size}))
        result = nw2("ingest", path, "--out", store, "--scheduler", "sync", "--no-progress")
        if outcome == "ok":
            assert result.exit_code == 0, result.output
        else:
            _refused_as_duplicate(result, store)


def test_another_file_into_the_same_store_is_added_and_listed(sample, tmp_path):
    a, b = _ecg(sample, tmp_path / "a.npy", 120), _ecg(sample, tmp_path / "b.npy", 60)
    store = tmp_path / "S"
    for path in (a, b):
        ok("ingest", path, "--fs", 360, "--modality", "ecg", "--out", store, "--no-metrics", "--scheduler", "sync",
           "--no-progress")
    manifest = json.loads((store / "manifest.json").read_text())
    assert [Path(e["path"]).name for e in manifest["inputs"]] == ["a.npy", "b.npy"]
    rows = pl.read_parquet(store / "data" / "*.parquet")
    assert rows.height == sum(e["windows"] for e in manifest["inputs"])
    assert rows.get_column("window_id").is_unique().all()


def _csv(path: Path, seed: int, seconds: float = 40.0, fs: float = 100.0) -> Path:
    """A small real CSV recording (a header, one column) at ``fs``: a sine in noise, its own per ``seed``."""
    t = np.arange(int(seconds * fs)) / fs
    x = np.sin(2 * np.pi * 1.3 * t) + 0.3 * np.random.default_rng(seed).standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, x, header="ppg", comments="", fmt="%.6f")
    return path


def _stem_spec(tmp_path: Path, name: str, paths: list[str], **source) -> Path:
    spec = {"name": name, "sources": [{"dataset": "diary", "paths": paths, "fs": 100, "modality": "ppg", **source}],
            "preprocess": {"target_fs": 50}, "windows": {"length": 256, "stride": 256}, "metrics": {"enabled": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_two_files_with_one_stem_are_refused_before_anything_is_read_naming_both_and_the_fix(tmp_path):
    _csv(tmp_path / "day1" / "data.csv", 1), _csv(tmp_path / "day2" / "data.csv", 2)
    store = tmp_path / "S"
    _csv(tmp_path / "other.csv", 3)
    ok("ingest", _stem_spec(tmp_path, "other", ["other.csv"]), "--out", store, "--scheduler", "sync", "--no-progress")
    before = tree_bytes(store)
    same = _stem_spec(tmp_path, "days", ["day1/data.csv", "day2/data.csv"])
    for extra in ((), ("--overwrite",)):  # refused before the store is touched, emptied by --overwrite included
        result = nw2("ingest", same, "--out", store, *extra, "--scheduler", "sync", "--no-progress")
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert result.output.startswith("error: day1/data.csv and day2/data.csv would both be dataset 'diary', "
                                        "subject 'data', record 'data' (the file stem), so their windows would get "
                                        "the same ids; give each file a record of its own with its source's "
                                        "record_pattern"), result.output
        assert tree_bytes(store) == before
    assert nw2("ingest", same, "--out", tmp_path / "new", "--scheduler", "sync").exit_code == 1
    assert not (tmp_path / "new").exists()  # nothing is created either
    told = _stem_spec(tmp_path, "told", ["day1/data.csv", "day2/data.csv"], record_pattern="([^/]+)/data")
    ok("ingest", told, "--out", store, "--scheduler", "sync", "--no-progress")
    rows = pl.read_parquet(store / "data" / "*.parquet", columns=["window_id", "source", "subject", "record"])
    assert rows.get_column("window_id").is_unique().all()
    days = rows.filter(pl.col("source") != "other.csv").unique(["source", "subject", "record"]).sort("source")
    assert days.select("source", "subject", "record").rows() == [("day1/data.csv", "data", "day1"),
                                                                 ("day2/data.csv", "data", "day2")]
    listed = [e["path"] for e in json.loads((store / "manifest.json").read_text())["inputs"]]
    assert listed == ["day1/data.csv", "day2/data.csv", "other.csv"]


def test_a_file_with_the_stem_of_an_earlier_ingests_file_is_named_removed_and_then_told_apart(tmp_path):
    _csv(tmp_path / "day1" / "data.csv", 1), _csv(tmp_path / "day2" / "data.csv", 2, seconds=60.0)
    store = tmp_path / "S"
    ok("ingest", _stem_spec(tmp_path, "one", ["day1/data.csv"]), "--out", store, "--scheduler", "sync",
       "--no-progress")
    first = {p.name for p in (store / "data").iterdir()}
    result = nw2("ingest", _stem_spec(tmp_path, "two", ["day2/data.csv"]), "--out", store, "--scheduler", "sync",
                 "--no-progress")
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "\n" not in line and "day2/data.csv and day1/data.csv (data/part-" in line, line
    assert ") are both dataset 'diary', subject 'data', record 'data' (the file stem unless the spec says " \
           "otherwise), so 7 window(s) got the same ids; this run's parts of day2/data.csv were removed" in line, line
    assert "give it a record of its own with its source's record_pattern" in line and "--overwrite" not in line
    # every part of day2 goes (its windows past day1's length have ids of their own: kept, they would be stored
    # twice, under two records, once the spec is fixed)
    assert {p.name for p in (store / "data").iterdir()} == first
    assert not (store / "manifest.json").exists()
    ok("ingest", _stem_spec(tmp_path, "fixed", ["day2/data.csv"], record_pattern="([^/]+)/data"), "--out", store,
       "--scheduler", "sync", "--no-progress")
    listed = [e["path"] for e in json.loads((store / "manifest.json").read_text())["inputs"]]
    assert listed == ["day1/data.csv", "day2/data.csv"]  # the earlier ingest's input kept (its manifest set aside)
    rows = pl.read_parquet(store / "data" / "*.parquet", columns=["window_id", "record"])
    assert rows.get_column("window_id").is_unique().all()
    assert rows.group_by("record").len().sort("record").rows() == [("data", 7), ("day2", 11)]


def test_a_copy_of_an_ingested_file_is_refused_naming_both_now_or_in_a_later_ingest(sample, tmp_path):
    """A part's name comes from the file's bytes and the settings, not its path: before, a copy in another folder
    (ingested later, or with another stem in the same run) got the first file's parts, and the manifest listed it
    as ingested with windows that were the other file's (38 windows from 2 inputs over 19 rows)."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first = _ecg(sample, tmp_path / "a" / "rec.npy", seconds=120.0)
    (tmp_path / "b" / "rec.npy").write_bytes(first.read_bytes())
    store = tmp_path / "S"
    how = ("--fs", 360, "--modality", "ecg", "--scheduler", "sync", "--no-progress", "--no-metrics")
    args = (*how, "--out", store)
    ok("ingest", first, *args)
    built = tree_bytes(store)
    result = nw2("ingest", tmp_path / "b" / "rec.npy", *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {store}: {tmp_path}/b/rec.npy has the same bytes as {tmp_path}/a/rec.npy (read with the same "
        f"settings, they give the same parts: data/part-"), lines
    assert lines[0].endswith("rerun without one of them (or, if it is the other moved, rebuild the store from it "
                             "with --overwrite)"), lines
    assert not (store / "manifest.json").exists()  # unfinished: nothing downstream takes it for whole
    ok("ingest", first, *args)  # the earlier ingest, rerun, finishes it as it was
    assert tree_bytes(store) == built
    # in one run, under another stem: refused the same way, and the rerun without the copy is a fresh ingest's
    (tmp_path / "a" / "copy.npy").write_bytes(first.read_bytes())
    other = tmp_path / "T"
    result = nw2("ingest", tmp_path / "a", *how, "--out", other)
    assert result.exit_code == 1 and f"{tmp_path}/a/rec.npy has the same bytes as {tmp_path}/a/copy.npy" \
        in result.output, result.output
    (tmp_path / "a" / "copy.npy").unlink()
    ok("ingest", tmp_path / "a", *how, "--out", other)
    fresh = tmp_path / "U"
    ok("ingest", tmp_path / "a", *how, "--out", fresh)
    assert tree_bytes(other) == tree_bytes(fresh)
