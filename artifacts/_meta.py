"""Metadata files as frozen dataclasses: one JSON object per file, one field per key.

A field whose ``metadata`` says ``optional`` may be absent from the file: it then reads as :data:`ABSENT`
and is left out again when written, so a file read and written back is byte for byte what it was. An
unknown key or a missing required one is refused with the file and the key named: metadata that does not
match its type is never used half-understood.
"""

from __future__ import annotations

from dataclasses import MISSING, field, fields
from typing import Any, ClassVar, TypeVar

from nw2.core.errors import ArtifactError

__all__ = ["ABSENT", "Meta", "optional"]


class _Absent:
    """The value of an optional field that the file does not have."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self):
        return (_Absent, ())


ABSENT: Any = _Absent()

M = TypeVar("M", bound="Meta")
#: Fields annotated as a plain container must hold one (what every reader of them iterates).
_CONTAINERS = {"list": list, "dict": dict}


def optional(**kwargs: Any) -> Any:
    """A field the file may not have (read as :data:`ABSENT`, not written when ABSENT)."""
    return field(default=ABSENT, metadata={"optional": True}, **kwargs)


class Meta:
    """Base of the metadata dataclasses (``@dataclass(frozen=True)`` subclasses)."""

    FILE: ClassVar[str] = ""

    @classmethod
    def from_dict(cls: type[M], data: Any, where: str = "") -> M:
        """Build from a file's parsed JSON; ``where`` (the file's path) goes into every error."""
        where = where or cls.FILE
        if not isinstance(data, dict):
            raise ArtifactError(where, f"is not a JSON object (got {type(data).__name__})")
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ArtifactError(where, f"unknown field(s) {', '.join(unknown)} (written by a newer nw2?)")
        missing = [f.name for f in fields(cls)  # type: ignore[arg-type]
                   if f.name not in data and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ArtifactError(where, f"missing field(s) {', '.join(missing)}")
        for f in fields(cls):  # type: ignore[arg-type]
            kind = _CONTAINERS.get(str(f.type))
            if kind is not None and f.name in data and not isinstance(data[f.name], kind):
                raise ArtifactError(where, f"field {f.name} is a {type(data[f.name]).__name__}, not a "
                                           f"{kind.__name__}")
        return cls(**data)

    def get(self, name: str) -> Any:
        """The field ``name``, ``None`` where the file does not have it (an optional field)."""
        value = getattr(self, name)
        return None if value is ABSENT else value

    def to_dict(self) -> dict:
        """The file's JSON object (optional fields that are ABSENT left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self)  # type: ignore[arg-type]
                if getattr(self, f.name) is not ABSENT}
