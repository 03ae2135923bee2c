"""A local exchange that sends pre-encoded frames as fast as TCP allows.

The simulator builds every frame as it goes (~70 k frames/s per process), so a
capture benchmark driven by it measures the simulator. This server does only
what the connectors need to start (Bybit/Hyperliquid subscribe acks and
pongs, Binance's REST ``/fapi/v1/depth`` snapshot) and otherwise writes
already framed websocket bytes straight to the socket in large chunks. It
runs on its own thread and event loop; ``blast`` is called from outside.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

CHUNK = 1 << 20
HIGH_WATER = 8 << 20


def frame_bytes(payloads: Sequence[bytes]) -> bytes:
    """Unmasked server->client text frames, concatenated."""
    out: list[bytes] = []
    for p in payloads:
        n = len(p)
        if n < 126:
            out.append(bytes((0x81, n)))
        elif n < 65536:
            out.append(b"\x81\x7e" + n.to_bytes(2, "big"))
        else:
            out.append(b"\x81\x7f" + n.to_bytes(8, "big"))
        out.append(p)
    return b"".join(out)


class _Conn(WSListener):  # type: ignore[misc]
    def __init__(self, server: Blaster, path: str) -> None:
        self.server = server
        self.path = path
        self.transport: WSTransport | None = None
        self.subscribed = threading.Event()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.server.conns.append(self)
        if "streams=" in self.path:  # binance: streams named in the URL
            self.subscribed.set()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        if mt is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
            return
        if mt is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if mt is not WSMsgType.TEXT:
            return
        try:
            msg = msgspec.json.decode(frame.get_payload_as_bytes())
        except msgspec.DecodeError:
            return
        if not isinstance(msg, dict):
            return
        if msg.get("op") == "subscribe":  # bybit v5
            reply = {"success": True, "ret_msg": "", "conn_id": "bench", "req_id": msg.get("req_id", ""),
                     "op": "subscribe"}
            transport.send(WSMsgType.TEXT, msgspec.json.encode(reply))
            self.subscribed.set()
        elif msg.get("op") == "ping":
            transport.send(WSMsgType.TEXT, b'{"success":true,"ret_msg":"pong","conn_id":"bench","op":"ping"}')
        elif msg.get("method") == "subscribe":  # hyperliquid
            reply = {"channel": "subscriptionResponse", "data": msg}
            transport.send(WSMsgType.TEXT, msgspec.json.encode(reply))
            self.subscribed.set()
        elif msg.get("method") == "ping":
            transport.send(WSMsgType.TEXT, b'{"channel":"pong"}')

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.transport = None

    def pause_writing(self) -> None:  # ``blast`` watches the buffer itself
        pass

    def resume_writing(self) -> None:
        pass


def frame_ends(payloads: Sequence[bytes]) -> list[int]:
    """Byte offset just past each frame in ``frame_bytes(payloads)``."""
    out, pos = [], 0
    for p in payloads:
        n = len(p)
        pos += n + (2 if n < 126 else 4 if n < 65536 else 10)
        out.append(pos)
    return out


class Blaster:
    """``with Blaster(snapshot=b'...') as b: ... b.blast(frame_bytes(frames))``.

    ``snapshot`` is a fixed REST depth body, or a function of the stream position (the
    update id of the last frame written) that builds one: a venue's snapshot is at its
    current position, so a connector that resyncs mid-stream re-bridges with the diffs
    still to come. ``blast(..., ids=(frame_ends(frames), update_ids))`` says where each
    frame ends in the data and which update id it carries; ``position`` starts at
    ``start_id`` (the id the first frame bridges from)."""

    def __init__(self, snapshot: bytes | Callable[[int], bytes] = b"", start_id: int = 0) -> None:
        self.snapshot = snapshot
        self.snapshot_requests = 0
        self.snapshot_ids: list[int] = []  # the lastUpdateId served, per request
        self.position = start_id
        self._ends: Sequence[int] = ()
        self._ids: Sequence[int] = ()
        self._written = 0
        self.conns: list[_Conn] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="blaster", daemon=True)
        self._server: Any = None

    def __enter__(self) -> Blaster:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            ws_create_server(self._route, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            for c in self.conns:
                if c.transport is not None:
                    c.transport.disconnect()
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _route(self, req: WSUpgradeRequest) -> Any:
        path = req.path.decode("ascii", "replace")
        if req.headers.get("Upgrade", "").lower() != "websocket":
            if path.startswith("/fapi/v1/depth") and self.snapshot:
                self.snapshot_requests += 1
                body = self.snapshot
                if callable(body):
                    pos = self.stream_position()
                    self.snapshot_ids.append(pos)
                    body = body(pos)
                resp = WSUpgradeResponse.create_ok_response(body, {"Content-Type": "application/json"})
                return WSUpgradeResponseWithListener(resp, None)
            return None
        return _Conn(self, path)

    def stream_position(self) -> int:
        """The update id of the last frame wholly handed to the transport (called on the
        blaster's loop, where ``blast`` advances it)."""
        k = bisect.bisect_right(self._ends, self._written)
        return self._ids[k - 1] if k else self.position

    def wait_subscribed(self, timeout: float = 30.0) -> _Conn:
        """The first connection that subscribed (or named its streams)."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for c in list(self.conns):
                if c.subscribed.wait(0.05) and c.transport is not None:
                    return c
            time.sleep(0.05)
        raise TimeoutError("no connection subscribed to the blaster")

    def blast(self, conn: _Conn, data: bytes, timeout: float = 600.0,
              ids: tuple[Sequence[int], Sequence[int]] | None = None) -> None:
        """Write ``data`` (framed) to ``conn`` in ``CHUNK`` pieces, keeping at most
        ``HIGH_WATER`` bytes queued; returns once everything is handed to the kernel.
        ``ids``: each frame's end offset in ``data`` and its update id (the stream position)."""

        async def go() -> None:
            self.position = self.stream_position()
            self._ends, self._ids = ids if ids is not None else ((), ())
            self._written = 0
            tr = conn.transport
            if tr is None:
                raise ConnectionError("connection closed before the blast")
            under = tr.underlying_transport
            view = memoryview(data)
            for i in range(0, len(view), CHUNK):
                while under.get_write_buffer_size() > HIGH_WATER:
                    await asyncio.sleep(0.0005)
                if conn.transport is None:
                    raise ConnectionError("connection closed during the blast")
                under.write(view[i : i + CHUNK])
                self._written = i + CHUNK
            while under.get_write_buffer_size() > 0:
                await asyncio.sleep(0.001)

        asyncio.run_coroutine_threadsafe(go(), self._loop).result(timeout)
