"""Hostile and odd input, fuzzed (issue 16): every reader, through its public ``probe`` and ``read``, on real
recordings that hypothesis mutates (truncations, bit flips, garbage bytes and header fields, huge declared sizes,
NaN/inf/1e30 runs, one-sample and empty files). Each file must end in an :class:`InputError` (one line, naming the
file, never quoting what the file holds) or in valid records (1-D float64 samples, finite or NaN, at a positive
finite rate, as long as ``probe`` said); never another exception, a hang, or memory that grows with a declared size.

The seeds are real: the ``sample`` recordings and the fixture builders' files, cut short so that an example takes
milliseconds. Hypothesis is derandomized (the same examples on every run); the ``slow`` variants draw many more.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import nw2
from make_pamap2 import build_table, format_table
from make_wesad import build_wesad_dict, dumps_py2
from nw2.core.errors import InputError, SpecError
from nw2.pipeline.readers import reader_for
from nw2.pipeline.readers.base import ReadOptions

#: Planted in garbage: a failure reason that quoted the bytes around it would show it (``shown`` never quotes
#: text with ``$`` or ``:``, so no honest reason contains it).
SECRET = b"pw:$6$hunter2"
#: Bytes that break parsers: huge, negative and non-finite numbers, separators, magic numbers, NULs.
NASTY = (b"", b"\x00" * 8, b"\xff" * 8, b"99999999", b"999999999999", b"-1", b"0", b"-0", b"nan", b"NaN", b"inf",
         b"-inf", b"1e30", b"-1e30", b"1e308", b"-1e308", b"1e-310", b"0x10", b"\n", b"\r\n", b"#", b",", b"\t", b" ",
         b'"', b"{", b"}", b"[]", b"\x80\x05", b"\x93NUMPY", b"PAR1", SECRET)

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=30,
                suppress_health_check=list(HealthCheck))
THOROUGH = settings(FUZZ, max_examples=400)
#: An example that takes longer than this has hung (the slowest seed reads in well under a second).
HANG_S = 20


# -- seeds: real recordings, small ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Seed:
    """The files of one real recording (a WFDB record has several) and how its reader is called."""

    fmt: str
    main: str
    files: dict[str, bytes]
    opts: ReadOptions = field(default_factory=ReadOptions)


class Seeds:
    """Seeds by format, then by name. Hypothesis prints a failing example's arguments: this prints short."""

    def __init__(self, seeds: list[Seed]) -> None:
        self.by_format: dict[str, dict[str, Seed]] = {}
        for seed in seeds:
            self.by_format.setdefault(seed.fmt, {})[seed.main] = seed

    def __getitem__(self, fmt: str) -> dict[str, Seed]:
        return self.by_format[fmt]

    def __repr__(self) -> str:
        return f"<{sum(map(len, self.by_format.values()))} real recordings>"


def _edf_from(sample_path: Path, file_type: int, seconds: float, out: Path, annotate: bool) -> bytes:
    """The first ``seconds`` of a real EDF, written again by pyedflib as ``file_type`` (EDF+ or BDF+)."""
    import pyedflib

    src = pyedflib.EdfReader(str(sample_path))
    try:
        header = src.getSignalHeader(0)
        values = src.readSignal(0)[: int(seconds * header["sample_frequency"])]
    finally:
        src.close()
    if file_type == pyedflib.FILETYPE_BDFPLUS:
        header = dict(header, digital_min=-8388608, digital_max=8388607)
    writer = pyedflib.EdfWriter(str(out), 1, file_type=file_type)
    try:
        writer.setSignalHeaders([header])
        writer.writeSamples([values])
        if annotate:
            writer.writeAnnotation(0.5, -1, "R")
            writer.writeAnnotation(1.0, 0.5, "artifact")
    finally:
        writer.close()
    return out.read_bytes()


