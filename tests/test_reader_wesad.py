"""WESAD reader, on a WESAD-layout pickle built from real ECG/EDA/BVP/respiration and accelerometry."""

from __future__ import annotations

import bz2
import builtins
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from make_wesad import build_wesad_pickle, dumps_py2
from nw2.core.errors import InputError
from nw2.pipeline.readers import wesad
from nw2.pipeline.readers.base import ReadOptions

CHANNELS = ["chest_ACC_x", "chest_ACC_y", "chest_ACC_z", "chest_ECG", "chest_EDA", "chest_Resp",
            "wrist_ACC_x", "wrist_ACC_y", "wrist_ACC_z", "wrist_BVP", "wrist_EDA"]


@pytest.fixture(scope="module")
def pkl(sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wesad") / "S99.pkl"
    return build_wesad_pickle(sample("pyphysio_medical"), sample("sync_acc"), out)


@pytest.fixture(scope="module")
def records(pkl):
    return {r.channel: r for r in wesad.read(pkl)}


@pytest.fixture(scope="module")
def expected(sample):
    """The sources after the documented transforms, computed here independently of the builder."""
    with bz2.open(sample("pyphysio_medical"), "rt") as fh:
        med = np.loadtxt(fh, max_rows=40 * 2048)  # ecg, eda, bvp, resp at 2048 Hz
    with open(sample("sync_acc")) as fh:
        acc = np.loadtxt((line for line in fh if not line.startswith("#")), usecols=(2, 3, 4), max_rows=40_000)
    g = 2 * (acc - 28000) / 10000 - 1
    out = {f"chest_ACC_{a}": sps.resample_poly(g[:, i], 7, 10) for i, a in enumerate("xyz")}
    out.update({f"wrist_ACC_{a}": sps.resample_poly(g[:, i], 4, 125) * 64 for i, a in enumerate("xyz")})
    out["chest_ECG"] = sps.resample_poly(med[:, 0], 175, 512)
    out["chest_EDA"] = sps.resample_poly(med[:, 1], 175, 512)
    out["chest_Resp"] = sps.resample_poly(med[:, 3], 175, 512)
    out["wrist_BVP"] = sps.resample_poly(med[:, 2], 1, 32)
    out["wrist_EDA"] = sps.resample_poly(med[:, 1], 1, 512)
    return out


def label_700() -> np.ndarray:
    return np.where(np.arange(28000) < 14000, 1, 2)


def test_fixture_is_a_python2_style_pickle(pkl):
    data = pkl.read_bytes()
    assert data[:2] == b"\x80\x02" and b"cnumpy.core.multiarray\n_reconstruct\n" in data
    with pytest.raises(UnicodeDecodeError):  # why the reader needs encoding="latin1"
        pickle.loads(data)


def test_probe(pkl):
    info = {c.name: c for c in wesad.probe(pkl)}
    assert list(info) == CHANNELS
    rates = {"wrist_ACC_x": 32.0, "wrist_ACC_y": 32.0, "wrist_ACC_z": 32.0, "wrist_BVP": 64.0, "wrist_EDA": 4.0}
    for name, c in info.items():
        fs = rates.get(name, 700.0)
        assert (c.fs, c.n_samples) == (fs, 40 * fs), name
    assert (info["chest_ECG"].modality, info["chest_ECG"].unit) == ("ecg", "mV")
    assert (info["chest_ACC_y"].modality, info["chest_ACC_y"].unit) == ("acc", "g")
    assert (info["chest_EDA"].modality, info["chest_EDA"].unit) == ("eda", "uS")
    assert (info["chest_Resp"].modality, info["chest_Resp"].unit) == ("resp", "%")
    assert (info["wrist_ACC_z"].modality, info["wrist_ACC_z"].unit) == ("acc", "1/64 g")
    assert (info["wrist_BVP"].modality, info["wrist_BVP"].unit) == ("ppg", "")
    assert (info["wrist_EDA"].modality, info["wrist_EDA"].unit) == ("eda", "uS")


def test_values_are_the_real_sources_resampled(records, expected):
    assert list(records) == CHANNELS
    for name, r in records.items():
        assert r.samples.dtype == np.float64 and r.offset_s == 0.0
        np.testing.assert_allclose(r.samples, expected[name], rtol=1e-12, atol=1e-12, err_msg=name)
        assert (r.subject, r.record, r.dataset) == ("S99", "S99", "default")
    # Physical sanity: gravity on the accelerometer's z axis, in g on the chest and 64 units/g on the wrist.
    assert np.median(records["chest_ACC_z"].samples) == pytest.approx(1.0, abs=0.1)
    assert np.median(records["wrist_ACC_z"].samples) == pytest.approx(64.0, abs=6.4)


def test_labels_follow_each_channel_rate(records):
    label = label_700()
    for name, r in records.items():
        n = len(r.samples)
        want = label[(np.arange(n) * 700 / r.fs).astype(int)]
        np.testing.assert_array_equal(r.labels, want, err_msg=name)
        assert r.labels.dtype == np.int64
        # Baseline for the first 20 s, stress after, at every rate.
        assert (r.labels[: int(20 * r.fs)] == 1).all() and (r.labels[int(20 * r.fs):] == 2).all()


def test_time_span(pkl, records):
    part = {r.channel: r for r in wesad.read(pkl, start_s=10.0, stop_s=30.0)}
    assert list(part) == CHANNELS
    for name, r in part.items():
        lo, hi = int(10 * r.fs), int(30 * r.fs)
        assert r.offset_s == 10.0 and len(r.samples) == hi - lo
        np.testing.assert_array_equal(r.samples, records[name].samples[lo:hi])
        np.testing.assert_array_equal(r.labels, records[name].labels[lo:hi])
    eda = wesad.read(pkl, channels=[10], start_s=39.6)[0]
    assert (eda.channel, len(eda.samples), eda.offset_s) == ("wrist_EDA", 2, 39.5)


def test_options(pkl):
    picked = wesad.read(pkl, ReadOptions(subject="s-x", dataset="wesad"), channels=[3, 9])
    assert [(r.channel, r.subject, r.dataset) for r in picked] == [("chest_ECG", "s-x", "wesad"),
                                                                   ("wrist_BVP", "s-x", "wesad")]
    with pytest.raises(InputError, match="channel index 11 out of range"):
        wesad.read(pkl, channels=[11])
    # A rate override changes fs and the label mapping.
    bvp = wesad.read(pkl, ReadOptions(extra={"rates": {"wrist_BVP": 128}}), channels=[9])[0]
    assert bvp.fs == 128.0
    np.testing.assert_array_equal(bvp.labels, label_700()[(np.arange(2560) * 700 / 128).astype(int)])
    with pytest.raises(InputError, match="rates"):
        wesad.read(pkl, ReadOptions(extra={"rates": {"wrist_BVP": -1}}))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_python3_pickles_read_the_same(pkl, records, tmp_path, protocol):
    data = wesad.load_pickle(pkl)
    again = tmp_path / "S99.pickle"
    again.write_bytes(pickle.dumps(data, protocol=protocol))
    for r in wesad.read(again):
        np.testing.assert_array_equal(r.samples, records[r.channel].samples)
        np.testing.assert_array_equal(r.labels, records[r.channel].labels)


class _Evil:
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("how", ["os.system", "builtins.open"])
def test_refuses_code_in_pickles(tmp_path, protocol, how):
    marker = tmp_path / "pwned"
    evil = _Evil(os.system, f"touch {marker}") if how == "os.system" else _Evil(builtins.open, str(marker), "w")
    path = tmp_path / "S66.pkl"
    # The payload sits where the subject id goes, inside an otherwise well-formed WESAD dict.
    payload = {"signal": {"chest": {"ECG": np.zeros((10, 1))}}, "label": np.ones(10, np.int32), "subject": evil}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    for call in (wesad.probe, wesad.read):
        with pytest.raises(InputError) as err:
            call(path)
        assert err.value.reason.startswith("refusing to unpickle ")
        assert err.value.reason.endswith(": only NumPy arrays and builtin containers are allowed")
        assert ("system" if how == "os.system" else "open") in err.value.reason  # posix.system, io.open
        assert not marker.exists()


def test_refuses_other_globals(tmp_path):
    cases = {
        # A dotted attribute of an allowed class (protocol 4 STACK_GLOBAL).
        "numpy.ndarray.tofile": b"\x80\x04\x8c\x05numpy\x94\x8c\x0endarray.tofile\x94\x93\x94.",
        # A harmless-looking but unlisted class.
        "collections.OrderedDict": pickle.dumps(__import__("collections").OrderedDict(a=1), protocol=2),
        # Python 2 spellings are refused too (the unpickler sees them before any renaming).
        "__builtin__.eval": b"\x80\x02c__builtin__\neval\nX\x02\x00\x00\x001+\x85R.",
        "builtins.open": b"\x80\x02cbuiltins\nopen\nX\x01\x00\x00\x00x\x85R.",
    }
    for qualname, data in cases.items():
        path = tmp_path / "x.pkl"
        path.write_bytes(data)
        with pytest.raises(InputError, match=f"refusing to unpickle {qualname}"):
            wesad.read(path)
    # _codecs.encode is admitted only for latin-1 (what protocol 2 uses for bytes).
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(InputError, match="corrupt pickle"):
        wesad.read(path)


def test_allowed_functions_cannot_be_modified(tmp_path):
    reconstruct = wesad._numpy_core("multiarray", "_reconstruct")
    module = reconstruct.__module__
    # BUILD with a slot state does setattr(_reconstruct, "__module__", "evil") on a plain unpickler.
    path = tmp_path / "build.pkl"
    path.write_bytes(b"\x80\x02cnumpy.core.multiarray\n_reconstruct\nN}X\n\x00\x00\x00__module__"
                     b"X\x04\x00\x00\x00evils\x86b.")
    with pytest.raises(InputError, match="corrupt pickle"):
        wesad.read(path)
    assert reconstruct.__module__ == module


def test_truncated_or_empty_pickle(pkl, tmp_path):
    data = pkl.read_bytes()
    for cut in (len(data) // 2, 100, 3):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(data[:cut])
        with pytest.raises(InputError) as err:
            wesad.probe(path)
        assert "pickle" in err.value.reason and f"cut{cut}.pkl" in str(err.value)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        wesad.read(empty)


def _good() -> dict:
    return {"signal": {"chest": {"ECG": np.zeros((700, 1))}, "wrist": {"BVP": np.zeros((64, 1))}},
            "label": np.ones(700, np.int32), "subject": "S1"}


@pytest.mark.parametrize("mutate, reason", [
    (lambda d: [1, 2, 3], "top level is a list"),
    (lambda d: {k: v for k, v in d.items() if k != "signal"}, "no 'signal' key"),
    (lambda d: {**d, "signal": np.zeros(3)}, "'signal' must be a non-empty dict"),
    (lambda d: {**d, "signal": {"chest": [1, 2]}}, r"signal\['chest'\] must be a dict of arrays, got list"),
    (lambda d: {**d, "signal": {"chest": {"ECG": "abc"}}}, r"signal\['chest'\]\['ECG'\] is a str"),
    (lambda d: {**d, "signal": {"chest": {"ECG": np.zeros((2, 2, 2))}}}, "has shape"),
    (lambda d: {**d, "signal": {"chest": {"ECG": np.array(["a", "b"])}}}, "not numeric"),
    (lambda d: {**d, "signal": {"ring": {"PPG": np.zeros((5, 1))}}}, "no sampling rate known for ring_PPG"),
    (lambda d: {**d, "label": np.zeros((3, 3))}, "'label' has shape"),
    (lambda d: {**d, "signal": {"chest": {"ECG": np.zeros((7000, 1))}}},
     r"'label' \(700 samples at 700 Hz\) is shorter than chest_ECG \(7000 samples at 700 Hz\)"),
])
def test_wrong_layout(tmp_path, mutate, reason):
    path = tmp_path / "S1.pkl"
    path.write_bytes(dumps_py2(mutate(_good())))
    with pytest.raises(InputError, match=reason):
        wesad.read(path)


def test_minimal_layout_and_unknown_device(tmp_path):
    path = tmp_path / "S1.pkl"
    data = _good()
    data["signal"]["ring"] = {"PPG": np.arange(10.0)}
    del data["subject"]
    path.write_bytes(dumps_py2(data))
    found = wesad.read(path, ReadOptions(extra={"rates": {"ring_PPG": 10}}))
    assert [(r.channel, r.fs, r.subject) for r in found] == [
        ("chest_ECG", 700.0, "S1"), ("wrist_BVP", 64.0, "S1"), ("ring_PPG", 10.0, "S1")]
    assert found[2].modality == "other" and found[2].unit == ""
    np.testing.assert_array_equal(found[2].samples, np.arange(10.0))


def test_sniff(pkl, tmp_path):
    head = pkl.read_bytes()[:4096]
    assert wesad.sniff(pkl, head)
    assert wesad.sniff(tmp_path / "S2.pickle", pickle.dumps({}, protocol=5))
    assert not wesad.sniff(tmp_path / "S2.npy", head)
    assert not wesad.sniff(tmp_path / "S2.pkl", pickle.dumps({}, protocol=1))
    assert not wesad.sniff(tmp_path / "S2.pkl", b"timestamp,ecg\n")


def test_detect_format(pkl):
    try:
        from nw2.pipeline.readers import detect_format

        fmt = detect_format(pkl)
    except ImportError as err:  # other readers not written yet
        pytest.skip(f"detect_format needs every reader module: {err}")
    assert fmt == "wesad"
