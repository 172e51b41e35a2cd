"""Hashing, each kind once: provenance ids (:func:`content_id`), file digests read in chunks
(:func:`sha256_file`, :func:`sha256_files`), and digests of JSON-able values (:func:`sha256_json`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

__all__ = ["content_id", "sha256_file", "sha256_files", "sha256_json", "CHUNK"]

#: Bytes read at a time when hashing a file: large enough to be fast, small enough to never hold a part.
CHUNK = 1 << 22


def content_id(*parts: object) -> str:
    """A 128-bit hex id from the parts' text: the same provenance gives the same id everywhere.

    ``blake2b(str(p0) + "\\x1f" + str(p1) + ..., digest_size=16)``; window, group, piece and metric ids are
    all made this way (``docs/window_store.md``)."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _open(path: str, fs: Any = None):
    return open(path, "rb") if fs is None else fs.open(path, "rb")


def sha256_file(path: str, fs: Any = None) -> tuple[str, int]:
    """``(hex sha256, size in bytes)`` of one file, local or on an fsspec filesystem ``fs``."""
    digest, size = hashlib.sha256(), 0
    with _open(str(path), fs) as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def sha256_files(paths: Iterable[str], fs: Any = None) -> tuple[str, list[tuple[str, int]]]:
    """The sha256 of the files' bytes concatenated in the given order (``cat f1 f2 ... | sha256sum``), and
    each file's own ``(sha256, size)``, in one read of each."""
    whole, each = hashlib.sha256(), []
    for path in paths:
        one, size = hashlib.sha256(), 0
        with _open(str(path), fs) as fh:
            while block := fh.read(CHUNK):
                one.update(block)
                whole.update(block)
                size += len(block)
        each.append((one.hexdigest(), size))
    return whole.hexdigest(), each


def sha256_json(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
