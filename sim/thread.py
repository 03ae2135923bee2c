"""The simulator on its own event loop in a background thread, for tests whose
client is another process (or a blocking one). Every method is thread-safe:
calls that touch the simulator run on its loop and wait for the answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import uvloop

from ticktape.sim.faults import Fault
from ticktape.sim.record import Sent
from ticktape.sim.server import Simulator

T = TypeVar("T")


class SimulatorThread:
    """``with SimulatorThread(["bybit"], rate=500) as sim: sim.ws_url("bybit") ...``"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.sim: Simulator | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 10.0) -> SimulatorThread:
        self._thread = threading.Thread(target=self._run, name="ticktape-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("simulator did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                self.sim = Simulator(*self._args, **self._kwargs)
                await self.sim.start()
            except BaseException as e:  # reported to start()
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.sim.stop()

        uvloop.run(main())

    def call(self, fn: Callable[[Simulator], T], timeout: float = 10.0) -> T:
        """Run ``fn(sim)`` on the simulator's loop and return its result."""
        assert self._loop is not None and self.sim is not None, "not started"
        sim = self.sim

        async def run() -> T:
            return fn(sim)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the Simulator's API, thread-safe -------------------------------------------------
    def ws_url(self, exchange: str | None = None) -> str:
        return self.call(lambda s: s.ws_url(exchange))

    def rest_url(self, exchange: str | None = None) -> str:
        return self.call(lambda s: s.rest_url(exchange))

    def endpoints(self) -> dict[str, Any]:
        return self.call(lambda s: s.endpoints())

    def fault(self, f: Fault) -> None:
        self.call(lambda s: s.fault(f))

    def sent(self, exchange: str, channel: str | None = None, symbol: str | None = None,
             conn: int | None = None) -> list[Sent]:
        return self.call(lambda s: s.sent(exchange, channel, symbol, conn))

    def book(self, exchange: str, symbol: str, event: int | None = None, depth: int | None = None) -> Any:
        return self.call(lambda s: s.book(exchange, symbol, event, depth))

    def event_at(self, exchange: str, channel: str, symbol: str, update_id: int | None = None,
                 ts_ns: int | None = None) -> int:
        return self.call(lambda s: s.event_at(exchange, channel, symbol, update_id, ts_ns))

    def connections(self, exchange: str) -> list[int]:
        return self.call(lambda s: [c.id for c in s.connections(exchange)])
