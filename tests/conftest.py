"""Project-wide test fixtures (package-specific ones live in tests/<package>/conftest.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ports import free_port_pair

REPO = Path(__file__).resolve().parent.parent
#: ../shared beside the checkout (DESIGN.md, EXCHANGES.md, samples/); CI clones put it there too
SHARED = REPO.parent / "shared"


def free_tcp_port() -> int:
    return free_port_pair()


@pytest.fixture
def free_port() -> int:
    return free_tcp_port()


@pytest.fixture(scope="session")
def capture_cmd() -> list[str]:
    """How tests run the ``capture`` CLI as a user would, from this checkout's interpreter."""
    return [sys.executable, "-m", "ticktape.engine.cli"]


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Real recorded exchange messages (``../shared/samples``), wherever the checkout lives."""
    path = SHARED / "samples"
    assert path.is_dir(), f"{path} missing: clone the project with ../shared beside it"
    return path
