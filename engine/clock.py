"""The capture's wall clock, with an optional offset for tests.

``TICKTAPE_CLOCK_OFFSET`` (seconds, read once at import; children inherit it)
shifts what the synthetic producer stamps as ``local_ts`` and what the writer
takes as "now" when it decides which hours are due, together. A test sets it
so that a UTC hour ends a few seconds into the run and the real finalize path
runs at a real hour boundary. Unset (the default) it is ``time.time_ns``.
"""

from __future__ import annotations

import os
import time

ENV = "TICKTAPE_CLOCK_OFFSET"


def _offset_ns() -> int:
    text = os.environ.get(ENV, "").strip()
    if not text:
        return 0
    try:
        return int(float(text) * 1e9)
    except ValueError:
        raise SystemExit(f"error: environment {ENV}={text!r}: must be a number of seconds") from None


OFFSET_NS = _offset_ns()


def now_ns() -> int:
    return time.time_ns() + OFFSET_NS


def now() -> float:
    return now_ns() / 1e9
