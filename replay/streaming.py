"""Drive a chunk iterator from the event loop: build in a worker thread, one chunk ahead.

Building lines is numpy/Arrow work that releases the GIL, so the next chunk
is prepared in a thread while the current one is written; at most one chunk
is in flight, which (with the awaited, draining writes) bounds memory per
client. ``close`` never waits: a build still queued is cancelled (it never
runs), one already running is left to finish and the iterator is closed
right after it, in the pool. So a handler whose client is gone returns at
once and no work is started for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
_END = object()
log = logging.getLogger("ticktape.replay")


def _next(it: Iterator[T]) -> object:
    return next(it, _END)


def _close(it: Iterator[T]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("replay: closing a stream's sources failed")


class Prefetch(AsyncIterator[T]):
    def __init__(self, it: Iterator[T], executor: Executor) -> None:
        self.it = it
        self.executor = executor
        self.pending: Future[object] | None = None
        self.done = False

    def _submit(self) -> None:
        self.pending = self.executor.submit(_next, self.it)

    def __aiter__(self) -> Prefetch[T]:
        return self

    async def __anext__(self) -> T:
        if self.done:
            raise StopAsyncIteration
        if self.pending is None:
            self._submit()
        assert self.pending is not None
        item = await asyncio.wrap_future(self.pending)
        self.pending = None
        if item is _END:
            self.done = True
            raise StopAsyncIteration
        self._submit()
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop: cancel the queued build, or close the sources as soon as the running one returns."""
        if self.done and self.pending is None and self.it is None:
            return
        self.done = True
        it, self.it = self.it, None  # type: ignore[assignment]
        pending, self.pending = self.pending, None
        if pending is None or pending.cancel() or pending.done():
            self._close_in_pool(it)
        else:
            pending.add_done_callback(lambda _f: self._close_in_pool(it))

    def _close_in_pool(self, it: Iterator[T]) -> None:
        try:
            self.executor.submit(_close, it)
        except RuntimeError:  # the pool is shut down (server stopping): close here
            _close(it)
