"""Parquet tables and Arrow IPC files (``.arrow``/``.feather``/``.ipc``), read with ``pyarrow``.

Two layouts, told apart by the column names:

- **long**: columns ``channel`` and ``value`` (plus optionally ``fs``, ``time`` or ``opts.time_column``,
  ``subject``, and ``opts.label_column``); one row per sample, one channel per distinct ``channel``
  value, in order of first appearance. Rows of a channel are ordered by time when there is a time
  column, else kept in file order.
- **wide**: one numeric column per channel, plus the optional ``opts.time_column`` and
  ``opts.label_column``. ``opts.columns`` picks (and orders) the channel columns; default: all others.

The sampling rate is ``opts.fs``, else the long layout's ``fs`` column, else derived from the time column
(see :func:`_fs_from_times`). Numeric time columns are seconds unless ``extra["time_unit"]`` says
``ms``, ``us`` or ``ns``; timestamp columns also give ``Record.start_time``.

Parquet files are read by row group, so a span read decodes only the groups it overlaps; IPC files are
memory-mapped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nw2.pipeline.readers.base import (ChannelInfo, InputError, ReadOptions, Record, file_stem, finite_or_nan,
                                       scrubbed, select, shown, time_slice)
from nw2.pipeline.readers.table import TIME_NAMES, rate_from_time, time_scale
from nw2.pipeline.records import guess_modality

FORMAT = "parquet"
EXTENSIONS = (".parquet", ".pq", ".arrow", ".feather", ".ipc")

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def sniff(path: str | Path, head: bytes) -> bool:
    """Parquet's ``PAR1`` magic, Arrow IPC file's ``ARROW1``, or legacy Feather v1's ``FEA1``."""
    return head.startswith((b"PAR1", b"ARROW1", b"FEA1"))


def _short(err: Exception) -> str:
    """First line of a library error, without what it quotes of the file."""
    text = str(err).strip().splitlines()
    return scrubbed(text[0]) if text else type(err).__name__


# ---- file access ----------------------------------------------------------------------------------

