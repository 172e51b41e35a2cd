"""WESAD (Wearable Stress and Affect Detection) subject pickles, ``SX/SX.pkl``.

Layout (from the dataset's readme)::

    {"subject": "S2",
     "signal": {"chest": {"ACC": (n, 3), "ECG": (n, 1), "EMG": (n, 1), "EDA": (n, 1),
                          "Temp": (n, 1), "Resp": (n, 1)},            # RespiBAN, all 700 Hz
                "wrist": {"ACC": (m, 3),    # 32 Hz        Empatica E4
                          "BVP": (m, 1),    # 64 Hz
                          "EDA": (m, 1),    # 4 Hz
                          "TEMP": (m, 1)}}, # 4 Hz
     "label": (n,)}                         # 700 Hz: 0 undefined, 1 baseline, 2 stress, 3 amusement, ...

Channels are named ``<device>_<signal>`` (``chest_ECG``, ``wrist_BVP``); a 3-column ``ACC`` becomes
``<device>_ACC_x/_y/_z`` (other multi-column arrays ``_0``, ``_1``, ...). They are listed chest first,
then wrist, then any other device, each in the order the pickle stores them; signals the pickle lacks
are simply absent. Units follow the readme: chest ACC g, ECG and EMG mV, EDA µS, Temp °C, Resp %;
wrist ACC in 1/64 g (the E4's raw scale), BVP without unit, EDA µS, TEMP °C.

``labels``: the 700 Hz label array brought to each channel's rate by index, sample ``i`` taking
``label[floor(i * 700 / fs)]`` (the label in force at the sample's time).

Options: ``extra["rates"]`` (dict) overrides a rate, keyed ``"<device>_<signal>"`` (``"wrist_BVP"``)
or ``"label"``; it is also how a signal of an unknown device gets a rate. ``fs`` is ignored (the file
mixes rates). ``subject`` defaults to the pickle's ``subject``, else the file stem; ``modality`` /
``unit`` override every channel's.

Security: a pickle can run arbitrary code when loaded. This reader unpickles with
:class:`RestrictedUnpickler`, which resolves only the few globals NumPy arrays, dtypes and scalars
need (plus ``set``/``frozenset``/``complex``/``bytearray`` and a latin-1-only ``_codecs.encode``,
which Python 3 uses for ``bytes`` in protocol 2); any other global in the stream stops the load with an
:class:`InputError` before anything is called. Functions are handed out wrapped in attribute-less
proxies, so a stream cannot alter them (``BUILD`` sets attributes) for later loads either.
The original pickles were written by Python 2, so strings are decoded as latin-1 (NumPy then takes the
array buffers back as bytes).

Memory: a pickle declares the length of each string, bytes and frame before it; CPython's C unpickler allocates
that length before reading, so a 70-byte file declaring 2**60 bytes asked for an exabyte. The unpickler here is the
pure-Python one reading through :class:`_Capped`, which never reads past the end of the file, so what a load
allocates is bounded by the file's size (WESAD pickles hold a few dozen large strings: the speed is the same).
"""

from __future__ import annotations

import codecs
import importlib
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from nw2.core.errors import InputError
from nw2.pipeline.readers.base import (ReadOptions, as_float, file_stem, finite_or_nan, named, scrubbed, select, shown,
                                       time_slice)
from nw2.pipeline.records import ChannelInfo, Record

FORMAT = "wesad"
EXTENSIONS = (".pkl", ".pickle")

LABEL_FS = 700.0
RATES: dict[str, float] = {
    "chest_ACC": 700.0, "chest_ECG": 700.0, "chest_EMG": 700.0, "chest_EDA": 700.0,
    "chest_Temp": 700.0, "chest_Resp": 700.0,
    "wrist_ACC": 32.0, "wrist_BVP": 64.0, "wrist_EDA": 4.0, "wrist_TEMP": 4.0,
}
"""Sampling rate of every signal of the official layout."""
UNITS: dict[str, str] = {
    "chest_ACC": "g", "chest_ECG": "mV", "chest_EMG": "mV", "chest_EDA": "uS", "chest_Temp": "°C",
    "chest_Resp": "%", "wrist_ACC": "1/64 g", "wrist_BVP": "", "wrist_EDA": "uS", "wrist_TEMP": "°C",
}
_MODALITIES = {"ecg": "ecg", "bvp": "ppg", "eda": "eda", "resp": "resp", "acc": "acc", "emg": "emg",
               "temp": "temp"}
