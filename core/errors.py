"""Errors a user can act on. Their message is one line that names the file and the problem.

Code tells errors apart by their type and attributes, never by their wording: a caller that must treat
"this split is empty" differently from "this corpus is broken" catches :class:`EmptySplitError`.
"""

from __future__ import annotations

__all__ = ["Nw2Error", "InputError", "SpecError", "ArtifactError", "NotAnArtifactError", "OverwriteRefusedError",
           "EmptySplitError", "BusyError", "StorageError"]


class Nw2Error(Exception):
    """Base class for errors caused by input or configuration, never by a bug."""


class InputError(Nw2Error):
    """A recording that cannot be read: corrupt, truncated, unknown format, unusable content."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SpecError(Nw2Error):
    """A corpus spec with an unknown field, a wrong type or a missing value."""


class ArtifactError(Nw2Error):
    """A window store, corpus or run that cannot be used as it is: missing, incomplete, or with metadata
    that does not describe it. ``url`` is the artifact's location, ``reason`` the rest of the message."""

    def __init__(self, url: object, reason: str) -> None:
        self.url = str(url)
        self.reason = reason
        super().__init__(f"{self.url}: {reason}")


class NotAnArtifactError(ArtifactError):
    """A location that holds no artifact of the kind asked for (no ``store.json``, ``corpus.json`` or
    ``run.json``), or nothing at all (``missing``)."""

    def __init__(self, url: object, reason: str, missing: bool = False) -> None:
        self.missing = missing
        super().__init__(url, reason)


class OverwriteRefusedError(ArtifactError):
    """nw2 was asked to write where something already is, and cannot prove it wrote what is there (or was
    not told it may replace it). Nothing was deleted."""


class EmptySplitError(Nw2Error):
    """A corpus or store that has no rows of the split asked for."""

    def __init__(self, url: object, split: str, reason: str | None = None) -> None:
        self.url = str(url)
        self.split = split
        super().__init__(f"{self.url}: {reason or f'no rows of split {split!r}'}")


class BusyError(ArtifactError):
    """Another nw2 process is writing the same store, corpus, run or report, or (``reading``) reads what this one
    would write (``holder``: what its lock says; ``then``: what to do, by default wait or write elsewhere)."""

    def __init__(self, url: object, holder: str, reading: bool = False, then: str | None = None) -> None:
        self.holder, self.reading = holder, reading
        self.then = then or "wait for it to end, or choose another --out"
        super().__init__(url, f"is being {'read' if reading else 'written'} by another nw2 process ({holder}); "
                              f"{self.then}")

    def __reduce__(self):
        return (type(self), (self.url, self.holder, self.reading, self.then))


class StorageError(ArtifactError):
    """The filesystem refused a write of nw2's (no space left, a quota or file-size limit, a read-only or
    vanished folder). The file was written under a temporary name, which is removed: nothing half-written is
    left under its own name, and the work finished before it is kept. ``why``: the system's words (``No space
    left on device``); ``then``: how to go on (a command may say it in its own terms: :meth:`going_on`)."""

    RERUN = "rerun the same command: what was finished is kept"

    def __init__(self, url: object, why: str, what: str = "it", then: str = RERUN) -> None:
        self.why, self.what, self.then = why, what, then
        super().__init__(url, f"cannot write {what} ({why}); make room on that disk (or raise the quota or file-size "
                              f"limit), then {then}")

    @classmethod
    def of(cls, path: object, err: OSError, what: str = "it") -> "StorageError":
        """The error for ``err``, raised while writing ``path`` (``what``: the file, or the artifact's kind)."""
        return cls(path, err.strerror or str(err) or type(err).__name__, what)

    def going_on(self, then: str) -> "StorageError":
        """The same error, saying ``then`` how to go on."""
        return type(self)(self.url, self.why, self.what, then)

    def __reduce__(self):  # travels back from a Dask worker as itself
        return (type(self), (self.url, self.why, self.what, self.then))
