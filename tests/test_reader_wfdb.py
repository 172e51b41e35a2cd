"""WFDB reader on a real record: MIT-BIH 208 written back to WFDB format 212."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from make_wfdb import build_wfdb_record
from nw2.core.errors import InputError
from nw2.pipeline.readers import wfdb_reader
from nw2.pipeline.readers.base import ReadOptions

FS = 360.0


@pytest.fixture(scope="module")
def ecg(sample):
    return np.load(sample("mitbih_208"), allow_pickle=False)["ecg"]


@pytest.fixture(scope="module")
def hea(sample, tmp_path_factory):
    return build_wfdb_record(sample("mitbih_208"), tmp_path_factory.mktemp("wfdb"))


def test_builder_round_trips_exactly(hea, ecg):
    import wfdb

    rec = wfdb.rdrecord(str(hea.with_suffix("")))
    assert (rec.fs, rec.sig_name, rec.units, rec.fmt) == (360, ["MLII"], ["mV"], ["212"])
    # 212 stores 12-bit integers at 200 adu/mV; MIT-BIH values are multiples of 1/200 mV, so lossless.
    assert np.array_equal(rec.p_signal[:, 0], ecg)


def test_probe(hea):
    (info,) = wfdb_reader.probe(hea, ReadOptions())
    assert (info.name, info.fs, info.n_samples, info.modality, info.unit) == ("MLII", FS, 108000, "ecg", "mV")


def test_read_whole_record(hea, ecg):
    (rec,) = wfdb_reader.read(hea, ReadOptions(dataset="mitbih"))
    assert (rec.dataset, rec.subject, rec.record, rec.channel) == ("mitbih", "208", "208", "MLII")
    assert (rec.fs, rec.unit, rec.modality, rec.offset_s, rec.start_time) == (FS, "mV", "ecg", 0.0, None)
    assert rec.samples.dtype == np.float64
    assert np.array_equal(rec.samples, ecg)
    assert rec.annotations == []


def test_time_span_is_exact(hea, ecg):
    (rec,) = wfdb_reader.read(hea, ReadOptions(), start_s=10.5, stop_s=12.0)
    assert rec.offset_s == 10.5
    assert np.array_equal(rec.samples, ecg[3780:4320])
    (tail,) = wfdb_reader.read(hea, ReadOptions(), start_s=299.0)
    assert np.array_equal(tail.samples, ecg[-360:]) and tail.offset_s == 299.0
    (past,) = wfdb_reader.read(hea, ReadOptions(), start_s=400.0)
    assert len(past.samples) == 0


def test_dat_path_and_options(hea, ecg):
    opts = ReadOptions(subject="s208", record="r", unit="uV", modality="other")
    (rec,) = wfdb_reader.read(hea.with_suffix(".dat"), opts, stop_s=1.0)
    assert (rec.subject, rec.record, rec.unit, rec.modality) == ("s208", "r", "uV", "other")
    assert np.array_equal(rec.samples, ecg[:360])


def test_channel_selection_and_start_time(ecg, tmp_path):
    import wfdb

    # Two real leads' worth of data: the MIT-BIH lead and its inversion, in two 212 signals.
    wfdb.wrsamp("two", fs=360, units=["mV", "mV"], sig_name=["MLII", "INV"],
                p_signal=np.column_stack([ecg, -ecg]), fmt=["212", "212"], adc_gain=[200, 200],
                baseline=[1024, 1024], base_datetime=datetime(1980, 6, 1, 8, 30, 0), write_dir=str(tmp_path))
    hea = tmp_path / "two.hea"
    assert [c.name for c in wfdb_reader.probe(hea, ReadOptions())] == ["MLII", "INV"]
    recs = wfdb_reader.read(hea, ReadOptions(), channels=[1, 0], start_s=1.0, stop_s=2.0)
    assert [r.channel for r in recs] == ["INV", "MLII"]
    assert np.array_equal(recs[0].samples, -ecg[360:720]) and np.array_equal(recs[1].samples, ecg[360:720])
    assert recs[0].start_time == datetime(1980, 6, 1, 8, 30, 0)
    with pytest.raises(InputError, match="channel index 2 out of range"):
        wfdb_reader.read(hea, ReadOptions(), channels=[2])


def test_annotations(hea, ecg, tmp_path):
    import shutil

    import wfdb
    from scipy.signal import find_peaks

    for f in hea.parent.glob("208.*"):
        shutil.copy(f, tmp_path)
    # R peaks of the first 10 s of the real ECG, plus a rhythm annotation at the start.
    peaks, _ = find_peaks(ecg[:3600], distance=int(0.25 * FS), prominence=0.5)
    samples = np.concatenate([[0], peaks])
    symbols = ["+"] + ["N"] * len(peaks)
    aux = ["(N"] + [""] * len(peaks)
    wfdb.wrann("208", "atr", samples, symbol=symbols, aux_note=aux, fs=360, write_dir=str(tmp_path))
    (rec,) = wfdb_reader.read(tmp_path / "208.hea", ReadOptions())
    assert rec.annotations[0] == (0.0, 0.0, "+ (N")
    assert [a[0] for a in rec.annotations[1:]] == pytest.approx(list(peaks / FS))
    assert {a[2] for a in rec.annotations[1:]} == {"N"}
    (part,) = wfdb_reader.read(tmp_path / "208.hea", ReadOptions(), start_s=2.0, stop_s=5.0)
    assert [a[0] for a in part.annotations] == pytest.approx([p / FS for p in peaks if 720 <= p < 1800])
    (other,) = wfdb_reader.read(tmp_path / "208.hea", ReadOptions(extra={"annotator": "qrs"}))
    assert other.annotations == []


def test_bad_files_raise_input_error(hea, tmp_path):
    garbage = tmp_path / "bad.hea"
    garbage.write_text("this is not a header\n")
    with pytest.raises(InputError, match="bad.hea: not a valid WFDB header") as err:
        wfdb_reader.probe(garbage, ReadOptions())
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="cannot open"):
        wfdb_reader.probe(tmp_path / "missing.hea", ReadOptions())
    # Header fine, signal file cut short.
    (tmp_path / "cut.hea").write_text(hea.read_text().replace("208", "cut"))
    (tmp_path / "cut.dat").write_bytes((hea.parent / "208.dat").read_bytes()[:1000])
    with pytest.raises(InputError, match="cut.hea: cannot read WFDB signals: signal file truncated"):
        wfdb_reader.read(tmp_path / "cut.hea", ReadOptions(), start_s=10.0, stop_s=20.0)
    (tmp_path / "nodat.hea").write_text(hea.read_text().replace("208", "nodat"))
    with pytest.raises(InputError, match="nodat.hea: cannot read WFDB signals: missing signal file nodat.dat"):
        wfdb_reader.read(tmp_path / "nodat.hea", ReadOptions())


def test_sniff_and_detect(hea):
    head = hea.read_bytes()[:4096]
    assert wfdb_reader.sniff(hea, head)
    assert wfdb_reader.sniff("x.hea", b"# comment\n100/2 2 360 650000\n")
    assert not wfdb_reader.sniff("x.txt", head)
    assert not wfdb_reader.sniff("x.hea", b"time,value\n0,1\n")
    from nw2.pipeline.readers import detect_format

    assert detect_format(hea) == "wfdb"