_DEVICE_ORDER = ("chest", "wrist")


# --------------------------------------------------------------------------------------------------
# Restricted unpickling


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as Python 3 pickles (protocol < 3) use it for ``bytes``: latin-1 only."""
    if not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as (str, 'latin1')")
    return codecs.encode(text, "latin1")


def _numpy_core(submodule: str, name: str):
    """``numpy._core.<submodule>.<name>``, or the pre-2.0 ``numpy.core`` one (without its warning)."""
    try:
        module = importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # NumPy < 2
        module = importlib.import_module(f"numpy.core.{submodule}")
    return getattr(module, name)


def _sealed(name: str, fn) -> type:
    """A class whose instances call ``fn`` and have no attribute a pickle could set.

    The stream's ``BUILD`` opcode can ``setattr`` on any object on the stack, including a global it
    just loaded, so real functions (whose ``__module__``, ``__defaults__``, ... are writable) are never
    handed out: ``find_class`` returns a fresh instance of a slot-less class instead.
    """
    return type(f"sealed_{name}", (), {"__slots__": (), "__call__": lambda self, *args: fn(*args),
                                       "__repr__": lambda self: f"<sealed {name}>"})


def _allowed() -> tuple[dict[tuple[str, str], type], dict[tuple[str, str], type]]:
    """(types handed out as they are, functions handed out sealed), keyed by (module, name)."""
    # Immutable built-in types: nothing on them can be set.
    types: dict[tuple[str, str], type] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    # Builtin containers and scalars that pickle by reference in protocol 2 (Python 2 spells the
    # module __builtin__; find_class sees the name before any renaming).
    for module in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex),
                          ("bytearray", bytearray)):
            types[(module, name)] = obj
    sealed = {}
    for submodule, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")):
        cls = _sealed(name, _numpy_core(submodule, name))
        for core in ("numpy.core", "numpy._core"):  # NumPy 1 pickles say numpy.core, NumPy 2 numpy._core
            sealed[(f"{core}.{submodule}", name)] = cls
    sealed[("_codecs", "encode")] = _sealed("encode", _latin1_encode)
    return types, sealed


_ALLOWED: tuple[dict[tuple[str, str], type], dict[tuple[str, str], type]] | None = None


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        self.qualname = f"{module}.{name}"
        super().__init__(f"refusing to unpickle {self.qualname}")


class _Capped:
    """A pickle file whose reads stop at its end: a read of a length the stream declares returns what is there."""

    def __init__(self, fh) -> None:
        self.fh, self.size = fh, os.fstat(fh.fileno()).st_size

    def read(self, n: int = -1) -> bytes:
        left = max(0, self.size - self.fh.tell())
        return self.fh.read(left if n is None or n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self.fh.readline()


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only the globals in its allow-list; anything else is refused.

    Pickle calls only callables it obtained from ``find_class`` (``GLOBAL``, ``STACK_GLOBAL``,
    ``INST``, ``OBJ``, extension codes) and persistent ids are unsupported, so an exact
    (module, name) allow-list keeps the stream from reaching any other code. Dotted names
    (``ndarray.tofile``) are not in the list and are refused too. Functions are handed out sealed
    (see :func:`_sealed`) so that ``BUILD`` cannot modify them for later loads.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def _load_bytearray8(self) -> None:
        """BYTEARRAY8 (protocol 5, NumPy's in-band buffers), read before it is allocated (the stock one allocates
        the declared length first)."""
        (n,) = struct.unpack("<Q", self.read(8))
        data = self.read(n)
        if len(data) != n:
            raise pickle.UnpicklingError(f"BYTEARRAY8 of {n} bytes runs past the end of the pickle")
        self.append(bytearray(data))

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def find_class(self, module: str, name: str):
        global _ALLOWED
        if _ALLOWED is None:
            _ALLOWED = _allowed()
        types, sealed = _ALLOWED
        key = (module, name)
        if key in types:
            return types[key]
        if key in sealed:
            return sealed[key]()
        raise RefusedGlobal(module, name)


def load_pickle(path: str | Path):
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (latin-1 strings, as Python 2 wrote them)."""
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise InputError(path, f"cannot open ({err.strerror or err})") from None
    try:
        with fh:
            if not fh.peek(1):
                raise InputError(path, "empty file")
            return RestrictedUnpickler(_Capped(fh), encoding="latin1").load()
    except InputError:
        raise
    except RefusedGlobal as err:
        raise InputError(path, f"refusing to unpickle {err.qualname}: only NumPy arrays and builtin "
                               f"containers are allowed") from None
    except EOFError:
        raise InputError(path, "truncated pickle (ends before its STOP opcode)") from None
    except RecursionError:
        raise InputError(path, "pickle nests too deeply") from None
    except MemoryError:
        raise InputError(path, "pickle asks for more memory than is available") from None
    except Exception as err:  # noqa: BLE001 - a corrupt stream can fail in many ways
        raise InputError(path, f"corrupt pickle ({type(err).__name__}: {scrubbed(' '.join(str(err).split()))})") from None


