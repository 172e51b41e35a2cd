"""Bad input: each file gets a one-line reason in the manifest and on stderr; the run goes on."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest

from helpers import nw2


@pytest.fixture(scope="module")
def messy(sample, tmp_path_factory):
    """A folder of broken and awkward files cut from real recordings, and a spec over it."""
    root = tmp_path_factory.mktemp("messy")
    data = root / "data"
    data.mkdir()
    ppg = np.loadtxt(sample("heartpy_ppg"))
    edf = sample("supine_ecg").read_bytes()
    (data / "truncated.edf").write_bytes(edf[: len(edf) // 3])
    (data / "corrupt.edf").write_bytes(b"0       " + os.urandom(2000))
    (data / "notes.xyz").write_text("not a recording\n")
    (data / "short.csv").write_text("ppg\n" + "\n".join(str(v) for v in ppg[:300]) + "\n")
    gappy = ppg.copy()
    gappy[300:1400] = np.nan  # a sensor dropout that swallows whole windows
    (data / "gappy.csv").write_text("ppg\n" + "\n".join("NaN" if np.isnan(v) else str(v) for v in gappy) + "\n")
    (data / "constant.csv").write_text("ppg\n" + "\n".join(["512"] * 2483) + "\n")
    ecg = np.load(sample("mitbih_208"))["ecg"]
    np.savez(data / "unequal.npz", lead_a=ecg[:36000], lead_b=ecg[:18000], fs=360.0)
    (data / "missing_target.edf").symlink_to(root / "nowhere.edf")
    (root / "empty").mkdir()
    spec = root / "messy.yaml"
    spec.write_text(textwrap.dedent("""
        name: messy
        sources:
          - {dataset: messy, paths: [data/truncated.edf, data/corrupt.edf, data/notes.xyz, data/missing_target.edf]}
          - {dataset: messy, paths: [data/short.csv, data/gappy.csv, data/constant.csv], fs: 100, modality: ppg}
          - {dataset: messy, paths: [data/unequal.npz], modality: ecg}
          - {dataset: messy, paths: [empty, "data/*.nothing"]}
        windows: {length: 256, stride: 256}
    """))
    return root, spec


def test_every_bad_input_is_named_and_recorded(messy):
    root, spec = messy
    out = root / "store"
    result = nw2("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output  # something was ingested
    entries = {e["path"]: e for e in json.loads((out / "manifest.json").read_text())["inputs"]}
    status = {path: (e["status"], e["reason"]) for path, e in entries.items()}
    assert status["data/truncated.edf"][0] == "failed"
    assert status["data/corrupt.edf"][0] == "failed"
    assert status["data/notes.xyz"] == ("failed", "unknown format (extension .xyz); name one with --format")
    assert status["data/missing_target.edf"] == ("failed", "does not exist")
    assert entries["data/short.csv"]["windows"] == 1  # 3 s hold one 2.56 s window
    assert status["data/constant.csv"][0] == "skipped" and "flat" in status["data/constant.csv"][1]
    gappy = entries["data/gappy.csv"]
    assert gappy["status"] == "ingested" and gappy["dropped"]["missing"] >= 3
    unequal = entries["data/unequal.npz"]
    assert unequal["status"] == "ingested" and unequal["channels"] == ["lead_a", "lead_b"]
    assert status["empty"] == ("failed", "is an empty folder")
    assert status["data/*.nothing"] == ("failed", "matches no file")
    # One line per input that was not ingested, naming it, its status and the reason.
    for path, (state, reason) in status.items():
        if state != "ingested":
            assert f"{path}: {state}: {reason}\n" in result.output
    assert "Traceback" not in result.output


def test_short_file_is_skipped_with_its_length(messy, tmp_path):
    root, _ = messy
    result = nw2("ingest", root / "data" / "short.csv", "--fs", "100", "--window", "1024", "--out", tmp_path / "s",
                 "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 1  # nothing could be ingested
    entry = json.loads((tmp_path / "s" / "manifest.json").read_text())["inputs"][0]
    assert (entry["status"], entry["reason"]) == ("skipped", "shorter than one window (3.00 s < 10.24 s)")


def test_strict_fails_on_any_failure(messy):
    root, spec = messy
    result = nw2("ingest", spec, "--out", root / "strict", "--scheduler", "sync", "--no-progress", "--strict")
    assert result.exit_code == 1


def test_unknown_spec_field_names_field_and_file(tmp_path):
    spec = tmp_path / "typo.yaml"
    spec.write_text("name: x\nsources: [{dataset: a, sample: mitbih_208}]\nwindows: {lenght: 10}\n")
    result = nw2("ingest", spec, "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert f"{spec}.windows: unknown field 'lenght'" in result.output
    assert not (tmp_path / "o").exists()  # nothing written on a spec error


def test_memory_store_needs_the_sync_scheduler(tmp_path):
    """A memory:// store lives in this process: worker processes would write parts nobody can read."""
    result = nw2("ingest", tmp_path, "--format", "numpy", "--fs", "100", "--out", "memory://nw2-x", "--no-progress")
    assert result.exit_code == 1 and "use --scheduler sync" in result.output
    result = nw2("metrics", "memory://nw2-x", "--no-progress")
    assert result.exit_code == 1 and "use --scheduler sync" in result.output