def _wfdb_record(ecg: np.ndarray, folder: Path) -> dict[str, bytes]:
    """MIT-BIH 208's first 10 s as a WFDB record (format 212, as the original) with beat annotations."""
    import wfdb

    folder.mkdir()
    wfdb.wrsamp("208", fs=360, units=["mV"], sig_name=["MLII"], p_signal=ecg[:3600, None], fmt=["212"],
                adc_gain=[200], baseline=[1024], write_dir=str(folder))
    peaks = np.flatnonzero((ecg[1:3599] > ecg[:3598]) & (ecg[1:3599] >= ecg[2:3600]) & (ecg[1:3599] > 1.0)) + 1
    wfdb.wrann("208", "atr", peaks, symbol=["N"] * len(peaks), write_dir=str(folder))
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def seeds(sample, tmp_path_factory) -> Seeds:
    import pyedflib

    tmp = tmp_path_factory.mktemp("seeds")
    ecg = np.load(sample("mitbih_208"), allow_pickle=False)["ecg"].astype(np.float64)
    out: dict[str, list[Seed]] = {}

    out["edf"] = [Seed("edf", "eda.edf", {"eda.edf": sample("eda_slow").read_bytes()}),
                  Seed("edf", "ecg.edf", {"ecg.edf": _edf_from(sample("supine_ecg"), pyedflib.FILETYPE_EDFPLUS, 3.0,
                                                               tmp / "plus.edf", annotate=True)}),
                  Seed("edf", "ecg.bdf", {"ecg.bdf": _edf_from(sample("supine_ecg"), pyedflib.FILETYPE_BDFPLUS, 2.0,
                                                               tmp / "plus.bdf", annotate=True)})]

    out["wfdb"] = [Seed("wfdb", "208.hea", _wfdb_record(ecg, tmp / "wfdb"))]

    buf = io.BytesIO()
    np.save(buf, ecg[:3000])
    npz = io.BytesIO()
    np.savez_compressed(npz, ecg=ecg[:3000], leads=np.stack([ecg[:1500], ecg[1500:3000]], axis=1), fs=360.0)
    plain = io.BytesIO()
    np.savez(plain, ecg=ecg[:2000], fs=np.float64(360.0))
    out["numpy"] = [Seed("numpy", "ecg.npy", {"ecg.npy": buf.getvalue()}, ReadOptions(fs=360.0)),
                    Seed("numpy", "ecg.npz", {"ecg.npz": npz.getvalue()}),
                    Seed("numpy", "plain.npz", {"plain.npz": plain.getvalue()})]

    wide = pa.table({"time": np.arange(2000) / 360.0, "mlii": ecg[:2000], "lead_b": ecg[2000:4000]})
    long = pa.table({"channel": ["mlii"] * 1000 + ["v1"] * 1000, "value": ecg[:2000],
                     "fs": np.full(2000, 360.0)})
    files = {}
    for name, table, kw in (("wide.parquet", wide, {"row_group_size": 500}), ("long.parquet", long, {})):
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **kw)
        files[name] = sink.getvalue().to_pybytes()
    sink = pa.BufferOutputStream()
    feather.write_feather(wide, sink, compression="uncompressed")
    files["wide.arrow"] = sink.getvalue().to_pybytes()
    out["parquet"] = [Seed("parquet", name, {name: data}) for name, data in files.items()]

    out["opensignals"] = [Seed("opensignals", "ecg.txt", {"ecg.txt": sample("ecg_opensignals").read_bytes()})]

    table = build_table(sample("daphnet_s06r02"), sample("mitbih_208"))
    out["pamap2"] = [Seed("pamap2", "subject199.dat", {"subject199.dat": format_table(table[:300]).encode()})]

    subject = build_wesad_dict(sample("pyphysio_medical"), sample("sync_acc"))
    for device, streams in subject["signal"].items():  # the first 2 s of each signal keep it small
        for key, array in streams.items():
            streams[key] = array[: 2 * (700 if device == "chest" else {"ACC": 32, "BVP": 64, "EDA": 4}[key])]
    subject["label"] = subject["label"][:1400]
    out["wesad"] = [Seed("wesad", "S99.pkl", {"S99.pkl": dumps_py2(subject)})]

    nni = np.load(sample("pyhrv_nni_long"), allow_pickle=False)
    buf = io.BytesIO()
    np.save(buf, nni[:300])
    ms = ReadOptions(extra={"interval_unit": "ms"})
    out["intervals"] = [Seed("intervals", "nni.txt", {"nni.txt": "".join(f"{v:g}\n" for v in nni[:300]).encode()}, ms),
                        Seed("intervals", "nni.npy", {"nni.npy": buf.getvalue()}, ms)]

    ppg = sample("heartpy_ppg").read_bytes()
    daphnet = b"".join(sample("daphnet_s06r02").read_bytes().splitlines(keepends=True)[:300])
    out["csv"] = [Seed("csv", "ppg.csv", {"ppg.csv": ppg}, ReadOptions(fs=100.0, columns=("ppg",), has_header=False)),
                  Seed("csv", "daphnet.csv", {"daphnet.csv": daphnet},
                       ReadOptions(time_column="timestamp", label_column="is_anomaly")),
                  Seed("csv", "ppg.csv.gz", {"ppg.csv.gz": gzip.compress(ppg, mtime=0)},
                       ReadOptions(fs=100.0, has_header=False))]
    return Seeds([seed for listed in out.values() for seed in listed])