# --------------------------------------------------------------------------------------------------
# Layout


def sniff(path: str | Path, head: bytes) -> bool:
    """A ``.pkl``/``.pickle`` file that starts with a pickle protocol 2-5 header."""
    name = str(path).lower()
    if not name.endswith(EXTENSIONS):
        return False
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _rates(opts: ReadOptions, path: Path) -> dict[str, float]:
    extra = opts.extra.get("rates") if opts.extra else None
    rates = dict(RATES, label=LABEL_FS)
    if extra is None:
        return rates
    if not isinstance(extra, dict):
        raise InputError(path, f"option rates must be a mapping of signal to Hz, got {type(extra).__name__}")
    for key, value in extra.items():
        try:
            rate = float(value)
        except (TypeError, ValueError):
            rate = float("nan")
        if not (math.isfinite(rate) and rate > 0):
            raise InputError(path, f"option rates[{key!r}] must be a positive number, got {value!r}")
        rates[str(key)] = rate
    return rates


class _Channel:
    __slots__ = ("name", "key", "device", "signal", "column", "fs", "array")

    def __init__(self, name, key, device, signal, column, fs, array):
        self.name, self.key, self.device, self.signal = name, key, device, signal
        self.column, self.fs, self.array = column, fs, array


def _layout(path: Path, obj, opts: ReadOptions) -> tuple[list[_Channel], np.ndarray | None, float, str | None]:
    """Validate the unpickled object; return its channels, label array, label rate and subject."""
    if not isinstance(obj, dict):
        raise InputError(path, f"not a WESAD pickle: top level is a {type(obj).__name__}, expected a dict "
                               f"with 'signal' and 'label'")
    if "signal" not in obj:
        raise InputError(path, f"not a WESAD pickle: no 'signal' key (keys: {', '.join(map(shown, obj)) or 'none'})")
    signal = obj["signal"]
    if not isinstance(signal, dict) or not signal:
        raise InputError(path, "not a WESAD pickle: 'signal' must be a non-empty dict of devices "
                               "('chest', 'wrist')")
    rates = _rates(opts, path)
    devices = [d for d in _DEVICE_ORDER if d in signal] + [d for d in signal if d not in _DEVICE_ORDER]
    channels: list[_Channel] = []
    for device in devices:
        streams = signal[device]
        if not isinstance(streams, dict):
            raise InputError(path, f"signal[{shown(device)}] must be a dict of arrays, got {type(streams).__name__}")
        for sig, array in streams.items():
            key = f"{device}_{sig}"
            if not isinstance(array, np.ndarray):
                raise InputError(path, f"signal[{shown(device)}][{shown(sig)}] is a {type(array).__name__}, "
                                       f"expected a NumPy array")
            if array.ndim == 1:
                array = array[:, None]
            if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
                raise InputError(path, f"signal[{shown(device)}][{shown(sig)}] has shape {array.shape}, "
                                       f"expected (samples, columns)")
            if array.dtype.kind not in "biuf":
                raise InputError(path, f"signal[{shown(device)}][{shown(sig)}] is not numeric (dtype {array.dtype})")
            if key not in rates:
                raise InputError(path, f"no sampling rate known for {named(key)}; give it in option rates")
            width = array.shape[1]
            for column in range(width):
                if width == 1:
                    name = key
                elif width == 3 and str(sig).upper() == "ACC":
                    name = f"{key}_{'xyz'[column]}"
                else:
                    name = f"{key}_{column}"
                channels.append(_Channel(name, key, device, str(sig), column, rates[key], array))
    labels = obj.get("label")
    if labels is not None:
        if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "biuf":
            raise InputError(path, "'label' must be a numeric NumPy array")
        labels = labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels
        if labels.ndim != 1 or labels.size == 0:
            raise InputError(path, f"'label' has shape {labels.shape}, expected (samples,)")
    subject = obj.get("subject")
    if isinstance(subject, bytes):
        subject = subject.decode("latin1")
    return channels, labels, rates["label"], (str(subject) if subject not in (None, "") else None)


