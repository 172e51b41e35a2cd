"""The window store: its Parquet schema, its metadata files as types, parts, completion markers.

Layout of a store directory (any fsspec URL; ``docs/window_store.md`` is the contract)::

    store.json              StoreInfo: format, schema version, the settings that built it, their fingerprint
    manifest.json           Manifest: one entry per input file: status, reason, checksum, counts
    metrics.json            MetricsInfo: what the metric columns hold (written by nw2 metrics)
    manifest.previous.json  the last finished manifest, set aside while an ingest runs (gone when it finishes)
    metrics.previous.json   the last metrics.json, set aside while nw2 metrics runs (gone when it finishes)
    data/part-<piece>.parquet   the windows of one work piece
    _progress/<piece>.json  completion marker with that piece's stats (merged into the manifest), and its part's
                            size and sha256

A part is written under a temporary name and moved into place, then its marker is written: a piece with a
marker is finished, and a rerun skips it. The markers are also the list of what ``data/`` holds: every stage that
reads a store compares ``data/`` with them (:meth:`WindowStore.check_parts`), so a file nw2 did not write there, a
missing part or one of another size is named, never read as the store. Only :class:`WindowStore` names these files.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from nw2.core.errors import ArtifactError, Nw2Error, NotAnArtifactError, OverwriteRefusedError
from nw2.core.files import Folder
from nw2.core.hashing import sha256_file, sha256_json
from nw2.core.parquet import read_checked

from ._meta import Meta, optional

__all__ = ["SCHEMA", "SCHEMA_VERSION", "ROLES", "METRICS_SCHEMA_VERSION", "GROUND_TRUTH_COLUMNS", "ROW_GROUP_SIZE", "FORMAT", "StoreInfo", "Manifest", "MetricsInfo",
           "WindowStore", "check_reachable", "parquet_bytes", "digest_of"]

#: 4: ``role`` (signal, or a known / observed intervention) and ``categories`` (a categorical intervention's
#: category names); 3: the ground-truth columns (``system`` .. ``noise``, null for recordings); 2: metrics_undefined is a
#: list<struct<metric, kind, detail>> (was "name: reason; ..." text).
SCHEMA_VERSION = 4
#: The version whose metric columns ``nw2 metrics`` writes (its types did not change in version 3).
METRICS_SCHEMA_VERSION = 2
#: The columns that say what generated a synthetic window (``docs/window_store.md``); null on recordings.
GROUND_TRUTH_COLUMNS = ("system", "system_params", "true_lyapunov", "regime", "noise")
#: The values of the ``role`` column: ``signal`` rows are the dynamics (measured, balanced, forecast); the others
#: are interventions tied to their group's signals by ``group_id`` (``docs/window_store.md``, "Interventions").
ROLES = ("signal", "known", "observed")
FORMAT = "nw2-window-store"

SCHEMA = pa.schema([
    pa.field("window_id", pa.string(), nullable=False),
    pa.field("group_id", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("subject", pa.string(), nullable=False),
    pa.field("record", pa.string(), nullable=False),
    pa.field("channel", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("role", pa.string(), nullable=False),
    pa.field("categories", pa.list_(pa.string())),
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
    pa.field("system", pa.string()),
    pa.field("system_params", pa.string()),
    pa.field("true_lyapunov", pa.float64()),
    pa.field("regime", pa.string()),
    pa.field("noise", pa.float64()),
    pa.field("samples", pa.list_(pa.float32()), nullable=False),
], metadata={b"nw2.schema_version": str(SCHEMA_VERSION).encode()})

#: Rows per Parquet row group: about 4 MB of float32 samples at 1024 samples per window.
ROW_GROUP_SIZE = 1024
#: Columns stored with dictionary encoding (few distinct values).
_DICTIONARY_COLUMNS = ["dataset", "subject", "record", "channel", "modality", "unit", "role", "split", "source", "system",
                       "regime"]

STORE_JSON, MANIFEST_JSON, METRICS_JSON = "store.json", "manifest.json", "metrics.json"
#: Where a run sets the file it replaces aside while it runs: the store has no manifest.json (or metrics.json), so
#: it counts as unfinished, yet a rerun after an interruption still knows what the earlier file recorded (the
#: inputs of earlier ingests, the parameters of metrics it does not compute). Removed once the new file is written.
PREVIOUS_MANIFEST_JSON, PREVIOUS_METRICS_JSON = "manifest.previous.json", "metrics.previous.json"
_PIECE_PART = re.compile(r"part-[0-9a-f]{32}\.parquet")
#: The temporary name of a file being written (:meth:`nw2.core.files.Folder.write_bytes`).
_TEMPORARY = re.compile(r"\.tmp-[0-9a-f]{32}-.+\.partial")
PARTS = "data/part-*.parquet"
#: How a part that is not what its marker says is written again (the rerun writes a part whose marker no longer
#: tells the truth again, and nw2 metrics then adds its columns back).
_REWRITE = "rerun the nw2 ingest that built the store (it writes such a part again), then nw2 metrics"


@dataclass(frozen=True)
class StoreInfo(Meta):
    """``store.json``: what built the store. Written first, so a store that has it is one (finished or not)."""

    FILE = STORE_JSON

    format: str
    """Always ``nw2-window-store``."""
    schema_version: int
    """Version of the part schema (``SCHEMA_VERSION``)."""
    nw2_version: str
    spec_fingerprint: str
    """Fingerprint of the settings below: a rerun with other settings needs ``--overwrite``."""
    preprocess: dict
    windows: dict
    split: dict


@dataclass(frozen=True)
class Manifest(Meta):
    """``manifest.json``: one entry per input (``path``, ``dataset``, ``status``, ``reason``, checksum and
    counts; ``docs/window_store.md``), sorted by path and dataset."""

    FILE = MANIFEST_JSON

    schema_version: int
    inputs: list

    def count(self, status: str) -> int:
        return sum(1 for e in self.inputs if e["status"] == status)


@dataclass(frozen=True)
class MetricsInfo(Meta):
    """``metrics.json``: what the store's metric columns hold. It describes the store, not the run that
    wrote it, so a rerun that changes nothing writes the same bytes."""

    FILE = METRICS_JSON

    metrics_version: int
    engine: str
    names: list
    params: dict
    fingerprints: dict
    """Per metric, the fingerprint of its name, parameters, engine and version."""
    parts: int
    rows: int
    failed_parts: list
    """``{"part", "error"}`` of every part the metrics failed on."""
    defined: dict
    undefined: dict
    engines: dict = optional()
    """Per metric, the engine its columns were computed with (``mixed`` where parts differ)."""


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as a Parquet file with the settings of every part nw2 writes (stores and corpora): row groups
    of ``ROW_GROUP_SIZE`` rows, zstd, dictionary encoding of the few-valued string columns."""
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=ROW_GROUP_SIZE, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS,
                   write_page_checksum=True)  # verified by every reader (nw2.core.parquet)
    return buf.getvalue()


