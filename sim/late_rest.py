"""Late REST answers: the snapshot is taken when the request arrives, the answer
leaves ``seconds`` later (a busy exchange, a slow path), so a client buffers
diffs meanwhile. picows answers plain HTTP synchronously, so the simulator
answers the request with a ``307`` to this side server, which holds the body
until its time has come; HTTP clients follow the redirect on their own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

log = logging.getLogger("ticktape.sim")


class LateRest:
    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._held: dict[int, tuple[float, int, bytes, Callable[[], bool] | None]] = {}
        self._ids = itertools.count(1)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def hold(self, status: int, body: bytes, seconds: float, ready: Callable[[], bool] | None = None) -> str:
        """Keep ``body`` for ``seconds`` (and until ``ready()``); the URL the client is redirected to."""
        key = next(self._ids)
        self._held[key] = (time.monotonic() + seconds, status, body, ready)
        return f"http://{self.host}:{self.port}/late/{key}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b" ", 2)
            key = int(parts[1].rsplit(b"/", 1)[-1]) if len(parts) > 1 else 0
            held = self._held.pop(key, None)
            if held is None:
                status, body = 404, b'{"code":-1,"msg":"unknown late answer"}'
            else:
                due, status, body, ready = held
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                while ready is not None and not ready():
                    await asyncio.sleep(0.02)
            reason = b"OK" if status == 200 else b"Error"
            writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
