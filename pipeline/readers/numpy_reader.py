"""NumPy ``.npy`` arrays and ``.npz`` archives.

Files are always loaded with ``allow_pickle=False``: unpickling runs arbitrary code, and a signal never
needs Python objects. A ``.npy`` is memory-mapped, so a span read touches only that span.

Layout:

- ``.npy``: a 1-D array is one channel; a 2-D array is ``(samples, channels)`` when
  ``shape[0] >= shape[1]`` (recordings are longer than they are wide), else ``(channels, samples)``.
  ``extra["layout"] = "samples_first" | "channels_first"`` overrides the guess. Channels are named
  ``ch0``, ``ch1``, ... or by ``opts.columns`` (one name per channel).
- ``.npz``: every numeric 1-D array is a channel named by its key; a 2-D array is several channels
  ``key_0``, ``key_1``, ... (same orientation rule). Scalars are metadata, not channels. The key named
  by ``opts.label_column`` is a per-sample label array for the channels of its length.
  ``opts.columns`` selects (and orders) channels by name.

Neither format stores a sampling rate reliably: ``opts.fs`` wins, then a scalar ``fs`` or
``sampling_rate`` key of an ``.npz``; without one the file is refused.
"""

from __future__ import annotations

import math
import re
import zipfile
from pathlib import Path

import numpy as np

from nw2.pipeline.readers.base import (ChannelInfo, InputError, ReadOptions, Record, file_stem, finite_or_nan,
                                       scrubbed, select, shown, time_slice)
from nw2.pipeline.records import guess_modality

FORMAT = "numpy"
EXTENSIONS = (".npy", ".npz")

_FS_KEYS = ("fs", "sampling_rate")
_NUMERIC = "biuf"  # bool, int, uint, float; complex has no single physical value
#: The most a deflate stream expands (its format's limit is 1032:1): a member that would decompress to more
#: declares more than it holds.
_MAX_DEFLATE_RATIO = 1032


def sniff(path: str | Path, head: bytes) -> bool:
    """``.npy`` magic; an ``.npz`` is a plain zip, so the extension must agree too."""
    if head.startswith(b"\x93NUMPY"):
        return True
    return head.startswith(b"PK\x03\x04") and str(path).lower().endswith(".npz")


def _refuse_objects(path, dtype: np.dtype, what: str = "array") -> None:
    if dtype.hasobject:
        raise InputError(path, f"{what} contains Python objects; refusing to unpickle")


def _is_npz(path: str | Path) -> bool:
    """By content, not name: a mis-named file still takes the right branch."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError as err:
        raise InputError(path, f"cannot open ({err.strerror or err})") from None


def _orient(shape: tuple[int, ...], opts: ReadOptions, path, what: str) -> bool:
    """Whether a 2-D array of ``shape`` is ``(channels, samples)``."""
    layout = opts.extra.get("layout")
    if layout not in (None, "samples_first", "channels_first"):
        raise InputError(path, f"layout must be samples_first or channels_first, not {layout!r}")
    if len(shape) != 2:
        raise InputError(path, f"{what} has {len(shape)} dimensions; expected 1 (one channel) or 2")
    return layout == "channels_first" if layout else shape[0] < shape[1]


# ---- .npy -----------------------------------------------------------------------------------------

def load_npy(path: str | Path) -> np.ndarray:
    """Memory-map a ``.npy``; its header is checked first so an object array is refused, not unpickled, and any
    failure of a damaged file (NumPy raises SyntaxError, TokenError, ... on a garbled header) is an InputError."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            reader = {(1, 0): np.lib.format.read_array_header_1_0,
                      (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if reader is not None:
                _refuse_objects(path, reader(fh)[2])
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except InputError:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err):  # an object array NumPy itself refused (a header it reads differently)
            raise InputError(path, "array contains Python objects; refusing to unpickle") from None
        raise InputError(path, f"not a valid .npy file: {_short(err)}") from None
    except Exception as err:
        raise InputError(path, f"not a valid .npy file: {_short(err)}") from None


