"""``nw2 balance`` bad input (one-line errors, nothing written), the spec's ``balance:`` section and
flags over it, atomic output (temporary directory, ``--overwrite``, fsspec URLs), NaN policy, splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from helpers import DEMO, nw2, read_corpus, tree_bytes, vouch
from nw2.artifacts.corpus import Corpus
from nw2.pipeline.balance.stage import balance
from nw2.core.errors import Nw2Error, SpecError
from nw2.pipeline.metrics.suite import METRICS
from nw2.pipeline.spec import BalanceSpec, balance_from_dict, load_spec


@pytest.fixture(scope="module")
def store(demo_store):
    return demo_store


def strip_metrics(store: Path, dest: Path, keep: tuple[str, ...] = ()) -> Path:
    """A copy of ``store`` whose parts hold only the metric columns ``keep`` (none: as before nw2 metrics)."""
    shutil.copytree(store, dest, ignore=shutil.ignore_patterns("*.parquet", "metrics.json"))
    for part in sorted((store / "data").glob("*.parquet")):
        table = pq.read_table(part)
        drop = [c for c in table.column_names if (c in METRICS and c not in keep)
                or (c == "metrics_undefined" and not keep)]
        pq.write_table(table.drop_columns(drop), dest / "data" / part.name)
        vouch(dest / "data" / part.name)
    if keep:
        info = json.loads((store / "metrics.json").read_text())
        info["names"] = list(keep)
        info["fingerprints"] = {k: v for k, v in info["fingerprints"].items() if k in keep}
        (dest / "metrics.json").write_text(json.dumps(info))
    return dest


def spec_file(tmp_path: Path, balance_section: dict) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["balance"] = balance_section
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def assert_refused(result, out: Path, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in result.output, result.output
    assert result.stdout == ""
    for needle in needles:
        assert needle in err, err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return err


def test_store_without_metrics(store, tmp_path):
    bare = strip_metrics(store, tmp_path / "bare")
    assert_refused(nw2("balance", "--no-dedup", bare, "--strategy", "grid", "--size", 10, "--out", tmp_path / "c"),
                   tmp_path / "c", f"run nw2 metrics {bare} first")


def test_unknown_strategy_lists_the_valid_ones(store, tmp_path):
    err = assert_refused(nw2("balance", "--no-dedup", store, "--strategy", "balanced", "--size", 10, "--out", tmp_path / "c"),
                         tmp_path / "c", "'balanced'")
    assert all(s in err for s in ("random", "stratified", "grid", "inverse", "temperature", "kmeans", "coverage"))


def test_size_larger_than_available(store, tmp_path):
    assert_refused(nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 5000, "--out", tmp_path / "c"),
                   tmp_path / "c", "5000", "1059", "--replace")
    assert_refused(nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 700, "--splits", "val,test",
                       "--out", tmp_path / "c"), tmp_path / "c", "700", "108")


def test_empty_store_and_no_store(store, tmp_path):
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    shutil.copy(store / "store.json", empty / "store.json")
    (empty / "manifest.json").write_text('{"schema_version": 4, "inputs": []}')  # a finished ingest of nothing
    assert_refused(nw2("balance", "--no-dedup", empty, "--strategy", "grid", "--size", 10, "--out", tmp_path / "c"),
                   tmp_path / "c", "empty store")
    assert_refused(nw2("balance", "--no-dedup", tmp_path / "nowhere", "--strategy", "grid", "--size", 10, "--out", tmp_path / "c"),
                   tmp_path / "c", "no such store")
    assert_refused(nw2("balance", "--no-dedup", tmp_path, "--strategy", "grid", "--size", 10, "--out", tmp_path / "c"),
                   tmp_path / "c", "not a window store")


def test_missing_metrics(store, tmp_path):
    few = strip_metrics(store, tmp_path / "few", keep=("sample_entropy", "dfa"))
    spec = spec_file(tmp_path, {"strategy": "grid", "size": 10, "metrics": ["largest_lyapunov", "dfa"]})
    assert_refused(nw2("balance", "--no-dedup", few, "--spec", spec, "--out", tmp_path / "c"), tmp_path / "c",
                   "metric largest_lyapunov not in the store", "sample_entropy, dfa")
    # without a list: every metric the store holds
    result = nw2("balance", "--no-dedup", few, "--size", 10, "--out", tmp_path / "all", "--no-report")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "all" / "corpus.json").read_text())
    assert info["metrics"] == ["sample_entropy", "dfa"] and info["strategy"] == "coverage"
    assert info["independent_diversity"]["space"]["metrics"] == ["sample_entropy", "dfa"]
    spec = spec_file(tmp_path, {"strategy": "grid", "size": 10, "metrics": ["sample_entropy", "lyapunov"]})
    assert_refused(nw2("balance", "--no-dedup", store, "--spec", spec, "--out", tmp_path / "c"), tmp_path / "c",
                   "metric lyapunov not in the store")
    # the same store balances on the metrics it holds
    result = nw2("balance", "--no-dedup", few, "--strategy", "grid", "--size", 10, "--metrics", "sample_entropy,dfa",
                 "--out", tmp_path / "ok", "--no-report")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "ok" / "corpus.json").read_text())
    assert info["metrics"] == ["sample_entropy", "dfa"] and info["dims"] == 2 and info["cells"] == 25


def test_size_and_fraction(store, tmp_path):
    out = tmp_path / "c"
    assert_refused(nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 10, "--fraction", 0.1, "--out", out),
                   out, "--size or --fraction, not both")
    assert_refused(nw2("balance", "--no-dedup", store, "--strategy", "grid", "--out", out), out, "--size N or --fraction F")
    assert_refused(nw2("balance", "--no-dedup", store, "--strategy", "grid", "--fraction", 1.5, "--out", out), out,
                   "balance.fraction")
    assert_refused(nw2("balance", "--no-dedup", store, "--strategy", "coverage", "--size", 10, "--replace", "--out", out), out,
                   "coverage")


def test_out_must_be_free(store, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    for extra in ((), ("--overwrite",)):
        result = nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 10, "--out", out, *extra)
        assert result.exit_code == 1 and result.stderr.startswith("error: ")
        assert (out / "mine.txt").read_text() == "precious" and len(list(out.iterdir())) == 1
    assert "--overwrite" in nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 10, "--out", out).stderr
    assert "not an nw2 corpus" in nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 10, "--out", out,
                                      "--overwrite").stderr
    inside = store / "corpus"
    assert_refused(nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 10, "--out", inside), inside, "store")
    # an empty directory is fine; a corpus is replaced with --overwrite
    empty = tmp_path / "empty"
    empty.mkdir()
    assert nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 10, "--out", empty, "--no-report").exit_code == 0
    assert nw2("balance", "--no-dedup", store, "--strategy", "random", "--size", 20, "--out", empty, "--no-report").exit_code == 1
    result = nw2("balance", "--no-dedup", store, "--strategy", "random", "--size", 20, "--out", empty, "--no-report", "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((empty / "corpus.json").read_text())["size"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "taken"]


def test_spec_section_and_flags_over_it(store, tmp_path):
    spec = spec_file(tmp_path, {"strategy": "temperature", "size": 50, "seed": 3, "tau": 0.25, "bins": 4,
                                "pca": 2, "splits": ["train"]})
    assert load_spec(spec).balance == BalanceSpec(strategy="temperature", size=50, seed=3, tau=0.25, bins=4, pca=2)
    out = tmp_path / "a"
    result = nw2("balance", "--no-dedup", store, "--spec", spec, "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "corpus.json").read_text())
    assert (info["strategy"], info["size"], info["seed"], info["params"], info["bins_per_dim"], info["pca"]) == \
        ("temperature", 50, 3, {"tau": 0.25}, 4, 2)
    out = tmp_path / "b"
    result = nw2("balance", "--no-dedup", store, "--spec", spec, "--out", out, "--no-report", "--fraction", 0.1, "--tau", 1,
                 "--pca", 0, "--strategy", "temperature")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "corpus.json").read_text())
    assert (info["size"], info["fraction"], info["params"], info["pca"], info["components"], info["dims"]) == \
        (106, 0.1, {"tau": 1.0}, None, None, 13)
    out = tmp_path / "w"
    result = nw2("balance", "--no-dedup", store, "--spec", spec, "--out", out, "--no-report", "--weights-only")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "corpus.json").read_text())["size"] is None


@pytest.mark.parametrize("section, field", [
    ({"strategy": "best"}, "balance.strategy"), ({"size": 0}, "balance.size"), ({"tau": -1}, "balance.tau"),
    ({"splits": ["train", "dev"]}, "balance.splits"), ({"nan_policy": "drop"}, "balance.nan_policy"),
    ({"bins": 1}, "balance.bins"), ({"by": "subject"}, "balance.by"), ({"size": 5, "fraction": 0.5}, "balance"),
    ({"weights_only": True, "size": 5}, "balance.weights_only"), ({"pca": 0}, "balance.pca"),
    ({"k": 0}, "balance.k"), ({"seed": -1}, "balance.seed"), ({"sizes": 5}, "balance"),
    ({"splits": "train"}, "balance.splits"), ({"metrics": []}, "balance.metrics")])
def test_spec_validation_names_the_field(tmp_path, section, field):
    with pytest.raises(SpecError, match=f"spec.yaml.*{field.replace('.', '[.]')}"):
        load_spec(spec_file(tmp_path, section))
    with pytest.raises(SpecError, match=field.replace(".", "[.]")):
        balance_from_dict(section)


def test_nothing_left_when_writing_fails(store, tmp_path, monkeypatch):
    out = tmp_path / "c"

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Corpus, "hash_parts", broken)
    with pytest.raises(Nw2Error, match="cannot write the corpus"):
        balance(str(store), str(out), BalanceSpec(strategy="grid", size=10), report=False)
    assert list(tmp_path.iterdir()) == []
    # an earlier corpus survives a failed --overwrite untouched
    monkeypatch.undo()
    balance(str(store), str(out), BalanceSpec(strategy="grid", size=10), report=False)
    before = tree_bytes(out)
    monkeypatch.setattr(Corpus, "write_info", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        balance(str(store), str(out), BalanceSpec(strategy="grid", size=20), overwrite=True, report=False)
    assert tree_bytes(out) == before and [p.name for p in tmp_path.iterdir()] == ["c"]


def test_fsspec_url_written_in_place_with_corpus_json_last(store, tmp_path, monkeypatch):
    mem = fsspec.filesystem("memory")
    url = "memory://balance-test/corpus"
    try:
        result = nw2("balance", "--no-dedup", store, "--strategy", "inverse", "--size", 30, "--out", url)
        assert result.exit_code == 0, result.output
        info = json.loads(mem.cat("/balance-test/corpus/corpus.json"))
        assert info["selected"] == 30 and "report/report.md" in info["report"]
        assert mem.exists("/balance-test/corpus/report/report.md")
        local = tmp_path / "local"
        result = nw2("balance", "--no-dedup", store, "--strategy", "inverse", "--size", 30, "--out", local, "--no-report")
        assert result.exit_code == 0, result.output
        part = "data/part-00000.parquet"
        assert mem.cat(f"/balance-test/corpus/{part}") == (local / part).read_bytes()
        assert dict(info, report=[]) == json.loads((local / "corpus.json").read_text())
        # an error on the way removes what was written
        monkeypatch.setattr(Corpus, "write_info", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O")))
        with pytest.raises(Nw2Error, match="cannot write"):
            balance(str(store), "memory://balance-test/broken", BalanceSpec(strategy="grid", size=10), report=False)
        assert not mem.exists("/balance-test/broken")
    finally:
        if mem.exists("/balance-test"):
            mem.rm("/balance-test", recursive=True)


def test_nan_policy_and_balanced_splits(store, tmp_path):
    out = tmp_path / "exclude"
    result = nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 100, "--nan-policy", "exclude",
                 "--metrics", "correlation_dimension,sample_entropy,dfa", "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    table, info = read_corpus(out)
    train = info["rows"]["train"]
    assert train["excluded"] == train["undefined"] > 0 and info["candidates"] == 1059 - train["excluded"]
    bins = np.asarray(table.column("bin_id").to_pylist())
    split = np.asarray(table.column("split").to_pylist())
    assert (bins[split == "train"] >= 0).all() and all(c["cell"] >= 0 for c in info["cell_counts"])
    assert info["rows"]["test"]["after"] == info["rows"]["test"]["before"] == 88   # carried, undefined or not
    out = tmp_path / "two"
    result = nw2("balance", "--no-dedup", store, "--strategy", "grid", "--size", 500, "--splits", "train,val", "--out", out,
                 "--no-report")
    assert result.exit_code == 0, result.output
    info = json.loads((out / "corpus.json").read_text())
    assert info["candidates"] == 1079 and info["balanced_splits"] == ["train", "val"]
    assert info["rows"]["train"]["after"] + info["rows"]["val"]["after"] == 500
    # undefined on any of the store's 13 metrics (chaos_01 on oversampled windows, most of them)
    assert info["rows"]["test"] == {"before": 88, "after": 88, "balanced": False, "undefined": 45, "excluded": 0}


def test_docs_list_every_balance_field():
    import dataclasses

    doc = (DEMO.parents[1] / "docs" / "corpus_format.md").read_text()
    for f in dataclasses.fields(BalanceSpec):
        assert f"  {f.name}:" in doc, f"docs/corpus_format.md does not document balance.{f.name}"
    block = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    section = yaml.safe_load(block)["balance"]
    assert balance_from_dict(section) == BalanceSpec(size=50000)


def _train_values(table, column: str) -> list:
    return [v for v, s in zip(table.column(column).to_pylist(), table.column("split").to_pylist()) if s == "train"]


def test_caps_and_mixture_from_the_spec(store, tmp_path):
    spec = spec_file(tmp_path, {"size": 300, "caps": {"dataset": 0.3, "record": 0.1}})
    out = tmp_path / "capped"
    result = nw2("balance", "--no-dedup", store, "--spec", spec, "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    table, info = read_corpus(out)
    train, records = _train_values(table, "dataset"), _train_values(table, "record")
    assert len(train) == 300 - info["constraints"]["short_by"]
    assert max(train.count(d) for d in set(train)) <= 90 and max(records.count(r) for r in set(records)) <= 30
    assert info["constraints"]["caps"]["dataset"]["cap"] == 90
    spec = spec_file(tmp_path, {"size": 100, "mixture": {"mitbih": 1, "eegmmi": 3}})
    out = tmp_path / "mixed"
    result = nw2("balance", "--no-dedup", store, "--spec", spec, "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    table, info = read_corpus(out)
    train = _train_values(table, "dataset")
    assert (train.count("mitbih"), train.count("eegmmi"), len(train)) == (25, 75, 100)
    mixture = info["constraints"]["mixture"]
    assert {k: v for k, v in mixture["quotas"].items() if v} == {"mitbih": 25, "eegmmi": 75}
    assert sorted(mixture["excluded"]) == sorted(k for k, v in mixture["quotas"].items() if not v)
    assert info["constraints"]["datasets"]["mitbih"] == 25
    spec = spec_file(tmp_path, {"size": 100, "mixture": {"mitbih": 1, "nosuch": 1}})
    assert_refused(nw2("balance", store, "--spec", spec, "--out", tmp_path / "bad"), tmp_path / "bad",
                   "balance.mixture names dataset 'nosuch'")
    spec = spec_file(tmp_path, {"size": 100, "mixture": {"mitbih": 1, "pyphysio": 1}})  # pyphysio: test split only
    assert_refused(nw2("balance", store, "--spec", spec, "--out", tmp_path / "bad"), tmp_path / "bad",
                   "'pyphysio', which has no candidate rows in the balanced splits")
    spec = spec_file(tmp_path, {"size": 100, "caps": {"channel": 0.1}})
    assert_refused(nw2("balance", store, "--spec", spec, "--out", tmp_path / "bad"), tmp_path / "bad",
                   "caps: 'channel' is not one of record, subject, dataset")


def test_a_metric_undefined_everywhere_leaves_the_default_space(store, tmp_path):
    import pyarrow as pa

    dest = tmp_path / "no-chaos"
    shutil.copytree(store, dest, ignore=shutil.ignore_patterns("*.parquet"))
    for part in sorted((store / "data").glob("*.parquet")):
        table = pq.read_table(part)
        i = table.column_names.index("chaos_01")
        table = table.set_column(i, table.schema.field(i), pa.nulls(table.num_rows, table.schema.field(i).type))
        pq.write_table(table, dest / "data" / part.name)
        vouch(dest / "data" / part.name)
    result = nw2("balance", "--no-dedup", dest, "--size", 50, "--out", tmp_path / "c", "--no-report")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert "chaos_01" not in info["metrics"] and len(info["metrics"]) == 12


def test_a_grid_too_fine_for_int64_cell_ids_is_refused(store, tmp_path):
    assert_refused(nw2("balance", store, "--size", 10, "--bins", 30, "--out", tmp_path / "c"), tmp_path / "c",
                   "30 bins over 13 dimensions")


def test_bin_id_holds_grid_cells_when_coverage_runs_on_voronoi_cells(store, tmp_path):
    # size above the pool: coverage's two-level mode, whose own bins are Voronoi cells, not grid cells
    out = tmp_path / "two-level"
    result = nw2("balance", "--no-dedup", store, "--size", 300, "--pool", 100, "--pca", 2, "--out", out, "--no-report")
    assert result.exit_code == 0, result.output
    table, info = read_corpus(out)
    bins = np.asarray(table.column("bin_id").to_pylist())
    assert info["bin_id"] == "grid cell" and info["cells"] == 25 and bins.min() >= -1 and bins.max() < 25
    assert sum(c["after"] for c in info["cell_counts"]) == 300
