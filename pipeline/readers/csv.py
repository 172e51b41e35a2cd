"""CSV and TSV tables (also ``.bz2``/``.gz``/``.xz`` compressed), parsed with polars, streamed.

One numeric column per channel. The rate comes from ``fs`` or from a time column (numbers in
``extra['time_unit']``, default seconds, or date-times). A headerless file needs ``columns`` or gets
``col0, col1, ...``. Delimiter and header are sniffed from the first lines unless given.

Nothing reads a whole file into memory: the text is read (and decompressed) as a stream of blocks of
whole lines (:data:`BLOCK_BYTES`), each parsed by polars on its own with the column types inferred from
the first block. Probing a file walks it once (row count, the time column for the rate, every channel's
cells checked as numbers); reading a span walks it again and keeps only that span's rows of the chosen
channels. What stays in memory is a block, the time column while the rate is worked out (8 bytes a row)
and the span read. A compressed file may decompress to at most ``extra.max_decompressed_mb`` megabytes
(:data:`MAX_DECOMPRESSED_MB` by default): beyond that it is refused as a likely compression bomb, with the
option named, after reading no more than that.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path

import polars as pl

from nw2.core.errors import InputError
from nw2.pipeline.readers.base import ReadOptions, Record, file_stem, finite_or_nan, select, shown, time_slice
from nw2.pipeline.readers.table import TimeSummary, bad_cells, rate_from_time, time_column, time_scale
from nw2.pipeline.records import ChannelInfo, guess_modality

FORMAT = "csv"
EXTENSIONS = (".csv", ".tsv", ".csv.bz2", ".tsv.bz2", ".txt.bz2", ".csv.gz", ".tsv.gz", ".txt.gz", ".csv.xz")
_OPENERS = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}
#: Text read, decompressed and parsed at a time. Blocks end at a line end, so a block holds whole rows.
BLOCK_BYTES = 8 << 20
#: The most a compressed file may decompress to, in MB, unless ``extra.max_decompressed_mb`` says otherwise.
MAX_DECOMPRESSED_MB = 4096
_NULLS = ["", "NaN", "nan", "NA"]
_DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError)


def sniff(path, head: bytes) -> bool:
    # CSV has no signature; it is claimed by extension only.
    return False


class _Capped(io.RawIOBase):
    """A decompressing stream that refuses to give more than ``cap`` bytes (a small file that inflates to
    gigabytes is a compression bomb, not a recording)."""

    def __init__(self, inner, path: Path, cap_mb: float) -> None:
        self.inner, self.path, self.cap_mb, self.given = inner, path, cap_mb, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            n = self.inner.readinto(buffer)
        except _DECOMPRESS_ERRORS as err:
            raise InputError(self.path, f"cannot decompress {self.path.suffix} ({err})") from None
        self.given += n
        if self.given > self.cap_mb * 1e6:
            raise InputError(self.path, f"decompresses to more than {self.cap_mb:g} MB (a compression bomb?); "
                                        f"set extra.max_decompressed_mb to read it")
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()


def _open(path: Path, opts: ReadOptions):
    """The file's text as a binary stream, decompressed (and capped) when its suffix says it is compressed."""
    opener = _OPENERS.get(path.suffix.lower())
    try:
        if opener is None:
            return open(path, "rb")
        cap = float(opts.extra.get("max_decompressed_mb", MAX_DECOMPRESSED_MB))
        return io.BufferedReader(_Capped(opener(path, "rb"), path, cap), buffer_size=1 << 20)
    except OSError as err:
        raise InputError(path, f"cannot open ({err.strerror or err})") from None


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


def _lines(stream, path: Path) -> Iterator[bytes]:
    """The stream as blocks of whole lines, about :data:`BLOCK_BYTES` each (a line longer than that is one
    block of its own)."""
    rest = b""
    while True:
        try:
            buf = stream.read(BLOCK_BYTES)
        except _DECOMPRESS_ERRORS as err:
            raise InputError(path, f"cannot decompress {path.suffix} ({err})") from None
        if not buf:
            if rest.strip():
                yield rest
            return
        data = rest + buf if rest else buf
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest = data
            continue
        yield data[:cut]
        rest = data[cut:]


