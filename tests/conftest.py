"""Shared fixtures: the real sample recordings, fetched once per machine into the nw2 cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from nw2.pipeline import samples


@pytest.fixture(scope="session")
def sample():
    """``sample(name) -> Path`` of a real recording from the registry, fetching it on first use."""

    def get(name: str) -> Path:
        return samples.fetch([name])[name]

    return get


#: Real recordings whose windows the metric tests compare against nolds/antropy: one channel each,
#: ``(sample, channel index, seconds into the recording)``.
REAL_WINDOW_SOURCES = [
    ("mitbih_208", 0, 10.0),        # ECG, 360 Hz
    ("eegmmi_s001r02", 0, 5.0),     # EEG, 160 Hz
    ("bvp_opensignals", 0, 2.0),    # PPG, 1000 Hz
    ("resp_opensignals", 0, 5.0),   # respiration, 1000 Hz
    ("eda_slow", 0, 2.0),           # EDA, 100 Hz
    ("daphnet_s06r02", 0, 20.0),    # accelerometer, 64 Hz
]


@pytest.fixture(scope="session")
def real_windows():
    """``(name, samples, fs)`` for one 1024-sample window of each of ``REAL_WINDOW_SOURCES``, resampled
    to 100 Hz, cleaned of a linear trend and z-scored as ``nw2 ingest`` stores them (float64)."""
    return [(name, samples.sample_window(name, channel, t0), 100.0) for name, channel, t0 in REAL_WINDOW_SOURCES]


def check_against_reference(x, cases, atol) -> None:
    """Each ``(name, ours, theirs)`` of ``cases`` on ``x``: nw2's value is finite and within
    ``atol[name]`` of the reference package's."""
    import math

    for name, ours, theirs in cases:
        got, want = ours(x), float(theirs(x))
        assert math.isfinite(got), name
        assert abs(got - want) <= atol[name], (name, got, want)
