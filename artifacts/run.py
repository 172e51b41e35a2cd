"""The training run: a local directory that ``nw2 pretrain`` owns, with ``run.json`` as a type.

Layout (``docs/training.md``)::

    RUN/run.json               RunInfo: model and training configs, world size, corpus fingerprint, status
    RUN/log.jsonl              one line per logged step and per epoch (rank 0; appended, cut back on resume)
    RUN/tensorboard/           the same scalars for TensorBoard (or --log-dir)
    RUN/checkpoints/ckpt-<step>.pt   model, optimizer, every rank's loader and RNG state (atomic writes)
    RUN/model/                 model.safetensors + config.json: Model.from_pretrained(RUN/model)

Only :class:`Run` names these files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from nw2.core.errors import ArtifactError, NotAnArtifactError, OverwriteRefusedError
from nw2.core.files import ATOMIC_TMP, atomic_text, json_text

from ._meta import Meta, optional

__all__ = ["RunInfo", "Run", "RUN_JSON"]

RUN_JSON, LOG_JSONL = "run.json", "log.jsonl"
#: The temporary files of :func:`nw2.core.files.atomic_write` that ``nw2 pretrain`` writes, per folder of the run.
_TEMPORARIES = {"": re.compile(ATOMIC_TMP.format(name=r"(run\.json|log\.jsonl|\.launch\.json)")),
                "checkpoints": re.compile(ATOMIC_TMP.format(name=r"ckpt-[0-9]+\.pt(\.sha256)?")),
                "model": re.compile(ATOMIC_TMP.format(name=r"(model\.safetensors|config\.json)"))}


@dataclass(frozen=True)
class RunInfo(Meta):
    """``run.json``: written when training starts (``status`` ``running``) and again, with the outcome,
    when it ends (``finished``)."""

    FILE = RUN_JSON

    model: dict
    """The ``ModelConfig`` fields."""
    train: dict
    """The ``TrainConfig`` fields but ``corpus`` and ``out``."""
    world_size: int
    total_batch: int
    peak_lr: float
    weighted: bool
    corpus: dict
    """Where the data came from: ``path``, ``kind`` and ``content_sha256`` (a corpus) or
    ``store_json_sha256`` (a store)."""
    remark: str
    status: str
    """``running``, ``finished``, or ``interrupted`` (Ctrl-C; ``--resume`` continues it)."""
    parameters: int
    device: str
    precision: str
    torch: str
    # the outcome, once finished
    steps: int = optional()
    epochs_done: int = optional()
    param_digests: list = optional()
    """Every rank's digest of its final parameters (all equal under DDP)."""
    windows: int = optional()
    step_seconds: float = optional()
    skipped_steps: int = optional()
    skipped_batches: int = optional()
    skipped_rows: int = optional()
    val_loss: float | None = optional()
    train_loss: float | None = optional()

    @property
    def finished(self) -> bool:
        return self.status == "finished"