@dataclass
class _Layout:
    """How the file's text is laid out: separator, header, column names and the types each block is parsed
    with (inferred once, from the first block, so every block reads alike)."""

    sep: str
    header: bool
    names: list[str]
    """Every column of the file, in order (a headerless file's from ``columns`` or ``col0, col1, ...``)."""
    types: dict[str, pl.DataType]
    kept: list[str] = field(default_factory=list)
    """The columns nw2 uses: the file's, less an empty last column that a trailing separator makes."""

    def parse(self, block: bytes, columns: list[str], path: Path, text: tuple[str, ...] = ()) -> pl.DataFrame:
        """The named columns of a block of whole lines; ``text`` columns are read as strings."""
        schema = {n: (pl.String if n in text else self.types[n]) for n in self.names}
        try:
            return pl.read_csv(io.BytesIO(block), separator=self.sep, has_header=False, schema=schema,
                               columns=[self.names.index(c) for c in columns], null_values=_NULLS,
                               truncate_ragged_lines=False)
        except pl.exceptions.PolarsError as err:
            raise _BlockError(err) from None


class _BlockError(Exception):
    """A block that does not parse with the layout's types (a cell that is not a number, a ragged line)."""


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _blocks(path: Path, opts: ReadOptions, header: bool) -> Iterator[bytes]:
    """The file's blocks after its header line (and any blank lines before it)."""
    with _open(path, opts) as stream:
        blocks = _lines(stream, path)
        for block in blocks:
            if header:
                lines = block.split(b"\n")
                while lines and not lines[0].strip():
                    lines.pop(0)
                lines = lines[1:]  # the header line
                header = False
                block = b"\n".join(lines)
                if not block.strip():
                    continue
            yield block


