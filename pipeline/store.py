"""The window store on disk: Parquet schema, atomic writes, completion markers, manifest.

Layout of a store directory (any fsspec URL)::

    store.json              schema version, the spec that built it, its fingerprint
    manifest.json           one entry per input file: status, reason, checksum, counts
    data/part-<piece>.parquet   the windows of one work piece
    _progress/<piece>.json  completion marker with that piece's stats (merged into the manifest)

A part is written under a temporary name and renamed, then its marker is written: a piece with a
marker is finished, and a rerun skips it. ``docs/window_store.md`` is the schema's contract.
"""

from __future__ import annotations

import io
import json
import posixpath
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from nw2.core.errors import Nw2Error

SCHEMA_VERSION = 1

SCHEMA = pa.schema([
    pa.field("window_id", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("record", pa.string(), nullable=False),
    pa.field("channel", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("fs", pa.float64(), nullable=False),
    pa.field("source_fs", pa.float64(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("start_time", pa.timestamp("us", tz="UTC")),
    pa.field("length", pa.int32(), nullable=False),
    pa.field("scale", pa.float64(), nullable=False),
    pa.field("offset", pa.float64(), nullable=False),
    pa.field("missing_fraction", pa.float32(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("annotations", pa.list_(pa.string()), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("samples", pa.list_(pa.float32()), nullable=False),
], metadata={b"nw2.schema_version": str(SCHEMA_VERSION).encode()})

#: Rows per Parquet row group: about 4 MB of float32 samples at 1024 samples per window.
ROW_GROUP_SIZE = 1024


def check_reachable(url: str, scheduler: str) -> None:
    """Refuse a ``memory://`` store with worker processes: it lives in this process's memory, so what the
    workers wrote would vanish with them (the run would report windows that no part holds)."""
    if str(url).startswith("memory://") and (scheduler or "local") != "sync":
        raise Nw2Error(f"{url}: a memory:// store lives in this process only and worker processes cannot "
                       f"write to it; use --scheduler sync, or a path or shared URL")


class Store:
    """A window store at ``url`` (a local path or any fsspec URL)."""

    def __init__(self, url: str) -> None:
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    # -- atomic writes -------------------------------------------------------------------------
    def _write_bytes(self, rel: str, data: bytes) -> None:
        final = self.path(rel)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = posixpath.join(posixpath.dirname(final), f".tmp-{uuid.uuid4().hex}-{posixpath.basename(final)}")
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, final)

    def write_json(self, rel: str, obj) -> None:
        self._write_bytes(rel, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())

    def read_json(self, rel: str):
        with self.fs.open(self.path(rel), "rb") as fh:
            return json.loads(fh.read())

    def exists(self, rel: str) -> bool:
        return self.fs.exists(self.path(rel))

    def write_part(self, piece_id: str, table: pa.Table) -> str:
        """Write one piece's windows as ``data/part-<piece_id>.parquet``; returns the relative path."""
        rel = f"data/part-{piece_id}.parquet"
        self.write_table(rel, table)
        return rel

    def write_table(self, rel: str, table: pa.Table) -> None:
        """Write (or atomically replace) a part with the store's Parquet settings."""
        buf = io.BytesIO()
        pq.write_table(table, buf, row_group_size=ROW_GROUP_SIZE, compression="zstd",
                       use_dictionary=["dataset", "subject", "record", "channel", "modality", "unit",
                                       "split", "source"])
        self._write_bytes(rel, buf.getvalue())

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(self.path(rel), "rb") as fh:
            return pq.read_table(fh, columns=columns)

    def schema_of(self, rel: str) -> pa.Schema:
        """A part's schema with its metadata, from the Parquet footer alone."""
        with self.fs.open(self.path(rel), "rb") as fh:
            return pq.read_schema(fh)

    # -- completion markers ----------------------------------------------------------------------
    def marker(self, piece_id: str) -> str:
        return f"_progress/{piece_id}.json"

    def finished(self, piece_id: str) -> dict | None:
        """The stats of a finished piece, or ``None`` when it has not completed."""
        rel = self.marker(piece_id)
        return self.read_json(rel) if self.exists(rel) else None

    def finish(self, piece_id: str, stats: dict) -> None:
        self.write_json(self.marker(piece_id), stats)

    # -- whole store -----------------------------------------------------------------------------
    def parts(self) -> list[str]:
        """Relative paths (``data/part-*.parquet``) of every part, sorted."""
        found = self.fs.glob(self.path("data", "part-*.parquet"))
        return sorted("data/" + posixpath.basename(p) for p in found)

    def clear(self) -> None:
        """Remove everything nw2 wrote here (``--overwrite``)."""
        for rel in ("data", "_progress"):
            if self.fs.exists(self.path(rel)):
                self.fs.rm(self.path(rel), recursive=True)
        for rel in ("store.json", "manifest.json", "metrics.json"):
            if self.fs.exists(self.path(rel)):
                self.fs.rm(self.path(rel))
