"""Shared fixtures: the real sample recordings, fetched once per machine into the nw2 cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import samples


@pytest.fixture(scope="session")
def sample():
    """``sample(name) -> Path`` of a real recording from the registry, fetching it on first use."""

    def get(name: str) -> Path:
        return samples.fetch([name])[name]

    return get
