"""Book sequence state, free of I/O so it is unit-testable on recorded frames.

``DiffSync``: Binance USD-M diff-depth bridging (REST snapshot ``lastUpdateId``
+ ``U``/``u``/``pu``). ``DeltaSeq``: Bybit v5 snapshot/delta ``u`` continuity.
``L2Book``: a plain price -> amount book, for derived snapshots and checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import Any, Generic, TypeVar

E = TypeVar("E")


class SyncState(IntEnum):
    BUFFERING = 0  # collecting diffs, waiting for / bridging a snapshot
    SYNCED = 1


class Bridge(IntEnum):
    WAIT = 0  # no buffered diff reaches the snapshot yet
    STALE = 1  # the snapshot is older than the oldest buffered diff: fetch again
    OK = 2


MAX_BUFFER = 20_000
#: diffs an overflowing buffer drops at once (the oldest)
DROP_CHUNK = MAX_BUFFER // 8


class DiffSync(Generic[E]):
    """Per-symbol Binance diff-depth state.

    Diffs arrive as (local_ts, event) with ``.U``, ``.u``, ``.pu``; while not
    synced they are buffered; ``bridge`` finds the first diff to apply after a
    snapshot (``U <= lastUpdateId <= u``, dropping ``u < lastUpdateId``).
    """

    __slots__ = ("ahead", "buffer", "fetching", "generation", "last_u", "lost", "lost_ets", "lost_from", "lost_to",
                 "snapshot", "stale", "state", "synced_once", "waiting_room")

    def __init__(self) -> None:
        self.state = SyncState.BUFFERING
        self.buffer: list[tuple[int, Any]] = []
        self.last_u = -1
        self.snapshot: Any = None  # pending (ts, raw_ts, decoded snapshot) not bridged yet
        self.fetching = False
        self.generation = 0  # bumped on every reset: a late REST answer of an old generation is ignored
        self.synced_once = False
        #: diffs that arrived ahead of the chain during a planned reconnect, by their ``pu``
        self.ahead: dict[int, tuple[int, Any]] = {}
        #: diffs dropped from a full buffer since the last report: count, first ``U``, last ``u``,
        #: exchange time (ms) of the first (``take_lost``)
        self.lost = 0
        self.lost_from = self.lost_to = self.lost_ets = 0
        self.stale = 0  # snapshots of this sync that did not bridge (they back off)
        self.waiting_room = False  # a snapshot waits for room in the book ring

    def reset(self) -> None:
        """Start over (gap, drop, lost connection). A fetch under way belongs to the old
        generation and ends by itself, so a new one may start at once."""
        self.state = SyncState.BUFFERING
        self.buffer.clear()
        self.ahead.clear()
        self.snapshot = None
        self.generation += 1
        self.fetching = False
        self.waiting_room = False

    def push(self, ts: int, ev: Any) -> bool:
        """Buffer a diff; False when the buffer overflowed for the first time since the last
        report (the oldest dropped and remembered in ``lost*``: the snapshot must be newer,
        and the loss is reported). An overflow drops the oldest eighth at once: dropping one
        diff per push moved the whole 20,000-entry list each time (~10 us a frame)."""
        buf = self.buffer
        buf.append((ts, ev))
        if len(buf) > MAX_BUFFER:
            n = len(buf) - MAX_BUFFER + DROP_CHUNK
            first = not self.lost
            if first:
                self.lost_from, self.lost_ets = buf[0][1].U, buf[0][1].E
            self.lost_to = buf[n - 1][1].u
            self.lost += n
            del buf[:n]
            return not first
        return True

    def take_lost(self) -> tuple[int, int, int, int] | None:
        """(count, first U, last u, first exchange time ms) of the diffs dropped since the last call."""
        if not self.lost:
            return None
        out = (self.lost, self.lost_from, self.lost_to, self.lost_ets)
        self.lost = 0
        return out


def bridge(last_update_id: int, buffer: list[tuple[int, Any]]) -> tuple[Bridge, int]:
    """Where to start applying ``buffer`` after a snapshot with ``last_update_id``."""
    for i, (_, ev) in enumerate(buffer):
        if ev.u < last_update_id:
            continue
        if ev.U <= last_update_id:  # noqa: SIM300 - U is a field, not a constant
            return Bridge.OK, i
        return Bridge.STALE, i
    return Bridge.WAIT, len(buffer)


class DeltaSeq:
    """Bybit v5 per-topic ``u`` continuity."""

    __slots__ = ("last_u", "resync_deadline", "synced", "synced_once")

    def __init__(self) -> None:
        self.last_u = -1
        self.synced = False
        self.synced_once = False
        self.resync_deadline = 0.0

    def reset(self) -> None:
        """Not synced until the next snapshot; ``last_u`` stays as the last applied update."""
        self.synced = False


class L2Book:
    """price -> amount per side; amount 0 removes a level."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def apply(self, bids: Iterable[Sequence[float]], asks: Iterable[Sequence[float]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, a in levels:
                if a == 0:
                    side.pop(p, None)
                else:
                    side[p] = a

    def top(self, n: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids = sorted(self.bids.items(), key=lambda x: -x[0])[:n]
        asks = sorted(self.asks.items())[:n]
        return bids, asks


class Dedup(Generic[E]):
    """Bounded set of recent ids (Hyperliquid trade ``tid``s across reconnects)."""

    __slots__ = ("cap", "order", "seen")

    def __init__(self, cap: int = 100_000) -> None:
        self.cap = cap
        self.seen: set[E] = set()
        self.order: list[E] = []

    def add(self, key: E) -> bool:
        """True if ``key`` is new."""
        if key in self.seen:
            return False
        self.seen.add(key)
        self.order.append(key)
        if len(self.order) > 2 * self.cap:
            old = self.order[: self.cap]
            del self.order[: self.cap]
            self.seen.difference_update(old)
        return True
