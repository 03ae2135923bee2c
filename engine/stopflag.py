"""A stop signal for child processes that a ``kill -9`` cannot wedge.

``multiprocessing.Event`` guards its flag with a lock; a child killed while
inside ``is_set()`` or ``wait()`` leaves that lock held forever, and the next
``set()`` (the supervisor stopping the capture) or ``is_set()`` (the restarted
child) blocks for good. Children are killed on purpose here (crash tests, the
OOM killer), so the flag is one byte of shared memory instead: set and read
without a lock, ``wait`` polls. Same methods as ``Event``.
"""

from __future__ import annotations

import ctypes
import time
from multiprocessing.context import BaseContext

_POLL = 0.005


class StopFlag:
    def __init__(self, ctx: BaseContext) -> None:
        self._v = ctx.RawValue(ctypes.c_uint8, 0)

    def set(self) -> None:
        self._v.value = 1

    def clear(self) -> None:
        self._v.value = 0

    def is_set(self) -> bool:
        return bool(self._v.value)

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self._v.value:
            if end is None:
                time.sleep(_POLL)
                continue
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL, left))
        return True