FORMATS = ("edf", "wfdb", "numpy", "parquet", "opensignals", "pamap2", "wesad", "intervals", "csv")


# -- the contract ---------------------------------------------------------------------------------------------------
class Hung(Exception):
    pass


def _alarm(signum, frame):
    raise Hung(f"a reader ran past {HANG_S} s")


def outcome(fmt: str, path: Path, opts: ReadOptions) -> str:
    """``refused`` or ``read`` for a file that kept the readers' contract; anything else raises."""
    module = reader_for(fmt)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        infos = module.probe(path, opts)
        for info in infos:
            assert np.isfinite(info.fs) and info.fs > 0, info
            assert isinstance(info.n_samples, int) and 0 <= info.n_samples <= 10**8, info
        records = module.read(path, opts)
        assert [r.channel for r in records] == [i.name for i in infos] or fmt == "opensignals"
        for rec, info in zip(records, infos):
            check_record(rec)
            assert len(rec.samples) == info.n_samples, (rec.channel, len(rec.samples), info.n_samples)
        if infos:
            (span,) = module.read(path, opts, [0], 0.5, 1.5)
            check_record(span)
            assert len(span.samples) <= np.ceil(span.fs) + 1
    except InputError as err:
        check_refusal(err, path)
        return "refused"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return "read"


def check_record(rec) -> None:
    assert isinstance(rec.samples, np.ndarray) and rec.samples.dtype == np.float64 and rec.samples.ndim == 1
    assert not np.isinf(rec.samples).any(), f"{rec.channel}: infinite samples"
    assert np.isfinite(rec.fs) and rec.fs > 0, rec.fs
    assert np.isfinite(rec.offset_s) and rec.offset_s >= 0, rec.offset_s
    assert rec.labels is None or len(rec.labels) == len(rec.samples)


def check_refusal(err: InputError, path: Path) -> None:
    assert err.path == str(path), err
    assert err.reason.strip() and "\n" not in str(err) and "\r" not in str(err), repr(str(err))
    assert "hunter2" not in str(err), f"the reason quotes the file: {err}"


# -- mutations ------------------------------------------------------------------------------------------------------
def _position(n: int):
    """Anywhere in the file, but often in its first bytes, where headers are."""
    return st.one_of(st.integers(0, min(n, 512)), st.integers(0, n))


def _mutation(n: int):
    chunk = st.one_of(st.sampled_from(NASTY), st.binary(min_size=1, max_size=16))
    return st.one_of(
        st.tuples(st.just("truncate"), _position(n)),
        st.tuples(st.just("flip"), _position(n), st.integers(0, 7)),
        st.tuples(st.just("overwrite"), _position(n), chunk),
        st.tuples(st.just("insert"), _position(n), chunk),
        st.tuples(st.just("delete"), _position(n), st.integers(1, 256)),
        st.tuples(st.just("token"), st.integers(0, 300), st.sampled_from(NASTY)),
    )


_TOKEN = re.compile(rb"[^\s,;:\[\]{}\"]+")


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, at, *arg in ops:
        at = min(at, len(buf))
        if op == "truncate":
            del buf[at:]
        elif op == "flip" and at < len(buf):
            buf[at] ^= 1 << arg[0]
        elif op == "overwrite":
            buf[at:at + len(arg[0])] = arg[0]
        elif op == "insert":
            buf[at:at] = arg[0]
        elif op == "delete":
            del buf[at:at + arg[0]]
        elif op == "token":  # a field of a text header or a cell of a table, replaced
            tokens = list(itertools.islice(_TOKEN.finditer(bytes(buf)), at + 1))
            if tokens:
                m = tokens[-1]
                buf[m.start():m.end()] = arg[0]
    return bytes(buf)


_names = itertools.count()


