"""Parquet / Arrow IPC reader on tables built from real recordings (Daphnet accelerometry, MIT-BIH 208)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from nw2.core.errors import InputError
from nw2.pipeline.readers import parquet
from nw2.pipeline.readers.base import ReadOptions

AXES = ["ankle_horiz_fwd", "ankle_vert", "ankle_horiz_lateral", "leg_horiz_fwd", "leg_vert",
        "leg_horiz_lateral", "trunk_horiz_fwd", "trunk_vert", "trunk_horiz_lateral"]
DAPHNET = ReadOptions(time_column="timestamp", label_column="is_anomaly", unit="mg")


def _detect(path):
    from nw2.pipeline.readers import detect_format

    try:
        return detect_format(path)
    except ModuleNotFoundError as err:
        pytest.skip(f"detect_format needs {err.name}")


@pytest.fixture(scope="module")
def daphnet(sample) -> pa.Table:
    """Daphnet S06R02: a timestamp column at 64 Hz (stamps rounded to ms), 9 axes in mg, a label."""
    import pyarrow.csv as pcsv

    return pcsv.read_csv(sample("daphnet_s06r02"))


@pytest.fixture(scope="module")
def ecg(sample):
    return np.load(sample("mitbih_208"), allow_pickle=False)["ecg"]


@pytest.fixture(scope="module")
def wide(daphnet, tmp_path_factory):
    path = tmp_path_factory.mktemp("pq") / "S06R02E0.parquet"
    pq.write_table(daphnet, path, row_group_size=1000)  # several row groups, so spans cross them
    return path


def test_wide_probe_derives_fs_from_timestamps(wide):
    infos = parquet.probe(wide, DAPHNET)
    assert [i.name for i in infos] == AXES
    # Median of the 15/16 ms stamps would say 62.5 Hz; the span says 64.
    assert {(i.fs, i.n_samples, i.modality, i.unit) for i in infos} == {(64.0, 7040, "acc", "mg")}


def test_wide_read_span_labels_and_selection(wide, daphnet):
    recs = parquet.read(wide, DAPHNET, channels=[7, 1], start_s=10.0, stop_s=22.5)
    assert [r.channel for r in recs] == ["trunk_vert", "ankle_vert"]
    rows = slice(640, 1440)  # crosses the row-group boundary at 1000
    for rec, col in zip(recs, ["trunk_vert", "ankle_vert"]):
        assert rec.offset_s == 10.0 and rec.fs == 64.0 and rec.samples.dtype == np.float64
        assert np.array_equal(rec.samples, daphnet[col].to_numpy()[rows].astype(float))
        assert np.array_equal(rec.labels, daphnet["is_anomaly"].to_numpy()[rows])
    assert recs[0].start_time == datetime(1970, 1, 1, 0, 4, 40)
    assert recs[0].subject == "S06R02E0" and recs[0].record == "S06R02E0"
    whole = parquet.read(wide, DAPHNET)
    assert len(whole) == 9 and all(len(r.samples) == 7040 and r.offset_s == 0.0 for r in whole)
    picked = parquet.probe(wide, ReadOptions(fs=64.0, columns=("leg_vert", "ankle_vert")))
    assert [i.name for i in picked] == ["leg_vert", "ankle_vert"]


def test_wide_errors(wide, tmp_path, daphnet):
    # A column named like a time axis is taken as one, as in CSV files.
    assert {(i.fs, i.n_samples) for i in parquet.probe(wide, ReadOptions())} == {(64.0, 7040)}
    untimed = tmp_path / "untimed.parquet"
    pq.write_table(daphnet.select(["ankle_vert"]), untimed)
    with pytest.raises(InputError, match="no sampling rate"):
        parquet.probe(untimed, ReadOptions())
    with pytest.raises(InputError, match="time_column 'nope' not in table"):
        parquet.probe(wide, ReadOptions(time_column="nope"))
    text = tmp_path / "text.parquet"
    who = pa.array(["x"] * daphnet.num_rows)
    pq.write_table(daphnet.select(["ankle_vert"]).append_column("who", who), text)
    with pytest.raises(InputError, match="column 'who' is not numeric"):
        parquet.probe(text, ReadOptions(fs=64.0))


def test_elapsed_time_column_units_and_gaps(ecg, tmp_path):
    n = 3600
    t_ms = np.arange(n) * (1000.0 / 360)
    path = tmp_path / "ms.parquet"
    pq.write_table(pa.table({"t": t_ms, "ecg": ecg[:n]}), path)
    (info,) = parquet.probe(path, ReadOptions(time_column="t", extra={"time_unit": "ms"}))
    assert info.name == "ecg" and info.fs == 360.0 and info.modality == "ecg"
    # A 5-s hole in the middle: the span-based rate is off by 50 %, the median interval is right.
    keep = np.r_[0:1000, 2800:n]
    pq.write_table(pa.table({"t": t_ms[keep] / 1000, "ecg": ecg[keep]}), path)
    (rec,) = parquet.read(path, ReadOptions(time_column="t"))
    assert rec.fs == pytest.approx(360.0) and rec.start_time is None
    pq.write_table(pa.table({"t": t_ms[::-1].copy(), "ecg": ecg[:n]}), path)
    with pytest.raises(InputError, match="not in increasing order"):
        parquet.probe(path, ReadOptions(time_column="t", extra={"time_unit": "ms"}))


def test_long_layout(ecg, daphnet, tmp_path):
    acc = daphnet["ankle_vert"].to_numpy()[:640].astype(float)  # 10 s at 64 Hz
    heart = ecg[:3600]  # 10 s at 360 Hz
    # Interleave by time so neither channel's rows are contiguous; the accelerometer appears first.
    t = np.r_[np.arange(640) / 64.0, np.arange(3600) / 360.0]
    order = np.argsort(t, kind="stable")
    table = pa.table({
        "time": t[order],
        "channel": np.r_[["ankle_vert"] * 640, ["ecg"] * 3600][order],
        "value": np.r_[acc, heart][order],
        "fs": np.r_[[64.0] * 640, [360.0] * 3600][order],
        "subject": ["s06"] * len(t),
    })
    path = tmp_path / "long.parquet"
    pq.write_table(table, path)
    infos = parquet.probe(path, ReadOptions())
    assert [(i.name, i.fs, i.n_samples, i.modality) for i in infos] == [("ankle_vert", 64.0, 640, "acc"),
                                                                       ("ecg", 360.0, 3600, "ecg")]
    a, e = parquet.read(path, ReadOptions(dataset="mix"), start_s=2.0, stop_s=3.0)
    assert (a.subject, a.dataset, a.offset_s, e.offset_s) == ("s06", "mix", 2.0, 2.0)
    assert np.array_equal(a.samples, acc[128:192]) and np.array_equal(e.samples, heart[720:1080])
    (only,) = parquet.read(path, ReadOptions(subject="me"), channels=[1])
    assert only.subject == "me" and np.array_equal(only.samples, heart)
    # Without the fs column the rate comes from each channel's own time stamps.
    pq.write_table(table.drop_columns(["fs"]), path)
    assert [i.fs for i in parquet.probe(path, ReadOptions())] == [64.0, 360.0]
    pq.write_table(table.select(["channel", "value"]), path)
    with pytest.raises(InputError, match="no sampling rate"):
        parquet.probe(path, ReadOptions())
    assert [i.fs for i in parquet.probe(path, ReadOptions(fs=100.0))] == [100.0, 100.0]


def test_arrow_ipc_files(daphnet, tmp_path):
    cols = daphnet.select(["timestamp", "trunk_vert", "is_anomaly"])
    expect = daphnet["trunk_vert"].to_numpy()[320:384].astype(float)
    opts = ReadOptions(time_column="timestamp", label_column="is_anomaly")
    fea = tmp_path / "d.feather"
    feather.write_feather(cols, fea)  # Feather v2, LZ4-compressed by default
    arrow = tmp_path / "d.arrow"
    with pa.ipc.new_file(arrow, cols.schema) as writer:
        writer.write_table(cols, max_chunksize=2000)
    stream = tmp_path / "d.ipc"
    with pa.ipc.new_stream(stream, cols.schema) as writer:
        writer.write_table(cols)
    for path in (fea, arrow, stream):
        (rec,) = parquet.read(path, opts, start_s=5.0, stop_s=6.0)
        assert rec.channel == "trunk_vert" and rec.fs == 64.0 and rec.offset_s == 5.0
        assert np.array_equal(rec.samples, expect) and len(rec.labels) == 64
        assert _detect(path) == "parquet"
    assert parquet.sniff(fea, fea.read_bytes()[:4096]) and parquet.sniff(arrow, arrow.read_bytes()[:4096])


def test_bad_files(wide, tmp_path):
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1" + b"\x00" * 200)
    with pytest.raises(InputError, match="junk.parquet: not a valid Parquet file") as err:
        parquet.probe(junk, ReadOptions(fs=1.0))
    assert "\n" not in str(err.value)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(wide.read_bytes()[: wide.stat().st_size // 2])
    with pytest.raises(InputError, match="cut.parquet: not a valid Parquet file"):
        parquet.read(cut, DAPHNET)
    bad_ipc = tmp_path / "bad.arrow"
    bad_ipc.write_bytes(b"ARROW1" + b"\x00" * 100)
    with pytest.raises(InputError, match="bad.arrow: not a valid Arrow IPC file"):
        parquet.probe(bad_ipc, ReadOptions(fs=1.0))


def test_sniff_and_detect(wide):
    assert parquet.sniff(wide, wide.read_bytes()[:4096])
    assert not parquet.sniff("x.parquet", b"a,b\n1,2\n")
    assert _detect(wide) == "parquet"
