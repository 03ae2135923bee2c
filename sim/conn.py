"""One server-side websocket connection (picows listener) with the per-frame
fault hooks. The venue decides what a connection receives; this class decides
how it is delivered (or withheld, altered, duplicated, reordered) and records it.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from ticktape.sim.faults import Fault, bad_checksum
from ticktape.sim.host import SimHost
from ticktape.sim.record import Sent

_LEN7 = [bytes([i]) for i in range(126)]


class VenuePort(Protocol):
    """What a connection needs from its venue (``sim.venue.Venue``, which imports this module)."""

    exchange: str
    sim: SimHost
    frames: int
    sent: list[Sent]

    def opened(self, conn: Conn) -> None: ...

    def closed(self, conn: Conn) -> None: ...

    def message(self, conn: Conn, msg: bytes) -> None: ...

    def incoming(self, conn: Conn) -> bool: ...

    def record(self, s: Sent) -> None: ...

    def fault_applies(self, f: Fault, channel: str, ids: tuple[object, ...]) -> bool: ...


class Conn(WSListener):  # type: ignore[misc]
    def __init__(self, venue: VenuePort, conn_id: int, path: str, query: dict[str, str]) -> None:
        self.venue = venue
        self.id = conn_id
        self.path = path
        self.query = query
        self.transport: WSTransport | None = None
        self.opened_at = time.monotonic()
        self.closed = False
        self.stalled_until = 0.0
        self.faults: list[Fault] = []  # pending frame faults
        self.held: tuple[str, str, bytes, tuple[object, ...], int] | None = None
        self.sent_frames = 0
        self.last_pong = self.opened_at
        self.last_recv = self.opened_at  # last frame from the client (idle timeouts)
        self.last_ping_sent = self.opened_at
        self.await_pong_since: float | None = None
        self.pings_sent = 0
        self.state: dict[str, Any] = {}  # venue's per-connection state (subscriptions, ...)
        self._checks = 0
        self.out: list[bytes] = []  # framed bytes not yet written

    # -- picows callbacks -----------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.venue.opened(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        self.last_recv = time.monotonic()
        if mt is WSMsgType.TEXT or mt is WSMsgType.BINARY:
            self.venue.message(self, frame.get_payload_as_bytes())
        elif mt is WSMsgType.PING:
            if self.venue.incoming(self) and not self.stalled():
                transport.send_pong(frame.get_payload_as_bytes())
        elif mt is WSMsgType.PONG:
            self.last_pong = time.monotonic()
            self.await_pong_since = None
            self.venue.incoming(self)
        elif mt is WSMsgType.CLOSE:
            if not self.stalled():
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.venue.closed(self)

    def pause_writing(self) -> None:
        """The socket buffer is full: a slow consumer. Frames keep queueing (as at the
        exchange) until ``max_buffer``, where the connection is dropped."""
        self.venue.sim.slow_conns += 1

    # -- sending --------------------------------------------------------------------
    def stalled(self) -> bool:
        return self.stalled_until > 0 and time.monotonic() < self.stalled_until

    def _write(self, payload: bytes) -> None:
        """Queue one unmasked text frame; the simulator writes each connection's queue
        in one call per loop turn (``Simulator.flush``) instead of a syscall per frame."""
        n = len(payload)
        if n < 126:
            head = b"\x81" + _LEN7[n]
        elif n < 65536:
            head = b"\x81\x7e" + n.to_bytes(2, "big")
        else:
            head = b"\x81\x7f" + n.to_bytes(8, "big")
        if not self.out:
            self.venue.sim.dirty(self)
        self.out.append(head)
        self.out.append(payload)

    def flush(self) -> None:
        if self.out:
            out, self.out = self.out, []
            if not self.closed and self.transport is not None:
                self.transport.underlying_transport.write(b"".join(out))

    def send_control(self, msg: bytes) -> None:
        """Acks, pongs, errors: not recorded as data, withheld during a stall."""
        if self.transport is not None and not self.closed and not self.stalled():
            self._write(msg)

    def send(self, channel: str, symbol: str, data: bytes, ids: tuple[object, ...], event: int, fault: str = "") -> None:
        """A data frame: faults first (rare), then the socket and the record."""
        if self.closed or self.transport is None:
            return
        if self.stalled_until:
            if self.stalled():
                self.venue.record(Sent(time.time_ns(), self.id, channel, symbol, data, ids, event, "stall"))
                return
            self.stalled_until = 0.0
        if self.faults and self._fault(channel, symbol, data, ids, event):
            return
        self._write(data)
        self.sent_frames += 1
        v = self.venue
        v.frames += 1
        if v.sim.recording:
            v.sent.append(Sent(time.time_ns(), self.id, channel, symbol, data, ids, event, fault))
        self._checks += 1
        if self._checks >= 64:
            self._checks = 0
            self._check_buffer()
        if self.held is not None and not (self.faults and self.faults[0].kind == "reorder"):
            held, self.held = self.held, None
            self._write(held[2])
            self.venue.record(Sent(time.time_ns(), self.id, *held, "reorder"))

    def _fault(self, channel: str, symbol: str, data: bytes, ids: tuple[object, ...], event: int) -> bool:
        """Apply the first pending fault that matches this frame; True if the frame was handled."""
        for i, f in enumerate(self.faults):
            if not f.matches(channel, symbol) or not self.venue.fault_applies(f, channel, ids):
                continue
            f.count -= 1
            if f.count <= 0:
                del self.faults[i]
            assert self.transport is not None
            kind = f.kind
            if kind == "gap":
                self.venue.record(Sent(time.time_ns(), self.id, channel, symbol, data, ids, event, "gap"))
                return True
            if kind == "reorder":
                if self.held is None:
                    self.held = (channel, symbol, data, ids, event)
                    return True
                return False
            if kind == "checksum":
                bad = bad_checksum(data)
            elif kind == "malformed":
                bad = data[: max(1, len(data) // 3)] + b'"}]}{"'  # not JSON
            elif kind == "truncated":
                bad = data[: max(1, len(data) // 2)]
            else:  # duplicate
                self._write(data)
                self.venue.record(Sent(time.time_ns(), self.id, channel, symbol, data, ids, event))
                self._write(data)
                self.venue.record(Sent(time.time_ns(), self.id, channel, symbol, data, ids, event, "duplicate"))
                return True
            self._write(bad)
            self.venue.record(Sent(time.time_ns(), self.id, channel, symbol, bad, ids, event, kind))
            return True
        return False

    def _check_buffer(self) -> None:
        assert self.transport is not None
        limit = self.venue.sim.max_buffer
        if limit and self.transport.underlying_transport.get_write_buffer_size() + 64 * len(self.out) > limit:
            self.venue.sim.log_fault(self.venue.exchange, "slow", self.id, "write buffer over max_buffer: dropped")
            self.drop()

    def drop(self) -> None:
        """Abrupt close: TCP reset path, no close frame."""
        if self.transport is not None and not self.closed:
            self.closed = True  # nothing more is written; on_ws_disconnected unregisters
            self.transport.underlying_transport.abort()

    def close(self, code: int = 1000, reason: bytes = b"") -> None:
        """Orderly close (close frame), as at the exchange's connection lifetime limit."""
        if self.transport is not None and not self.closed:
            from picows import WSCloseCode

            self.flush()
            self.transport.send_close(WSCloseCode(code), reason)
            self.closed = True
            self.transport.disconnect()