def write_seed(root: Path, seed: Seed, replaced: dict[str, bytes]) -> Path:
    """The seed's files in a folder of their own (readers cache by path, WFDB finds a record's files by name)."""
    folder = root / f"x{next(_names)}"
    folder.mkdir()
    for name, data in {**seed.files, **replaced}.items():
        (folder / name).write_bytes(data)
    return folder / seed.main


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def fuzz_mutated_files(seeds, scratch, fmt, data) -> None:
    seed = seeds[fmt][data.draw(st.sampled_from(sorted(seeds[fmt])), label="seed")]
    target = data.draw(st.sampled_from(sorted(seed.files)), label="file")
    original = seed.files[target]
    ops = data.draw(st.lists(_mutation(len(original)), min_size=1, max_size=4), label="mutations")
    path = write_seed(scratch, seed, {target: mutate(original, ops)})
    outcome(fmt, path, seed.opts)


@pytest.mark.parametrize("fmt", FORMATS)
@FUZZ
@given(data=st.data())
def test_mutated_real_files_are_refused_in_one_line_or_read_as_valid_records(seeds, scratch, fmt, data):
    fuzz_mutated_files(seeds, scratch, fmt, data)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@THOROUGH
@given(data=st.data())
def test_mutated_real_files_thoroughly(seeds, scratch, fmt, data):
    fuzz_mutated_files(seeds, scratch, fmt, data)


def test_the_unmutated_seeds_are_read(seeds, scratch):
    """The fuzzing starts from files the readers accept: a mutation that is refused was refused for itself."""
    for fmt in FORMATS:
        for seed in seeds[fmt].values():
            assert outcome(fmt, write_seed(scratch, seed, {}), seed.opts) == "read", seed.main


# -- garbage header fields ------------------------------------------------------------------------------------------
def edf_fields(header: bytes) -> dict[str, tuple[int, int]]:
    """EDF header fields as (offset, width): the general header's, then signal 0's (each signal field is an array of
    one entry per signal, so where signal 0's sits depends on the number of signals)."""
    ns = int(header[252:256])
    fields = {"version": (0, 8), "start date": (168, 8), "start time": (176, 8), "header bytes": (184, 8),
              "reserved": (192, 44), "records": (236, 8), "record seconds": (244, 8), "signals": (252, 4)}
    at = 256
    for name, width in (("label", 16), ("transducer", 80), ("unit", 8), ("physical min", 8), ("physical max", 8),
                        ("digital min", 8), ("digital max", 8), ("prefilter", 80), ("samples per record", 8)):
        fields[name] = (at, width)
        at += width * ns
    return fields


ODD_FIELD_VALUES = ("99999999", "-1", "0", "-0", "1e30", "-1e30", "1e308", "-1e308", "nan", "inf", "1e-310",
                    "0.000001", "abc", "", "1.5", "-32768", "32767", "8388607", "+-1", "pw:$6$h")


def fuzz_edf_header(seeds, scratch, data) -> None:
    name = data.draw(st.sampled_from(["eda.edf", "ecg.edf"]), label="seed")
    seed = seeds["edf"][name]
    raw = bytearray(seed.files[name])
    fields = edf_fields(raw)
    for _ in range(data.draw(st.integers(1, 3), label="fields")):
        offset, width = fields[data.draw(st.sampled_from(sorted(fields)), label="field")]
        value = data.draw(st.sampled_from(ODD_FIELD_VALUES), label="value")
        raw[offset:offset + width] = value.encode().ljust(width)[:width]
    outcome("edf", write_seed(scratch, seed, {name: bytes(raw)}), seed.opts)


