"""All file access of nw2's artifacts, each kind of write once.

- :func:`atomic_write` and friends: one local file, written to a temporary name in the same directory and
  renamed, so a reader (or a run killed mid-write) sees the old file or the new one, never half of one.
- :class:`Folder`: a directory at a local path or any fsspec URL, with atomic file writes (temporary name,
  then a move), JSON in one format, listing, and removal of *named* files only.
- :func:`publish_directory`: a whole directory written at once: locally into a sibling temporary directory
  that replaces the target by two renames; on other filesystems in place, removed again on failure.

Nothing here decides what may be deleted: the artifact types (:mod:`nw2.artifacts`) list what nw2 wrote and
refuse to replace anything else.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from nw2.core.errors import Nw2Error

__all__ = ["atomic_write", "atomic_bytes", "atomic_text", "atomic_torch_save", "json_text", "Folder",
           "publish_directory"]

T = TypeVar("T")


# -- one local file ----------------------------------------------------------------------------------------
def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def json_text(obj: Any) -> str:
    """The one JSON format of nw2's metadata files: sorted keys, indent 2, a final newline."""
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


# -- a directory, local or fsspec --------------------------------------------------------------------------
class Folder:
    """A directory at ``url`` (a local path or any fsspec URL). Paths given to its methods are relative
    (``"data/part-x.parquet"``); :meth:`path` turns them into the filesystem's own."""

    def __init__(self, url: str | os.PathLike) -> None:
        self.url = str(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)

    def __repr__(self) -> str:
        return f"Folder({self.url!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if parts else self.root

    # reading
    def exists(self, rel: str = "") -> bool:
        return self.fs.exists(self.path(rel) if rel else self.root)

    def isdir(self, rel: str = "") -> bool:
        return self.fs.isdir(self.path(rel) if rel else self.root)

    def is_empty(self) -> bool:
        """True when the directory is missing or holds nothing."""
        return not self.exists() or not self.fs.ls(self.root, detail=False)

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching ``pattern`` (``"data/part-*.parquet"``), sorted."""
        base = self.root.rstrip("/") + "/"
        return sorted(p[len(base):] if p.startswith(base) else posixpath.relpath(p, self.root)
                      for p in self.fs.glob(self.path(pattern)))

    def files(self) -> list[str]:
        """Every file below the directory, as sorted relative paths (empty when it is missing)."""
        if not self.exists():
            return []
        base = self.root.rstrip("/") + "/"
        return sorted(p[len(base):] for p in self.fs.find(self.root) if p.startswith(base))

    def open_file(self, rel: str, mode: str = "rb"):
        return self.fs.open(self.path(rel), mode)

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self.path(rel), "rb") as fh:
            return fh.read()

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    # writing
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``rel`` under a temporary name in its directory, then move it into place. The temporary
        name ends in ``.partial``, so a write that never finished (a killed worker, a full disk) leaves
        nothing that ``data/*.parquet`` globs of pyarrow, polars or DuckDB would pick up."""
        final = self.path(rel)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = posixpath.join(posixpath.dirname(final),
                             f".tmp-{uuid.uuid4().hex}-{posixpath.basename(final)}.partial")
        with self.fs.open(tmp, "wb") as fh:
            fh.write(data)
        self.fs.mv(tmp, final)

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json_text(obj).encode())

    def remove(self, rels: list[str]) -> None:
        """Remove the named files that exist, then every directory they leave empty. Only what is named
        goes: a file nw2 did not name stays, and so does its directory."""
        dirs = set()
        for rel in rels:
            if self.fs.exists(self.path(rel)):
                self.fs.rm(self.path(rel))
            parent = posixpath.dirname(rel)
            while parent:
                dirs.add(parent)
                parent = posixpath.dirname(parent)
        for rel in sorted(dirs, key=lambda d: -d.count("/")):
            p = self.path(rel)
            if self.fs.isdir(p) and not self.fs.ls(p, detail=False):
                self.fs.rmdir(p)


# -- a whole directory -------------------------------------------------------------------------------------
def publish_directory(url: str | os.PathLike, write: Callable[[Folder], T], what: str) -> T:
    """Write the directory ``url`` with ``write(folder)`` so that it appears whole or not at all.

    Local: ``write`` fills a sibling temporary directory, which then takes the target's place (an existing
    target is renamed aside first and removed after: the caller must have checked that nw2 wrote all of it).
    Other filesystems have no directory rename: the target (checked the same way by the caller) is removed,
    ``write`` writes in place, with its completion marker last, and what it wrote is removed on failure.
    An ``OSError`` becomes one line naming ``url`` and ``what`` was being written."""
    folder = Folder(url)

    def failed(err: OSError) -> Nw2Error:
        return Nw2Error(f"{url}: cannot write the {what} ({err.strerror or err})")

    if not folder.is_local:
        if folder.exists():
            folder.fs.rm(folder.root, recursive=True)
        try:
            try:
                return write(folder)
            except OSError as err:
                raise failed(err) from None
        except BaseException:
            try:
                if folder.exists():
                    folder.fs.rm(folder.root, recursive=True)
            except Exception:  # noqa: BLE001 - cleanup is best effort; the first error is the one to report
                pass
            raise
    target = os.path.abspath(folder.root)
    parent, name = os.path.dirname(target), os.path.basename(target)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex}")
        os.mkdir(tmp)
    except OSError as err:
        raise failed(err) from None
    try:
        try:
            result = write(Folder(tmp))
            if os.path.exists(target):
                old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex}")
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
        except OSError as err:
            raise failed(err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result