def test_trainer_and_evaluation_name_a_url_as_such(tmp_path):
    from nw2.model.evaluate.data import open_source
    from nw2.core.errors import Nw2Error

    result = nw2("pretrain", "file:///tmp/corpus", "--out", tmp_path / "r")
    assert result.exit_code == 1 and "file:///tmp/corpus: the trainer reads a local directory" in result.output
    with pytest.raises(Nw2Error, match="s3://bucket/store: nw2 evaluate reads a local directory"):
        open_source("s3://bucket/store")


def test_a_users_folder_is_never_deleted_by_overwrite(tmp_path):
    """--overwrite replaces only what nw2 can prove it wrote: a folder whose store.json is someone else's
    (and its data/ files) is refused, and every file stays as it was."""
    user = tmp_path / "user"
    (user / "data").mkdir(parents=True)
    files = {"store.json": '{"my": "app config"}', "metrics.json": "mine", "data/part-2024.parquet": "a,b",
             "data/rec.csv": "x"}
    for rel, text in files.items():
        (user / rel).write_text(text)
    source = tmp_path / "g.npy"
    np.save(source, np.sin(np.arange(3000) / 7.0))
    for extra in ((), ("--overwrite",)):
        result = nw2("ingest", source, "--fs", "100", "--modality", "ecg", "--out", user, "--scheduler", "sync",
                     "--no-progress", "--no-metrics", *extra)
        assert result.exit_code == 1 and "not an nw2 window store" in result.output, result.output
    assert {rel: (user / rel).read_text() for rel in files} == files


def test_an_evaluation_never_replaces_a_users_metrics_json(demo_corpus, tmp_path):
    run = tmp_path / "run"
    trained = nw2("pretrain", demo_corpus, "--out", run, "--epochs", "1", "--no-progress")
    assert trained.exit_code == 0, trained.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"accuracy": 0.93}')
    result = nw2("evaluate", run, "--data", demo_corpus, "--split", "val", "--no-adapt", "--no-probe", "--out", mine,
                 "--no-progress")
    assert result.exit_code == 1 and "not an nw2 evaluation report" in result.output, result.output
    assert (mine / "metrics.json").read_text() == '{"accuracy": 0.93}'
    url = nw2("evaluate", run, "--data", demo_corpus, "--out", "memory://r", "--no-progress")
    assert url.exit_code == 1 and "not a URL" in url.output and not (tmp_path / "memory:").exists()


def test_a_recording_in_extreme_units_is_stored_as_the_same_windows(sample, tmp_path):
    """Issue 16: input scaled by 1e300 gave windows of +-inf, by 1e-310 windows of zeros with scale 1, both
    recorded as ingested. Now each gives the windows of the unscaled recording, with the factor in ``scale``."""
    import pyarrow.parquet as pq

    ecg = np.load(sample("mitbih_208"))["ecg"][:36000].astype(np.float64)
    tables = {}
    for name, factor in (("one", 1.0), ("big", 1e300), ("tiny", 1e-310)):
        np.save(tmp_path / f"{name}.npy", ecg * factor)
        result = nw2("ingest", tmp_path / f"{name}.npy", "--fs", "360", "--modality", "ecg", "--out", tmp_path / name,
                     "--scheduler", "sync", "--no-metrics", "--no-progress")
        assert result.exit_code == 0, result.output
        tables[name] = pq.read_table(tmp_path / name / "data").sort_by("start_s")
    ref = np.array(tables["one"]["samples"].to_pylist())
    for name, factor in (("big", 1e300), ("tiny", 1e-310)):
        got = np.array(tables[name]["samples"].to_pylist())
        assert got.shape == ref.shape and np.isfinite(got).all() and np.abs(got - ref).max() < 1e-5
        ratio = np.array(tables[name]["scale"].to_pylist()) / np.array(tables["one"]["scale"].to_pylist())
        assert np.allclose(ratio, factor)


