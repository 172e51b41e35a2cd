"""A training run's checkpoints: finding the latest, saving, loading and validating them.

In the spirit of nanochat's ``checkpoint_manager.py`` and torchtitan's checkpointer: the loop decides *when*
to save, :class:`Checkpointer` knows *how* and *where*. A checkpoint is one file per save,
``RUN/checkpoints/ckpt-<step>.pt`` (the step zero-padded, so names sort by step), holding::

    version        CHECKPOINT_VERSION
    model          the model's state_dict           optimizer    the optimizer's state_dict
    loader         every rank's loader state        rng          every rank's torch RNG state
    state          the loop's state (LoopState.to_dict() of nw2.model.train: its keys are part of the format)
    world_size     processes that saved it          model_config the ModelConfig fields
    tag            "step" (mid-epoch) or "epoch"

Every rank calls :meth:`Checkpointer.save` (it gathers the loader and RNG states, a collective); rank 0
writes the file atomically, so an interrupted write leaves no ``ckpt-*.pt`` behind, then the model directory
``RUN/model``, and prunes to the newest ``keep``. Loading checks the version, the world size (the loader
positions are per process) and that the loader and the loop agree on the epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from nw2.artifacts.run import Run
from nw2.core.errors import Nw2Error
from nw2.core.files import atomic_text, atomic_torch_save
from nw2.core.hashing import sha256_file

from .distributed import all_gather, barrier

__all__ = ["CHECKPOINT_VERSION", "Checkpointer", "checkpoint_dir", "latest_checkpoint", "digest_path", "damage"]

CHECKPOINT_VERSION = 1


def checkpoint_dir(run: str | os.PathLike) -> Path:
    """Where a run directory keeps its checkpoints."""
    return Run(run).checkpoint_dir


def digest_path(checkpoint: Path) -> Path:
    """The file holding a checkpoint's sha256 (``ckpt-<step>.pt.sha256``)."""
    return checkpoint.with_name(checkpoint.name + ".sha256")


def damage(checkpoint: Path) -> str | None:
    """What is wrong with a checkpoint's bytes, or ``None``: its sha256 against the digest saved with it (a
    checkpoint from before digests existed has none, and only loading it can tell)."""
    digest = digest_path(checkpoint)
    if not digest.is_file():
        return None
    if sha256_file(checkpoint)[0] != digest.read_text().strip():
        return "its bytes are not those saved (sha256 differs from its .sha256)"
    return None


def latest_checkpoint(run: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run directory (temporary files of an interrupted write are ignored)."""
    found = Run(run).checkpoints()
    return found[-1] if found else None


class Checkpointer:
    """Saves and restores one rank's share of a run's checkpoints (rank 0 writes, every rank reads)."""

    def __init__(self, run: str | os.PathLike, rank: int, world_size: int, keep: int) -> None:
        self.run = Run(run)
        self.dir = self.run.checkpoint_dir
        self.rank = rank
        self.world_size = world_size
        self.keep = keep
        """Checkpoints kept after a save, the newest (0 keeps all)."""

    @property
    def master(self) -> bool:
        return self.rank == 0

    def latest(self) -> Path | None:
        return latest_checkpoint(self.run.root)

    def save(self, *, step: int, tag: str, model: Any, optimizer: torch.optim.Optimizer, loader: Any,
             state: dict, model_config: dict) -> None:
        """Write the checkpoint of ``step`` and the model directory; every rank must call it (collective)."""
        loaders = all_gather(loader.state_dict())
        rngs = all_gather(torch.get_rng_state())
        if self.master:
            ckpt = {"version": CHECKPOINT_VERSION, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "loader": loaders, "rng": rngs, "state": state, "world_size": self.world_size,
                    "model_config": model_config, "tag": tag}
            path = self.run.checkpoint_path(step)
            atomic_torch_save(ckpt, path)
            # its digest beside it, written after it: a checkpoint whose bytes changed since is never resumed from
            atomic_text(digest_path(path), sha256_file(path)[0] + "\n")
            model.save_pretrained(self.run.model_dir)
            self._prune()
        barrier()

    def _prune(self) -> None:
        if self.keep:
            for old in self.run.checkpoints()[:-self.keep]:
                old.unlink(missing_ok=True)
                digest_path(old).unlink(missing_ok=True)

    def latest_good(self, say=None) -> tuple[Path, dict] | None:
        """The newest checkpoint whose bytes match their digest and that loads, with its contents, falling back to
        older ones (each damaged one named through ``say``); ``None`` when there is none at all. Nw2Error when
        every checkpoint is damaged. Every rank reads the same files, so every rank picks the same one."""
        found = self.run.checkpoints()
        if not found:
            return None
        for path in reversed(found):
            problem = damage(path)
            if problem is None:
                try:
                    return path, torch.load(path, map_location="cpu", weights_only=True)
                except Exception as err:  # truncated or garbled past what a digest-less file can show
                    problem = f"does not load ({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})"
            if say is not None and self.master:
                say(f"{path}: {problem}; trying the checkpoint before it")
        raise Nw2Error(f"{self.dir}: every checkpoint is damaged ({len(found)}: the newest {found[-1].name}); the run "
                       f"cannot resume, start it again with a new --out")

    def load(self, path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: Any,
             ckpt: dict | None = None) -> dict:
        """Restore the model, the optimizer, this rank's loader and RNG state from ``path`` (``ckpt``: its contents,
        loaded already); return the loop's saved state (a plain dict). A checkpoint of another version or world
        size is a one-line error."""
        if ckpt is None:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise Nw2Error(f"{path}: checkpoint version {ckpt.get('version')} is not {CHECKPOINT_VERSION}")
        if ckpt["world_size"] != self.world_size:
            raise Nw2Error(f"{path}: saved by {ckpt['world_size']} processes, resumed with {self.world_size}; the "
                           f"loader position is per process, so resume with --nproc {ckpt['world_size']}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(ckpt["loader"][self.rank])
        torch.set_rng_state(ckpt["rng"][self.rank])
        state = dict(ckpt["state"])
        epoch = state.get("epoch", 0)  # the loop's state starts at epoch 0
        if loader.epoch != epoch:
            raise Nw2Error(f"{path}: the loader state is at epoch {loader.epoch}, the trainer at {epoch}")
        return state
