"""All file access of nw2's artifacts, each kind of write once.

- :func:`atomic_write` and friends: one local file, written to a temporary name in the same directory and
  renamed, so a reader (or a run killed mid-write) sees the old file or the new one, never half of one.
- :class:`Folder`: a directory at a local path or any fsspec URL, with atomic file writes (temporary name,
  then a move), JSON in one format, listing, and removal of *named* files only.
- :func:`publish_directory`: a whole directory written at once: locally into a sibling temporary directory
  that replaces the target by two renames; on other filesystems in place, removed again on failure.
  :func:`sweep_published` removes what a killed publish left beside its target.

A write the filesystem refuses (a full disk, a quota) is a one-line :class:`StorageError` naming the file, and
leaves no temporary file behind.

Nothing here decides what may be deleted: the artifact types (:mod:`nw2.artifacts`) list what nw2 wrote and
refuse to replace anything else.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from nw2.core.errors import StorageError

__all__ = ["atomic_write", "atomic_bytes", "atomic_text", "atomic_torch_save", "json_text", "Folder",
           "publish_directory", "sweep_published", "ATOMIC_TMP"]

#: The temporary name :func:`atomic_write` gives ``<name>``: ``.<name>.<8 characters of mkstemp>.tmp``
#: (``ATOMIC_TMP.format(name=re.escape(name))`` matches it).
ATOMIC_TMP = r"\.{name}\.[a-z0-9_]{{8}}\.tmp"

T = TypeVar("T")


# -- one local file ----------------------------------------------------------------------------------------
def atomic_write(path: Path, write: Callable[[str], Any]) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``. An ``OSError`` (a full disk)
    is a :class:`StorageError` naming ``path``; the temporary file is removed whatever went wrong."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        raise StorageError.of(path, err) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError.of(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


class _Unbuffered(io.FileIO):
    """A file that writes all it is given or raises, and keeps the ``OSError`` it raised: torch's writer turns
    a failed write into a ``RuntimeError`` of its own ("unexpected pos ..."), which would hide a full disk."""

    error: OSError | None = None

    def write(self, data) -> int:
        view, done = memoryview(data).cast("B"), 0
        try:
            while done < len(view):
                done += super().write(view[done:])
        except OSError as err:
            self.error = err
            raise
        return done


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    def save(tmp: str) -> None:
        with _Unbuffered(tmp, "w") as fh:
            try:
                torch.save(obj, fh)
            except Exception:
                if fh.error is not None:
                    raise fh.error from None
                raise

    atomic_write(path, save)


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
        tmp = posixpath.join(posixpath.dirname(final),
                             f".tmp-{uuid.uuid4().hex}-{posixpath.basename(final)}.partial")
        try:
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self.fs.mv(tmp, final)
        except OSError as err:  # a full disk, a quota: one line, and no temporary file left behind
            try:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            except OSError:
                pass
            raise StorageError.of(final, err) from None

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

    def failed(err: OSError | StorageError) -> StorageError:  # named as the whole it was part of: url
        if isinstance(err, StorageError):
            return StorageError(url, err.why, f"the {what}")
        return StorageError.of(url, err, f"the {what}")

    if not folder.is_local:
        if folder.exists():
            folder.fs.rm(folder.root, recursive=True)
        try:
            try:
                return write(folder)
            except (OSError, StorageError) as err:
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
        tmp = os.path.join(parent, _PUBLISHED.format(name=name, kind="tmp", id=uuid.uuid4().hex))
        os.mkdir(tmp)
    except OSError as err:
        raise failed(err) from None
    try:
        try:
            result = write(Folder(tmp))
            if os.path.exists(target):
                old = os.path.join(parent, _PUBLISHED.format(name=name, kind="old", id=uuid.uuid4().hex))
                os.rename(target, old)
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, target)
        except (OSError, StorageError) as err:
            raise failed(err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


#: What :func:`publish_directory` puts beside its target ``<name>``: the directory being written (``tmp``), and an
#: earlier target moved aside while the new one takes its place (``old``).
_PUBLISHED = ".{name}.{kind}-{id}"


def sweep_published(url: str | os.PathLike) -> list[str]:
    """Remove what a killed :func:`publish_directory` of ``url`` left beside it, and return the names removed:
    its ``.<name>.tmp-<32 hex digits>`` directories (a half-written output), and its ``.<name>.old-<...>``
    ones (an earlier output moved aside, removed once the target is there; while the target is missing, the
    newest is put back: a kill between the two renames of a replacement). Only while this process holds the
    target's write lock (:func:`nw2.core.locks.held_here`): then no live writer owns them. A URL is left alone."""
    from nw2.core.locks import held_here

    if "://" in str(url) or not held_here(url):
        return []
    target = os.path.abspath(url)  # where publish_directory puts them
    parent, name = os.path.dirname(target), os.path.basename(target)
    pattern = re.compile(re.escape(f".{name}.") + r"(tmp|old)-[0-9a-f]{32}")
    try:
        found = sorted((e for e in os.scandir(parent) if pattern.fullmatch(e.name) and e.is_dir(follow_symlinks=False)),
                       key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
    except FileNotFoundError:
        return []
    olds = [e for e in found if e.name.split(".")[-1].startswith("old-")]
    if olds and not os.path.lexists(target):
        os.rename(olds[-1].path, target)  # the earlier output, as it was before the killed replacement
        found.remove(olds[-1])
    for entry in found:
        shutil.rmtree(entry.path)
    return [e.name for e in found]