class Run:
    """A run directory (local, or a mounted shared one, as torch writes there directly)."""

    kind = "run"

    def __init__(self, path: str | os.PathLike) -> None:
        if "://" in str(path):
            raise ArtifactError(path, "a run is a local directory (or a mounted shared one), not a URL")
        self.root = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    # -- places --------------------------------------------------------------------------------------------
    @property
    def info_path(self) -> Path:
        return self.root / RUN_JSON

    @property
    def log_path(self) -> Path:
        return self.root / LOG_JSONL

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / "tensorboard"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary files of an interrupted write are not listed)."""
        d = self.checkpoint_dir
        return sorted(d.glob("ckpt-*.pt")) if d.is_dir() else []

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoint_dir / f"ckpt-{step:09d}.pt"

    # -- state ---------------------------------------------------------------------------------------------
    def holds_run(self) -> bool:
        """True when a run was started here (``run.json`` or a checkpoint exists)."""
        return self.info_path.is_file() or bool(self.checkpoints())

    def check_new_out(self) -> None:
        """Refuse to start a run where something that is no run is: ``--out`` must be new, empty, or a run."""
        if self.root.exists() and not self.root.is_dir():
            raise OverwriteRefusedError(self.root, "--out exists and is not a directory")
        if self.root.is_dir() and not self.holds_run() and any(self.root.iterdir()):
            raise OverwriteRefusedError(self.root, "--out exists, is not empty and holds no nw2 run (no run.json); "
                                                   "choose a new or empty directory")

    def info(self) -> RunInfo | None:
        """``run.json``, or ``None`` when there is none yet."""
        if not self.info_path.is_file():
            return None
        import json

        try:
            data = json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            raise ArtifactError(self.info_path, "not an nw2 run description (unreadable JSON)") from None
        if not isinstance(data, dict) or "model" not in data or "train" not in data:
            raise ArtifactError(self.info_path, "not an nw2 run description (unreadable JSON or no model/train "
                                                "section)")
        return RunInfo.from_dict(data, where=str(self.info_path))

    def require_info(self) -> RunInfo:
        info = self.info()
        if info is None:
            raise NotAnArtifactError(self.root, "not an nw2 run (no run.json)")
        return info

    def write_info(self, info: RunInfo) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_text(self.info_path, json_text(info.to_dict()))

    def owned_files(self) -> list[str]:
        """What ``nw2 pretrain`` writes here, by name (relative paths)."""
        if not self.root.is_dir():
            return []
        names = [RUN_JSON, LOG_JSONL, ".launch.json", "model/model.safetensors", "model/config.json"]
        found = [n for n in names if (self.root / n).is_file()]
        found += [str(p.relative_to(self.root)) for p in self.checkpoints()]
        found += [str(p.relative_to(self.root)) for p in self.checkpoint_dir.glob("ckpt-*.pt.sha256")] \
            if self.checkpoint_dir.is_dir() else []
        found += self.temporaries()
        if self.tensorboard_dir.is_dir():
            found += [str(p.relative_to(self.root)) for p in self.tensorboard_dir.rglob("events.out.tfevents.*")]
        return sorted(found)

    def temporaries(self) -> list[str]:
        """The temporary files of writes that never finished here (relative paths): a killed run's."""
        found = []
        for sub, pattern in _TEMPORARIES.items():
            d = self.root / sub
            if d.is_dir():
                found += [str(p.relative_to(self.root)) for p in d.iterdir() if pattern.fullmatch(p.name) and p.is_file()]
        return sorted(found)

    def sweep_temporaries(self) -> list[str]:
        """Remove :meth:`temporaries` while this process holds the run's write lock (no live writer owns them then:
        :func:`nw2.core.locks.held_here`); returns what went."""
        from nw2.core.locks import held_here

        if not held_here(self.root):
            return []
        stale = self.temporaries()
        for rel in stale:
            (self.root / rel).unlink(missing_ok=True)
        return stale

    def clear(self) -> None:
        """Remove the run: what nw2 wrote here, by name, and the directories that leaves empty. A file nw2
        did not write is refused (nothing is removed then)."""
        if not self.root.is_dir():
            return
        owned = set(self.owned_files())
        foreign = sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")
                         if p.is_file() and str(p.relative_to(self.root)) not in owned)
        if foreign:
            raise OverwriteRefusedError(self.root, f"holds {len(foreign)} file(s) nw2 did not write ({foreign[0]}); "
                                                   "move them away first")
        for rel in owned:
            (self.root / rel).unlink(missing_ok=True)
        for d in sorted((p for p in self.root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(d.iterdir()):
                d.rmdir()
        if not any(self.root.iterdir()):
            self.root.rmdir()

    @classmethod
    def open_trained(cls, path: str | os.PathLike) -> "Run":
        """A run whose model was saved (what ``nw2 evaluate`` needs); one-line error otherwise."""
        run = cls(path)
        if not run.root.is_dir():
            raise NotAnArtifactError(run.root, "no such run directory", missing=True)
        if not run.model_dir.is_dir():
            raise ArtifactError(run.root, "not a trained run: no model/ (did nw2 pretrain finish?)")
        return run
