"""Each window once: a store holds every ``window_id`` once, checked at the end of every ingest, and its manifest
lists every input whose parts it holds (issue 16: re-ingesting a file with another modality or piece size gave
duplicate window ids that balance then drew)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from helpers import nw2, ok


def _ecg(sample, path: Path, seconds: float = 600.0) -> Path:
    ecg = np.load(sample("mitbih_208"))["ecg"]
    np.save(path, ecg[: int(seconds * 360)].astype(np.float64))
    return path


def _refused_as_duplicate(result, store: Path) -> None:
    assert result.exit_code == 1, result.output
    assert "window(s) that this ingest wrote too (the same input read with another modality, reader option or " \
           "piece size gives the same window ids); rebuild the store with --overwrite" in result.output, result.output
    assert not (store / "manifest.json").exists()  # unfinished: nothing downstream takes the duplicates for data
    refused = nw2("balance", store, "--out", store.parent / "C", "--fraction", "0.5")
    assert refused.exit_code == 1 and "its nw2 ingest did not finish" in refused.output


def test_the_same_file_under_another_modality_is_refused_not_stored_twice(sample, tmp_path):
    g = _ecg(sample, tmp_path / "g.npy", 120)
    store = tmp_path / "S"
    ok("ingest", g, "--fs", 360, "--modality", "ecg", "--out", store, "--no-metrics", "--scheduler", "sync",
       "--no-progress")
    result = nw2("ingest", g, "--fs", 360, "--modality", "ppg", "--out", store, "--no-metrics", "--scheduler",
                 "sync", "--no-progress")
    _refused_as_duplicate(result, store)
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
