"""Shared test fixtures. `../shared/fixtures` (beside the repo) holds real upstream data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


def _shared(name: str) -> Path:
    path = SHARED_FIXTURES / name
    if not path.exists():
        pytest.skip(f"shared fixture {path} not present (../shared beside the repo)")
    return path


@pytest.fixture
def upstream_log() -> Path:
    """30 s recorded by upstream pdrecord from upstream pdserver --sim."""
    return _shared("upstream-sim.bin")


@pytest.fixture
def upstream_counts() -> dict:
    return json.loads(_shared("upstream-sim.counts.json").read_text())


@pytest.fixture
def board_photo_1() -> Path:
    return _shared("board-photo-1.jpg")


@pytest.fixture
def board_photo_2() -> Path:
    return _shared("board-photo-2.jpg")
