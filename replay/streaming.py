"""Drive a chunk iterator from the event loop: build in a worker thread, one chunk ahead.

Building lines is numpy/Arrow work that releases the GIL, so the next chunk
is prepared in a thread while the current one is written; at most one chunk
is in flight, which (with the awaited, draining writes) bounds memory per
client. ``close`` waits for the in-flight build before closing the iterator,
so a client that goes away frees everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")
_END = object()


def _next(it: Iterator[T]) -> object:
    return next(it, _END)


class Prefetch(AsyncIterator[T]):
    def __init__(self, it: Iterator[T], executor: Executor | None = None) -> None:
        self.it = it
        self.executor = executor
        self.loop = asyncio.get_running_loop()
        self.pending: asyncio.Future[object] | None = None
        self.done = False

    def _submit(self) -> None:
        self.pending = asyncio.ensure_future(self.loop.run_in_executor(self.executor, _next, self.it))

    def __aiter__(self) -> Prefetch[T]:
        return self

    async def __anext__(self) -> T:
        if self.done:
            raise StopAsyncIteration
        if self.pending is None:
            self._submit()
        assert self.pending is not None
        item = await self.pending
        self.pending = None
        if item is _END:
            self.done = True
            raise StopAsyncIteration
        self._submit()
        return item  # type: ignore[return-value]

    async def close(self) -> None:
        self.done = True
        if self.pending is not None:
            try:
                await self.pending
            except Exception:
                pass
            self.pending = None
        close = getattr(self.it, "close", None)
        if close is not None:
            await self.loop.run_in_executor(self.executor, close)
