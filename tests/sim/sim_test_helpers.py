"""A small picows client that keeps every text frame, for simulator tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from picows import WSListener, WSMsgType, ws_connect


class Client(WSListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.pings = 0
        self.closed = False
        self.close_frame = False
        self.t: Any = None

    def on_ws_connected(self, transport: Any) -> None:
        self.t = transport

    def on_ws_frame(self, transport: Any, frame: Any) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            self.frames.append(frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.PING:
            self.pings += 1
            transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            self.close_frame = True

    def on_ws_disconnected(self, transport: Any) -> None:
        self.closed = True

    def send(self, msg: bytes) -> None:
        self.t.send(WSMsgType.TEXT, msg)


async def connect(url: str) -> Client:
    _, c = await ws_connect(Client, url, enable_auto_pong=False)
    assert isinstance(c, Client)
    return c


async def until(cond: Any, timeout: float = 30.0) -> None:
    """Wait for ``cond``; the timeout is generous because only a failing test reaches it
    (a 2-core machine shared with other test runs delays frames by seconds)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


