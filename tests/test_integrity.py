"""Integrity (issue 16): a flipped bit or a truncation in a part, a corpus part or a checkpoint is found by the
stage that reads it, with the file named; ``--resume`` falls back to the last good checkpoint.

Before: 40 of 40 single-bit flips in a part decoded silently (zstd, no page checksums) and flowed into a corpus and
a model; ``pretrain`` never checked corpus.json's per-part sha256; a flipped checkpoint resumed silently and a
truncated one crashed ``--resume``."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import SMALL, nw2, ok, read_all, rewrite, vouch
from nw2.artifacts.corpus import Corpus
from nw2.core.errors import ArtifactError
from nw2.core.parquet import read_checked


def _flip(path: Path, seed: int = 0, where: float | None = None) -> None:
    """One bit of ``path`` flipped, inside its data pages (between the magic bytes and the footer)."""
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8 if data[-4:] == b"PAR1" else 16
    rng = random.Random(seed)
    i = int(4 + (len(data) - footer - 8) * where) if where is not None else rng.randrange(4, len(data) - footer - 4)
    data[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def test_every_single_bit_flip_in_a_part_is_an_error_naming_it(demo_store, tmp_path):
    part = sorted((demo_store / "data").glob("part-*.parquet"))[0]
    caught = 0
    for seed in range(40):
        copy = tmp_path / part.name
        shutil.copy(part, copy)
        _flip(copy, seed)
        try:
            read_checked(copy)
        except ArtifactError as err:
            assert str(err).startswith(f"{copy}: corrupt Parquet part (")
            caught += 1
    assert caught == 40
    assert pq.ParquetFile(part).metadata.row_group(0).column(0).statistics is not None  # a real part


def test_a_flipped_store_part_fails_metrics_and_balance_refuses_the_store(demo_store_copy, tmp_path):
    part = sorted((demo_store_copy / "data").glob("part-*.parquet"))[2]
    _flip(part, where=0.5)
    # a metric the parts hold from another engine: every part is read again (antropy's Katz: fast)
    result = nw2("metrics", demo_store_copy, "--metrics", "katz_fd", "--engine", "reference", "--scheduler", "sync",
                 "--no-progress")
    assert result.exit_code == 1
    # nw2 metrics reads the part whole, so it checks the sha256 its marker records before the page checksums
    assert f"data/{part.name}: ArtifactError: {demo_store_copy}/data/{part.name}: is not the part nw2 wrote (its " \
           f"sha256 differs from the one its marker records: damaged, changed or replaced since)" \
           in result.output, result.output
    refused = nw2("balance", demo_store_copy, "--out", tmp_path / "C", "--fraction", "0.5")
    assert refused.exit_code == 1 and "nw2 metrics failed on 1 part(s)" in refused.output


def test_pretrain_checks_every_corpus_part_against_corpus_json(demo_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(demo_corpus, corpus)
    part = json.loads((corpus / "corpus.json").read_text())["parts"][0]["path"]
    _flip(corpus / part, where=0.3)
    result = nw2("pretrain", corpus, "--out", tmp_path / "run", *SMALL, "--epochs", "1")
    assert result.exit_code == 1
    assert f"{corpus}: {part} is not the part nw2 balance wrote (its sha256 or size differs from corpus.json's" \
           in result.output, result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.fixture(scope="module")
def finished(demo_corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("integrity") / "run"
    ok("pretrain", demo_corpus, "--out", run, *SMALL, "--epochs", "1", "--save-every-steps", "2",
       "--keep-checkpoints", "0", "--no-progress")
    return run


@pytest.mark.parametrize("damage", ["flipped", pytest.param("truncated", marks=pytest.mark.slow)])
def test_resume_falls_back_to_the_last_good_checkpoint(finished, demo_corpus, tmp_path, damage):
    checkpoints = sorted((finished / "checkpoints").glob("ckpt-*.pt"))
    assert len(checkpoints) >= 3 and all(Path(f"{c}.sha256").is_file() for c in checkpoints)
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    kept = sorted((run / "checkpoints").glob("ckpt-*.pt"))[:-1]  # as if killed after the one before the last
    (run / "checkpoints" / checkpoints[-1].name).unlink()
    Path(f"{run / 'checkpoints' / checkpoints[-1].name}.sha256").unlink()
    newest, before = kept[-1], kept[-2]
    if damage == "flipped":
        _flip(newest, where=0.5)
    else:
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    result = ok("pretrain", demo_corpus, "--out", run, "--resume", "--no-progress")
    assert f"{newest}: its bytes are not those saved (sha256 differs from its .sha256); trying the checkpoint " \
           f"before it" in result.output, result.output
    assert f"from {before.name}" in result.output
    meta = lambda r: json.loads((r / "run.json").read_text())  # noqa: E731
    assert meta(run)["param_digests"] == meta(finished)["param_digests"]  # bit for bit the uninterrupted run


def test_resume_with_every_checkpoint_damaged_is_one_line(finished, demo_corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for ckpt in (run / "checkpoints").glob("ckpt-*.pt"):
        ckpt.write_bytes(b"")
    result = nw2("pretrain", demo_corpus, "--out", run, "--resume", "--no-progress")
    assert result.exit_code == 1 and "every checkpoint is damaged" in result.output, result.output


def test_a_flipped_bit_in_a_metric_column_is_refused_by_balance_naming_the_part(demo_store_copy, tmp_path):
    """Balance reads the metric and label columns with polars, which does not verify page checksums: before, the
    flipped value below was balanced on as it read (and the part's rows, none selected, were never read again)."""
    import polars as pl

    train = [p for p in sorted((demo_store_copy / "data").glob("part-*.parquet"))
             if set(pq.read_table(p, columns=["split"]).column("split").to_pylist()) == {"train"}]
    part = min((p for p in train if pq.ParquetFile(p).metadata.num_rows >= 20),
               key=lambda p: pq.ParquetFile(p).metadata.num_rows)  # the one window drawn is not one of its
    meta = pq.ParquetFile(part).metadata
    names = [meta.row_group(0).column(j).path_in_schema for j in range(meta.num_columns)]
    chunk = meta.row_group(0).column(names.index("sample_entropy"))
    before = pl.read_parquet(part, columns=["sample_entropy"])
    data = bytearray(part.read_bytes())
    data[chunk.data_page_offset + chunk.total_compressed_size // 2] ^= 0x10  # inside the page's values
    part.write_bytes(bytes(data))
    assert not pl.read_parquet(part, columns=["sample_entropy"]).equals(before)  # polars reads a wrong value silently
    result = nw2("balance", demo_store_copy, "--out", tmp_path / "C", "--strategy", "random", "--size", "1",
                 "--no-report")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {demo_store_copy}/data/{part.name}: corrupt Parquet part ("), lines
    assert not (tmp_path / "C").exists()


def test_pretrain_refuses_a_corpus_that_holds_a_window_twice(demo_corpus, tmp_path):
    """A corpus drawn without replacement whose part was rewritten with one row twice, corpus.json's digests made to
    match: only the window ids can tell."""
    table = read_all(demo_corpus)
    twice = table.take([0, *range(table.num_rows - 1)])  # row 0 twice, the last row dropped: the same row count
    corpus = rewrite(demo_corpus, tmp_path / "corpus", twice)
    assert json.loads((corpus / "corpus.json").read_text())["replace"] is False
    wid = table.column("window_id")[0].as_py()
    result = nw2("pretrain", corpus, "--out", tmp_path / "run", *SMALL, "--epochs", "1")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {corpus}: window {wid} is held 2 times (data/part-00000.parquet) in a corpus drawn "
                     f"without replacement; rebuild the corpus with nw2 balance --overwrite"], lines
    assert not (tmp_path / "run").exists()
    # drawn with replacement, on purpose: corpus.json says so, and the same rows pass the check
    info = json.loads((corpus / "corpus.json").read_text())
    (corpus / "corpus.json").write_text(json.dumps(dict(info, replace=True), indent=2, sort_keys=True) + "\n")
    Corpus.open(corpus).verify()


def test_balance_refuses_a_store_that_holds_a_window_twice(demo_store_copy, tmp_path):
    """A store of an nw2 from before ingest checked window ids may hold one twice; the corpus would hold it twice."""
    from nw2.artifacts.store import parquet_bytes

    part = next(p for p in sorted((demo_store_copy / "data").glob("part-*.parquet"))
                if pq.read_table(p, columns=["split"]).column("split").to_pylist().count("val") >= 2)
    table = pq.read_table(part)
    carried = [i for i, s in enumerate(table.column("split").to_pylist()) if s == "val"][:2]  # val is carried whole
    ids = table.column("window_id").to_pylist()
    ids[carried[1]] = ids[carried[0]]
    part.write_bytes(parquet_bytes(table.set_column(table.schema.get_field_index("window_id"),
                                                    table.schema.field("window_id"), pa.array(ids, pa.string()))))
    vouch(part)  # as an nw2 before ingest checked window ids would have written it
    result = nw2("balance", demo_store_copy, "--out", tmp_path / "C", "--fraction", "0.5", "--no-report")
    assert result.exit_code == 1
    assert f"error: {demo_store_copy}: window {ids[carried[0]]} is held 2 times (data/{part.name}) in a corpus " \
           f"drawn without replacement; the store holds it twice" in result.output, result.output
    assert not (tmp_path / "C").exists()


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _every_reader(store: Path, finished: Path, tmp_path: Path) -> dict[str, str]:
    """The one error line of each stage that reads ``store``."""
    return {
        "metrics": _one_error_line(nw2("metrics", store, "--scheduler", "sync", "--no-progress")),
        "balance": _one_error_line(nw2("balance", store, "--out", tmp_path / "C", "--fraction", "0.5",
                                       "--no-report")),
        "pretrain": _one_error_line(nw2("pretrain", store, "--out", tmp_path / "run", *SMALL, "--epochs", "1")),
        "evaluate": _one_error_line(nw2("evaluate", finished, "--data", store, "--out", tmp_path / "eval",
                                        "--no-progress")),
    }


def _rerun_ingest(store: Path):
    from helpers import DEMO

    return nw2("ingest", DEMO, "--out", store, "--scheduler", "sync", "--no-progress")


def test_a_file_nw2_did_not_write_in_a_stores_data_is_named_by_every_stage(demo_store_copy, finished, tmp_path):
    """Before, a copy of a part dropped into data/ was read as the store by every stage (and by DuckDB's
    data/*.parquet): its windows twice, the manifest vouching for it."""
    part = sorted((demo_store_copy / "data").glob("part-*.parquet"))[0]
    foreign = demo_store_copy / "data" / "part-copy.parquet"
    shutil.copy(part, foreign)
    errors = _every_reader(demo_store_copy, finished, tmp_path)
    errors["ingest"] = _one_error_line(_rerun_ingest(demo_store_copy))  # it would vouch for it in its manifest
    for stage, line in errors.items():
        assert line == (f"error: {foreign}: is a file nw2 did not write (no completion marker in _progress/ names "
                        f"it), and readers of data/*.parquet would take it for a part of the store; move it out of "
                        f"data/"), (stage, line)
    assert not any((tmp_path / name).exists() for name in ("C", "run", "eval"))
    foreign.unlink()
    (demo_store_copy / "data" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: no reader takes it for a part
    ok("balance", demo_store_copy, "--out", tmp_path / "C", "--fraction", "0.5", "--no-report")


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_missing_or_truncated_store_part_is_named_by_every_reader_and_ingest_writes_it_again(
        demo_store_copy, demo_store, finished, tmp_path, damage):
    from helpers import tree_bytes

    part = sorted((demo_store_copy / "data").glob("part-*.parquet"))[1]
    marker = json.loads((demo_store_copy / "_progress" / f"{part.stem[len('part-'):]}.json").read_text())
    if damage == "missing":
        part.unlink()
        expected = (f"error: {part}: is missing (its completion marker records {marker['windows']} windows); rerun "
                    f"the nw2 ingest that built the store (it writes such a part again), then nw2 metrics")
    else:
        data = part.read_bytes()
        part.write_bytes(data[: len(data) - 100])
        expected = (f"error: {part}: is not the part nw2 wrote (its size, {len(data) - 100} bytes, differs from the "
                    f"{len(data)} its marker records: truncated, changed or replaced since); rerun the nw2 ingest "
                    f"that built the store (it writes such a part again), then nw2 metrics")
    for stage, line in _every_reader(demo_store_copy, finished, tmp_path).items():
        assert line == expected, (stage, line)
    assert not any((tmp_path / name).exists() for name in ("C", "run", "eval"))
    rerun = _rerun_ingest(demo_store_copy)  # the part is written again and its metrics computed again
    assert rerun.exit_code == 0 and "1 computed, 12 already up to date" in rerun.output, rerun.output
    assert tree_bytes(demo_store_copy) == tree_bytes(demo_store)


def test_a_file_that_is_not_a_corpus_part_is_named_by_pretrain_and_evaluate(demo_corpus, finished, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(demo_corpus, corpus)
    foreign = corpus / "data" / "extra.parquet"
    shutil.copy(corpus / json.loads((corpus / "corpus.json").read_text())["parts"][0]["path"], foreign)
    expected = (f"error: {foreign}: is not a part of the corpus (corpus.json does not list it), and readers of "
                f"data/*.parquet would take it for one; move it out of data/")
    assert _one_error_line(nw2("pretrain", corpus, "--out", tmp_path / "run", *SMALL, "--epochs", "1")) == expected
    assert _one_error_line(nw2("evaluate", finished, "--data", corpus, "--out", tmp_path / "eval",
                               "--no-progress")) == expected


def test_a_part_a_killed_metrics_run_was_replacing_is_either_version_and_the_rerun_settles_it(demo_store_copy):
    """nw2 metrics records the new bytes' digest as pending before it replaces a part: killed after the replace,
    the part is the pending version; killed before, the old one. Readers take either; the rerun keeps the one the
    part is. A part that is neither is a failed part, named."""
    from nw2.artifacts.store import digest_of

    part = sorted((demo_store_copy / "data").glob("part-*.parquet"))[0]
    marker_path = demo_store_copy / "_progress" / f"{part.stem[len('part-'):]}.json"
    marker = json.loads(marker_path.read_text())
    old = {"bytes": marker["bytes"] + 7, "sha256": "0" * 64}  # the part as it was before a replace
    marker_path.write_text(json.dumps({**marker, **old, "pending": digest_of(part.read_bytes())}))
    ok("balance", demo_store_copy, "--out", demo_store_copy.parent / "C", "--fraction", "0.5", "--no-report")
    ok("metrics", demo_store_copy, "--scheduler", "sync", "--no-progress")
    assert json.loads(marker_path.read_text()) == marker  # settled on the version the part is
    marker_path.write_text(json.dumps({**marker, "pending": old}))  # killed before the replace: the old version
    ok("metrics", demo_store_copy, "--scheduler", "sync", "--no-progress")
    assert json.loads(marker_path.read_text()) == marker
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 1
    part.write_bytes(bytes(data))
    marker_path.write_text(json.dumps({**marker, "pending": old}))
    result = nw2("metrics", demo_store_copy, "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 1
    assert (f"{part}: is not the part nw2 wrote (its sha256 differs from the ones its marker "
            f"_progress/{marker_path.name} records)") in result.output, result.output


def test_a_part_replaced_by_another_valid_parquet_file_of_its_size_is_named_by_its_footer(demo_store_copy,
                                                                                          tmp_path):
    """Its pages' checksums are its own and its size is the marker's: only the footer's digest tells."""
    part = sorted((demo_store_copy / "data").glob("part-*.parquet"))[0]
    data = part.read_bytes()
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    at = data.index(b'"engine": "numba"', footer)  # the metrics' key-value metadata, in the footer
    part.write_bytes(data[:at] + b'"engine": "numbx"' + data[at + 17:])
    assert pq.read_table(part).num_rows == pq.read_metadata(part).num_rows  # a valid file, every page checked
    line = _one_error_line(nw2("balance", demo_store_copy, "--out", tmp_path / "C", "--fraction", "0.5",
                               "--no-report"))
    assert line == (f"error: {part}: is not the part nw2 wrote (its Parquet footer differs from the one its marker "
                    f"records: changed or replaced since); rerun the nw2 ingest that built the store (it writes "
                    f"such a part again), then nw2 metrics")


def test_a_part_an_interrupted_ingest_left_without_its_marker_is_refused_by_readers_and_removed_by_ingest(
        demo_store_copy, demo_store, tmp_path):
    """A kill between a part and its marker leaves a part no marker names, with a piece's name: readers refuse
    it as any unlisted file; the next ingest writes it again with its marker, or removes it when its piece is not
    in that run (here: a piece of no input)."""
    from helpers import tree_bytes

    orphan = demo_store_copy / "data" / f"part-{'ab' * 16}.parquet"
    shutil.copy(sorted((demo_store_copy / "data").glob("part-*.parquet"))[0], orphan)
    line = _one_error_line(nw2("balance", demo_store_copy, "--out", tmp_path / "C", "--fraction", "0.5",
                               "--no-report"))
    assert line.startswith(f"error: {orphan}: is a file nw2 did not write (no completion marker"), line
    from helpers import DEMO

    ok("ingest", DEMO, "--out", demo_store_copy, "--scheduler", "sync", "--no-progress")
    assert not orphan.exists() and tree_bytes(demo_store_copy) == tree_bytes(demo_store)
