"""The corpus: a balanced selection of store rows as plain Parquet, its ``corpus.json`` as a type, and
the rules for writing one where something already is.

Layout (``docs/corpus_format.md`` is the contract)::

    CORPUS/
      corpus.json               CorpusInfo: what was done and what the corpus holds (written last: the
                                completion marker; it lists every other file of the corpus)
      data/part-00000.parquet   the selected rows, every store column plus bin_id and sample_weight
      report/                   report.md and its PNG plots

Only :class:`Corpus` names these files.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Callable, TypeVar

import numpy as np
import pyarrow as pa

from nw2.core.errors import ArtifactError, NotAnArtifactError, OverwriteRefusedError
from nw2.core.files import Folder, publish_directory
from nw2.core.hashing import sha256_files

from ._meta import Meta, optional
from .store import parquet_bytes

__all__ = ["FORMAT", "VERSION", "ADDED", "METADATA_KEY", "CorpusInfo", "Corpus", "part_name", "columns_of",
           "check_distinct"]

FORMAT = "nw2-corpus"
VERSION = 1
#: The columns a corpus adds to the store's.
ADDED = (pa.field("bin_id", pa.int64(), nullable=False), pa.field("sample_weight", pa.float64(), nullable=False))
#: Parquet metadata key of a corpus part: ``{"format": "nw2-corpus", "version": 1}``.
METADATA_KEY = b"nw2.corpus"
CORPUS_JSON = "corpus.json"

T = TypeVar("T")


def part_name(i: int) -> str:
    return f"data/part-{i:05d}.parquet"


def columns_of(schema: pa.Schema) -> list[dict]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


@dataclass(frozen=True)
class CorpusInfo(Meta):
    """``corpus.json`` (every field is described in ``docs/corpus_format.md``)."""

    FILE = CORPUS_JSON

    format: str
    version: int
    nw2_version: str
    store: dict
    """``name``, ``fingerprint``, ``parts``, ``rows`` of the store the rows come from."""
    strategy: str
    params: dict
    size: int | None
    fraction: float | None
    seed: int
    replace: bool
    weights_only: bool
    balanced_splits: list
    bin_id: str
    metrics: list
    pca: int | None
    bins_per_dim: int
    nan_policy: str
    dims: int
    cells: int
    components: list | None
    explained_variance: list | None
    grid_edges: list
    cell_counts: list
    mix: dict
    balance_stats: dict
    rows: dict
    candidates: int
    selected: int
    distinct_selected: int
    corpus_rows: int
    columns: list
    parts: list
    """``{"path", "rows", "bytes", "sha256"}`` of every part, in order."""
    content_sha256: str
    """sha256 of the parts' bytes concatenated in part order (``cat data/part-*.parquet | sha256sum``)."""
    report: list
    """The report's files (``report/report.md``, its PNGs), relative to the corpus."""
    cluster_counts_after: list = optional()
    """kmeans only: rows per cluster after selection."""
    scale: str = optional()
    """How the metrics were scaled (``robust`` or ``quantile``); absent in older corpora (quantile)."""
    dedup: dict | None = optional()
    """Near-duplicates dropped before selection (``candidates``, ``kept``, ``exact_dropped``,
    ``near_dropped``, ``groups``); ``null`` with ``dedup: false``; absent in older corpora."""
    constraints: dict | None = optional()
    """``balance.caps`` / ``balance.mixture``: quotas per dataset, groups trimmed, rows short
    (``select_constrained``'s report); ``null`` without them."""
    independent_diversity: dict = optional()
    """Diversity of the selection against random draws by measures the strategy does not use
    (:mod:`pipeline.balance.diversity`); absent in older corpora."""
    interventions: dict | None = optional()
    """The intervention rows carried with their groups' selected windows: ``rows``, and per stored channel its
    ``role`` (``known`` / ``observed``), ``rows`` and ``categories`` (null: continuous); null when the store has
    none; absent in older corpora."""


