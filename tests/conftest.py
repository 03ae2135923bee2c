"""Project-wide test fixtures (package-specific ones live in tests/<package>/conftest.py)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: ../shared beside the checkout (DESIGN.md, EXCHANGES.md, samples/); CI clones put it there too
SHARED = REPO.parent / "shared"


def free_tcp_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the OS picks it), and so was the next one.

    The replay server listens on port and port + 1 (Tardis Machine's WebSocket port), so a port
    whose successor is taken would fail its start-up at random on a busy machine.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s2:
                s2.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports on 127.0.0.1")


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
