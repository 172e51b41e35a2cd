"""Errors a user can act on. Their message is one line that names the file and the problem."""

from __future__ import annotations


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