def digest_of(data: bytes) -> dict:
    """What a marker records of a part's bytes: ``{"bytes": size, "sha256": hex digest, "footer_sha256": the
    digest of its Parquet footer}`` (:func:`footer_sha256`)."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "footer_sha256": footer_sha256(data)}


def footer_sha256(tail: bytes) -> str | None:
    """sha256 of a Parquet file's footer (its metadata, its length and the closing ``PAR1``) from ``tail``, the
    file's last bytes (at least the footer); ``None`` when ``tail`` does not end as a Parquet file does. The footer
    names every page's offset and size, the row counts and the column statistics, and every page carries its own
    checksum: a reader that checks the footer's digest and the checksums of the pages it reads has checked them
    against what nw2 wrote, without reading the rest."""
    if len(tail) < 8 or tail[-4:] != b"PAR1":
        return None
    size = int.from_bytes(tail[-8:-4], "little") + 8
    return hashlib.sha256(tail[-size:]).hexdigest() if size <= len(tail) else None


#: Per store root, the state of ``data/`` and ``_progress/`` last found consistent (:meth:`WindowStore.check_parts`).
_CHECKED: dict[str, tuple] = {}


def _signature(listing: dict[str, dict]) -> tuple | None:
    """What changes when a file of a listing is added, removed or rewritten (name, size, mtime, inode); ``None`` where the
    filesystem gives no mtime (then nothing is taken as checked)."""
    if any(entry.get("mtime") is None for entry in listing.values()):
        return None
    return tuple((rel, entry.get("size"), entry["mtime"], entry.get("ino")) for rel, entry in sorted(listing.items()))


def _versions(marker: dict | None) -> list[dict]:
    """The digests a part's marker accepts: its own and, while ``nw2 metrics`` replaces the part, the ``pending``
    one (:meth:`WindowStore.replace_part`); none for a marker of an nw2 before digests."""
    if not marker:
        return []
    return [d for d in (marker, marker.get("pending") or {}) if "bytes" in d and "sha256" in d]


def check_reachable(url: str, scheduler: str) -> None:
    """Refuse a ``memory://`` store with worker processes: it lives in this process's memory, so what the
    workers wrote would vanish with them (the run would report windows that no part holds)."""
    if str(url).startswith("memory://") and (scheduler or "local") != "sync":
        raise Nw2Error(f"{url}: a memory:// store lives in this process only and worker processes cannot "
                       f"write to it; use --scheduler sync, or a path or shared URL")


class WindowStore(Folder):
    """A window store at ``url`` (a local path or any fsspec URL).

    ``WindowStore(url)`` only names the place; :meth:`open` checks that a store is there, and
    :meth:`prepare` makes ``url`` ready for ``nw2 ingest``."""

    kind = "store"

    # -- opening -----------------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, metrics: bool = False, parts: bool = True) -> "WindowStore":
        """The store at ``url``, checked: it exists, has ``store.json`` and (with ``parts``) parts; with
        ``metrics``, also a ``metrics.json`` with no failed part. One-line :class:`ArtifactError` otherwise."""
        store = cls(url)
        if not store.exists(STORE_JSON):
            if not store.exists():
                raise NotAnArtifactError(url, "no such store", missing=True)
            raise NotAnArtifactError(url, "not a window store (no store.json); build one with nw2 ingest")
        store.require_complete()
        store.check_parts()
        if parts and not store.parts():
            raise ArtifactError(url, "empty store (no parts in data/); ingest some recordings first")
        if metrics:
            info = store.metrics_info()
            if info is None:
                if store._parts_hold_metrics():
                    raise ArtifactError(url, f"an nw2 metrics run on it did not finish (its parts hold metric "
                                             f"columns and there is no metrics.json); rerun nw2 metrics {url}")
                raise ArtifactError(url, f"the store has no metric columns; run nw2 metrics {url} first")
            if info.failed_parts:
                first = info.failed_parts[0]
                raise ArtifactError(url, f"nw2 metrics failed on {len(info.failed_parts)} part(s) "
                                         f"({first['part']}: {first['error']}); rerun nw2 metrics {url} first")
        return store

    def is_store(self) -> bool:
        return self.exists(STORE_JSON)

    def is_complete(self) -> bool:
        """Whether the last ``nw2 ingest`` into it finished: ``manifest.json`` is written last, and removed when
        an ingest starts (:meth:`begin_ingest`), so a store without one holds an interrupted ingest's parts."""
        return self.exists(MANIFEST_JSON)

    def require_complete(self) -> None:
        """ArtifactError (one line, naming the store and the fix) unless :meth:`is_complete`."""
        if not self.is_complete():
            raise ArtifactError(self.url, f"its nw2 ingest did not finish (no manifest.json; {len(self.parts())} "
                                          f"part(s) so far), so it may lack windows: rerun that nw2 ingest to "
                                          f"finish it (finished pieces are skipped)")

    def begin_ingest(self) -> None:
        """Mark the store unfinished until this ingest writes its manifest: the old one is set aside (it would
        vouch for parts this run is about to add) as ``manifest.previous.json``, which :meth:`earlier_manifest`
        reads, so a run that is interrupted and rerun still lists the earlier ingests' inputs."""
        self._set_aside(MANIFEST_JSON, PREVIOUS_MANIFEST_JSON)

    def _set_aside(self, rel: str, previous: str) -> None:
        """Move ``rel`` to ``previous`` (replacing it: a finished file includes what an older one set aside held).
        Without ``rel`` (an interrupted run's rerun), the ``previous`` it set aside stays."""
        if self.exists(rel):
            self.fs.mv(self.path(rel), self.path(previous))

    def _parts_hold_metrics(self) -> bool:
        parts = self.parts()
        # metrics_undefined: the column every metrics run writes into a part with its metric columns
        return any("metrics_undefined" in self.schema_of(rel).names for rel in parts)

    def prepare(self, spec_fingerprint: str, overwrite: bool) -> None:
        """Make the place ready for ``nw2 ingest`` with settings of ``spec_fingerprint``: a new or empty
        directory, or a store built with the same settings (whose finished pieces a rerun skips); with
        ``overwrite``, a store is emptied first. A non-empty directory that is no store is refused, with or
        without ``overwrite``: nw2 never deletes what it cannot prove it wrote. A killed ingest's temporary files
        go first (:meth:`sweep_temporaries`)."""
        if self.is_store():
            self.sweep_temporaries()
        if not self.is_store():
            if not self.is_empty():
                if not self.isdir():
                    raise OverwriteRefusedError(self.url, "exists and is not a directory")
                raise OverwriteRefusedError(
                    self.url, "exists, is not empty and holds no window store (no store.json); nw2 writes a "
                              "store only into a new or empty directory or an existing store: choose another --out")
            return
        if overwrite:
            self.clear()
            return
        self.check_parts(repairable=True)  # a file nw2 did not write in data/ would be vouched for by the manifest
        info = self.info()
        if info.schema_version < SCHEMA_VERSION:  # its parts lack columns that new parts have: no mixed store
            raise OverwriteRefusedError(self.url, f"was ingested with schema version {info.schema_version}, whose "
                                                  f"parts lack the columns of version {SCHEMA_VERSION}; "
                                                  f"pass --overwrite to rebuild it or choose another --out")
        if info.spec_fingerprint != spec_fingerprint:
            raise OverwriteRefusedError(self.url, "was built with other preprocessing, window or split settings; "
                                                  "pass --overwrite to rebuild it or choose another --out")

    def sweep_temporaries(self) -> list[str]:
        """Remove the temporary files a killed writer left (``.tmp-<32 hex digits>-<name>.partial`` beside a part,
        a marker or a metadata file: :meth:`Folder.write_bytes`'s); only on a local store whose write lock this
        process holds (:func:`nw2.core.locks.held_here`), so none is a live writer's. Returns what went."""
        from nw2.core.locks import held_here

        if not self.is_local or not held_here(self.root):
            return []
        stale = [rel for rel in (*self.glob("data/.tmp-*"), *self.glob("_progress/.tmp-*"), *self.glob(".tmp-*"))
                 if _TEMPORARY.fullmatch(posixpath.basename(rel))]
        self.remove(stale)
        return stale

    def clear(self) -> None:
        """Remove what nw2 wrote here (``--overwrite``): the metadata files, the parts, the markers and their
        temporary files, by name. Anything else in the directory stays where it is."""
        if not self.is_store():
            raise OverwriteRefusedError(self.url, "holds no window store (no store.json); nothing of it is deleted")
        self.info()  # a store.json that is not nw2's is refused here, before anything goes
        # parts by their exact name: piece ids are 32 hex digits (data/part-<id>.parquet)
        parts = [p for p in self.glob(PARTS) if _PIECE_PART.fullmatch(posixpath.basename(p))]
        owned = [STORE_JSON, MANIFEST_JSON, METRICS_JSON, PREVIOUS_MANIFEST_JSON, PREVIOUS_METRICS_JSON,
                 *parts, *self.glob("data/.tmp-*"),
                 *self.glob("_progress/*.json"), *self.glob("_progress/.tmp-*"), *self.glob(".tmp-*")]
        # store.json last: until it goes, the directory still says it is a store a rerun can clear
        self.remove([rel for rel in owned if rel != STORE_JSON] + [STORE_JSON])

    # -- metadata ----------------------------------------------------------------------------------------
    def _read_meta(self, kind: type[Meta], rel: str) -> Any:
        try:
            data = self.read_json(rel)
        except ValueError:
            raise ArtifactError(self.url, f"{rel} is not valid JSON") from None
        return kind.from_dict(data, where=self.path(rel))

    def info(self) -> StoreInfo:
        """``store.json``; a file of that name that is not an nw2 store's is refused (never used or deleted)."""
        try:
            data = self.read_json(STORE_JSON)
        except ValueError:
            raise NotAnArtifactError(self.url, "store.json is not valid JSON: not an nw2 window store") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise NotAnArtifactError(self.url, f"store.json is not an nw2 window store's (no format "
                                               f"{FORMAT!r}); nothing here is used or deleted")
        return StoreInfo.from_dict(data, where=self.path(STORE_JSON))

    def write_info(self, info: StoreInfo) -> None:
        self.write_json(STORE_JSON, info.to_dict())

    def manifest(self) -> Manifest | None:
        return self._read_meta(Manifest, MANIFEST_JSON) if self.exists(MANIFEST_JSON) else None

    def earlier_manifest(self) -> Manifest | None:
        """What earlier ingests recorded: ``manifest.json``, else (an ingest was interrupted since) the one it set
        aside, ``manifest.previous.json``."""
        return self.manifest() or self._previous(Manifest, PREVIOUS_MANIFEST_JSON)

    def _previous(self, kind: type[Meta], rel: str) -> Any:
        return self._read_meta(kind, rel) if self.exists(rel) else None

    def write_manifest(self, manifest: Manifest) -> None:
        """Write ``manifest.json`` (the store is finished), then drop the one set aside: the new one lists its
        inputs too."""
        self.write_json(MANIFEST_JSON, manifest.to_dict())
        self.remove([PREVIOUS_MANIFEST_JSON])

    def metrics_info(self) -> MetricsInfo | None:
        return self._read_meta(MetricsInfo, METRICS_JSON) if self.exists(METRICS_JSON) else None

    def earlier_metrics_info(self) -> MetricsInfo | None:
        """What the last finished ``nw2 metrics`` recorded: ``metrics.json``, else (a run was interrupted since)
        the one it set aside, ``metrics.previous.json``."""
        return self.metrics_info() or self._previous(MetricsInfo, PREVIOUS_METRICS_JSON)

    def write_metrics_info(self, info: MetricsInfo) -> None:
        """Write ``metrics.json``, then drop the one set aside (the new one is what the parts hold)."""
        self.write_json(METRICS_JSON, info.to_dict())
        self.remove([PREVIOUS_METRICS_JSON])

    def begin_metrics(self) -> None:
        """Set ``metrics.json`` aside as ``metrics.previous.json`` (an ``nw2 metrics`` run starts: its parts are
        about to change, so nothing vouches for them until the run's own is written)."""
        self._set_aside(METRICS_JSON, PREVIOUS_METRICS_JSON)

    def settings_sha256(self) -> str:
        """sha256 of ``store.json``'s bytes: the settings the store was built with (a run trained on a store
        records it, as a corpus's ``content_sha256`` is recorded)."""
        return sha256_file(self.path(STORE_JSON), fs=self.fs)[0]

    def fingerprint(self, parts: list[str] | None = None) -> str:
        """A content address of the store, cheap to compute: sha256 over ``store.json``'s spec fingerprint,
        ``metrics.json``'s metric fingerprints and the sorted part names with their byte sizes. The store's
        location is not part of it, so a moved or copied store keeps its fingerprint."""
        parts = self.parts() if parts is None else parts
        spec = self.info().spec_fingerprint if self.is_store() else None
        metrics = self.metrics_info()
        listing = [[posixpath.basename(p), self.size(p)] for p in sorted(parts)]
        return sha256_json({"spec_fingerprint": spec,
                            "metrics_fingerprints": metrics.fingerprints if metrics else {}, "parts": listing})

    # -- parts -------------------------------------------------------------------------------------------
    def parts(self) -> list[str]:
        """Relative paths (``data/part-*.parquet``) of every part, sorted."""
        return self.glob(PARTS)

    def write_part(self, piece_id: str, table: pa.Table) -> tuple[str, dict]:
        """Write one piece's windows as ``data/part-<piece_id>.parquet``; returns the relative path and what its
        marker records of it (:func:`digest_of`)."""
        rel = f"data/part-{piece_id}.parquet"
        data = parquet_bytes(table)
        self.write_bytes(rel, data)
        return rel, digest_of(data)

    def replace_part(self, rel: str, table: pa.Table) -> dict:
        """Rewrite a part in place (``nw2 metrics`` adding columns), its marker true at every instant: the new
        bytes' digest is recorded as ``pending`` first, then the part is replaced, then the digest becomes the
        marker's own. A part killed between the steps is either of the two, both of which its marker names
        (:meth:`settle` makes it one). Returns the new digest."""
        data = parquet_bytes(table)
        new = digest_of(data)
        mrel, marker = self._marker_for(rel)
        if marker is None:  # a store no nw2 ingest marked (made by hand, or by an nw2 before markers): no list
            self.write_bytes(rel, data)
            return new
        self.write_json(mrel, {**marker, "pending": new})
        self.write_bytes(rel, data)
        self.write_json(mrel, {**{k: v for k, v in marker.items() if k != "pending"}, **new})
        return new

    def settle(self, rel: str) -> None:
        """After a killed :meth:`replace_part` (its marker names two digests): the marker keeps the one the part's
        bytes have; :class:`ArtifactError` when they have neither (changed since nw2 wrote them)."""
        mrel, marker = self._marker_for(rel)
        if marker is None or "pending" not in marker:
            return
        have = digest_of(self.read_bytes(rel))
        if have == marker["pending"]:
            self.write_json(mrel, {**{k: v for k, v in marker.items() if k != "pending"}, **have})
        elif have["sha256"] == marker.get("sha256"):
            self.write_json(mrel, {k: v for k, v in marker.items() if k != "pending"})
        else:
            raise ArtifactError(f"{self.url}/{rel}", "is not the part nw2 wrote (its sha256 differs from the ones "
                                                     f"its marker {mrel} records); {_REWRITE}")

    def _marker_for(self, rel: str) -> tuple[str | None, dict | None]:
        """The marker path of the part at ``rel`` and what it holds (``None`` when there is none)."""
        mrel = self._marker_of(rel)
        return mrel, (self.read_json(mrel) if mrel is not None and self.exists(mrel) else None)

    def _marker_of(self, rel: str) -> str | None:
        """The marker of the part at ``rel`` (``data/part-<piece>.parquet`` -> ``_progress/<piece>.json``)."""
        name = posixpath.basename(rel)
        if posixpath.dirname(rel) != "data" or not _PIECE_PART.fullmatch(name):
            return None
        return self.marker(name[len("part-"):-len(".parquet")])

    def _records(self) -> dict[str, dict] | None:
        """Every marker that names a part, by that part's path; ``None`` for a store with no markers at all (made
        by hand, or by an nw2 before them): then nothing can be compared."""
        markers = self.glob("_progress/*.json")
        if not markers:
            return None
        named = {}
        for rel in markers:
            try:
                stats = self.read_json(rel)
            except ValueError:
                raise ArtifactError(f"{self.url}/{rel}", f"is not valid JSON (a damaged completion marker); "
                                                         f"{_REWRITE}") from None
            if isinstance(stats, dict) and stats.get("part"):
                named[stats["part"]] = stats
        return named

    def check_parts(self, repairable: bool = False) -> None:
        """Compare ``data/`` with the parts the markers name: :class:`ArtifactError` naming a file there that no
        marker names (nw2 did not write it, and readers of ``data/*.parquet`` would take it for a part), a part a
        marker names that is missing, or one whose size differs from the marker's (truncated, changed or replaced
        since), or whose Parquet footer differs from the digest its marker records (:func:`footer_sha256`: the footer
        names every page, and each page carries its checksum, which every read verifies), so a part replaced by
        another valid Parquet file of the same size is named too. Hidden files (``.DS_Store``, a writer's ``.tmp-``
        temporaries) are not parts and are passed over. It costs a listing, the markers and each part's footer, once
        per state of ``data/`` and ``_progress/`` in a process (a stage opens a store more than once);
        ``nw2 metrics``, which reads each part whole, also checks the whole file's sha256.

        With ``repairable`` (``nw2 ingest``, which writes a missing or changed part again) only files no marker names
        are refused, and a part named as a piece's that no marker names is passed over (an interrupted ingest's; the
        rerun writes it again or, when its inputs differ, removes it: :meth:`remove_unmarked_parts`)."""
        listing = self._listing("data")
        state = (repairable, _signature(listing), _signature(self._listing("_progress")))
        if state[1] is not None and state[2] is not None and _CHECKED.get(self.root) == state:
            return  # checked already in this state (a stage opens its store more than once)
        named = self._records()
        if named is None:
            return
        self._compare(listing, named, repairable)
        _CHECKED[self.root] = state

    def _listing(self, folder: str) -> dict[str, dict]:
        """The entries of ``folder`` (fsspec ``ls`` details) by relative path, hidden ones left out."""
        path, listing = self.path(folder), {}
        if self.fs.exists(path):
            for entry in self.fs.ls(path, detail=True):
                name = posixpath.basename(entry["name"].rstrip("/"))
                if not name.startswith("."):
                    listing[f"{folder}/{name}"] = entry
        return listing

    def _compare(self, listing: dict[str, dict], named: dict[str, dict], repairable: bool) -> None:
        """:meth:`check_parts`' comparisons of ``data/`` (``listing``) with the markers' parts (``named``)."""
        for rel, entry in sorted(listing.items()):
            if repairable and _PIECE_PART.fullmatch(posixpath.basename(rel)):
                continue  # a piece's part whose marker an interrupted ingest never wrote: its rerun writes both
            if rel not in named:
                what = "a folder" if entry.get("type") == "directory" else "a file"
                raise ArtifactError(f"{self.url}/{rel}", f"is {what} nw2 did not write (no completion marker in "
                                                         f"_progress/ names it), and readers of data/*.parquet "
                                                         f"would take it for a part of the store; move it out of "
                                                         f"data/")
        if repairable:
            return
        for rel, stats in sorted(named.items()):
            if rel not in listing:
                raise ArtifactError(f"{self.url}/{rel}", f"is missing (its completion marker records "
                                                         f"{stats.get('windows')} windows); {_REWRITE}")
            versions = _versions(stats)
            size = int(listing[rel]["size"])
            if versions and size not in [d["bytes"] for d in versions]:
                raise ArtifactError(f"{self.url}/{rel}", f"is not the part nw2 wrote (its size, {size} bytes, "
                                                         f"differs from the {versions[0]['bytes']} its marker "
                                                         f"records: truncated, changed or replaced since); "
                                                         f"{_REWRITE}")
            footers = [d["footer_sha256"] for d in versions if d.get("footer_sha256")]
            if footers and self._footer_sha256(rel, size) not in footers:
                raise ArtifactError(f"{self.url}/{rel}", f"is not the part nw2 wrote (its Parquet footer differs "
                                                         f"from the one its marker records: changed or replaced "
                                                         f"since); {_REWRITE}")

    def remove_unmarked_parts(self) -> list[str]:
        """Remove the parts named as nw2 names a piece's (``part-<32 hex digits>.parquet``) that no marker names:
        an interrupted ingest wrote them and was killed before their markers, and this run did not write them again
        (its inputs differ). ``nw2 ingest`` calls it before its manifest, under the store's write lock; the same
        names ``--overwrite`` removes. Returns what went."""
        named = self._records()
        if named is None:
            return []
        orphans = [rel for rel in self.glob(PARTS) if _PIECE_PART.fullmatch(posixpath.basename(rel))
                   and rel not in named]
        self.remove(orphans)
        return orphans

    def _footer_sha256(self, rel: str, size: int) -> str | None:
        """:func:`footer_sha256` of a part, reading its footer only."""
        if size < 8:
            return None
        with self.open_file(rel, "rb") as fh:
            fh.seek(size - 8)
            need = int.from_bytes(fh.read(8)[:4], "little") + 8  # the footer's length, then itself
            if need > size:
                return None
            fh.seek(size - need)
            return footer_sha256(fh.read(need))

    def write_table(self, rel: str, table: pa.Table) -> None:
        """Write (or atomically replace) a part with the store's Parquet settings."""
        self.write_bytes(rel, parquet_bytes(table))

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        with self.open_file(rel, "rb") as fh:
            return read_checked(fh, f"{self.url}/{rel}", columns=columns)

    def read_whole_part(self, rel: str) -> pa.Table:
        """Every column of a part, its bytes checked against the sha256 its marker records (a reader that reads
        the whole file anyway pays one hash for it: ``nw2 metrics``), then its pages against their checksums."""
        data = self.read_bytes(rel)
        known = [d["sha256"] for d in _versions(self._marker_for(rel)[1])]
        if known and hashlib.sha256(data).hexdigest() not in known:
            raise ArtifactError(f"{self.url}/{rel}", f"is not the part nw2 wrote (its sha256 differs from the "
                                                     f"one its marker records: damaged, changed or replaced "
                                                     f"since); {_REWRITE}")
        return read_checked(pa.BufferReader(data), f"{self.url}/{rel}")

    def schema_of(self, rel: str) -> pa.Schema:
        """A part's schema with its metadata, from the Parquet footer alone."""
        with self.open_file(rel, "rb") as fh:
            return pq.read_schema(fh)

    # -- completion markers ------------------------------------------------------------------------------
    @staticmethod
    def marker(piece_id: str) -> str:
        return f"_progress/{piece_id}.json"

    def finished(self, piece_id: str) -> dict | None:
        """The stats of a finished piece, or ``None`` when it has not completed, or when its marker no longer
        tells the truth: the part it names is gone, holds another number of rows than it recorded or has another
        size (a deleted, truncated or changed part is written again, never counted as done)."""
        rel = self.marker(piece_id)
        if not self.exists(rel):
            return None
        stats = self.read_json(rel)
        part = stats.get("part")
        if part is None:  # a piece that kept no window: nothing to check
            return stats
        try:
            size = self.size(part)
            with self.open_file(part, "rb") as fh:
                rows = pq.read_metadata(fh).num_rows
        except (OSError, pa.ArrowException):
            return None
        sizes = [d["bytes"] for d in _versions(stats)]
        if sizes and size not in sizes:  # changed since (a marker of an nw2 before digests has no size)
            return None
        return stats if rows == stats.get("windows") else None

    def finish(self, piece_id: str, stats: dict) -> None:
        self.write_json(self.marker(piece_id), stats)
