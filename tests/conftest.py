"""Shared fixtures: the LightTrack spaces (loading is cheap; supernets are built per module)."""
from pathlib import Path

import pytest

from lighttrack_nas.models import load_space

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def space():
    return load_space(ROOT / "search_spaces" / "lighttrack.yaml")


@pytest.fixture(scope="session")
def tiny_space():
    return load_space(ROOT / "search_spaces" / "lighttrack_tiny.yaml")
