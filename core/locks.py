"""One writer or any number of readers at a time, per artifact (a store, a corpus, a run, a report).

A writer holds the artifact's lock exclusive (:func:`exclusive`), a reader shared (:func:`shared`): readers go
together, and whoever finds the other kind holding it is refused at once (:class:`BusyError` naming a holder), never
made to wait. The lock is an ``flock`` on a hidden file beside the artifact (``.<name>.nw2.lock`` in its parent
folder, so it exists before the artifact does and never sits inside it); the operating system releases it when its
process ends, however it ends (``kill -9`` included), so a lock is never stale.

The file holds one JSON line per holder (pid, host, command, start time, read or write) for the message the refused
one gets: a writer empties it first (no one else holds it), a reader appends its line. It is removed on release by
the last holder only: the one that can turn its lock exclusive (then no one else holds it), and only while the path
is still its file. Removing a file another process has locked would let a third lock a new file at the same path
beside it, so a process that locks a file which is then no longer at the path opens the path again; one that comes
while a leaving holder has it exclusive for that instant tries again (:data:`TRIES`) rather than being refused by
it. Two readers leaving at once may both fail to turn exclusive and leave the file: harmless, the next holder uses it,
and a line of a process that has ended is named only when no live one is there.

Local paths only: an fsspec URL (``memory://``, ``s3://``) has no such lock, and nw2 says nothing about concurrent
writers there. A reader of an artifact whose folder it may not write (a read-only mount, another user's folder)
reads it unlocked: no lock file can be made there.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from nw2.core.errors import ArtifactError, BusyError

__all__ = ["exclusive", "shared", "lock_path", "held_here"]

#: The artifacts (real paths) whose write lock this process holds now (:func:`held_here`).
_HELD: set[str] = set()
#: Attempts to take a lock before a holder is named: a leaving holder has it exclusive for an instant (to remove its
#: file), and a process arriving then must not be refused by it. A real holder costs the refused one 0.1 s.
TRIES = 5


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
    :class:`BusyError` naming a holder when another process writes or reads it. Not re-entrant within a process
    (nor with :func:`shared` of the same artifact): hold it once, around the whole write."""
    with _locked(target, command, write=True):
        yield


@contextmanager
def shared(target: str | os.PathLike, command: str | None = None) -> Iterator[None]:
    """Hold a read lock of the artifact at ``target`` for the ``with`` block: other readers are welcome, a writer is
    refused while it is held; :class:`BusyError` naming the writer when one holds it (this process too: locks are
    per open file, so a process may not read under a lock what it writes under another)."""
    with _locked(target, command, write=False):
        yield


@contextmanager
def _locked(target: str | os.PathLike, command: str | None, write: bool) -> Iterator[None]:
    if "://" in str(target):
        yield
        return
    real = os.path.realpath(target)  # one lock whichever link names the artifact
    fd = _take(target, lock_path(real), write)
    if fd is None:  # a reader that may not make the lock file (see the module's notes)
        yield
        return
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": command or " ".join(["nw2", *sys.argv[1:3]]), "mode": "write" if write else "read"}
    if write:
        os.ftruncate(fd, 0)  # the lines of readers that have ended
    os.write(fd, (json.dumps(info) + "\n").encode())  # O_APPEND: one write, whole, after the other readers' lines
    if write:
        _HELD.add(real)
    try:
        yield
    finally:
        _HELD.discard(real)
        _release(fd, lock_path(real))


def _take(target, path: Path, write: bool) -> int | None:
    """An open descriptor of the lock file at ``path``, locked; :class:`BusyError` after :data:`TRIES` refusals."""
    import fcntl

    refused = 0
    while True:
        try:
            if write:  # a reader creates no folder: the artifact it reads is in that folder, or it is not there
                path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as err:
            if not write and err.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS):
                return None  # no folder (the stage says what is missing), or one this process may not write
            raise ArtifactError(target, f"cannot take its lock {path} ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if write else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder, reading = _holder(fd)
            os.close(fd)
            refused += 1
            if refused < TRIES:
                time.sleep(0.025)
                continue
            raise BusyError(target, holder, reading=reading,
                            then=None if write else "wait for it to end, then run this again") from None
        if _is_at(fd, path):
            return fd
        os.close(fd)  # its last holder removed it after we opened it: a lock on a removed file guards nothing


def _is_at(fd: int, path: Path) -> bool:
    """Whether the open lock file ``fd`` is (still) the file at ``path``."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _release(fd: int, path: Path) -> None:
    """Let the lock go; the last holder (the one that can turn its lock exclusive) removes the file first, so no one
    locks a file that is about to go."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a writer has it so already; a reader only when it is the last
    except BlockingIOError:
        pass  # other readers hold it: the file is theirs
    else:
        if _is_at(fd, path):  # not a file the last holder before us removed (and someone else made anew)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    os.close(fd)  # closing releases the lock


def _holder(fd: int) -> tuple[str, bool]:
    """``(who, reading)``: what the lock file says about a holder (the newest live one), as the message shows it."""
    try:
        lines = os.pread(fd, 1 << 16, 0).decode(errors="replace").splitlines()
    except OSError:
        lines = []
    holders = []
    for line in lines:
        try:
            info = json.loads(line)
        except ValueError:
            continue  # a line being written
        if isinstance(info, dict):
            holders.append(info)
    live = [h for h in holders if _alive(h)] or holders
    if not live:
        return "a process that has just taken the lock", False
    h = live[-1]
    who = f"{h.get('command', 'nw2')}, pid {h.get('pid')} on {h.get('host')} since {h.get('started')}"
    return who, h.get("mode") == "read"


def _alive(info: dict) -> bool:
    """Whether the holder a line names may still run: on another host nw2 cannot tell, so it may."""
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return True
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