def test_failure_reasons_never_echo_what_a_file_holds(tmp_path):
    """Issue 16: a spec source pointing at system files copied the first line of /etc/shadow into manifest.json
    as a failure reason. Reasons quote short identifier-like names and cells only; anything else is its length."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "shadow").write_text("root:$6$SECRETHASH.abc:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    (src / "notes.csv").write_text("ppg,comment\n1,ok\n2,the password is hunter2\n")
    result = nw2("ingest", src, "--format", "csv", "--fs", "100", "--out", tmp_path / "S", "--scheduler", "sync",
                 "--no-progress", "--no-metrics")
    manifest = (tmp_path / "S" / "manifest.json").read_text()
    for secret in ("SECRETHASH", "daemon", "hunter2", "password"):
        assert secret not in manifest and secret not in result.output
    assert "column <41 characters> is not numeric (String, e.g. <27 characters>)" in manifest
    assert "column 'comment' is not numeric (String, e.g. 'ok')" in manifest  # short names and cells still shown

    from nw2.pipeline.readers.base import scrubbed, shown
    assert shown("BVP_CH1") == "'BVP_CH1'" and shown("x" * 33) == "<33 characters>"
    assert scrubbed("could not parse `root:$6$x` as dtype `f64` at column 'a'") == \
        "could not parse <9 characters> as dtype `f64` at column 'a'"


# -- time stamps whose unit is not known ------------------------------------------------------------------------
def _ppg_with_clock(sample, path, stamps, name="timestamp"):
    ppg = np.resize(np.loadtxt(sample("heartpy_ppg")), len(stamps))  # the real PPG, repeated to the clock's length
    path.write_text(f"{name},ppg\n" + "\n".join(f"{t!r},{v}" for t, v in zip(stamps, ppg)) + "\n")
    return path


def _source_fs(out):
    import pyarrow.parquet as pq

    return {round(v, 6) for p in (out / "data").glob("part-*.parquet")
            for v in pq.read_table(p, columns=["source_fs"]).column("source_fs").to_pylist()}


def test_unix_epoch_milliseconds_give_the_true_rate_not_a_thousandth_of_it(sample, tmp_path):
    # a 250 Hz clock in ms since 1970 (2024-05-01): was read as seconds, 0.25 Hz, 83 hours of interpolated signal
    stamps = [1714521600000 + 4 * k for k in range(12000)]
    csv = _ppg_with_clock(sample, tmp_path / "ppg.csv", stamps)
    result = nw2("ingest", csv, "--modality", "ppg", "--out", tmp_path / "S", "--no-metrics",
                 "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output
    assert _source_fs(tmp_path / "S") == {250.0}
    assert result.output.startswith("4 windows from 1 inputs")  # 48 s at 100 Hz: four windows of 1024 samples


def test_a_whole_number_clock_of_unknown_unit_is_refused_naming_the_option(sample, tmp_path):
    # heartpy's timer: milliseconds from the start, in whole numbers; seconds or milliseconds cannot be told apart
    timer = sample("heartpy_ppg_timer")
    result = nw2("ingest", timer, "--modality", "ppg", "--out", tmp_path / "S", "--no-metrics",
                 "--scheduler", "sync", "--no-progress")
    entry = json.loads((tmp_path / "S" / "manifest.json").read_text())["inputs"][0]
    assert entry["status"] == "failed", result.output
    assert entry["reason"].startswith("time column 'timer': the unit of its stamps is not known (steps of 8.5")
    assert "Hz in milliseconds); set extra.time_unit (s, ms, us or ns)" in entry["reason"]
    # the unit in the column's name, or fractions of a second, are no guess
    named = _ppg_with_clock(sample, tmp_path / "named.csv", [8 * k for k in range(12000)], name="time_ms")
    fraction = _ppg_with_clock(sample, tmp_path / "fraction.csv", [k / 125 for k in range(12000)], name="time")
    for csv in (named, fraction):
        out = tmp_path / csv.stem
        ok_ = nw2("ingest", csv, "--modality", "ppg", "--out", out, "--no-metrics",
                 "--scheduler", "sync", "--no-progress")
        assert ok_.exit_code == 0, ok_.output
        assert _source_fs(out) == {125.0}
    # fractions of a unit that are a plausible rate either way (0.25: 4 Hz in seconds, or a 4 kHz clock in
    # milliseconds) are refused too, and read as the unit given
    quarter = _ppg_with_clock(sample, tmp_path / "quarter.csv", [k / 4 for k in range(12000)], name="time")
    refused = nw2("ingest", quarter, "--modality", "ppg", "--out", tmp_path / "Q", "--no-metrics",
                  "--scheduler", "sync", "--no-progress")
    entry = json.loads((tmp_path / "Q" / "manifest.json").read_text())["inputs"][0]
    assert entry["status"] == "failed", refused.output
    assert entry["reason"].startswith("time column 'time': the unit of its stamps is not known (steps of 0.25 are "
                                      "4 Hz in seconds, 4000 Hz in milliseconds)")
    spec = tmp_path / "ms.yaml"
    spec.write_text(f"name: ms\nsources:\n  - {{dataset: q, paths: [{quarter}], modality: ppg, "
                    f"extra: {{time_unit: ms}}}}\npreprocess: {{target_fs: 1000}}\nmetrics: {{enabled: false}}\n")
    as_ms = nw2("ingest", spec, "--out", tmp_path / "M", "--scheduler", "sync", "--no-progress")
    assert as_ms.exit_code == 0, as_ms.output
    assert _source_fs(tmp_path / "M") == {4000.0}
    # with the rate given, the stamps are not needed to find it
    given = nw2("ingest", timer, "--modality", "ppg", "--fs", "117", "--out", tmp_path / "G", "--no-metrics",
                "--scheduler", "sync", "--no-progress")
    assert given.exit_code == 0, given.output
