"""The contract every reader module follows.

A reader module defines:

- ``FORMAT``: its name in specs and on the command line (``edf``, ``csv``, ...);
- ``EXTENSIONS``: lower-case suffixes it claims during ``auto`` detection (``.edf``, ``.csv.bz2``);
- ``sniff(path, head) -> bool``: whether the first bytes look like this format (content detection);
- ``probe(path, opts) -> list[ChannelInfo]``: channels, rates and lengths, as cheaply as the format allows;
- ``read(path, opts, channels=None, start_s=0.0, stop_s=None) -> list[Record]``: the selected channels
  (indices into ``probe``'s list), cut to the time span ``[start_s, stop_s)`` seconds from the start of
  the recording. Formats that can seek read only that span; the others read all and slice.

Readers raise :class:`pipeline.errors.InputError` for anything wrong with the file, with a reason that a
user can act on; the ingest stage records it in the manifest and goes on.
"""

from __future__ import annotations

import re

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nw2.core.errors import InputError
from nw2.pipeline.records import ChannelInfo, Record


@dataclass(frozen=True)
class ReadOptions:
    """What a spec source (or the quick ``nw2 ingest PATH...`` flags) tells a reader.

    Every field is optional; readers fall back on what the file itself says.
    """

    dataset: str = "default"
    """Dataset name stored in every row."""
    subject: str | None = None
    """Subject id; default: what the file says (WESAD ``subject``, EDF patient code) or the file stem."""
    record: str | None = None
    """Record id; default: the file stem."""
    fs: float | None = None
    """Sampling rate in Hz for formats that do not carry one (headerless CSV, .npy)."""
    modality: str | None = None
    """Modality for every channel of the file; default: guessed from channel names."""
    unit: str | None = None
    """Physical unit for every channel; default: what the file says, else empty."""
    columns: tuple[str, ...] | None = None
    """Column names for headerless tables (CSV/TSV without a header row)."""
    time_column: str | None = None
    """Column with timestamps or elapsed time; used to derive ``fs`` when it is not given."""
    label_column: str | None = None
    """Column (or npz key) with a per-sample label instead of a signal."""
    delimiter: str | None = None
    """Field separator for CSV-like text; default: sniffed (comma, tab, semicolon, space)."""
    has_header: bool | None = None
    """Whether a CSV has a header row; default: sniffed."""
    extra: dict = field(default_factory=dict)
    """Format-specific options, documented in each reader module."""


#: What a failure reason may quote from inside a file: short, identifier-like text (a column name such as
#: ``ppg`` or ``BVP_CH1``, a cell such as ``ERR``). Anything else is described, never shown: reasons go into
#: manifests that are shared, and a file read by mistake (a key, a password file) must not end up there.
_QUOTABLE = re.compile(r"[A-Za-z0-9_.#()+\- ]{1,32}")


def shown(value) -> str:
    """``value`` quoted for a reason when it is short and identifier-like, else ``<41 characters>``."""
    text = str(value)
    if _QUOTABLE.fullmatch(text):
        return repr(text)
    return f"<{len(text)} characters>"


def named(value) -> str:
    """``value`` as it is when :func:`shown` would quote it (a file name such as ``208.dat``), else its length."""
    text = str(value)
    return text if _QUOTABLE.fullmatch(text) else shown(text)


_QUOTED = re.compile(r"`([^`]*)`|'([^']*)'|\"([^\"]*)\"")


def scrubbed(message: str) -> str:
    """A library's error message with every quoted stretch that is not short and identifier-like replaced by
    its length (polars, pyedflib and others quote the offending line or cell)."""
    def one(m: re.Match) -> str:
        inner = next(g for g in m.groups() if g is not None)
        return m.group(0) if _QUOTABLE.fullmatch(inner) or inner == "" else f"<{len(inner)} characters>"
    return _QUOTED.sub(one, message)


def file_stem(path: str | Path) -> str:
    """File name without any of its suffixes (``a.csv.bz2`` -> ``a``)."""
    name = Path(path).name
    return name.split(".", 1)[0] if not name.startswith(".") else name


def unique_names(names: list[str]) -> list[str]:
    """Channel names made unique: a name that occurs more than once gets ``#1``, ``#2``, ... in file order.

    Channel names are part of a window's identity and select channels in a spec; two signals of one file
    labelled alike (an EDF with two ``RAW`` signals) would otherwise collide and one would be lost."""
    counts = Counter(names)
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        if counts[name] > 1:
            seen[name] += 1
            name = f"{name}#{seen[name]}"
        out.append(name)
    return out


def time_slice(n_samples: int, fs: float, start_s: float, stop_s: float | None) -> slice:
    """Sample indices of ``[start_s, stop_s)`` in a channel of ``n_samples`` at ``fs`` Hz."""
    start = max(0, int(np.floor(start_s * fs + 1e-9)))
    stop = n_samples if stop_s is None else min(n_samples, int(np.ceil(stop_s * fs - 1e-9)))
    return slice(min(start, n_samples), max(min(start, n_samples), stop))


def select(channels: list[int] | None, n_available: int, path: str | Path) -> list[int]:
    """Validate channel indices against what the file has."""
    if channels is None:
        return list(range(n_available))
    bad = [c for c in channels if not 0 <= c < n_available]
    if bad:
        raise InputError(path, f"channel index {bad[0]} out of range (file has {n_available} channels)")
    return list(channels)


def finite_or_nan(values) -> np.ndarray:
    """Samples as a contiguous float64 array, an infinite one made NaN: a value that overflowed (a cell reading
    ``inf``, a scale of ``1e308``) carries no measurement, and every reader hands on missing samples as NaN."""
    samples = np.ascontiguousarray(values, dtype=np.float64)
    infinite = np.isinf(samples)
    if infinite.any():
        samples = np.where(infinite, np.nan, samples)
    return samples


def as_float(values, path: str | Path, what: str) -> np.ndarray:
    """Convert a column to float64, turning a non-numeric column into a clear error."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"{what} is not numeric ({err})") from None


__all__ = ["ChannelInfo", "Record", "ReadOptions", "InputError", "file_stem", "unique_names", "time_slice", "select",
           "as_float", "finite_or_nan", "named", "shown", "scrubbed"]
