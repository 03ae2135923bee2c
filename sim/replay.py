"""Replay of a recording file (placeholder until the replay module lands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Replayer:
    def __init__(self, sim: Any, path: Path, speed: float) -> None:
        raise NotImplementedError("replay is not implemented yet")
