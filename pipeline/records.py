"""The one record type every reader yields: one channel of one recording, in physical units."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

#: Modalities nw2 knows. Anything else is stored as ``other``.
MODALITIES = ("ecg", "ppg", "eeg", "eda", "resp", "acc", "emg", "spo2", "hr", "temp", "synthetic", "other")


@dataclass(frozen=True)
class GroundTruth:
    """What generated a synthetic record: the store's ground-truth columns (``docs/window_store.md``)."""

    system: str
    """``dysts:Lorenz``, ``neurokit2:ecg_simulate``, ...: the generator and its system."""
    system_params: str
    """The parameters it ran with, as canonical JSON (sorted keys)."""
    true_lyapunov: float | None
    """Largest Lyapunov exponent of the system at those parameters, per second; ``None`` when not known."""
    regime: str | None
    """``fixed_point``, ``periodic``, ``quasiperiodic``, ``chaotic`` or ``hyperchaotic``; ``None`` when not known."""
    noise: float
    """Standard deviation of the observation noise added, as a fraction of the clean signal's."""


@dataclass(frozen=True)
class ChannelInfo:
    """What a reader can tell about a channel without reading its samples (used to plan work)."""

    name: str
    fs: float
    n_samples: int
    modality: str = "other"
    unit: str = ""


@dataclass
class Record:
    """One channel of one recording.

    ``samples`` are float64 in physical units. ``offset_s`` is the time of ``samples[0]`` from the
    start of the recording (non-zero when a reader was asked for a time span). ``labels`` is an
    optional per-sample array at ``fs`` (activity ids, stress conditions, ...); ``annotations`` are
    ``(onset_s, duration_s, text)`` events relative to the start of the recording.
    """

    dataset: str
    subject: str
    record: str
    channel: str
    modality: str
    unit: str
    fs: float
    samples: np.ndarray
    start_time: datetime | None = None
    offset_s: float = 0.0
    labels: np.ndarray | None = None
    annotations: list[tuple[float, float, str]] = field(default_factory=list)
    truth: GroundTruth | None = None
    """Set on generated records only (``kind: synthetic`` sources)."""
    role: str = "signal"
    """``signal`` (dynamics to measure and forecast), or an intervention: ``known`` (its future is given at
    forecast time: a forcing, a dose schedule) or ``observed`` (known only up to the forecast origin)."""
    categories: tuple[str, ...] | None = None
    """A categorical intervention's category names: ``samples`` hold their codes (index in this tuple, NaN
    for a value outside it); ``None`` for a continuous one and for signals."""


def guess_modality(*names: str) -> str:
    """Guess a modality from channel names, sensor names or units; ``other`` when unsure."""
    text = " ".join(n for n in names if n).lower()
    rules = (
        ("ecg", ("ecg", "ekg", "mlii", "lead")),
        ("ppg", ("ppg", "bvp", "pleth")),
        ("eda", ("eda", "gsr", "electrodermal", "skin conductance")),
        ("resp", ("resp", "breath", "pzt")),
        ("spo2", ("spo2",)),
        ("emg", ("emg",)),
        ("eeg", ("eeg",)),
        ("acc", ("acc", "xyz", "ankle", "leg_", "trunk", "hand_", "chest_", "imu")),
        ("temp", ("temp",)),
        ("hr", ("heart rate", "heart_rate", "hr_bpm")),
    )
    for modality, keys in rules:
        if any(k in text for k in keys):
            return modality
    return "other"