class _Source:
    """Schema, row count and column reads over a Parquet or an IPC file."""

    def __init__(self, path: str | Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        try:
            with open(path, "rb") as fh:
                magic = fh.read(6)
        except OSError as err:
            raise InputError(path, f"cannot open ({err.strerror or err})") from None
        is_parquet = magic.startswith(b"PAR1") or (
            not magic.startswith((b"ARROW1", b"FEA1")) and Path(path).suffix.lower() in (".parquet", ".pq"))
        try:
            if is_parquet:
                self._pf = pq.ParquetFile(str(path), memory_map=True)
                self._table = None
                self.schema, self.num_rows = self._pf.schema_arrow, self._pf.metadata.num_rows
            else:
                self._pf = None
                self._table = self._read_ipc(path, magic)
                self.schema, self.num_rows = self._table.schema, self._table.num_rows
        except InputError:
            raise
        except (pa.ArrowException, OSError, ValueError) as err:
            kind = "Parquet" if is_parquet else "Arrow IPC"
            raise InputError(path, f"not a valid {kind} file: {_short(err)}") from None

    @staticmethod
    def _read_ipc(path, magic: bytes):
        import pyarrow as pa
        import pyarrow.feather as feather

        if magic.startswith((b"ARROW1", b"FEA1")):
            return feather.read_table(str(path), memory_map=True)
        # No file magic: the IPC *stream* format (``.arrows``-style), which has no footer to seek by.
        with pa.OSFile(str(path)) as src:
            return pa.ipc.open_stream(src).read_all()

    def close(self) -> None:
        if self._pf is not None:
            self._pf.close()

    def read(self, columns: list[str], rows: slice | None = None):
        """The named columns over ``rows`` (all rows when ``None``) as a ``pyarrow.Table``."""
        import pyarrow as pa

        try:
            if self._pf is None:
                table = self._table.select(columns)
                return table if rows is None else table.slice(rows.start, rows.stop - rows.start)
            if rows is None:
                return self._pf.read(columns=columns)
            # Decode only the row groups that overlap the span, then cut the span out of them.
            meta, groups, first, pos = self._pf.metadata, [], None, 0
            for g in range(meta.num_row_groups):
                n = meta.row_group(g).num_rows
                if pos < rows.stop and pos + n > rows.start:
                    groups.append(g)
                    first = pos if first is None else first
                pos += n
            if not groups:
                return self._pf.schema_arrow.empty_table().select(columns)
            table = self._pf.read_row_groups(groups, columns=columns)
            return table.slice(rows.start - first, rows.stop - rows.start)
        except (pa.ArrowException, OSError, ValueError) as err:
            raise InputError(self.path, f"cannot read columns: {_short(err)}") from None


def _numeric(path, source: _Source, column: str, hint: str = "") -> None:
    import pyarrow.types as pt

    t = source.schema.field(column).type
    if not (pt.is_integer(t) or pt.is_floating(t) or pt.is_boolean(t) or pt.is_decimal(t)):
        raise InputError(path, f"column {shown(column)} is not numeric ({t}){hint}")


def _to_float(path, array, column: str) -> np.ndarray:
    """Arrow column -> float64, nulls as NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        # A copy: a zero-copy view would be read-only and pin the (memory-mapped) file.
        return np.array(pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (pa.ArrowException, TypeError, ValueError) as err:
        raise InputError(path, f"column {shown(column)} is not numeric ({_short(err)})") from None


# ---- time columns ---------------------------------------------------------------------------------

def _seconds(path, array, column: str, opts: ReadOptions, needed: bool = True):
    """Times as float seconds, plus the column as microsecond timestamps when it holds timestamps.

    The second value gives ``start_time`` (``stamps[i].as_py()``); it is ``None`` for elapsed times.
    Microseconds because ``as_py`` of a nanosecond stamp gives a pandas ``Timestamp``, not a datetime.
    """
    import pyarrow as pa
    import pyarrow.types as pt

    if array.null_count:
        raise InputError(path, f"time column {shown(column)} has missing values")
    t = array.type
    if pt.is_date(t):
        array, t = array.cast(pa.timestamp("s")), pa.timestamp("s")
    if pt.is_timestamp(t) or pt.is_duration(t):
        secs = array.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64) * _TIME_UNITS[t.unit]
        stamps = array.cast(pa.timestamp("us", t.tz), safe=False) if pt.is_timestamp(t) else None
        return secs, stamps
    if pt.is_integer(t) or pt.is_floating(t):
        values = _to_float(path, array, column)
        return values * time_scale(column, values, opts, path, needed=needed), None
    raise InputError(path, f"time column {shown(column)} is neither numeric nor a timestamp ({t})")


def _fs_from_times(path, secs: np.ndarray, column: str) -> float:
    """Sampling rate from time stamps, by the rule shared with the CSV reader
    (:func:`pipeline.readers.table.rate_from_time`), after checks on this column."""
    if len(secs) < 2:
        raise InputError(path, f"time column {shown(column)} needs two rows to give a sampling rate")
    if np.any(np.diff(secs) < 0):
        raise InputError(path, f"time column {shown(column)} is not in increasing order")
    return rate_from_time(secs, path)


# ---- layouts --------------------------------------------------------------------------------------

def _field_unit(source: _Source, column: str) -> str:
    """A ``unit`` key in the column's Arrow field metadata, which some writers set."""
    meta = source.schema.field(column).metadata or {}
    return meta.get(b"unit", b"").decode("utf-8", "replace")


class _Wide:
    def __init__(self, path, source: _Source, opts: ReadOptions):
        names = source.schema.names
        # Like CSV: a column named time/timestamp/... is the time axis unless the spec names one.
        tcol = opts.time_column or next((c for c in names if c.lower() in TIME_NAMES and c != opts.label_column), None)
        for role, col in (("time_column", tcol), ("label_column", opts.label_column)):
            if col and col not in names:
                raise InputError(path, f"{role} {col!r} not in table (columns: {', '.join(map(shown, names))})")
        special = {tcol, opts.label_column}
        if opts.columns:
            missing = [c for c in opts.columns if c not in names]
            if missing:
                raise InputError(path, f"no column {missing[0]!r} (columns: {', '.join(map(shown, names))})")
            self.columns = list(opts.columns)
        else:
            self.columns = [c for c in names if c not in special]
        for col in self.columns:
            _numeric(path, source, col, hint="; name it as time_column, or list the channels in columns")
        self.start_time = None
        if tcol:
            # Read even when fs is given: the time column is the only source of an absolute start.
            rows = None if opts.fs is None else slice(0, min(1, source.num_rows))
            time = source.read([tcol], rows)[tcol].combine_chunks()
            secs, stamps = _seconds(path, time, tcol, opts, needed=opts.fs is None)
            if stamps is not None and len(stamps):
                self.start_time = stamps[0].as_py()
        if opts.fs is not None:
            self.fs = float(opts.fs)
        elif tcol:
            self.fs = _fs_from_times(path, secs, tcol)
        else:
            raise InputError(path, "no sampling rate: pass --fs or set fs or time_column in the spec")
        self.infos = [ChannelInfo(c, self.fs, source.num_rows, opts.modality or guess_modality(c),
                                  opts.unit or _field_unit(source, c)) for c in self.columns]

    def read(self, path, source: _Source, opts: ReadOptions, chosen, start_s, stop_s) -> list[Record]:
        span = time_slice(source.num_rows, self.fs, start_s, stop_s)
        cols = [self.columns[c] for c in chosen]
        wanted = list(dict.fromkeys(cols + ([opts.label_column] if opts.label_column else [])))
        table = source.read(wanted, span)
        labels = table[opts.label_column].to_numpy() if opts.label_column else None
        subject, record = opts.subject or file_stem(path), opts.record or file_stem(path)
        return [Record(opts.dataset, subject, record, self.infos[c].name, self.infos[c].modality,
                       self.infos[c].unit, self.fs,
                       finite_or_nan(_to_float(path, table[self.columns[c]], self.columns[c])),
                       start_time=self.start_time, offset_s=span.start / self.fs, labels=labels)
                for c in chosen]


class _Long:
    def __init__(self, path, source: _Source, opts: ReadOptions):
        import pyarrow as pa
        import pyarrow.compute as pc

        names = source.schema.names
        _numeric(path, source, "value")
        self.time = opts.time_column or ("time" if "time" in names else None)
        if self.time and self.time not in names:
            raise InputError(path, f"time_column {self.time!r} not in table (columns: {', '.join(map(shown, names))})")
        if opts.label_column and opts.label_column not in names:
            raise InputError(path, f"label_column {opts.label_column!r} not in table")
        extras = [c for c in ("fs", "subject") if c in names] + ([self.time] if self.time else [])
        table = source.read(["channel"] + extras)
        channel = table["channel"].combine_chunks()
        if pa.types.is_dictionary(channel.type):  # a stored dictionary may be unordered or hold unused names
            channel = channel.cast(channel.type.value_type)
        if channel.null_count:
            raise InputError(path, "column 'channel' has missing values")
        # dictionary_encode keeps values in order of first appearance, which is the channel order.
        encoded = pc.dictionary_encode(channel)
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        names_ch = [str(v) for v in encoded.dictionary.to_pylist()]
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names_ch) + 1))
        self.rows = [order[bounds[k]:bounds[k + 1]] for k in range(len(names_ch))]
        secs = stamps = None
        if self.time:
            secs, stamps = _seconds(path, table[self.time].combine_chunks(), self.time, opts,
                                    needed=opts.fs is None and "fs" not in names)
            self.rows = [r[np.argsort(secs[r], kind="stable")] for r in self.rows]
        fs_col = _to_float(path, table["fs"], "fs") if "fs" in names else None
        subj_col = table["subject"].to_numpy(zero_copy_only=False) if "subject" in names else None
        self.fs, self.subject, self.start_time = [], [], []
        for name, rows in zip(names_ch, self.rows):
            if opts.fs is not None:
                fs = float(opts.fs)
            elif fs_col is not None:
                values = np.unique(fs_col[rows])
                if len(values) != 1 or not values[0] > 0:
                    raise InputError(path, f"channel {shown(name)}: fs column must hold one positive rate")
                fs = float(values[0])
            elif secs is not None:
                fs = _fs_from_times(path, secs[rows], self.time)
            else:
                raise InputError(path, "no sampling rate: pass --fs, or add an fs or time column")
            self.fs.append(fs)
            subj = None
            if subj_col is not None:
                distinct = list(dict.fromkeys(subj_col[rows].tolist()))
                if len(distinct) > 1:
                    raise InputError(path, f"channel {shown(name)} has rows of several subjects; split the file")
                subj = None if distinct[0] is None else str(distinct[0])
            self.subject.append(subj)
            self.start_time.append(stamps[int(rows[0])].as_py() if stamps is not None and len(rows) else None)
        self.infos = [ChannelInfo(n, fs, len(r), opts.modality or guess_modality(n), opts.unit or "")
                      for n, fs, r in zip(names_ch, self.fs, self.rows)]

    def read(self, path, source: _Source, opts: ReadOptions, chosen, start_s, stop_s) -> list[Record]:
        wanted = ["value"] + ([opts.label_column] if opts.label_column else [])
        table = source.read(wanted)
        values = finite_or_nan(_to_float(path, table["value"], "value"))
        labels = table[opts.label_column].to_numpy(zero_copy_only=False) if opts.label_column else None
        out = []
        for c in chosen:
            info, rows = self.infos[c], self.rows[c]
            span = time_slice(len(rows), info.fs, start_s, stop_s)
            picked = rows[span]
            out.append(Record(opts.dataset, opts.subject or self.subject[c] or file_stem(path),
                              opts.record or file_stem(path), info.name, info.modality, info.unit, info.fs,
                              values[picked], start_time=self.start_time[c], offset_s=span.start / info.fs,
                              labels=None if labels is None else labels[picked]))
        return out


def _layout(path, opts: ReadOptions):
    source = _Source(path)
    try:
        long = {"channel", "value"} <= set(source.schema.names)
        return source, (_Long if long else _Wide)(path, source, opts)
    except BaseException:
        source.close()
        raise


def probe(path: str | Path, opts: ReadOptions) -> list[ChannelInfo]:
    """Channels from the schema (wide) or from the ``channel`` column (long)."""
    source, layout = _layout(path, opts)
    source.close()
    return layout.infos


def read(path: str | Path, opts: ReadOptions, channels: list[int] | None = None,
         start_s: float = 0.0, stop_s: float | None = None) -> list[Record]:
    """The selected channels over ``[start_s, stop_s)`` as float64."""
    source, layout = _layout(path, opts)
    try:
        return layout.read(path, source, opts, select(channels, len(layout.infos), path), start_s, stop_s)
    finally:
        source.close()
