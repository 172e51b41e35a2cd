"""Shared fixtures: the real sample recordings (fetched once per machine into the nw2 cache), windows of
them, and the demo store and corpus (built once per test session). Plain helpers are in ``helpers.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import DEMO, ok, tree_bytes
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


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> Path:
    """The demo store (``corpus_specs/demo.yaml`` ingested, metrics included), built once per session and
    shared by every module: read it, never write to it (``demo_store_copy`` is a copy to change). At the end
    of the session it must hold the bytes it was built with."""
    out = tmp_path_factory.mktemp("demo-store") / "store"
    ok("ingest", DEMO, "--out", out, "--scheduler", "sync", "--no-progress")
    built = tree_bytes(out)
    yield out
    assert tree_bytes(out) == built, "a test changed the shared demo store: work on demo_store_copy"


@pytest.fixture
def demo_store_copy(demo_store, tmp_path) -> Path:
    """A copy of the demo store at ``tmp_path / "store"``, for a test that changes it."""
    return Path(shutil.copytree(demo_store, tmp_path / "store"))


@pytest.fixture(scope="session")
def demo_corpus(demo_store, tmp_path_factory) -> Path:
    """The demo corpus: the demo store balanced by the spec's ``balance:`` section (400 balanced train rows in
    one row group, plus the carried val and test rows), no report; shared, so read it, never write to it."""
    out = tmp_path_factory.mktemp("demo-corpus") / "corpus"
    ok("balance", demo_store, "--spec", DEMO, "--out", out, "--no-report")
    built = tree_bytes(out)
    yield out
    assert tree_bytes(out) == built, "a test changed the shared demo corpus: work on a copy"