def _modality(channel: _Channel) -> str:
    return _MODALITIES.get(channel.signal.lower(), "other")


def probe(path: str | Path, opts: ReadOptions = ReadOptions()) -> list[ChannelInfo]:
    path = Path(path)
    channels, _, _, _ = _layout(path, load_pickle(path), opts)
    return [ChannelInfo(c.name, c.fs, int(c.array.shape[0]), opts.modality or _modality(c),
                        opts.unit or UNITS.get(c.key, ""))
            for c in channels]


def _labels_at(path: Path, labels: np.ndarray, label_fs: float, fs: float, n: int, span: slice,
               name: str) -> np.ndarray:
    """Labels of samples ``span`` of a channel of ``n`` samples at ``fs``: ``label[floor(i * label_fs / fs)]``."""
    # The label array should span every channel; tolerate rounding of up to a second at the end.
    if n and math.floor((n - 1) * label_fs / fs + 1e-9) >= labels.size + label_fs:
        raise InputError(path, f"'label' ({labels.size} samples at {label_fs:g} Hz) is shorter than "
                               f"{name} ({n} samples at {fs:g} Hz)")
    index = np.floor(np.arange(span.start, span.stop) * (label_fs / fs) + 1e-9).astype(np.int64)
    np.minimum(index, labels.size - 1, out=index)
    picked = labels[index]
    if picked.dtype.kind == "f" and np.all(np.isfinite(picked)) and np.all(picked == np.round(picked)):
        picked = picked.astype(np.int64)
    elif picked.dtype.kind in "biu":
        picked = picked.astype(np.int64)
    return picked


def read(path: str | Path, opts: ReadOptions = ReadOptions(), channels: list[int] | None = None,
         start_s: float = 0.0, stop_s: float | None = None) -> list[Record]:
    path = Path(path)
    found, labels, label_fs, subject = _layout(path, load_pickle(path), opts)
    wanted = select(channels, len(found), path)
    stem = file_stem(path)
    records = []
    for index in wanted:
        c = found[index]
        n = int(c.array.shape[0])
        span = time_slice(n, c.fs, start_s, stop_s)
        values = as_float(c.array[span, c.column], path, c.name)
        rec_labels = None
        if labels is not None:
            rec_labels = _labels_at(path, labels, label_fs, c.fs, n, span, c.name)
        records.append(Record(
            dataset=opts.dataset, subject=opts.subject or subject or stem, record=opts.record or stem,
            channel=c.name, modality=opts.modality or _modality(c),
            unit=opts.unit or UNITS.get(c.key, ""), fs=c.fs,
            samples=finite_or_nan(values), offset_s=span.start / c.fs, labels=rec_labels,
        ))
    return records
