"""Windows to read: a corpus or a window store, opened the one way the trainer and ``nw2 evaluate`` share,
and the row-group test both use to skip row groups that cannot hold a split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from nw2.core.errors import ArtifactError, NotAnArtifactError

from .corpus import Corpus
from .store import WindowStore

__all__ = ["open_windows", "may_hold"]


def open_windows(url: str | os.PathLike, reader: str) -> Corpus | WindowStore:
    """The corpus (``corpus.json``) or window store (``store.json``) at ``url``, checked to have parts.

    ``reader`` names who reads it in the message about URLs (``"the trainer"``, ``"nw2 evaluate"``): both
    read local directories (or mounted shared ones) only. One-line :class:`ArtifactError` otherwise."""
    if "://" in str(url):
        raise ArtifactError(url, f"{reader} reads a local directory (or a mounted shared one), not a URL; "
                                 f"copy or mount the data first")
    if not Path(url).is_dir():
        raise NotAnArtifactError(url, "no such directory (expected a corpus or a window store)", missing=True)
    source: Corpus | WindowStore
    if Corpus(url).is_corpus():
        source = Corpus.open(url)
    elif WindowStore(url).is_store():
        source = WindowStore(url)
        source.require_complete()  # an interrupted ingest's parts are never trained on or scored as a store
        source.check_parts()  # nor a file nw2 did not write, nor a store with a part missing or changed
    else:
        raise NotAnArtifactError(url, "not a corpus or window store: no corpus.json (an interrupted nw2 "
                                      "balance?) and no store.json")
    if not source.parts():
        raise ArtifactError(url, f"no Parquet parts under data/ (an empty {source.kind})")
    return source


def may_hold(stats: Any, values: Iterable[str]) -> bool:
    """False only when a row group's min/max statistics of a string column prove that it holds none of
    ``values`` (no statistics: it may)."""
    if stats is None or not stats.has_min_max:
        return True
    lo, hi = stats.min, stats.max
    if isinstance(lo, bytes):
        lo, hi = lo.decode(), hi.decode()
    return any(lo <= v <= hi for v in values)
