"""An evaluation report directory (``nw2 evaluate``'s ``--out``, by default ``RUN/eval-<split>``):
``metrics.json`` lists every file of the report, so a rerun replaces exactly what nw2 wrote."""

from __future__ import annotations

import os
from typing import Callable, TypeVar

from nw2.core.errors import ArtifactError, OverwriteRefusedError
from nw2.core.files import Folder, publish_directory

__all__ = ["EvalReport", "METRICS_JSON", "SPEED_JSON"]

#: The report's numbers (it lists every file of the report) and its speed figures.
METRICS_JSON, SPEED_JSON = "metrics.json", "speed.json"
T = TypeVar("T")


class EvalReport(Folder):
    """A report directory (local)."""

    kind = "evaluation report"

    def owned_files(self) -> list[str]:
        """The files of the report, as its ``metrics.json`` lists them (itself included)."""
        data = self.metrics()
        files = data.get("files") if isinstance(data, dict) and data.get("format") == "nw2-eval" else None
        if not isinstance(files, list):
            raise OverwriteRefusedError(self.url, "metrics.json is not an nw2 evaluation report's (no format "
                                                  "nw2-eval with its list of files); nothing here is replaced")
        return sorted({METRICS_JSON, *map(str, files)})

    def metrics(self) -> dict | None:
        """The report's ``metrics.json``, or ``None`` when there is none (or it is not JSON)."""
        if not self.exists(METRICS_JSON):
            return None
        try:
            return self.read_json(METRICS_JSON)
        except ValueError:
            return None

    @classmethod
    def check_destination(cls, path: str | os.PathLike) -> None:
        """``path`` must be a local directory: missing, empty, or an earlier report holding only the files
        it lists."""
        if "://" in str(path):
            raise ArtifactError(path, "an evaluation report is written to a local directory, not a URL")
        dest = cls(path)
        if not dest.exists():
            return
        if not dest.isdir():
            raise OverwriteRefusedError(path, "exists and is not a directory")
        if dest.is_empty():
            return
        if not dest.exists(METRICS_JSON):
            raise OverwriteRefusedError(path, "exists and is not an nw2 evaluation report; choose another --out")
        foreign = sorted(set(dest.files()) - set(dest.owned_files()))
        if foreign:
            raise OverwriteRefusedError(path, f"holds {len(foreign)} file(s) the earlier report did not list "
                                              f"({foreign[0]}); move them away or choose another --out")

    @classmethod
    def publish(cls, path: str | os.PathLike, write: Callable[[Folder], T]) -> T:
        """Write the whole report with ``write(folder)``, replacing an earlier one at once."""
        cls.check_destination(path)
        return publish_directory(path, write, "report")
