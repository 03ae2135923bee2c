"""One logical websocket connection: picows client, reconnect with exponential
backoff + jitter, planned rollover with overlap (Binance's 24 h limit).

The connection knows nothing about an exchange's messages: frames go to the
``Feed`` (``exchanges.feed``) with the receive time taken once per frame.
Stall detection and heartbeats run from the ingest loop's watchdog
(``exchanges.ingest``), which calls ``Link.check``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from picows import WSFrame, WSInvalidStatusError, WSListener, WSMsgType, WSTransport, ws_connect

log = logging.getLogger("ticktape.exchanges")

_conn_ids = itertools.count(1)
_TEXT, _BINARY, _CONTINUATION = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
_DATA = (_TEXT, _BINARY)
_MAX_CONTROL = 125  # bytes: the longest payload a control frame may carry
_time_ns, _monotonic = time.time_ns, time.monotonic


@dataclass
class Plan:
    """What one connection carries: its URL, the messages that subscribe it, and
    the (channel id, symbol id) streams it feeds (for disconnect markers)."""

    url: str
    subscribe: list[bytes] = field(default_factory=list)
    streams: list[tuple[int, int]] = field(default_factory=list)
    label: str = ""
    #: connector's own hint (e.g. the message type most frames of this connection carry)
    tag: Any = None


@dataclass
class Timing:
    """Per-exchange timing rules; tests shrink them."""

    stall_timeout: float = 60.0  # no frame for this long = disconnect
    ping_interval: float = 20.0  # application/websocket heartbeat period (0 = none)
    subscribe_interval: float = 0.12  # seconds between subscribe messages (rate limit)
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_lifetime: float = 0.0  # planned reconnect after this many seconds (0 = never)
    overlap: float = 3.0  # seconds both connections run during a planned reconnect
    handshake_timeout: float = 10.0


class FeedPort(Protocol):
    """What a connection hands its frames and life events to (``exchanges.feed.Feed``,
    which imports this module: a protocol keeps the dependency one way)."""

    exchange: str

    def on_frame(self, lst: Listener, ts: int, payload: memoryview) -> None: ...

    def frame_handler(self, plan: Plan) -> Callable[[Listener, int, memoryview], None]: ...

    def frame(self, lst: Listener, ts: int, payload: memoryview) -> None: ...

    wake_armed: bool

    def wake_writer(self) -> None: ...

    def malformed(self, conn_id: int, ts: int, payload: memoryview | bytes, why: str) -> None: ...

    def opened(self, lst: Listener, reconnect: bool) -> None: ...

    def connect_failed(self, link: Link, why: str, refused: bool = False) -> None: ...

    def stalled(self, lst: Listener, idle: float) -> None: ...

    def closed(self, lst: Listener) -> None: ...

    def overlap_started(self, link: Link) -> None: ...

    def overlap_done(self, link: Link, ts: int) -> None: ...


class Listener(WSListener):  # type: ignore[misc]
    """picows listener of one physical connection (one ``conn_id``)."""

    def __init__(self, link: Link, conn_id: int) -> None:
        self.link = link
        self.feed = link.feed
        self._handler = link.feed.frame_handler(link.plan)
        #: what a whole data frame goes to: the handler, or while the feed is armed
        #: (``ipc.wake``) ``_first_after_quiet``, which wakes the writer first
        self._on_frame = self._first_after_quiet if link.feed.wake_armed else self._handler
        self.conn_id = conn_id
        self.transport: WSTransport | None = None
        self.plan = link.plan
        self.opened_at = time.monotonic()
        self.last_frame = self.opened_at
        self.last_ping = self.opened_at
        self.frames = 0
        self.seen_frames = 0  # ``frames`` at the watchdog's last look
        self.overlap = False  # True while a planned reconnect runs both connections
        self.planned_close = False
        self.stalled = False
        self.closed = False
        self._frag: bytearray | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def arm(self) -> None:
        self._on_frame = self._first_after_quiet

    def disarm(self) -> None:
        self._on_frame = self._handler

    def _first_after_quiet(self, lst: Listener, ts: int, payload: memoryview) -> None:
        self.feed.wake_writer()  # disarms every connection of the feed, this one included
        self._handler(lst, ts, payload)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # the hot path: one whole data frame. Outside a fragmented message a final frame is data
        # or control, and control frames carry at most 125 bytes (RFC 6455 5.5): a longer one is
        # data without asking for ``msg_type`` (an enum built per access, ~0.1 us)
        if frame.fin and self._frag is None and (frame.payload_size > _MAX_CONTROL or frame.msg_type in _DATA):
            ts = _time_ns()
            self.frames += 1  # liveness: the watchdog turns a changed count into ``last_frame``
            payload = frame.get_payload_as_memoryview()
            try:  # Feed.frame inlined: one Python call less per frame
                self._on_frame(self, ts, payload)
            except Exception as e:  # a decoder bug must not kill the connection: count and keep
                self.feed.malformed(self.conn_id, ts, payload, f"{type(e).__name__}: {e}")
            return
        ts = _time_ns()
        self.last_frame = _monotonic()  # pongs and fragments are liveness too
        mt = frame.msg_type
        if self.feed.wake_armed and (mt is _TEXT or mt is _BINARY or mt is _CONTINUATION):
            self.feed.wake_writer()  # data on the slow path: the writer is woken all the same
        if (mt is _TEXT or mt is _BINARY) and frame.fin:  # whole, though a fragmented one was open
            self.frames += 1
            self.feed.frame(self, ts, frame.get_payload_as_memoryview())
        elif mt is _TEXT or mt is _BINARY:
            self._frag = bytearray(frame.get_payload_as_memoryview())
        elif mt is _CONTINUATION and self._frag is not None:
            self._frag += frame.get_payload_as_memoryview()
            if frame.fin:
                data, self._frag = self._frag, None
                self.frames += 1
                self.feed.frame(self, ts, memoryview(data))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True

    def send(self, msg: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.send(WSMsgType.TEXT, msg)

    def disconnect(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.disconnect(graceful=False)


class Link:
    """A logical connection that keeps itself connected until ``close()``."""

    def __init__(self, feed: FeedPort, plan: Plan, timing: Timing) -> None:
        self.feed = feed
        self.plan = plan
        self.timing = timing
        self.current: Listener | None = None
        self.spare: Listener | None = None  # the new half of a planned reconnect
        self.rolling = False  # True from opening the new half until the old half is closed
        self.closing = False
        self.attempts = 0
        self.connects = 0
        self._wake = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------
    async def run(self) -> None:
        while not self.closing:
            lst = await self._open()
            if lst is None:
                continue
            self.current = lst
            if self.closing:  # close() ran while we were connecting
                lst.planned_close = True
                lst.disconnect()
            await self._live(lst)

    async def _open(self, overlap: bool = False) -> Listener | None:
        """Connect and subscribe; None (after a backoff sleep) on failure."""
        cid = next(_conn_ids)
        try:
            _, lst = await ws_connect(
                lambda: Listener(self, cid),
                self.plan.url,
                websocket_handshake_timeout=self.timing.handshake_timeout,
                enable_auto_pong=True,
                max_frame_size=64 * 1024 * 1024,
                logger_name="ticktape.exchanges.ws",
            )
        except Exception as e:
            self.attempts += 1
            delay = self.backoff()
            log.warning(
                "%s %s: connect failed (%s: %s); retry in %.2fs",
                self.feed.exchange, self.plan.label, type(e).__name__, e, delay,
            )
            status = getattr(getattr(e, "response", None), "status", None)
            refused = isinstance(e, WSInvalidStatusError) and status is not None and 400 <= int(status) < 500
            body = getattr(e, "raw_body", None) or b""
            why = f"HTTP {int(status)} {body[:60]!r}" if refused and status is not None else f"{type(e).__name__}: {e}"
            self.feed.connect_failed(self, why, refused)
            await self._sleep(delay)
            return None
        assert isinstance(lst, Listener)
        lst.overlap = overlap
        self.connects += 1
        self.feed.opened(lst, reconnect=self.connects > 1 and not overlap)
        asyncio.get_running_loop().create_task(self._subscribe(lst))
        return lst

    async def _subscribe(self, lst: Listener) -> None:
        for i, msg in enumerate(self.plan.subscribe):
            if lst.closed:
                return
            if i:
                await asyncio.sleep(self.timing.subscribe_interval)
            lst.send(msg)

    async def _live(self, lst: Listener) -> None:
        assert lst.transport is not None
        while True:
            waiter = asyncio.ensure_future(lst.transport.wait_disconnected())
            limit = self.timing.max_lifetime
            timeout = None if limit <= 0 or self.closing else max(0.0, lst.opened_at + limit - time.monotonic())
            done, _ = await asyncio.wait([waiter], timeout=timeout)
            if done:
                self.feed.closed(lst)
                if lst.frames:
                    self.attempts = 0
                self.current = None
                if not self.closing:
                    self.attempts += 1
                    await self._sleep(self.backoff())
                return
            waiter.cancel()
            # planned reconnect: the new connection subscribes while the old one still runs
            self.rolling = True
            self.feed.overlap_started(self)
            new = await self._open(overlap=True)
            if new is None:
                self.rolling = False
                self.feed.overlap_done(self, time.time_ns())
                continue
            self.spare = new
            if self.closing:  # close() ran while the new connection opened, so it did not see it
                new.planned_close = True
                new.disconnect()
            await self._sleep(self.timing.overlap)
            lst.planned_close = not lst.closed  # it may have dropped by itself meanwhile: then it is a disconnect
            lst.disconnect()
            if lst.transport is not None:
                await lst.transport.wait_disconnected()
            self.feed.closed(lst)
            new.overlap = False
            self.spare = None
            self.current = new
            self.rolling = False
            self.feed.overlap_done(self, time.time_ns())
            lst = new
            log.info("%s %s: planned reconnect done (conn %d)", self.feed.exchange, self.plan.label, new.conn_id)
            assert lst.transport is not None

    def backoff(self) -> float:
        t = self.timing
        return min(t.backoff_max, t.backoff_base * 2 ** max(0, self.attempts - 1)) * random.uniform(0.5, 1.0)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    def listeners(self) -> list[Listener]:
        return [x for x in (self.current, self.spare) if x is not None and not x.closed]

    def check(self, now: float, ping: Callable[[Listener], None]) -> bool:
        """Watchdog tick: stall detection and heartbeats; whether frames arrived since the last."""
        t = self.timing
        busy = False
        for lst in self.listeners():
            if lst.frames != lst.seen_frames:  # data frames since the last tick (stamped here, not per frame)
                busy = True
                lst.seen_frames = lst.frames
                lst.last_frame = max(lst.last_frame, now)
            if now - lst.last_frame > t.stall_timeout:
                lst.stalled = True
                self.feed.stalled(lst, now - lst.last_frame)
                lst.disconnect()
            elif t.ping_interval > 0 and now - lst.last_ping >= t.ping_interval:
                lst.last_ping = now
                ping(lst)
        return busy

    def reconnect(self, reason: str) -> None:
        """Drop the current connection (the run loop reconnects and resubscribes)."""
        log.warning("%s %s: reconnecting: %s", self.feed.exchange, self.plan.label, reason)
        for lst in self.listeners():
            lst.disconnect()

    async def close(self) -> None:
        self.closing = True
        self._wake.set()
        for lst in self.listeners():
            lst.planned_close = True
            if lst.transport is not None:
                try:
                    lst.transport.send_close()
                except Exception:  # pragma: no cover - already gone
                    pass
                lst.transport.disconnect()
