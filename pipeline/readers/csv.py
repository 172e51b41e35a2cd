"""CSV and TSV tables (also ``.bz2``/``.gz``/``.xz`` compressed), parsed with polars.

One numeric column per channel. The rate comes from ``fs`` or from a time column (numbers in
``extra['time_unit']``, default seconds, or date-times). A headerless file needs ``columns`` or gets
``col0, col1, ...``. Delimiter and header are sniffed from the first lines unless given.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
from pathlib import Path

import polars as pl

from nw2.core.errors import InputError
from nw2.pipeline.readers.base import ReadOptions
from nw2.pipeline.readers.table import Table

FORMAT = "csv"
EXTENSIONS = (".csv", ".tsv", ".csv.bz2", ".tsv.bz2", ".txt.bz2", ".csv.gz", ".tsv.gz", ".txt.gz", ".csv.xz")
_OPENERS = {".bz2": bz2.decompress, ".gz": gzip.decompress, ".xz": lzma.decompress}


def sniff(path, head: bytes) -> bool:
    # CSV has no signature; it is claimed by extension only.
    return False


def _raw_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    opener = _OPENERS.get(path.suffix.lower())
    if opener is None:
        return data
    try:
        return opener(data)
    except Exception as err:
        raise InputError(path, f"cannot decompress {path.suffix} ({err})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return text.strip().lower() in ("", "nan", "na")


def _dialect(lines: list[str], opts: ReadOptions) -> tuple[str, bool]:
    sep = opts.delimiter
    if sep is None:
        sample = lines[1] if len(lines) > 1 else lines[0]
        counts = {c: sample.count(c) for c in (",", "\t", ";")}
        best = max(counts, key=counts.get)
        sep = best if counts[best] else " "
    header = opts.has_header
    if header is None:
        header = not all(_is_number(f) for f in lines[0].strip().split(sep) if f.strip())
    return sep, header


_CACHE: dict[tuple, Table] = {}


def _parse(path: Path, opts: ReadOptions) -> Table:
    data = _raw_bytes(path)
    lines = data[:65536].decode("utf-8", "replace").splitlines()
    lines = [ln for ln in lines if ln.strip()]
    if not lines:
        raise InputError(path, "empty table")
    sep, header = _dialect(lines, opts)
    try:
        df = pl.read_csv(io.BytesIO(data), separator=sep, has_header=header, infer_schema_length=10000,
                         null_values=["", "NaN", "nan", "NA"], truncate_ragged_lines=False)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(path, f"cannot parse as {'TSV' if sep == chr(9) else 'CSV'}: {first}") from None
    # A trailing separator on every line makes an empty last column: drop it.
    df = df.select([c for c in df.columns if not (df[c].null_count() == df.height and c.startswith("_"))])
    if not header:
        names = list(opts.columns) if opts.columns else [f"col{i}" for i in range(df.width)]
        if len(names) != df.width:
            raise InputError(path, f"{len(names)} column names given for {df.width} columns")
        df.columns = names
    return Table(df, opts, path)


def _table(path, opts: ReadOptions) -> Table:
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
    except OSError as err:
        raise InputError(path, f"cannot open ({err.strerror})") from None
    # Parse once per file version and options: probe and read of the same piece share it.
    key = (str(path), mtime, repr(opts))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _parse(path, opts)
    return _CACHE[key]


def probe(path, opts: ReadOptions):
    return _table(path, opts).probe()


def read(path, opts: ReadOptions, channels=None, start_s: float = 0.0, stop_s: float | None = None):
    return _table(path, opts).read(channels, start_s, stop_s)
