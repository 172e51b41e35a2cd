"""``nw2 balance`` end to end on the demo store: the seven strategies from the CLI, the corpus they
write (rows, splits, quotas, statistics, determinism) and reading it without nw2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import nw2, read_all, read_corpus, tree_bytes

STRATEGIES = ("random", "stratified", "grid", "inverse", "temperature", "kmeans", "coverage")
SIZE = 240          # the demo store's train split holds 1059 rows


@pytest.fixture(scope="module")
def store(demo_store):
    return demo_store


@pytest.fixture(scope="module")
def store_table(store):
    return read_all(store)


@pytest.fixture(scope="module")
def corpora(store, tmp_path_factory):
    """One corpus per strategy, written through the CLI."""
    root = tmp_path_factory.mktemp("corpora")
    made = {}
    for strategy in STRATEGIES:
        out = root / strategy
        result = nw2("balance", "--no-dedup", store, "--strategy", strategy, "--size", SIZE, "--out", out, "--seed", 0, "--k", 8)
        assert result.exit_code == 0, result.output
        assert f"{SIZE} of 1059 train rows ({strategy}" in result.stdout
        made[strategy] = out
    return made


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_writes_a_complete_corpus(corpora, store, store_table, strategy):
    corpus = corpora[strategy]
    table, info = read_corpus(corpus)
    assert info["format"] == "nw2-corpus" and info["version"] == 1 and info["strategy"] == strategy
    assert info["selected"] == info["size"] == SIZE and info["candidates"] == 1059
    split = np.asarray(table.column("split").to_pylist())
    assert (split == "train").sum() == SIZE
    assert info["rows"]["train"]["before"] == 1059 and info["rows"]["train"]["after"] == SIZE
    assert info["rows"]["train"]["balanced"] and info["rows"]["train"]["excluded"] == 0
    assert table.num_rows == info["corpus_rows"] == SIZE + 20 + 88
    # the corpus's own columns, after every store column
    assert table.column_names == store_table.column_names + ["bin_id", "sample_weight"]
    assert table.schema.field("bin_id").type == pa.int64() and table.schema.field("sample_weight").type == pa.float64()
    assert np.all(table.column("sample_weight").to_numpy() == 1.0)
    assert [c["name"] for c in info["columns"]] == table.column_names
    # parts: store settings, listed with their sizes; the report is there
    assert [p["path"] for p in info["parts"]] == sorted(p.relative_to(corpus).as_posix()
                                                        for p in (corpus / "data").glob("*.parquet"))
    meta = pq.ParquetFile(corpus / info["parts"][0]["path"]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD" and meta.row_group(0).num_rows <= 1024
    assert b"nw2.corpus" in meta.metadata and b"nw2.metrics" in meta.metadata
    assert info["report"] and all((corpus / f).is_file() for f in info["report"])
    assert "report/report.md" in info["report"]
    stats = info["balance_stats"]
    assert set(stats) == {"selection", "random", "candidates"}
    for kind in stats.values():
        assert 0 < kind["normalized_entropy"] <= 1 and kind["kl_to_uniform"] >= 0
    if strategy == "kmeans":
        assert info["bin_id"] == "kmeans cluster" and sum(c["after"] for c in info["cluster_counts_after"]) == SIZE
        bins = table.filter(pa.compute.equal(table.column("split"), "train")).column("bin_id").to_numpy()
        assert bins.min() >= -1 and bins.max() < 8   # -1: the rows with an undefined metric
    else:
        assert info["bin_id"] == "grid cell"
    assert "/" not in info["store"]["name"] and str(store) not in json.dumps(info)


def test_corpus_rows_are_the_store_rows(corpora, store_table):
    """Every store column of every corpus row equals the store row it came from; store order kept."""
    index = {w: i for i, w in enumerate(store_table.column("window_id").to_pylist())}
    assert len(index) == store_table.num_rows
    for strategy in ("grid", "coverage"):
        table, _ = read_corpus(corpora[strategy])
        taken = np.array([index[w] for w in table.column("window_id").to_pylist()])
        assert np.all(np.diff(taken) > 0)                      # store order, no repeats without --replace
        ours = table.drop_columns(["bin_id", "sample_weight"]).replace_schema_metadata(None)
        theirs = store_table.take(pa.array(taken)).replace_schema_metadata(None)
        assert ours.equals(theirs)


def test_val_and_test_carried_through_and_subject_disjoint(corpora, store_table):
    table, info = read_corpus(corpora["inverse"])
    cells = dict(zip(table.column("window_id").to_pylist(), table.column("bin_id").to_pylist()))
    for split in ("val", "test"):
        mine = table.filter(pa.compute.equal(table.column("split"), split))
        theirs = store_table.filter(pa.compute.equal(store_table.column("split"), split))
        assert mine.column("window_id").to_pylist() == theirs.column("window_id").to_pylist()
        assert np.all(mine.column("sample_weight").to_numpy() == 1.0)
        assert info["rows"][split]["before"] == info["rows"][split]["after"] == theirs.num_rows
        assert not info["rows"][split]["balanced"]
    subjects = {s: {(d, x) for d, x, sp in zip(table.column("dataset").to_pylist(),
                                                 table.column("subject").to_pylist(),
                                                 table.column("split").to_pylist()) if sp == s}
                for s in ("train", "val", "test")}
    assert not subjects["train"] & subjects["val"] and not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]
    # the carried rows' bin_id is their grid cell: inside the grid or the undefined bin
    carried = [cells[w] for w, sp in zip(table.column("window_id").to_pylist(), table.column("split").to_pylist())
               if sp != "train"]
    assert all(-1 <= c < info["cells"] for c in carried)


def test_grid_quotas_and_statistics(corpora):
    table, info = read_corpus(corpora["grid"])
    before = np.array([c["before"] for c in info["cell_counts"]])
    after = np.array([c["after"] for c in info["cell_counts"]])
    assert after.sum() == SIZE and np.all(after <= before)
    # equal quota per occupied cell, the leftover spread over cells that still had rows: water filling
    level = after.max()
    assert np.all((after == before) | (after >= level - 1))
    train = table.filter(pa.compute.equal(table.column("split"), "train"))
    got = dict(zip(*np.unique(train.column("bin_id").to_numpy(), return_counts=True)))
    listed = {c["cell"]: c["after"] for c in info["cell_counts"] if c["after"]}
    assert listed == {int(k): int(v) for k, v in got.items()}
    s, r = info["balance_stats"]["selection"], info["balance_stats"]["random"]
    assert s["normalized_entropy"] > r["normalized_entropy"]
    assert s["kl_to_uniform"] < r["kl_to_uniform"]
    assert s["effective_regimes"] > r["effective_regimes"]
    assert s["fraction_of_cells_kept"] >= r["fraction_of_cells_kept"]
    assert sum(info["mix"]["dataset"]["after"].values()) == SIZE
    assert sum(info["mix"]["dataset"]["before"].values()) == 1059


def test_balancing_strategies_beat_random(corpora):
    for strategy in ("grid", "inverse", "temperature"):
        _, info = read_corpus(corpora[strategy])
        s, r = info["balance_stats"]["selection"], info["balance_stats"]["random"]
        assert s["normalized_entropy"] > r["normalized_entropy"], strategy
    _, info = read_corpus(corpora["random"])
    assert info["balance_stats"]["selection"] == info["balance_stats"]["random"]   # same size, same seed


def test_same_seed_same_bytes_other_seed_other_sample(corpora, store, tmp_path):
    again = tmp_path / "again"
    assert nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", SIZE, "--out", again, "--seed", 0).exit_code == 0
    assert tree_bytes(again) == tree_bytes(corpora["grid"])
    other = tmp_path / "other"
    assert nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", SIZE, "--out", other, "--seed", 1,
               "--no-report").exit_code == 0
    a, b = (json.loads((p / "corpus.json").read_text()) for p in (again, other))
    assert a["content_sha256"] != b["content_sha256"] and a["store"] == b["store"] and b["report"] == []
    # the hash is that of the parts' bytes in order
    import hashlib
    h = hashlib.sha256()
    for part in a["parts"]:
        h.update((again / part["path"]).read_bytes())
    assert h.hexdigest() == a["content_sha256"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary directory left


def test_weights_only_keeps_every_candidate_once(store, store_table, tmp_path):
    out = tmp_path / "weights"
    result = nw2("balance", "--no-dedup", store, "--strategy", "inverse", "--weights-only", "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    table, info = read_corpus(out)
    assert table.num_rows == store_table.num_rows and info["size"] is None and info["weights_only"]
    assert table.column("window_id").to_pylist() == store_table.column("window_id").to_pylist()
    train = table.filter(pa.compute.equal(table.column("split"), "train"))
    w, cells = train.column("sample_weight").to_numpy(), train.column("bin_id").to_numpy()
    assert abs(w.mean() - 1) < 1e-9
    _, inverse, count = np.unique(cells, return_inverse=True, return_counts=True)
    ratio = w * count[inverse]                                   # inverse: weight proportional to 1/cell count
    assert np.allclose(ratio, ratio[0])
    s = info["balance_stats"]["selection"]
    assert s["normalized_entropy"] > info["balance_stats"]["random"]["normalized_entropy"]
    assert all("after_weighted" in c for c in info["cell_counts"])


def test_replace_repeats_rows_and_fraction(store, tmp_path):
    out = tmp_path / "replace"
    result = nw2("balance", "--no-dedup", store, "--strategy", "inverse", "--size", 2000, "--replace", "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    table, info = read_corpus(out)
    ids = table.column("window_id").to_pylist()
    assert info["selected"] == 2000 and info["distinct_selected"] < 1059 and len(ids) == 2000 + 108
    assert info["corpus_rows"] == 2108 and len(info["parts"]) == 1
    out = tmp_path / "fraction"
    assert nw2("balance", "--no-dedup", store, "--strategy", "random", "--fraction", 0.25, "--out", out, "--no-report").exit_code == 0
    info = json.loads((out / "corpus.json").read_text())
    assert info["size"] == round(0.25 * 1059) and info["fraction"] == 0.25


READER = textwrap.dedent(r'''
    import glob, hashlib, json, os, sys
    import numpy as np
    corpus = sys.argv[1]
    files = sorted(glob.glob(os.path.join(corpus, "data", "part-*.parquet")))
    def first(window_id, samples):
        return [window_id, hashlib.sha256(np.asarray(samples, dtype=np.float32).tobytes()).hexdigest()]
    out = {}

    import pyarrow.dataset as ds
    t = ds.dataset(os.path.join(corpus, "data"), format="parquet").to_table()
    out["pyarrow"] = [t.num_rows, first(t.column("window_id")[0].as_py(), t.column("samples")[0].values.to_numpy())]

    import polars as pl
    df = pl.scan_parquet(files).select("window_id", "samples").collect()
    out["polars"] = [df.height, first(df["window_id"][0], df["samples"][0].to_numpy())]

    import duckdb
    con = duckdb.connect()
    n = con.execute("select count(*) from read_parquet(?)", [files]).fetchone()[0]
    w, s = con.execute("select window_id, samples from read_parquet(?) limit 1", [files]).fetchone()
    out["duckdb"] = [n, first(w, s)]

    from datasets import load_dataset
    hf = load_dataset("parquet", data_files=files, split="train")
    out["datasets"] = [hf.num_rows, first(hf[0]["window_id"], hf[0]["samples"])]

    import pyarrow.parquet as pq
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Windows(Dataset):
        def __init__(self, files):
            self.tables = [pq.read_table(f, columns=["window_id", "samples", "sample_weight"]) for f in files]
            self.index = [(i, r) for i, t in enumerate(self.tables) for r in range(t.num_rows)]
        def __len__(self):
            return len(self.index)
        def __getitem__(self, k):
            i, r = self.index[k]
            t = self.tables[i]
            x = torch.from_numpy(np.asarray(t.column("samples")[r].values.to_numpy(), dtype=np.float32))
            return t.column("window_id")[r].as_py(), x, t.column("sample_weight")[r].as_py()

    n, head = 0, None
    for ids, x, w in DataLoader(Windows(files), batch_size=64, shuffle=False):
        if head is None:
            head = first(ids[0], x[0].numpy())
        n += len(ids)
    out["torch"] = [n, head]

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pipeline", "cli", "model"))
    assert not loaded, loaded
    print("RESULT " + json.dumps(out))
''')


def test_read_without_nw2(corpora, tmp_path):
    """pyarrow, polars, DuckDB, Hugging Face datasets and a plain PyTorch Dataset read the corpus in an
    interpreter that never imports nw2, and agree on the rows and the first window."""
    corpus = corpora["temperature"]
    hf = tmp_path / "hf"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PYTHON"))}
    env.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(hf), HF_DATASETS_CACHE=str(hf / "datasets"),
               TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-I", "-c", READER, str(corpus)], cwd="/", env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    info = json.loads((corpus / "corpus.json").read_text())
    table, _ = read_corpus(corpus)
    expected = [info["corpus_rows"], [table.column("window_id")[0].as_py(), __import__("hashlib").sha256(
        table.column("samples")[0].values.to_numpy().astype(np.float32).tobytes()).hexdigest()]]
    assert set(result) == {"pyarrow", "polars", "duckdb", "datasets", "torch"}
    for reader, got in result.items():
        assert got == expected, reader


def test_parts_split_at_rows_per_part(store, tmp_path, monkeypatch):
    """The streaming copy cuts parts at ROWS_PER_PART rows whatever the store's parts and row groups are;
    the rows are those of a one-part corpus."""
    from nw2.pipeline.balance import corpus as corpus_module
    from nw2.pipeline.balance.stage import balance
    from nw2.pipeline.spec import BalanceSpec

    spec = BalanceSpec(strategy="inverse", size=1500, replace=True, seed=4)
    whole = balance(str(store), str(tmp_path / "whole"), spec, report=False)
    monkeypatch.setattr(corpus_module, "ROWS_PER_PART", 100)
    cut = balance(str(store), str(tmp_path / "cut"), spec, report=False)
    assert [p["rows"] for p in cut.info["parts"]] == [100] * 16 + [8]
    assert [p["path"] for p in cut.info["parts"]][:2] == ["data/part-00000.parquet", "data/part-00001.parquet"]
    a, _ = read_corpus(tmp_path / "whole")
    b, _ = read_corpus(tmp_path / "cut")
    assert a.equals(b) and whole.info["content_sha256"] != cut.info["content_sha256"]
    assert all(pq.ParquetFile(tmp_path / "cut" / p["path"]).metadata.num_rows == p["rows"] for p in cut.info["parts"])


def test_cell_counts_lists_the_fullest_cells_beyond_the_cap():
    # A grid over all 13 metrics gives nearly a cell per candidate; corpus.json lists the fullest ones.
    from nw2.pipeline.balance.stage import MAX_LISTED_CELLS, _cell_counts

    n_cells = MAX_LISTED_CELLS + 500
    before = np.concatenate([np.arange(n_cells), np.arange(0, n_cells, 7)])   # every 7th cell twice
    after = np.array([0, 7, 7, 1])
    listed = _cell_counts(before, after, None)
    assert len(listed) == MAX_LISTED_CELLS
    cells = [c["cell"] for c in listed]
    assert cells == sorted(cells)
    twice = set(range(0, n_cells, 7))
    # all the doubly occupied cells, then the singly occupied ones with the lowest ids
    singles = [c for c in range(n_cells) if c not in twice][:MAX_LISTED_CELLS - len(twice)]
    assert set(cells) == twice | set(singles)
    by_cell = {c["cell"]: c for c in listed}
    assert by_cell[7] == {"cell": 7, "before": 2, "after": 2} and by_cell[1] == {"cell": 1, "before": 1, "after": 1}
    weighted = _cell_counts(before, after, np.array([0.5, 1.0, 1.0, 2.0]))
    assert {c["cell"]: c["after_weighted"] for c in weighted}[7] == 2.0
    assert _cell_counts(np.array([3, 3, 5]), np.array([5]), None) == [
        {"cell": 3, "before": 2, "after": 0}, {"cell": 5, "before": 1, "after": 1}]
