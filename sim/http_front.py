"""The simulator's one port: websockets and GET endpoints go to picows; a
``POST`` (Hyperliquid's ``/info``) is answered here, since picows serves only
GET requests. The first bytes of a connection decide; a websocket connection
is then handed to picows's own protocol object byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from picows.api import (  # picows's own server protocol (what ws_create_server builds)
    WSAutoPingStrategy,
    WSProtocol,
)

log = logging.getLogger("ticktape.sim")

#: (path, request body) -> (status, JSON body), or None for a 404
PostHandler = Callable[[str, bytes], "tuple[int, bytes] | None"]
MAX_HEAD = 16_384
MAX_BODY = 1 << 20


def ws_protocol_factory(route: Callable[[Any], Any], *, max_frame_size: int, handshake_timeout: float,
                        logger_name: str) -> Callable[[], Any]:
    """The factory ``picows.ws_create_server`` would pass to ``create_server`` (same arguments)."""
    logger = logging.getLogger(f"picows.{logger_name}")

    def make() -> Any:
        return WSProtocol(None, None, False, route, logger, True, handshake_timeout, False, 20.0, 20.0,
                          WSAutoPingStrategy.PING_WHEN_IDLE, False, max_frame_size, None, 16 * 1024)

    return make


class Front(asyncio.BufferedProtocol):
    def __init__(self, make_ws: Callable[[], Any], post: PostHandler) -> None:
        self.make_ws = make_ws
        self.post = post
        self.transport: asyncio.BaseTransport | None = None
        self.inner: Any = None
        self.head = bytearray()
        self._buf = bytearray(MAX_HEAD)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> Any:
        if self.inner is not None:
            return self.inner.get_buffer(sizehint)
        return self._buf

    def buffer_updated(self, nbytes: int) -> None:
        if self.inner is not None:
            self.inner.buffer_updated(nbytes)
            return
        self.head += self._buf[:nbytes]
        if len(self.head) < 5:
            return
        if not self.head.startswith(b"POST "):
            self._to_ws()
            return
        self._post()

    def _to_ws(self) -> None:
        inner = self.inner = self.make_ws()
        inner.connection_made(self.transport)
        data, self.head = bytes(self.head), bytearray()
        while data:  # the bytes already read, through picows's own buffer
            buf = inner.get_buffer(len(data))
            n = min(len(buf), len(data))
            memoryview(buf)[:n] = data[:n]
            inner.buffer_updated(n)
            data = data[n:]

    def _post(self) -> None:
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self._answer(431, b'{"error":"request header too large"}')
            return
        lines = bytes(self.head[:end]).split(b"\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self._answer(400, b'{"error":"bad content-length"}')
                    return
        if length > MAX_BODY:
            self._answer(413, b'{"error":"body too large"}')
            return
        if len(self.head) < end + 4 + length:
            return  # the body is still coming
        body = bytes(self.head[end + 4 : end + 4 + length])
        parts = lines[0].split(b" ")
        path = parts[1].decode("ascii", "replace").split("?")[0] if len(parts) > 1 else ""
        try:
            ans = self.post(path, body)
        except Exception:  # a simulator bug answers 500 and is logged, it does not stop the server
            log.exception("sim: POST %s failed", path)
            ans = (500, b'{"error":"internal error"}')
        self._answer(*(ans if ans is not None else (404, b"")))

    def _answer(self, status: int, body: bytes) -> None:
        t: Any = self.transport  # uvloop's TCPTransport (not registered as an asyncio.WriteTransport)
        reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
        t.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, reason, len(body), body))
        t.close()
        self.head = bytearray()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            return bool(self.inner.eof_received())
        return None
