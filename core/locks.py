"""One writer at a time: an exclusive lock per artifact that nw2 writes (a store, a corpus, a run, a report).

The lock is an ``flock`` on a hidden file beside the artifact (``.<name>.nw2.lock`` in its parent folder, so it
exists before the artifact does and never sits inside it); the operating system releases it when its process ends,
however it ends (``kill -9`` included), so a lock is never stale. The file holds the holder's pid, host, command and
start time for the message a second writer gets, and is removed on release. Local paths only: an fsspec URL
(``memory://``, ``s3://``) has no such lock, and nw2 says nothing about concurrent writers there.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nw2.core.errors import ArtifactError, BusyError

__all__ = ["exclusive", "lock_path", "held_here"]

#: The artifacts (real paths) whose lock this process holds now (:func:`held_here`).
_HELD: set[str] = set()


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of the artifact at ``target``: ``.<name>.nw2.lock`` beside it."""
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}.nw2.lock"


def held_here(target: str | os.PathLike) -> bool:
    """Whether this process holds the write lock of the artifact at ``target`` now: then no other nw2 process is
    writing it, and a temporary file of its kind found there is a dead writer's (safe to remove)."""
    return "://" not in str(target) and os.path.realpath(target) in _HELD


@contextmanager
def exclusive(target: str | os.PathLike, command: str | None = None) -> Iterator[None]:
    """Hold the write lock of the artifact at ``target`` (a local path; a URL is not locked) for the ``with`` block;
    :class:`BusyError` naming the holder when another process holds it. Re-entrant within a process is not
    supported: hold it once, around the whole write."""
    if "://" in str(target):
        yield
        return
    import fcntl

    path = lock_path(os.path.realpath(target))  # one lock whichever link names the artifact
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ArtifactError(target, f"cannot take its write lock {path} ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise BusyError(target, holder) from None
        # the holder before us may have removed the file after we opened it: a lock on a removed file guards nothing
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": command or " ".join(["nw2", *sys.argv[1:3]])}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    real = os.path.realpath(target)
    _HELD.add(real)
    try:
        yield
    finally:
        _HELD.discard(real)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)  # closing releases the lock; the file is gone first, so no one locks a stale one


def _holder(fd: int) -> str:
    """What the lock file says about its holder, as the message shows it."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that has just taken the lock"
    return f"{info.get('command', 'nw2')}, pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"