class Corpus(Folder):
    """A corpus at ``url`` (a local path or any fsspec URL)."""

    kind = "corpus"

    @classmethod
    def open(cls, url: str | os.PathLike) -> "Corpus":
        """The finished corpus at ``url``; :class:`ArtifactError` when there is none or it is not whole."""
        corpus = cls(url)
        if not corpus.exists(CORPUS_JSON):
            if not corpus.exists():
                raise NotAnArtifactError(url, "no such corpus", missing=True)
            raise NotAnArtifactError(url, "not a finished nw2 corpus (no corpus.json)")
        info = corpus.info()
        missing = [p["path"] for p in info.parts if not corpus.exists(p["path"])]
        if missing:
            raise ArtifactError(url, f"{missing[0]} is listed in corpus.json but missing ({len(missing)} of "
                                     f"{len(info.parts)} parts); rebuild the corpus with nw2 balance")
        listed = {p["path"] for p in info.parts}
        foreign = [rel for rel in corpus.glob("data/*")
                   if rel not in listed and not posixpath.basename(rel).startswith(".")]  # hidden: not a part
        if foreign:
            raise ArtifactError(f"{corpus.url}/{foreign[0]}", "is not a part of the corpus (corpus.json does not "
                                                              "list it), and readers of data/*.parquet would take "
                                                              "it for one; move it out of data/")
        return corpus

    def is_corpus(self) -> bool:
        return self.exists(CORPUS_JSON)

    def verify(self) -> None:
        """Check every part's bytes against the sha256 ``corpus.json`` records, then (a corpus drawn without
        replacement: ``replace`` false) that no window is held twice: :class:`ArtifactError` naming the first part
        that differs (changed, truncated or replaced after nw2 balance wrote it), or a window id held twice and its
        parts (digests of parts rewritten with the duplicate would match, so only the ids can tell)."""
        from nw2.core.parquet import CheckedFile

        info = self.info()
        _, each = sha256_files([self.path(p["path"]) for p in info.parts], fs=self.fs)
        for entry, (digest, size) in zip(info.parts, each):
            if entry.get("sha256") and (digest != entry["sha256"] or size != entry.get("bytes", size)):
                raise ArtifactError(self.url, f"{entry['path']} is not the part nw2 balance wrote (its sha256 or size "
                                              f"differs from corpus.json's: changed, truncated or replaced since); "
                                              f"rebuild the corpus with nw2 balance --overwrite")
        if info.replace or not info.parts:  # drawn with replacement: a window may be there more than once, on purpose
            return
        ids, part, kind = [], [], pa.string()
        for i, entry in enumerate(info.parts):
            with self.open_file(entry["path"]) as fh:
                f = CheckedFile(fh, f"{self.url}/{entry['path']}")
                if "window_id" not in f.schema_arrow.names:
                    return  # no corpus a loader takes: it names the missing column
                kind = f.schema_arrow.field("window_id").type
                for g in range(f.num_row_groups):
                    column = f.read_row_group(g, columns=["window_id"]).column(0)
                    ids.extend(column.chunks)
                    part.append(np.full(len(column), i, np.int32))
        check_distinct(pa.chunked_array(ids, kind), np.concatenate(part or [np.zeros(0, np.int32)]),
                       [p["path"] for p in info.parts], self.url, "rebuild the corpus with nw2 balance --overwrite")

    def info(self) -> CorpusInfo:
        try:
            data = self.read_json(CORPUS_JSON)
        except ValueError:
            raise ArtifactError(self.url, "corpus.json is not valid JSON") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArtifactError(self.url, f"corpus.json is not an {FORMAT} file")
        return CorpusInfo.from_dict(data, where=self.path(CORPUS_JSON))

    def parts(self) -> list[str]:
        """The parts, in order: those ``corpus.json`` lists (a corpus being written: those on disk)."""
        if self.is_corpus():
            return [p["path"] for p in self.info().parts]
        return self.glob("data/part-*.parquet")

    def owned_files(self) -> list[str]:
        """Every file nw2 wrote here, from ``corpus.json``: itself, the parts, the report."""
        info = self.info()
        return sorted([CORPUS_JSON, *(p["path"] for p in info.parts), *info.report])

    # -- writing -----------------------------------------------------------------------------------------
    def write_table(self, rel: str, table: pa.Table) -> None:
        """Write a part with the store's Parquet settings (a corpus part reads like a store part)."""
        self.write_bytes(rel, parquet_bytes(table))

    def hash_parts(self, written: list[dict]) -> str:
        """Adds ``bytes`` and ``sha256`` to each written part and returns the corpus's ``content_sha256``."""
        whole, each = sha256_files([self.path(e["path"]) for e in written], fs=self.fs)
        for entry, (digest, size) in zip(written, each):
            entry.update(bytes=size, sha256=digest)
        return whole

    def write_info(self, info: CorpusInfo) -> None:
        """``corpus.json``, written last as the completion marker."""
        self.write_json(CORPUS_JSON, info.to_dict())

    @classmethod
    def check_destination(cls, url: str | os.PathLike, overwrite: bool, around: Folder | None = None) -> None:
        """Refuse to write a corpus at ``url`` unless it is missing, an empty directory, or (with
        ``overwrite``) a corpus every file of which nw2 wrote (the files ``corpus.json`` lists); refuse a
        ``url`` inside, over or around the folder ``around`` (the store the rows come from). Nothing is
        deleted or written here."""
        dest = cls(url)
        if around is not None:
            _refuse_nesting(dest, around)
        if not dest.exists():
            return
        if not dest.isdir():
            raise OverwriteRefusedError(url, "exists and is not a directory")
        if dest.is_empty():
            return
        if not overwrite:
            raise OverwriteRefusedError(url, "exists and is not empty; pass --overwrite to replace it or choose "
                                             "another --out")
        if not dest.is_corpus():
            raise OverwriteRefusedError(url, "is not an nw2 corpus (no corpus.json); refusing to overwrite it")
        foreign = sorted(set(dest.files()) - set(dest.owned_files()))
        if foreign:
            raise OverwriteRefusedError(url, f"holds {len(foreign)} file(s) nw2 did not write ({foreign[0]}); "
                                             "move them away or choose another --out")

    @classmethod
    def publish(cls, url: str | os.PathLike, write: Callable[["Corpus"], T], overwrite: bool,
                around: Folder | None = None) -> T:
        """Write a whole corpus at ``url`` with ``write(corpus)`` (which writes ``corpus.json`` last), after
        :meth:`check_destination`; it appears whole or not at all (:func:`nw2.core.files.publish_directory`)."""
        cls.check_destination(url, overwrite, around)
        return publish_directory(url, lambda folder: write(cls(folder.url)), "corpus")