def _layout(path: Path, opts: ReadOptions) -> _Layout:
    with _open(path, opts) as stream:
        first = next(_lines(stream, path), b"")
    lines = [ln for ln in first[:65536].decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        raise InputError(path, "empty table")
    sep, header = _dialect(lines, opts)
    try:
        df = pl.read_csv(io.BytesIO(first), separator=sep, has_header=header, infer_schema_length=10000,
                         null_values=_NULLS, truncate_ragged_lines=False)
    except pl.exceptions.PolarsError as err:
        raise InputError(path, f"cannot parse as {'TSV' if sep == chr(9) else 'CSV'}: {_first(err)}") from None
    names = df.columns
    if not header:
        names = list(opts.columns) if opts.columns else [f"col{i}" for i in range(df.width)]
        if len(names) != df.width:
            raise InputError(path, f"{len(names)} column names given for {df.width} columns")
        df.columns = names
    # Whole numbers are read as floats: a column of integers in its first rows may hold decimals later.
    types = {n: (pl.Float64 if (dt.is_integer() and n != opts.label_column) else
                 pl.String if dt == pl.Null else dt) for n, dt in zip(names, df.dtypes)}
    # A trailing separator on every line makes an empty last column: leave it out.
    kept = [n for n in names if not (df[n].null_count() == df.height and n.startswith("_"))]
    return _Layout(sep, header, list(names), types, kept)


class _Clock:
    """A time column's stamps gathered block by block into a :class:`TimeSummary` (numbers as written, date-times
    as nanoseconds since the epoch) and the first date-time; the column itself is never kept."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.summary = TimeSummary()
        self.dates = False
        self.start = None

    def add(self, col: pl.Series) -> None:
        if col.dtype == pl.String:
            try:
                col = col.str.to_datetime(time_unit="us", time_zone="UTC")  # one unit for every block
            except pl.exceptions.PolarsError:
                raise InputError(self.path, f"time column {shown(self.name)} is neither numeric nor a "
                                            f"date-time") from None
        if col.dtype.is_temporal():
            if self.summary.n == 0:
                self.dates, self.start = True, col[0]
            col = col.dt.epoch("ns")
        elif not col.dtype.is_numeric():
            raise InputError(self.path, f"time column {shown(self.name)} is neither numeric nor a date-time")
        self.summary.add(col.cast(pl.Float64).to_numpy())

    def seconds(self, opts: ReadOptions) -> TimeSummary:
        """The stamps' summary in seconds (a number column's unit from :func:`time_scale`, never guessed)."""
        if self.dates:
            return self.summary.scaled(1e-9)
        return self.summary.scaled(time_scale(self.name, self.summary, opts, self.path, needed=opts.fs is None))


class CsvTable:
    """A CSV file surveyed once (rows, rate, start, channels checked) and read a span at a time."""

    def __init__(self, path: Path, opts: ReadOptions, check_cells: bool = True) -> None:
        self.path, self.opts = path, opts
        self.layout = layout = _layout(path, opts)
        tcol = time_column(layout.kept, opts, path)
        lcol = opts.label_column
        if lcol is not None and lcol not in layout.kept:
            raise InputError(path, f"label column {lcol!r} not found (columns: "
                                   f"{', '.join(shown(c) for c in layout.kept[:20])})")
        self.label = lcol
        self.channels = [c for c in layout.kept if c not in (tcol, lcol)]
        if not self.channels:
            raise InputError(path, "no signal columns")
        self.text = tuple(c for c in self.channels if not (layout.types[c].is_numeric()))
        """Channels whose first block holds text: read as strings and converted (``extra.non_numeric``)."""
        clock = None if tcol is None else _Clock(tcol, path)
        self.height = self._survey(clock, check_cells)
        if self.height == 0:
            raise InputError(path, "no data rows")
        self.start_time = None
        fs = opts.fs
        if clock is not None:
            seconds = clock.seconds(opts)
            start = clock.start
            if start is not None and start.tzinfo is None:
                start = start.replace(tzinfo=timezone.utc)
            self.start_time = start
            if fs is None:
                fs = rate_from_time(seconds, path)
        if fs is None:
            raise InputError(path, "no sampling rate: pass --fs, set fs in the spec, or name a time column")
        self.fs = float(fs)

    def _survey(self, clock: _Clock | None, check_cells: bool) -> int:
        """One walk over the file: its row count, its time column into ``clock``, and (``check_cells``) every
        channel's cells checked as numbers, the first bad one named with its data row."""
        layout, path = self.layout, self.path
        tcol = None if clock is None else clock.name
        columns = ([tcol] if tcol else []) + (self.channels if check_cells else ([] if tcol else self.channels[:1]))
        rows = 0
        bad = {c: [0, None, None] for c in self.channels}  # count, first data row, its cell
        missing_ok = self.opts.extra.get("non_numeric") == "missing"
        nonnull = {c: 0 for c in self.text}
        for block in _blocks(path, self.opts, layout.header):
            try:
                df = layout.parse(block, columns, path, self.text)
            except _BlockError as err:
                df = self._reparsed(block, columns, err)
            if check_cells:
                for c in self.channels:
                    if df[c].dtype != pl.String:
                        continue
                    count, row, cell = bad_cells(df[c])
                    if count and bad[c][0] == 0:
                        bad[c][1:] = [rows + row, cell]
                    bad[c][0] += count
                    if c in nonnull:
                        nonnull[c] += df[c].len() - df[c].null_count()
            if clock is not None:
                clock.add(df[tcol])
            rows += df.height
        if check_cells and not missing_ok:
            for c in self.channels:
                count, row, cell = bad[c]
                if not count:
                    continue
                if c in nonnull and count == nonnull[c]:
                    raise InputError(path, f"column {shown(c)} is not numeric ({layout.types[c]}, e.g. "
                                           f"{shown(cell)}): drop it with channels, or name it label_column or "
                                           f"time_column")
                raise InputError(path, f"column {shown(c)} is not numeric: data row {row + 1} holds {shown(cell)} "
                                       f"({count} such cell{'s' if count > 1 else ''}); fix them, or set "
                                       f"extra.non_numeric: missing to read them as missing samples")
        return rows

    def _reparsed(self, block: bytes, columns: list[str], err: _BlockError) -> pl.DataFrame:
        """A block whose numbers do not all parse: its channels read as text (their bad cells are then named),
        or, when it still does not parse, the file refused with polars' reason."""
        try:
            return self.layout.parse(block, columns, self.path, tuple(self.channels))
        except _BlockError:
            what = "TSV" if self.layout.sep == "\t" else "CSV"
            raise InputError(self.path, f"cannot parse as {what}: {_first(err.__cause__ or err.args[0])}") from None

    def probe(self) -> list[ChannelInfo]:
        return [ChannelInfo(name, self.fs, self.height, self._modality(name), self.opts.unit or "")
                for name in self.channels]

    def _modality(self, name: str) -> str:
        return self.opts.modality or guess_modality(name)

    def _span(self, names: list[str], span: slice) -> pl.DataFrame:
        """Rows ``span`` of the named columns, walking the file and parsing only the blocks that hold them."""
        parts, rows = [], 0
        text = self.text
        for block in _blocks(self.path, self.opts, self.layout.header):
            if rows >= span.stop:
                break
            try:
                df = self.layout.parse(block, names, self.path, text)
            except _BlockError as err:
                df = self._reparsed(block, names, err)
            first, rows = rows, rows + df.height
            lo, hi = max(span.start - first, 0), min(span.stop - first, df.height)
            if hi > lo:
                df = df.slice(lo, hi - lo)
                self._check_cells(df, first + lo)
                parts.append(df.with_columns(
                    [pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
                     for c in names if c in self.channels and df[c].dtype == pl.String]))
        if not parts:
            return pl.DataFrame({n: pl.Series(n, [], dtype=pl.Float64) for n in names})
        return pl.concat(parts, how="vertical_relaxed")

    def _check_cells(self, df: pl.DataFrame, first_row: int) -> None:
        """A span's cells that are not numbers are an error naming the first (as the survey names it), unless
        ``extra.non_numeric`` is ``missing``."""
        if self.opts.extra.get("non_numeric") == "missing":
            return
        for c in df.columns:
            if c in self.channels and df[c].dtype == pl.String:
                count, row, cell = bad_cells(df[c])
                if count:
                    raise InputError(self.path, f"column {shown(c)} is not numeric: data row {first_row + row + 1} "
                                                f"holds {shown(cell)}; fix it, or set extra.non_numeric: missing to "
                                                f"read such cells as missing samples")

    def read(self, channels, start_s: float, stop_s: float | None) -> list[Record]:
        span = time_slice(self.height, self.fs, start_s, stop_s)
        chosen = [self.channels[i] for i in select(channels, len(self.channels), self.path)]
        df = self._span(chosen + ([self.label] if self.label else []), span)
        labels = None if self.label is None else df[self.label].to_numpy()
        return [Record(
            dataset=self.opts.dataset,
            subject=self.opts.subject or file_stem(self.path),
            record=self.opts.record or file_stem(self.path),
            channel=name, modality=self._modality(name), unit=self.opts.unit or "",
            fs=self.fs, samples=finite_or_nan(df[name].cast(pl.Float64).to_numpy()),
            start_time=self.start_time, offset_s=span.start / self.fs, labels=labels,
        ) for name in chosen]


_CACHE: dict[tuple, CsvTable] = {}


def _table(path, opts: ReadOptions, check_cells: bool) -> CsvTable:
    path = Path(path)
    try:
        mtime = path.stat().st_mtime
    except OSError as err:
        raise InputError(path, f"cannot open ({err.strerror})") from None
    # Survey once per file version and options: probe and the reads of its pieces in one process share it. A
    # read that finds no survey skips the cell checks: its file's probe made them before any piece was planned.
    key = (str(path), mtime, repr(opts))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = CsvTable(path, opts, check_cells)
    return _CACHE[key]


def probe(path, opts: ReadOptions):
    return _table(path, opts, check_cells=True).probe()


def read(path, opts: ReadOptions, channels=None, start_s: float = 0.0, stop_s: float | None = None):
    return _table(path, opts, check_cells=False).read(channels, start_s, stop_s)
