"""Fixtures for engine tests: a real ``capture run`` process (see engine_capture_helpers)."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from engine_capture_helpers import Capture


@pytest.fixture
def capture(capture_cmd: list[str], tmp_path: Path) -> Iterator[Callable[..., Capture]]:
    started: list[Capture] = []

    def start(config: Path, port: int, extra: list[str] | None = None) -> Capture:
        c = Capture(capture_cmd, config, port, tmp_path, extra)
        started.append(c)
        return c

    yield start
    for c in started:  # a failed test must not leave a capture running
        if c.proc.poll() is None:
            c.proc.send_signal(signal.SIGTERM)
            try:
                c.proc.wait(30)
            except subprocess.TimeoutExpired:
                c.kill_all()