def _npy_channels(path, arr: np.ndarray, opts: ReadOptions) -> list[tuple[str, np.ndarray]]:
    """``(name, 1-D view)`` per channel; views of the memory map, so nothing is read yet."""
    if arr.dtype.kind not in _NUMERIC:
        raise InputError(path, f"array is not numeric (dtype {arr.dtype})")
    if arr.ndim == 1:
        columns = [arr]
    elif _orient(arr.shape, opts, path, "array"):
        columns = list(arr)
    else:
        columns = [arr[:, j] for j in range(arr.shape[1])]
    names = list(opts.columns) if opts.columns else [f"ch{i}" for i in range(len(columns))]
    if len(names) != len(columns):
        raise InputError(path, f"{len(names)} column names given for {len(columns)} channels")
    return list(zip(names, columns))


# ---- .npz -----------------------------------------------------------------------------------------

def _npz_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each array, read from the member headers without decompressing the data; a member
    whose header declares more bytes than the member holds is refused (loading it would allocate them all)."""
    shapes = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if not name.endswith(".npy"):
                continue
            info = zf.getinfo(name)
            with zf.open(name) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                else:  # version 3 headers have no public reader; load this one array instead
                    with np.load(path, allow_pickle=False) as npz:
                        arr = npz[name[:-4]]
                    shape, dtype = arr.shape, arr.dtype
                header_bytes = fh.tell()
            _check_member_size(path, name[:-4], info, header_bytes, tuple(shape), dtype)
            shapes[name[:-4]] = (tuple(shape), dtype)
    return shapes


def _check_member_size(path, key: str, info: zipfile.ZipInfo, header_bytes: int, shape: tuple[int, ...],
                       dtype: np.dtype) -> None:
    """InputError when an array's header declares more data than its zip member holds (or can inflate to)."""
    if dtype.hasobject:  # refused by name later; its size says nothing
        return
    declared = math.prod(shape) * dtype.itemsize
    held = info.file_size - header_bytes
    if info.compress_type == zipfile.ZIP_STORED:
        held = min(held, info.compress_size - header_bytes)
    else:
        held = min(held, info.compress_size * _MAX_DEFLATE_RATIO)
    if declared > max(held, 0):
        raise InputError(path, f"key {shown(key)} declares shape {shape} ({declared} bytes) but its member holds "
                               f"{max(held, 0)} bytes: truncated or corrupt")


def _npz_layout(path, opts: ReadOptions) -> tuple[list[tuple[str, str, int | None, int]], float | None]:
    """Channels as ``(name, key, column or None, n_samples)`` plus the ``fs`` stored in the file."""
    try:
        headers = _npz_headers(path)
    except InputError:
        raise
    except Exception as err:
        raise InputError(path, f"not a valid .npz file: {_short(err)}") from None
    if not headers:
        raise InputError(path, ".npz holds no arrays")
    stored_fs = None
    channels = []
    for key, (shape, dtype) in headers.items():
        _refuse_objects(path, dtype, f"key {shown(key)}")
        if key in _FS_KEYS and int(np.prod(shape)) == 1:
            stored_fs = key
            continue
        if key == opts.label_column or len(shape) == 0:  # labels and scalar metadata are not channels
            continue
        if dtype.kind not in _NUMERIC:
            raise InputError(path, f"key {shown(key)} is not numeric (dtype {dtype})")
        if len(shape) == 1:
            channels.append((key, key, None, shape[0]))
        else:
            transposed = _orient(shape, opts, path, f"key {shown(key)}")
            n_ch, n = (shape[0], shape[1]) if transposed else (shape[1], shape[0])
            channels += [(f"{key}_{j}", key, j, n) for j in range(n_ch)]
    if opts.label_column and opts.label_column not in headers:
        raise InputError(path, f"label key {opts.label_column!r} not in .npz (keys: {', '.join(map(shown, headers))})")
    if opts.columns:
        by_name = {c[0]: c for c in channels}
        missing = [c for c in opts.columns if c not in by_name]
        if missing:
            raise InputError(path, f"no channel {missing[0]!r} in .npz (channels: {', '.join(map(shown, by_name))})")
        channels = [by_name[c] for c in opts.columns]
    fs = None
    if stored_fs is not None:
        with np.load(path, allow_pickle=False) as npz:
            fs = float(np.asarray(npz[stored_fs]).reshape(-1)[0])
    return channels, fs


