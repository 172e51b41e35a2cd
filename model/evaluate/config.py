"""``nw2 evaluate``'s settings: :class:`EvalConfig`, a frozen dataclass that owns its defaults and choices.

Every field is checked when the config is made (a one-line :class:`Nw2Error` naming the flag), before any
model is loaded or any data read; only what needs the model (horizons up to half its window) is checked by
the stage. ``split`` and ``horizons`` take a comma-separated string (as on the command line) or a sequence,
and are kept normalised (a tuple of split names; a sorted tuple of unique horizons, or None). The command
line's options are made from these fields (``model/cli_options.py``). This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass
from typing import Literal, Sequence

from nw2.core.errors import Nw2Error

from .spectra import MIN_LENGTH

__all__ = ["EvalConfig", "PROBE_TRAIN_WINDOWS", "DEVICES", "parse_splits", "horizon_values"]

#: Most train-split windows embedded for the probes (a seeded uniform sample beyond that).
PROBE_TRAIN_WINDOWS = 20000
#: The torch devices the model may run on.
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class EvalConfig:
    """How :func:`~nw2.model.evaluate.evaluate` scores a run (the command line's ``nw2 evaluate`` options,
    and two Python-only settings: ``device`` and ``probe_train_windows``)."""

    split: str | Sequence[str] = "test"
    """Split(s) evaluated: one name, several comma-separated (``"val,test"``) or a sequence; kept as a tuple
    of unique names."""
    horizons: str | Sequence[int] | None = None
    """Forecast horizons in samples, comma-separated or a sequence; kept sorted and unique. None: one patch,
    two, four, ... up to half the model window. Each must be at least 4 samples (its spectrum) and at most
    half the model window (checked against the model)."""
    out: str | os.PathLike | None = None
    """Report directory (default ``RUN/eval-<split>``, the splits joined by ``-``); an earlier report there
    is replaced."""
    batch_size: int = 64
    """Windows per model batch."""
    windows: Literal["all", "real", "synthetic"] = "all"
    """Which windows of the split(s): ``all``, ``real`` (recordings: no ground-truth system) or ``synthetic``
    (windows with a ground-truth system); applied before ``max_windows``."""
    max_windows: int | None = None
    """Evaluate a seeded uniform sample of this many rows of the split(s) (None: every row)."""
    adapt: bool = True
    """Also score the model with test-time adaptation."""
    probe: bool = True
    """Fit linear probes on frozen embeddings (train split -> evaluated split)."""
    trained_baselines: bool = True
    """Also fit the linear and MLP baselines on the training split and score them (``docs/evaluate.md``)."""
    bootstrap: int = 1000
    """Bootstrap replicates over independent units (subjects, records, systems) of the intervals of the
    relative scores, win rates and differences; 0 leaves the intervals out."""
    seed: int = 0
    """Seed of the ``max_windows`` sample, the probes' train sample, the trained baselines and the bootstrap."""
    device: Literal["cpu", "cuda"] = "cpu"
    """The model's torch device."""
    probe_train_windows: int | None = PROBE_TRAIN_WINDOWS
    """Most train-split windows embedded for the probes, a seeded uniform sample beyond that (None: all)."""

    def __post_init__(self) -> None:
        def put(name: str, value) -> None:
            object.__setattr__(self, name, value)

        put("split", parse_splits(self.split))
        put("horizons", horizon_values(self.horizons))
        if self.out is not None and not isinstance(self.out, (str, os.PathLike)):
            raise Nw2Error(f"--out must be a directory path, got {self.out!r}")
        put("batch_size", _integer("batch_size", self.batch_size, 1))
        if self.max_windows is not None:
            put("max_windows", _integer("max_windows", self.max_windows, 1))
        for name in ("adapt", "probe", "trained_baselines"):
            if not isinstance(getattr(self, name), bool):
                raise Nw2Error(f"{_flag(name)} must be true or false, got {getattr(self, name)!r}")
        put("bootstrap", _integer("bootstrap", self.bootstrap, 0))
        put("seed", _integer("seed", self.seed, 0))
        if self.device not in DEVICES:
            raise Nw2Error(f"{_flag('device')} must be {' or '.join(DEVICES)}, got {self.device!r}")
        if self.probe_train_windows is not None:
            put("probe_train_windows", _integer("probe_train_windows", self.probe_train_windows, 1))

    def replace(self, **changes) -> "EvalConfig":
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)


#: Fields with no ``nw2 evaluate`` option: their errors name the field.
_PYTHON_ONLY = ("device", "probe_train_windows")


def _flag(name: str) -> str:
    return f"EvalConfig.{name}" if name in _PYTHON_ONLY else f"--{name.replace('_', '-')}"


def _integer(name: str, value, minimum: int) -> int:
    """``value`` as an int (any integral number but a bool) of at least ``minimum``; Nw2Error otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise Nw2Error(f"{_flag(name)} must be {what}, got {value!r}")
    return int(value)


def parse_splits(split) -> tuple[str, ...]:
    """A comma-separated string or a sequence of split names -> the unique names, in order."""
    items = [s.strip() for s in split.split(",")] if isinstance(split, str) else [str(s).strip() for s in split]
    items = [s for s in items if s]
    if not items:
        raise Nw2Error("--split names no split")
    return tuple(dict.fromkeys(items))


def horizon_values(horizons) -> tuple[int, ...] | None:
    """``None``, a comma-separated string or a sequence of ints -> ``None`` or the sorted unique horizons;
    :class:`Nw2Error` for one that is not an integer, or shorter than its spectrum needs. (How long a
    horizon may be depends on the model: :func:`.forecast.parse_horizons`.)"""
    if horizons is None:
        return None
    items = [t.strip() for t in horizons.split(",") if t.strip()] if isinstance(horizons, str) else list(horizons)
    if not items:
        raise Nw2Error("--horizons names no horizon")
    out = []
    for item in items:
        try:
            h = int(item)
            if isinstance(item, float) and h != item:
                raise ValueError
        except (TypeError, ValueError):
            raise Nw2Error(f"horizon {item!r} is not an integer number of samples") from None
        if h < 1:
            raise Nw2Error(f"horizon {h} must be positive")
        if h < MIN_LENGTH:
            raise Nw2Error(f"horizon {h} is shorter than {MIN_LENGTH} samples, too short for its spectrum")
        out.append(h)
    return tuple(sorted(set(out)))