def npy_with_header(header: str, payload: bytes) -> bytes:
    """A version 1.0 ``.npy`` with this header text (padded as NumPy pads it) before ``payload``."""
    text = header.encode("latin1")
    text += b" " * ((-(10 + len(text) + 1)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


DESCRS = ("<f8", ">f8", "<f4", "<i2", "|u1", "|b1", "<c16", "|O", "<U8", "|V8", "<M8[ns]", "pw:$6$h", "<f8<f8")
SHAPES = ("(3000,)", "(1500, 2)", "(2, 1500)", "(1,)", "(0,)", "()", "(1, 1)", "(3000, 0)", "(10**12,)",
          "(1000000000000,)", "(-1,)", "(1000000, 1000000)", "(2, 2, 750)", "'x'", "(3000.5,)")


def fuzz_npy_header(seeds, scratch, data) -> None:
    seed = seeds["numpy"]["ecg.npy"]
    payload = seed.files["ecg.npy"][128:]  # the real samples after NumPy's 128-byte header
    descr = data.draw(st.sampled_from(DESCRS), label="descr")
    shape = data.draw(st.sampled_from(SHAPES), label="shape")
    fortran = data.draw(st.sampled_from(["False", "True", "0", "'no'"]), label="fortran_order")
    cut = data.draw(st.sampled_from([len(payload), 8, 0, 1]), label="payload bytes")
    header = "{" + f"'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, " + "}"
    outcome("numpy", write_seed(scratch, seed, {"ecg.npy": npy_with_header(header, payload[:cut])}), seed.opts)


#: Header fuzzers by format: any value in any EDF header field; any dtype, shape and order in a .npy header.
HEADER_FUZZERS = {"edf": fuzz_edf_header, "npy": fuzz_npy_header}


@pytest.mark.parametrize("header", sorted(HEADER_FUZZERS))
@FUZZ
@given(data=st.data())
def test_garbage_header_fields_are_refused_or_read(seeds, scratch, header, data):
    HEADER_FUZZERS[header](seeds, scratch, data)


@pytest.mark.slow
@pytest.mark.parametrize("header", sorted(HEADER_FUZZERS))
@THOROUGH
@given(data=st.data())
def test_garbage_header_fields_thoroughly(seeds, scratch, header, data):
    HEADER_FUZZERS[header](seeds, scratch, data)


# -- odd values, written by the real libraries ----------------------------------------------------------------------
ODD_VALUES = (np.nan, np.inf, -np.inf, 1e30, -1e30, 1e308, -1e308, 5e-324, 0.0)


@st.composite
def odd_signals(draw, real: np.ndarray) -> np.ndarray:
    """A stretch of a real signal (or one sample, or none) with runs of NaN, inf, 1e30, ... written over it."""
    n = draw(st.sampled_from([len(real), 1, 2, 0]), label="samples")
    x = real[:n].copy()
    for _ in range(draw(st.integers(0, 3), label="runs")):
        if n:
            start = draw(st.integers(0, n - 1))
            x[start:start + draw(st.integers(1, n))] = draw(st.sampled_from(ODD_VALUES))
    return x


def odd_file(fmt: str, x: np.ndarray, folder: Path) -> tuple[Path, ReadOptions]:
    """``x`` written in ``fmt`` by the library or layout that format is made by."""
    folder.mkdir()
    if fmt == "numpy":
        np.save(folder / "x.npy", x)
        return folder / "x.npy", ReadOptions(fs=360.0)
    if fmt == "parquet":
        pq.write_table(pa.table({"time": np.arange(len(x)) / 360.0, "ecg": x}), folder / "x.parquet")
        return folder / "x.parquet", ReadOptions(fs=360.0)
    if fmt == "wfdb":
        import wfdb

        wfdb.wrsamp("x", fs=360, units=["mV"], sig_name=["MLII"], p_signal=x[:, None], fmt=["16"],
                    adc_gain=[200], baseline=[0], write_dir=str(folder))
        return folder / "x.hea", ReadOptions()
    if fmt == "opensignals":
        header = {"00:07:80:3B:46:61": {"sensor": ["ECG"], "column": ["nSeq", "DI", "CH1"], "label": ["CH1"],
                                        "sampling rate": 200, "date": "2017-1-17", "time": "14:50:32.316"}}
        rows = "".join(f"{k % 16}\t0\t{v!r}\t\n" for k, v in enumerate(x.tolist()))
        (folder / "x.txt").write_text(f"# OpenSignals Text File Format\n# {json.dumps(header)}\n# EndOfHeader\n{rows}")
        return folder / "x.txt", ReadOptions()
    if fmt == "pamap2":
        table = np.full((len(x), 54), np.nan)
        table[:, 0] = 280.0 + np.arange(len(x)) / 100.0
        table[:, 1] = 4
        table[:, 2:] = x[:, None]
        (folder / "subject1.dat").write_text(format_table(table) if len(x) else "")
        return folder / "subject1.dat", ReadOptions()
    if fmt == "wesad":
        n = len(x)
        subject = {"signal": {"chest": {"ECG": x[:, None]}, "wrist": {"BVP": x[: n * 64 // 700 or n, None]}},
                   "label": np.ones(n, np.int32), "subject": "S1"}
        (folder / "S1.pkl").write_bytes(dumps_py2(subject))
        return folder / "S1.pkl", ReadOptions()
    if fmt == "intervals":
        (folder / "nni.txt").write_text("".join(f"{v!r}\n" for v in (x * 1000).tolist()))
        return folder / "nni.txt", ReadOptions(extra={"interval_unit": "ms"})
    if fmt == "csv":
        (folder / "x.csv").write_text("ecg\n" + "".join(f"{v!r}\n" for v in x.tolist()))
        return folder / "x.csv", ReadOptions(fs=360.0)
    raise AssertionError(fmt)


ODD_VALUE_FORMATS = ("numpy", "parquet", "wfdb", "opensignals", "pamap2", "wesad", "intervals", "csv")


def fuzz_odd_values(seeds, scratch, fmt, data) -> None:
    ecg = np.frombuffer(seeds["numpy"]["ecg.npy"].files["ecg.npy"][128:], dtype="<f8")[:700]
    if fmt == "intervals":  # an ECG has no intervals: the real NN intervals of pyhrv, in seconds
        ecg = np.loadtxt(io.BytesIO(seeds["intervals"]["nni.txt"].files["nni.txt"])) / 1000.0
    x = data.draw(odd_signals(ecg), label="signal")
    try:
        path, opts = odd_file(fmt, x, scratch / f"x{next(_names)}")
    except (ValueError, OverflowError, IndexError):  # the writing library refuses such values (wfdb: inf, none)
        return
    outcome(fmt, path, opts)


@pytest.mark.parametrize("fmt", ODD_VALUE_FORMATS)
@FUZZ
@given(data=st.data())
def test_nan_inf_and_1e30_runs_one_sample_and_empty_files_are_refused_or_read(seeds, scratch, fmt, data):
    fuzz_odd_values(seeds, scratch, fmt, data)


# -- huge declared sizes: refused, with memory bounded --------------------------------------------------------------
#: Run in a child whose address space may grow by this much: a reader that allocates what a header declares
#: fails there with MemoryError (reported), instead of taking the machine's memory.
HEADROOM_BYTES = 2 << 30
_BOUNDED_READS = textwrap.dedent("""
    import json, resource, sys
    from nw2.core.errors import InputError
    from nw2.pipeline.readers import reader_for
    from nw2.pipeline.readers.base import ReadOptions

    cases = json.loads(sys.argv[1])
    modules = {fmt: reader_for(fmt) for fmt, _, _ in cases}
    import pyedflib, wfdb  # imported before the limit: what is loaded already is not what a file makes us allocate
    with open("/proc/self/status") as fh:
        size = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_AS)[1]))
    for fmt, path, opts in cases:
        # probe is where ingest plans its pieces: it must refuse what the file cannot hold, not announce it
        for stage in (modules[fmt].probe, modules[fmt].read):
            try:
                stage(path, ReadOptions(**opts))
                result = [path, f"{stage.__name__} accepted it", ""]
            except InputError as err:
                tried = isinstance(err.__context__, MemoryError)  # refused only once the allocation failed
                result = [path, "allocated" if tried else "refused", err.reason]
            except BaseException as err:
                result = [path, "raised", f"{type(err).__name__}: {err}"]
            print(json.dumps(result))
            if result[1] != "refused":
                break
""")


def huge_declarations(seeds, folder: Path) -> list[tuple[str, Path, dict]]:
    """Real files whose headers declare far more than they hold (a billion EDF records, a trillion samples)."""
    cases = []

    def case(fmt, name, data, opts=None, companions=None):
        sub = folder / f"{fmt}-{len(cases)}"
        sub.mkdir()
        for other, blob in (companions or {}).items():
            (sub / other).write_bytes(blob)
        (sub / name).write_bytes(data)
        cases.append((fmt, str(sub / name), opts or {}))

    edf = seeds["edf"]["eda.edf"].files["eda.edf"]
    for field_name in ("records", "samples per record"):
        offset, width = edf_fields(edf)[field_name]
        huge = bytearray(edf)
        huge[offset:offset + width] = b"99999999"
        case("edf", "huge.edf", bytes(huge))
    samples = seeds["numpy"]["ecg.npy"].files["ecg.npy"][128:]
    for shape in ("(10**12,)", "(1000000000000,)", "(1000000, 1000000)", "(3000, 1000000000)"):
        header = "{" + f"'descr': '<f8', 'fortran_order': False, 'shape': {shape}, " + "}"
        case("numpy", "huge.npy", npy_with_header(header, samples), {"fs": 360.0})
        npz = io.BytesIO()
        with zipfile.ZipFile(npz, "w") as zf:
            zf.writestr("ecg.npy", npy_with_header(header, samples))
            zf.writestr("fs.npy", npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
                                                  struct.pack("<d", 360.0)))
        case("numpy", "huge.npz", npz.getvalue())
    record = seeds["wfdb"]["208.hea"].files
    for count in ("1000000000000", "99999999999999999"):
        header = re.sub(rb"^208 1 360 3600", b"208 1 360 " + count.encode(), record["208.hea"])
        assert header != record["208.hea"]
        case("wfdb", "208.hea", header, companions={"208.dat": record["208.dat"]})
    case("wfdb", "208.hea", record["208.hea"], companions={"208.dat": record["208.dat"][:100]})
    # Pickle opcodes with 8-byte lengths: BINBYTES8, BINUNICODE8, BYTEARRAY8 and a FRAME, each of 2**60 bytes
    for opcode in (b"\x8e", b"\x8d", b"\x96", b"\x95"):
        case("wesad", "S1.pkl", b"\x80\x05" + opcode + struct.pack("<Q", 2**60) + b"\x00" * 64)
    for interval in ("1e30", "1e300", "86400000"):
        case("intervals", "nni.txt", f"800\n810\n{interval}\n790\n".encode(), {"extra": {"interval_unit": "ms"}})
    return cases


def test_huge_declared_sizes_are_refused_without_allocating_them(seeds, tmp_path):
    cases = huge_declarations(seeds, tmp_path)
    done = subprocess.run([sys.executable, "-c", _BOUNDED_READS, json.dumps(cases), str(HEADROOM_BYTES)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results: dict[str, list] = {}
    for line in done.stdout.splitlines():
        path, result, detail = json.loads(line)
        results.setdefault(path, []).append((result, detail))
    assert len(results) == len(cases), done.stdout
    wrong = {path: r for path, r in results.items() if [result for result, _ in r] != ["refused", "refused"]}
    assert not wrong, wrong
    assert all("\n" not in reason for r in results.values() for _, reason in r)


# -- nothing in a file is executed ----------------------------------------------------------------------------------
class _Payload:
    """What a hostile pickle holds: unpickling it would run ``os.system`` (or write a file)."""

    def __init__(self, call, *args) -> None:
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def hostile_files(folder: Path, marker: Path) -> list[tuple[str, Path, ReadOptions]]:
    """Pickles and object arrays that would create ``marker`` if anything in them ran."""
    touch = _Payload(os.system, f"touch {marker}")
    write = _Payload(exec, f"open({str(marker)!r}, 'w').write('ran')")
    files = []
    for k, payload in enumerate((touch, write)):
        for protocol in (2, 4, 5):
            pkl = folder / f"evil{k}-{protocol}.pkl"
            pkl.write_bytes(pickle.dumps({"signal": {"chest": {"ECG": payload}}, "label": payload}, protocol=protocol))
            files.append(("wesad", pkl, ReadOptions()))
        objects = np.array([payload, 1.0], dtype=object)
        np.save(folder / f"evil{k}.npy", objects, allow_pickle=True)
        np.savez(folder / f"evil{k}.npz", ecg=np.zeros(100), notes=objects)
        files += [("numpy", folder / f"evil{k}.npy", ReadOptions(fs=100.0)),
                  ("numpy", folder / f"evil{k}.npz", ReadOptions(fs=100.0)),
                  ("intervals", folder / f"evil{k}.npy", ReadOptions(extra={"interval_unit": "ms"}))]
    # A protocol-2 pickle of the official layout whose array is built by a global outside the allow-list
    files.append(("wesad", folder / "S2.pkl", ReadOptions()))
    (folder / "S2.pkl").write_bytes(b"\x80\x02cposix\nsystem\nq\x00X" + struct.pack("<I", len(f"touch {marker}"))
                                    + f"touch {marker}".encode() + b"\x85R.")
    return files


def test_pickles_and_object_arrays_are_refused_without_running_anything(tmp_path):
    marker = tmp_path / "pwned"
    for fmt, path, opts in hostile_files(tmp_path, marker):
        for call in (reader_for(fmt).probe, reader_for(fmt).read):
            with pytest.raises(InputError) as err:
                call(path, opts)
            check_refusal(err.value, path)
            assert re.search(r"unpickle|objects", err.value.reason), err.value.reason
            assert not marker.exists(), f"{path.name} ran its payload"


def test_a_spec_with_python_tags_is_refused_not_constructed(tmp_path):
    from nw2.pipeline.spec import load_spec

    marker = tmp_path / "pwned"
    for tag in (f"!!python/object/apply:os.system [touch {marker}]",
                f"!!python/object/new:subprocess.Popen [[touch, {marker}]]",
                "!!python/object:nw2.pipeline.spec.IngestSpec {name: x}",
                "!!python/name:os.system"):
        spec = tmp_path / "spec.yaml"
        spec.write_text(f"name: {tag}\nsources: [{{paths: [x.edf]}}]\n")
        with pytest.raises(SpecError, match="not valid YAML"):
            load_spec(spec)
        assert not marker.exists(), tag


# -- end to end: one nw2 ingest over a hostile file of every reader ------------------------------------------------
def test_nw2_ingest_records_every_hostile_file_in_one_line_and_goes_on(seeds, sample, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cases = huge_declarations(seeds, data)
    good = sample("supine_ecg")
    cut = {fmt: write_seed(data, seed, {seed.main: seed.files[seed.main][: len(seed.files[seed.main]) // 3]})
           for fmt in ("opensignals", "pamap2", "parquet", "csv") for seed in list(seeds[fmt].values())[:1]}
    sources = [{"dataset": "hostile", "paths": [str(path)], "format": fmt, **({"fs": opts["fs"]} if "fs" in opts else {}),
                **({"extra": opts["extra"]} if "extra" in opts else {})} for fmt, path, opts in cases]
    sources += [{"dataset": "hostile", "paths": [str(path)], "format": fmt, **({"fs": 100.0} if fmt in ("csv",) else {})}
                for fmt, path in cut.items()]
    sources.append({"dataset": "hostile", "paths": [str(good)], "format": "edf"})
    for source in sources:  # the files share stems (huge.edf in edf-0/ and edf-1/): each folder is a record
        source["record_pattern"] = "([^/]+)/[^/]+$"
    spec = tmp_path / "hostile.yaml"
    spec.write_text(json.dumps({"name": "hostile", "sources": sources, "windows": {"length": 256, "stride": 256}}))
    result = nw2("ingest", spec, "--out", tmp_path / "S", "--scheduler", "sync", "--no-progress", "--no-metrics")
    assert result.exit_code == 0, result.output  # the good file was ingested
    assert "Traceback" not in result.output
    entries = {e["path"]: e for e in json.loads((tmp_path / "S" / "manifest.json").read_text())["inputs"]}
    assert entries[str(good)]["status"] == "ingested"
    for _, path, _ in cases:  # each declares more than it holds
        entry = entries[str(Path(path).relative_to(tmp_path))]
        assert entry["status"] == "failed" and "\n" not in entry["reason"], (path, entry)
    for path in cut.values():  # a third of a file: refused, or read as the shorter recording it may still be
        entry = entries[str(path.relative_to(tmp_path))]
        assert entry["status"] in ("failed", "skipped", "ingested") and "\n" not in (entry["reason"] or ""), entry
    for line in result.output.splitlines():
        assert len(line) < 1000 and "hunter2" not in line


# -- CSV: failures found here, fixed with the streaming reader -------------------------------------------------------
def test_a_gzipped_csv_with_a_corrupt_deflate_stream_is_refused_in_one_line(seeds, scratch):
    seed = seeds["csv"]["ppg.csv.gz"]
    data = bytearray(seed.files["ppg.csv.gz"])
    data[12] ^= 0xFF  # the first byte of the deflate stream, past gzip's 10-byte header and the block header bit
    assert outcome("csv", write_seed(scratch, seed, {"ppg.csv.gz": bytes(data)}), seed.opts) == "refused"


def test_a_csv_cell_reading_inf_is_a_missing_sample(seeds, scratch):
    seed = seeds["csv"]["ppg.csv"]
    lines = seed.files["ppg.csv"].splitlines(keepends=True)
    lines[10], lines[11] = b"inf\n", b"-inf\n"
    assert outcome("csv", write_seed(scratch, seed, {"ppg.csv": b"".join(lines)}), seed.opts) == "read"
