"""Base of every exchange connector: counters, markers and the shared frame path.

An exchange subclass says which connections it needs (``plans``), what to send
as a heartbeat (``ping``) and how to decode one frame (``on_frame``). This base
writes what is common: the raw row, per-symbol counters, ``connect`` /
``disconnect`` / ``stall`` / ``malformed`` events and the empty raw row that
marks a disconnect for exchange-native replay.
"""

from __future__ import annotations

import array
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ticktape.exchanges.connection import Link, Listener, Plan, Timing
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import EVENT_KINDS
from ticktape.ipc.stats import FIELDS, F, FeedStats

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig
    from ticktape.ipc.wake import Waker

log = logging.getLogger("ticktape.exchanges")

NF = len(FIELDS)
#: a duplicate burst ends after this long without another duplicate on its stream
DUP_QUIET_NS = 1_000_000_000
_MESSAGES, _BYTES, _GAPS, _RESYNCS = F["messages"], F["bytes"], F["gaps"], F["resyncs"]
_MALFORMED, _DUPLICATES, _RECONNECTS = F["malformed"], F["duplicates"], F["reconnects"]
_DISCONNECTS, _SUBERR, _LAST = F["disconnects"], F["subscribe_errors"], F["last_msg_ns"]


class Feed:
    exchange = ""
    timing = Timing()
    #: connector options beside the ``Timing`` fields (one set for all exchanges, since
    #: $TICKTAPE_INGEST_OPTIONS reaches every ingest process)
    option_names: frozenset[str] = frozenset(
        {"manual_snapshots", "snapshot_limit", "rest_interval", "rest_timeout", "archive_root"}
    )

    def __init__(
        self,
        spec: RingSetSpec,
        cfg: ExchangeConfig,
        outbox: Outbox,
        stats: FeedStats | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.cfg = cfg
        self.out = outbox
        self.raw_on = outbox.raw_enabled
        self.stats = stats
        nsym = len(spec.symbols)
        n = nsym * NF
        if stats is not None:
            self.c: memoryview | array.array[int] = stats.shm.buf[: n * 8].cast("q")  # type: ignore[index]
        else:
            self.c = array.array("q", bytes(n * 8))
        # hot counters live in Python lists, published to shared memory by ``flush_stats``
        # (watchdog, 10/s); they start from the block's values so a restarted process continues them
        self.n_msgs = [int(self.c[i * NF + _MESSAGES]) for i in range(nsym)]
        self.n_bytes = [int(self.c[i * NF + _BYTES]) for i in range(nsym)]
        self.last_ns = [int(self.c[i * NF + _LAST]) for i in range(nsym)]
        # per (symbol, channel): flat index ``symbol * nchan + channel`` (the ring ids a frame is routed by)
        self.nchan = nchan = len(spec.channels)
        m = nsym * nchan
        if stats is not None and stats.n_channels == nchan:
            self.cc: memoryview | array.array[int] = stats.shm.buf[n * 8 : (n + 2 * m) * 8].cast("q")  # type: ignore[index]
        else:
            self.cc = array.array("q", bytes(2 * m * 8))
        self.ch_msgs = self.cc[:m].tolist()
        self.ch_bytes = self.cc[m:].tolist()
        opts = dict(options or {})
        base = self.timing
        self.timing = Timing(**{k: opts.pop(k, getattr(base, k)) for k in Timing.__dataclass_fields__})
        self.options = opts
        unknown = set(opts) - self.option_names
        if unknown:
            raise ValueError(
                f"unknown ingest option(s) {', '.join(sorted(unknown))} for {self.exchange} "
                f"(known: {', '.join(sorted(set(Timing.__dataclass_fields__) | self.option_names))})"
            )
        outbox.on_book_drop = self.on_book_drop
        self.links: list[Link] = []
        #: the writer's wake-on-data channel (``ipc.wake``; None: never armed) and whether every
        #: connection's next data frame wakes the writer first
        self.waker: Waker | None = None
        self.wake_armed = False
        self._plans: list[Plan] | None = None
        self.sym_id = {s: i for i, s in enumerate(spec.symbols)}
        self.chan_id = {c: i for i, c in enumerate(spec.channels)}
        #: open duplicate bursts: (symbol, channel) -> [first ts, last ts, count, first id, last id, conn, what]
        self._dups: dict[tuple[int, int], list[Any]] = {}

    # -- what a subclass provides ------------------------------------------------
    def plans(self) -> list[Plan]:
        raise NotImplementedError

    def get_plans(self) -> list[Plan]:
        """``plans()`` once per process (it logs the feed ids)."""
        if self._plans is None:
            self._plans = self.plans()
        return self._plans

    def mark_restart(self) -> bool:
        """A previous ingest process of this exchange died without closing (kill -9, crash):
        its streams were cut with no marker. Write the markers now (a ``disconnect`` event
        and an empty raw row per stream), unless it ended with its own shutdown markers."""
        ring = self.out.rings.get("events")
        if not isinstance(ring, RecordRing) or ring.write_seq == 0:
            return False
        last = ring.records[(ring.write_seq - 1) % ring.capacity]
        if EVENT_KINDS[int(last["kind"])] == "disconnect" and bytes(last["detail"]).rstrip(b"\0") == b"shutdown":
            return False
        ts = time.time_ns()
        self.bump("disconnects")
        for plan in self.get_plans():
            for chan, sym in plan.streams or [(0, 0)]:
                # the hole began at the stream's last frame (FeedStats outlive the process), not now
                last = self.last_ns[sym] if sym else max(self.last_ns)
                detail = f"ingest process restarted; last frame ns={last}" if 0 < last <= ts else "ingest process restarted"
                self.out.event(ts, "disconnect", symbol=sym, channel=chan, detail=detail)
                if self.raw_on:
                    self.out.raw(ts, b"", 0, sym, chan)
        log.warning("%s: the previous ingest process ended without closing; disconnect markers written", self.exchange)
        return True

    def on_frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        raise NotImplementedError

    def frame_handler(self, plan: Plan) -> Callable[[Listener, int, memoryview], None]:
        """The callback a connection of ``plan`` hands each whole frame to; default ``on_frame``
        (a connector may bind a faster one for a connection that carries one message type)."""
        return self.on_frame

    def ping(self, lst: Listener) -> None:
        """Heartbeat; default: a websocket PING frame (the PONG counts as liveness)."""
        if lst.transport is not None and not lst.closed:
            lst.transport.send_ping()

    def on_open(self, lst: Listener) -> None:
        """A connection is up (before its subscribe messages go out)."""

    def on_lost(self, lst: Listener) -> None:
        """A connection is gone: forget book state of its streams."""

    def on_book_drop(self, symbol: int) -> None:
        """A book record was dropped (ring full): the book must resync."""

    def overlap_started(self, link: Link) -> None:
        """A planned reconnect begins: ``link``'s streams will arrive on two connections."""

    def overlap_done(self, link: Link, ts: int) -> None:
        """A planned reconnect finished: only the new connection feeds ``link``'s streams now."""

    def tick(self, now: float) -> None:
        """Called by the watchdog a few times a second."""

    # -- wake-on-data (ipc.wake) ---------------------------------------------------
    def arm_wake(self) -> None:
        """The feed is quiet: every connection's next data frame first wakes the writer, which
        may then sleep until its flush tick. The ring set's armed word is set last: the writer
        trusts it only once every connection would wake it."""
        if self.wake_armed or self.waker is None:
            return
        self.wake_armed = True
        for link in self.links:
            for lst in link.listeners():
                lst.arm()
        self.out.wake_armed = True

    def wake_writer(self) -> None:
        """A frame after quiet (or a stop): the armed word cleared first, every connection back
        on its plain handler, then one datagram to the writer."""
        if not self.wake_armed:
            return
        self.wake_armed = False
        self.out.wake_armed = False
        for link in self.links:
            for lst in link.listeners():
                lst.disarm()
        if self.waker is not None:
            self.waker.wake()

    async def start(self) -> None:
        """Async resources (e.g. an HTTP session) before connections open."""

    async def stop(self) -> None:
        """Release async resources."""

    # -- shared frame path ---------------------------------------------------------
    def frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        try:
            self.on_frame(lst, ts, payload)
        except Exception as e:  # a decoder bug must not kill the connection: count and keep
            self.malformed(lst.conn_id, ts, payload, f"{type(e).__name__}: {e}", keep_raw=True)

    def count(self, symbol: int, ts: int, nbytes: int, channel: int = 0) -> None:
        """One frame of ``symbol`` on ``channel`` (ring ids; channel 0 when the connector cannot tell)."""
        self.n_msgs[symbol] += 1
        self.n_bytes[symbol] += nbytes
        self.last_ns[symbol] = ts
        k = symbol * self.nchan + channel
        self.ch_msgs[k] += 1
        self.ch_bytes[k] += nbytes

    def flush_stats(self) -> None:
        c = self.c
        for i, (m, b, t) in enumerate(zip(self.n_msgs, self.n_bytes, self.last_ns, strict=True)):
            j = i * NF
            c[j + _MESSAGES] = m
            c[j + _BYTES] = b
            c[j + _LAST] = t
        if any(self.last_ns):
            c[_LAST] = max(self.last_ns)
        m = len(self.ch_msgs)
        self.cc[:m] = array.array("q", self.ch_msgs)
        self.cc[m:] = array.array("q", self.ch_bytes)

    def bump(self, field: str, symbol: int = 0, n: int = 1) -> None:
        self.c[symbol * NF + F[field]] += n

    def stat(self, field: str, symbol: int = 0) -> int:
        self.flush_stats()
        return int(self.c[symbol * NF + F[field]])

    def malformed(
        self, conn_id: int, ts: int, payload: memoryview | bytes, why: str, symbol: int = 0, channel: int = 0,
        keep_raw: bool = True,
    ) -> None:
        self.bump("malformed", symbol)
        if keep_raw and self.raw_on:
            self.out.raw(ts, payload, conn_id, symbol, channel)
        self.out.event(ts, "malformed", symbol=symbol, channel=channel, conn_id=conn_id, detail=why)
        log.warning("%s conn %d: malformed frame (%s): %.200r", self.exchange, conn_id, why, bytes(payload[:200]))

    def duplicate(self, ts: int, symbol: int, channel: int, conn_id: int, ident: object = "", n: int = 1,
                  what: str = "updates") -> None:
        """``n`` records the venue already sent (same trade id / sequence number): dropped,
        counted, and one ``duplicate`` event per burst (written when the burst ends, with its
        count and id range), not one per message."""
        self.c[symbol * NF + _DUPLICATES] += n
        b = self._dups.get((symbol, channel))
        if b is None:
            self._dups[(symbol, channel)] = [ts, ts, n, ident, ident, conn_id, what]
        else:
            b[1] = ts
            b[2] += n
            b[4] = ident

    def flush_duplicates(self, now_ns: int, force: bool = False) -> None:
        """Write the event of every burst quiet for ``DUP_QUIET_NS`` (all of them if ``force``)."""
        for key, (first_ts, last_ts, n, first, last, conn, what) in list(self._dups.items()):
            if not force and now_ns - last_ts < DUP_QUIET_NS:
                continue
            del self._dups[key]
            sym, chan = key
            ids = f" ({first}..{last})" if first != "" and first != last else f" ({first})" if first != "" else ""
            detail = f"{n} duplicate {what} dropped{ids}"
            self.out.event(first_ts, "duplicate", symbol=sym, channel=chan, conn_id=conn, detail=detail[:96])
            log.warning("%s/%s: %s", self.exchange, self.spec.symbols[sym], detail)

    def control_frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        """A frame that is no market data (an answer, a heartbeat): counted under symbol ``_`` and kept raw."""
        self.count(0, ts, len(payload))
        if self.raw_on:
            self.out.raw(ts, payload, lst.conn_id, 0, 0)

    def retry_one_by_one(self, lst: Listener, ts: int, names: list[str], what: str, msg: str,
                         subscribe: Callable[[str], bytes]) -> None:
        """A subscribe of several ``what`` refused whole (one bad name sinks the message): each is sent
        again alone, so only the bad one is refused and the rest stream."""
        log.warning("%s conn %d: subscribe of %d %s refused (%s); retrying one by one",
                    self.exchange, lst.conn_id, len(names), what, msg)
        self.out.event(ts, "info", conn_id=lst.conn_id, detail=f"subscribe refused: {msg}"[:96])
        for name in names:
            lst.send(subscribe(name))

    def gap(self, ts: int, symbol: int, channel: int, conn_id: int, detail: str, exchange_ts: int = 0) -> None:
        """``exchange_ts``: the exchange time of the update that broke the sequence (ns)."""
        self.bump("gaps", symbol)
        self.out.event(
            ts, "gap", symbol=symbol, channel=channel, conn_id=conn_id, detail=detail, exchange_ts=exchange_ts
        )
        log.warning("%s/%s gap: %s", self.exchange, self.spec.symbols[symbol], detail)

    def feed_id(self, data_type: str, symbol: int) -> str:
        return f"{self.exchange}/{data_type}/{self.spec.symbols[symbol]}"

    # -- connection events (called by Link) ----------------------------------------
    def opened(self, lst: Listener, reconnect: bool) -> None:
        ts = time.time_ns()
        if reconnect:
            self.bump("reconnects")
        self.out.event(ts, "connect", conn_id=lst.conn_id, detail=f"{lst.plan.label} {lst.plan.url}"[:96])
        log.info(
            "%s conn %d connected%s: %s (%d streams)",
            self.exchange, lst.conn_id, " (overlap)" if lst.overlap else "", lst.plan.url[:200], len(lst.plan.streams),
        )
        self.on_open(lst)

    def connect_failed(self, link: Link, why: str, refused: bool = False) -> None:
        """``refused``: the server answered the upgrade with an HTTP 4xx (e.g. Binance
        refusing an unknown stream in the URL): a subscribe error, not a network fault."""
        ts = time.time_ns()
        if refused:
            self.bump("subscribe_errors")
            for chan, sym in link.plan.streams or [(0, 0)]:
                self.out.event(ts, "subscribe_error", symbol=sym, channel=chan, detail=why[:96])
            log.error("%s %s: connection refused: %s", self.exchange, link.plan.label, why)
        else:
            self.out.event(ts, "info", detail=f"connect failed: {why}"[:96])

    def stalled(self, lst: Listener, idle: float) -> None:
        ts = time.time_ns()
        self.out.event(ts, "stall", conn_id=lst.conn_id, detail=f"no frame for {idle:.1f}s")
        log.warning("%s conn %d stalled (no frame for %.1fs): reconnecting", self.exchange, lst.conn_id, idle)

    def closed(self, lst: Listener) -> None:
        """Write the disconnect markers: an events row and an empty raw row per stream."""
        ts = time.time_ns()
        if lst.planned_close and not lst.link.closing:
            self.out.event(ts, "info", conn_id=lst.conn_id, detail="planned reconnect: old connection closed")
            return
        why = "shutdown" if lst.link.closing else ("stall" if lst.stalled else "connection lost")
        if why != "shutdown":  # our own stop is marked in the archive but is no connection loss
            self.bump("disconnects")
        streams = lst.plan.streams or [(0, 0)]
        for chan, sym in streams:
            self.out.event(ts, "disconnect", symbol=sym, channel=chan, conn_id=lst.conn_id, detail=why)
            if self.raw_on:
                self.out.raw(ts, b"", lst.conn_id, sym, chan)
        log.log(logging.INFO if why == "shutdown" else logging.WARNING,  # a normal stop is no warning
                "%s conn %d disconnected (%s) after %d frames", self.exchange, lst.conn_id, why, lst.frames)
        self.on_lost(lst)


class Resubscribing(Feed):
    """A venue whose book resyncs by unsubscribe + subscribe (the answer is a fresh snapshot):
    Bybit, Deribit, BitMEX, OKX. A ring-full drop found inside a push is acted on after that frame
    (``on_book_drop`` -> ``_do_pending``), the resubscribe it asks for waits until the book ring has
    room for the snapshot (one pushed into a still full ring would be dropped too, forever), and a
    resubscribe that brought no snapshot within its deadline rebuilds the connection. A subclass
    keys its resubscribes (topic, channel name or symbol) and provides the four hooks below."""

    #: records the book ring must have free for a snapshot (the check asks for at most half the ring)
    snapshot_records = 1 << 62

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._pending_resync: set[int] = set()  # symbols whose book rows a full ring dropped
        self._await_room: set[Any] = set()  # resubscribes waiting for room in the book ring

    # -- hooks ----------------------------------------------------------------------
    def _resubscribe(self, key: Any) -> None:
        """Send unsubscribe + subscribe for ``key`` and start its snapshot deadline."""
        raise NotImplementedError

    def book_dropped(self, sym: int, ts: int) -> None:
        """``sym``'s book rows were dropped (ring full): if it was synced, a gap and a resync."""
        raise NotImplementedError

    def resync_waits(self) -> Iterable[tuple[Any, Any]]:
        """(key, state) of every resubscribable stream; a state has ``resync_deadline`` and ``synced``."""
        raise NotImplementedError

    def no_snapshot(self, key: Any) -> None:
        """``key``'s resubscribe brought no snapshot in time: rebuild its connection."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    def book_room(self) -> bool:
        """Room in the book ring for a snapshot (``snapshot_records``, at most half the ring)."""
        ring = self.out.rings.get("book_change")
        if not isinstance(ring, RecordRing):
            return True
        free = ring.capacity - (ring.write_seq - ring.read_seq)
        return free >= min(self.snapshot_records, ring.capacity // 2)

    def resubscribe(self, key: Any, name: str, when_room: bool) -> None:
        """Resubscribe ``key`` now, or (``when_room``, the ring full) once the book ring has room."""
        if when_room and not self.book_room():
            self._await_room.add(key)
            log.warning("%s: book ring full: resubscribing %s once it has room", self.exchange, name)
            return
        self._resubscribe(key)

    def on_book_drop(self, symbol: int) -> None:
        """Called from inside a push: the resync waits until that frame is handled."""
        self._pending_resync.add(symbol)

    def _do_pending(self, ts: int) -> None:
        for sym in sorted(self._pending_resync):
            self.book_dropped(sym, ts)
        self._pending_resync.clear()

    def tick(self, now: float) -> None:
        if self._pending_resync:
            self._do_pending(time.time_ns())
        if self._await_room and self.book_room():
            for key in sorted(self._await_room):
                self._resubscribe(key)
            self._await_room.clear()
        for key, st in self.resync_waits():
            if st.resync_deadline and now > st.resync_deadline:
                st.resync_deadline = 0.0
                if not st.synced and self.links:
                    self.no_snapshot(key)