# ---- shared ---------------------------------------------------------------------------------------

def _short(err: Exception) -> str:
    """First line of a library error; NumPy quotes a bad header's text, which is the file's, and names objects by
    their address, which differs from run to run."""
    text = str(err).strip().splitlines()
    return re.sub(r" at 0x[0-9a-fA-F]+", "", scrubbed(text[0])) if text else type(err).__name__


def _fs(path, opts: ReadOptions, stored: float | None) -> float:
    fs = opts.fs if opts.fs is not None else stored
    if fs is None:
        raise InputError(path, "no sampling rate: pass --fs or set fs in the spec")
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(path, f"sampling rate must be positive, not {fs}")
    return float(fs)


def _info(name: str, fs: float, n: int, opts: ReadOptions) -> ChannelInfo:
    return ChannelInfo(name=name, fs=fs, n_samples=int(n), modality=opts.modality or guess_modality(name),
                       unit=opts.unit or "")


def probe(path: str | Path, opts: ReadOptions) -> list[ChannelInfo]:
    """Channels from the array headers; no sample data is read."""
    if _is_npz(path):
        channels, stored = _npz_layout(path, opts)
        fs = _fs(path, opts, stored)
        return [_info(name, fs, n, opts) for name, _, _, n in channels]
    fs = _fs(path, opts, None)
    return [_info(name, fs, len(col), opts) for name, col in _npy_channels(path, load_npy(path), opts)]


def read(path: str | Path, opts: ReadOptions, channels: list[int] | None = None,
         start_s: float = 0.0, stop_s: float | None = None) -> list[Record]:
    """The selected channels over ``[start_s, stop_s)`` as float64."""
    subject, record = opts.subject or file_stem(path), opts.record or file_stem(path)
    out = []
    if not _is_npz(path):
        fs = _fs(path, opts, None)
        cols = _npy_channels(path, load_npy(path), opts)
        for c in select(channels, len(cols), path):
            name, col = cols[c]
            span = time_slice(len(col), fs, start_s, stop_s)
            out.append(Record(opts.dataset, subject, record, name, opts.modality or guess_modality(name),
                              opts.unit or "", fs, finite_or_nan(np.array(col[span], dtype=np.float64)),
                              offset_s=span.start / fs))
        return out
    layout, stored = _npz_layout(path, opts)
    fs = _fs(path, opts, stored)
    chosen = select(channels, len(layout), path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            labels = np.asarray(npz[opts.label_column]) if opts.label_column else None
            if labels is not None and labels.ndim != 1:
                raise InputError(path, f"label key {opts.label_column!r} must be 1-D, has shape {labels.shape}")
            loaded: dict[str, np.ndarray] = {}  # each access decompresses the member again; do it once
            for c in chosen:
                name, key, column, n = layout[c]
                arr = loaded[key] if key in loaded else loaded.setdefault(key, npz[key])
                if column is not None:
                    arr = arr[column] if _orient(arr.shape, opts, path, key) else arr[:, column]
                span = time_slice(n, fs, start_s, stop_s)
                lab = None
                if labels is not None and labels.ndim == 1 and len(labels) == n:
                    lab = labels[span]
                out.append(Record(opts.dataset, subject, record, name, opts.modality or guess_modality(name),
                                  opts.unit or "", fs, finite_or_nan(np.array(arr[span], dtype=np.float64)),
                                  offset_s=span.start / fs, labels=lab))
    except InputError:
        raise
    except Exception as err:  # corrupt member data (bad CRC, truncated deflate stream)
        raise InputError(path, f"cannot read .npz data: {_short(err)}") from None
    return out
