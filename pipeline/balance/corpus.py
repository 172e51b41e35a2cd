"""Copying the selected store rows into a corpus, part by part (the corpus itself, its files and
``corpus.json``, is :class:`nw2.artifacts.corpus.Corpus`).

The copy streams: one store row group (at most 1024 rows) is read at a time, the selected rows are
taken from it (a row drawn twice is taken twice), and a corpus part is written as soon as
``ROWS_PER_PART`` rows are gathered, so memory holds at most one part of signals whatever the size
of the store. Parts are written with the store's Parquet settings (``nw2.artifacts.store.parquet_bytes``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from nw2.core.errors import Nw2Error
from nw2.core.parquet import CheckedFile
from nw2.artifacts.corpus import ADDED, FORMAT, METADATA_KEY, VERSION, Corpus, check_distinct, part_name
from nw2.artifacts.store import WindowStore

#: Rows per corpus part (8 row groups of 1024 rows: about 32 MB of float32 samples at 1024 samples per
#: window); every part holds exactly this many rows except the last.
ROWS_PER_PART = 8192


def part_schema(store: WindowStore, parts: list[str]) -> pa.Schema:
    """The columns every part shares (read from footers alone), without metadata. A part whose columns
    differ from the first one's is refused: the corpus must be one rectangular table."""
    ref = None
    for rel in parts:
        schema = store.schema_of(rel).remove_metadata()
        if ref is None:
            ref, first = schema, rel
        elif not schema.equals(ref):
            diff = sorted(set(map(str, schema)) ^ set(map(str, ref)))
            raise Nw2Error(f"{store.url}: {rel} has other columns than {first} ({'; '.join(diff[:3]) or 'order'}); "
                           f"rerun nw2 metrics {store.url}")
    for f in ADDED:
        if ref is not None and f.name in ref.names:
            raise Nw2Error(f"{store.url}: already has a column {f.name!r} (is it a corpus rather than a store?)")
    return ref


def corpus_schema(store: WindowStore, parts: list[str], schema: pa.Schema) -> pa.Schema:
    """The corpus columns: the store's, then ``bin_id`` and ``sample_weight``; the metadata keeps the
    store's schema version and metric fingerprints (from the first part) and adds ``nw2.corpus``."""
    meta = {}
    first = store.schema_of(parts[0]).metadata or {}
    for key in (b"nw2.schema_version", b"nw2.metrics"):
        if key in first:
            meta[key] = first[key]
    meta[METADATA_KEY] = json.dumps({"format": FORMAT, "version": VERSION}, sort_keys=True).encode()
    return pa.schema([*schema, *ADDED], metadata=meta)


@dataclass
class Selected:
    """Rows to copy, in store order: ``part[i]`` indexes the store's part list, ``row[i]`` is the row in
    that part; a row listed twice is copied twice."""

    part: np.ndarray            # (m,) int64
    row: np.ndarray             # (m,) int64
    bin_id: np.ndarray          # (m,) int64
    sample_weight: np.ndarray   # (m,) float64

    def __post_init__(self) -> None:
        order = np.lexsort((self.row, self.part))   # stable: equal rows keep their order
        if not np.array_equal(order, np.arange(order.size)):
            self.part, self.row = self.part[order], self.row[order]
            self.bin_id, self.sample_weight = self.bin_id[order], self.sample_weight[order]


def copy_rows(store: WindowStore, parts: list[str], sel: Selected, dest: Corpus, schema: pa.Schema,
              distinct: bool = True) -> list[dict]:
    """Copy the selected rows into ``dest`` as ``data/part-00000.parquet``, ...; returns per part its
    ``path``, ``rows``, ``bytes`` and ``sha256``. Streams one store row group at a time. With ``distinct`` (a
    draw without replacement) the copied rows' window ids must differ (:func:`check_distinct`)."""
    plain = pa.schema(list(schema)[: len(schema) - len(ADDED)])
    written: list[dict] = []
    ids: list[pa.ChunkedArray] = []  # the copied rows' window ids and the store part of each, for the check
    origin: list[np.ndarray] = []
    pending: list[pa.Table] = []
    held = 0

    def flush(final: bool) -> None:
        nonlocal pending, held
        while held >= ROWS_PER_PART or (final and held):
            table = pa.concat_tables(pending).combine_chunks() if len(pending) > 1 else pending[0]
            n = min(ROWS_PER_PART, table.num_rows)
            rel = part_name(len(written))
            dest.write_table(rel, table.slice(0, n).replace_schema_metadata(schema.metadata))
            written.append({"path": rel, "rows": n})
            rest = table.slice(n)
            pending, held = ([rest] if rest.num_rows else []), rest.num_rows

    bounds = np.searchsorted(sel.part, np.arange(len(parts) + 1))
    for p, rel in enumerate(parts):
        lo, hi = bounds[p], bounds[p + 1]
        if lo == hi:
            continue
        rows = sel.row[lo:hi]
        with store.open_file(rel) as fh:
            pf = CheckedFile(fh, f"{store.url}/{rel}")
            starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
            if rows[-1] >= starts[-1]:
                raise Nw2Error(f"{store.url}: {rel} holds {starts[-1]} rows, fewer than when it was read; "
                               "was the store changed during nw2 balance?")
            cut = np.searchsorted(rows, starts)
            for g in range(pf.num_row_groups):
                a, b = cut[g], cut[g + 1]
                if a == b:
                    continue
                group = pf.read_row_group(g).replace_schema_metadata(None)
                if not group.schema.equals(plain):
                    raise Nw2Error(f"{store.url}: {rel} has other columns than the store's first part")
                taken = group.take(pa.array(rows[a:b] - starts[g], pa.int64()))
                if distinct:
                    ids.append(taken.column("window_id"))
                    origin.append(np.full(taken.num_rows, p, np.int32))
                taken = taken.append_column(ADDED[0], pa.array(sel.bin_id[lo + a:lo + b], pa.int64()))
                taken = taken.append_column(ADDED[1], pa.array(sel.sample_weight[lo + a:lo + b], pa.float64()))
                pending.append(taken)
                held += taken.num_rows
                flush(final=False)
    if distinct and ids:
        check_distinct(pa.chunked_array([c for a in ids for c in a.chunks]), np.concatenate(origin),
                       parts, store.url, "the store holds it twice (written by an nw2 before its ingests checked "
                                         "window ids?); rebuild the store with nw2 ingest --overwrite")
    flush(final=True)
    return written
