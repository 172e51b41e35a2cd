"""EDF reader on real EDF+ files (PhysioNet EEGMMIDB, biosignalsplux ECG/EDA) and a BDF+ written here."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from nw2.core.errors import InputError
from nw2.pipeline.readers import edf
from nw2.pipeline.readers.base import ReadOptions


def _reference(path, chn):
    """The whole signal as pyedflib reads it, to check that spans are cut from the right place."""
    import pyedflib

    reader = pyedflib.EdfReader(str(path))
    try:
        return reader.readSignal(chn)
    finally:
        reader.close()


@pytest.fixture(scope="module")
def eeg(sample):
    return sample("eegmmi_s001r02")


def test_probe_eegmmi(eeg):
    infos = edf.probe(eeg, ReadOptions())
    assert len(infos) == 64
    assert {(i.fs, i.n_samples, i.unit, i.modality) for i in infos} == {(160.0, 9760, "uV", "eeg")}
    assert [i.name for i in infos[:3]] == ["Fc5.", "Fc3.", "Fc1."]
    assert edf.probe(eeg, ReadOptions(modality="other", unit="V"))[0].modality == "other"


def test_read_eegmmi(eeg):
    recs = edf.read(eeg, ReadOptions(dataset="eegmmi"))
    assert len(recs) == 64
    rec = recs[0]
    assert (rec.dataset, rec.subject, rec.record, rec.channel) == ("eegmmi", "S001R02", "S001R02", "Fc5.")
    assert rec.start_time == datetime(2009, 8, 12, 16, 15, 0)
    assert rec.annotations == [(0.0, pytest.approx(60.2), "T0")]
    assert rec.samples.dtype == np.float64 and len(rec.samples) == 9760 and rec.offset_s == 0.0
    # Physical EEG in microvolts: tens to hundreds of uV, not ADC counts.
    assert 5 < np.std(rec.samples) < 500
    assert np.array_equal(rec.samples, _reference(eeg, 0))


def test_span_and_channel_selection(eeg):
    recs = edf.read(eeg, ReadOptions(subject="s1"), channels=[3, 0], start_s=10.25, stop_s=12.0)
    assert [r.channel for r in recs] == ["Fcz.", "Fc5."]
    assert all(r.offset_s == 10.25 and r.subject == "s1" for r in recs)
    assert np.array_equal(recs[0].samples, _reference(eeg, 3)[1640:1920])
    assert np.array_equal(recs[1].samples, _reference(eeg, 0)[1640:1920])
    (tail,) = edf.read(eeg, ReadOptions(), channels=[0], start_s=60.0, stop_s=99.0)
    assert len(tail.samples) == 160  # clamped to the file: pyedflib would pad with zeros
    (past,) = edf.read(eeg, ReadOptions(), channels=[0], start_s=70.0)
    assert len(past.samples) == 0 and past.annotations == []  # T0 ends at 60.2 s
    with pytest.raises(InputError, match="channel index 64 out of range"):
        edf.read(eeg, ReadOptions(), channels=[64])


def test_supine_ecg(sample):
    path = sample("supine_ecg")
    (info,) = edf.probe(path, ReadOptions())
    assert (info.name, info.fs, info.n_samples, info.unit, info.modality) == ("ECG", 1000.0, 60000, "mV", "ecg")
    (rec,) = edf.read(path, ReadOptions(), start_s=30.0)
    assert rec.offset_s == 30.0 and len(rec.samples) == 30000
    assert 0.3 < np.ptp(rec.samples) < 10  # a QRS complex in mV
    assert rec.start_time == datetime(2020, 3, 16, 19, 15, 24) and rec.annotations == []


def test_eda_slow(sample):
    path = sample("eda_slow")
    (rec,) = edf.read(path, ReadOptions(dataset="x", record="r1"))
    assert (rec.channel, rec.fs, rec.unit, rec.modality, rec.record) == ("EDA", 100.0, "uS", "eda", "r1")
    assert len(rec.samples) == 2900 and np.all(np.isfinite(rec.samples))


def test_bdf_plus_from_real_ecg(sample, tmp_path):
    import pyedflib

    ecg = _reference(sample("supine_ecg"), 0)[:5000]  # 5 s at 1000 Hz, mV
    slow = ecg[::10].copy()  # the same lead at 100 Hz: a second rate in the file
    path = tmp_path / "ecg.bdf"
    writer = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_BDFPLUS)
    try:
        headers = []
        for label, fs in (("ECG", 1000), ("ECG slow", 100)):
            headers.append({"label": label, "dimension": "mV", "sample_frequency": fs,
                            "physical_min": -5.0, "physical_max": 5.0,
                            "digital_min": -8388608, "digital_max": 8388607, "transducer": "", "prefilter": ""})
        writer.setSignalHeaders(headers)
        writer.setPatientCode("P_07")
        writer.writeSamples([ecg, slow])
        writer.writeAnnotation(1.5, -1, "beat")
    finally:
        writer.close()
    assert path.read_bytes()[:8] == b"\xffBIOSEMI"
    infos = edf.probe(path, ReadOptions())
    assert [(i.name, i.fs, i.n_samples) for i in infos] == [("ECG", 1000.0, 5000), ("ECG slow", 100.0, 500)]
    fast, low = edf.read(path, ReadOptions(), start_s=1.234, stop_s=2.0)
    # Each channel is cut at its own rate, so the offsets differ by the coarser grid.
    assert (fast.offset_s, low.offset_s) == (1.234, 1.23)
    step = 10.0 / 2**24  # 24-bit quantisation over the 10 mV range
    np.testing.assert_allclose(fast.samples, ecg[1234:2000], atol=step)
    np.testing.assert_allclose(low.samples, slow[123:200], atol=step)
    assert fast.subject == "P_07"
    assert fast.annotations == [(1.5, 0.0, "beat")]

    from nw2.pipeline.readers import detect_format

    assert detect_format(path) == "edf"


def test_truncated_and_garbage_files(eeg, tmp_path, capfd):
    data = eeg.read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.edf: not a valid EDF/BDF file") as err:
        edf.read(cut, ReadOptions())
    assert "\n" not in str(err.value) and err.value.path == str(cut)
    # what pyedflib's C parser prints on a truncated file is in the reason, not on the terminal
    assert f"the parser says: filesize {len(data) // 2} != " in str(err.value)
    assert capfd.readouterr().out == ""
    garbage = tmp_path / "garbage.edf"
    garbage.write_bytes(b"not an EDF header " * 40)
    with pytest.raises(InputError, match=r"garbage\.edf: not a valid EDF/BDF file"):
        edf.probe(garbage, ReadOptions())
    with pytest.raises(InputError, match="cannot open"):
        edf.probe(tmp_path / "missing.edf", ReadOptions())


def test_sniff_and_detect(eeg):
    head = eeg.read_bytes()[:4096]
    assert edf.sniff(eeg, head)
    assert edf.sniff("x.bin", b"\xffBIOSEMI" + b" " * 100)
    assert not edf.sniff("x.edf", b"PAR1....")
    from nw2.pipeline.readers import detect_format

    assert detect_format(eeg) == "edf"


def test_signals_labelled_alike_keep_apart(sample, tmp_path):
    """biosignalsplux's eeg_acoustic.edf labels both EEG signals ``RAW``: each keeps its own channel (a
    shared name would give their windows one id and one of the two would be lost)."""
    path = sample("eeg_acoustic")
    infos = edf.probe(path, ReadOptions(modality="eeg"))
    assert [i.name for i in infos] == ["RAW#1", "RAW#2"]
    recs = edf.read(path, ReadOptions(modality="eeg"), start_s=10.0, stop_s=12.0)
    assert [r.channel for r in recs] == ["RAW#1", "RAW#2"]
    assert not np.array_equal(recs[0].samples, recs[1].samples)
    for k, rec in enumerate(recs):
        np.testing.assert_allclose(rec.samples, _reference(path, k)[10000:12000])
