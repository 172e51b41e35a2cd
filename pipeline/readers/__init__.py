"""Readers, one module per format, all yielding :class:`pipeline.records.Record`.

``auto`` detection tries file extensions first, then each reader's ``sniff`` on the first bytes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from nw2.core.errors import InputError
from nw2.pipeline.readers.base import ReadOptions

#: format name -> module name, in the order ``auto`` detection tries content sniffing.
_MODULES = {
    "wfdb": "wfdb_reader",
    "edf": "edf",
    "opensignals": "opensignals",
    "pamap2": "pamap2",
    "wesad": "wesad",
    "numpy": "numpy_reader",
    "parquet": "parquet",
    "intervals": "intervals",
    "csv": "csv",
}
FORMATS = tuple(_MODULES) + ("auto",)


def reader_for(fmt: str) -> ModuleType:
    """The reader module of a format name."""
    if fmt not in _MODULES:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return importlib.import_module(f"nw2.pipeline.readers.{_MODULES[fmt]}")


def detect_format(path: str | Path) -> str:
    """Name the format of ``path`` from its content and extension, or raise :class:`InputError`."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as err:
        raise InputError(path, f"cannot open ({err.strerror or err})") from None
    if not head:
        raise InputError(path, "empty file")
    # Content first where a format has a signature (OpenSignals .txt, WESAD .pkl, PAMAP2 .dat):
    # extensions like .txt and .dat say little.
    for fmt in _MODULES:
        if reader_for(fmt).sniff(path, head):
            return fmt
    name = path.name.lower()
    for fmt in _MODULES:
        if any(name.endswith(ext) for ext in reader_for(fmt).EXTENSIONS):
            return fmt
    raise InputError(path, f"unknown format (extension {''.join(path.suffixes) or 'none'}); name one with --format")


__all__ = ["FORMATS", "ReadOptions", "detect_format", "reader_for"]