def _refuse_nesting(dest: Folder, store: Folder) -> None:
    if type(dest.fs) is not type(store.fs):
        return
    a = os.path.realpath(dest.root) if dest.is_local else dest.root.rstrip("/")
    b = os.path.realpath(store.root) if store.is_local else store.root.rstrip("/")
    if a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/"):
        raise OverwriteRefusedError(dest.url, f"the corpus may not be written into, over or around the store "
                                              f"{store.url}; choose another --out")


def check_distinct(window_ids: pa.ChunkedArray | pa.Array, part: np.ndarray, names: list[str], url: str,
                   then: str) -> None:
    """Each window once: :class:`~nw2.core.errors.ArtifactError` at ``url`` naming a window id held more than once
    and the parts holding it (``part[i]`` indexes ``names`` for row ``i``), then ``then`` (what to do)."""
    import polars as pl

    frame = pl.DataFrame({"window_id": pl.from_arrow(window_ids), "part": pl.Series(part, dtype=pl.Int32)})
    twice = frame.filter(pl.col("window_id").is_duplicated())
    if twice.height:
        wid = twice.get_column("window_id")[0]
        held = twice.filter(pl.col("window_id") == wid).get_column("part").to_list()
        where = ", ".join(sorted({names[i] for i in held}))
        raise ArtifactError(url, f"window {wid} is held {len(held)} times ({where}) in a corpus drawn without "
                                 f"replacement; {then}")


def store_name(url: str) -> str:
    """The last component of a store URL (``/data/stores/demo/`` -> ``demo``)."""
    return posixpath.basename(str(url).rstrip("/").replace("\\", "/")) or str(url)
