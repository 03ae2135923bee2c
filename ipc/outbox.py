"""Producer side of an ingest process: typed pushes into its rings plus the
full-ring policy.

Policy (never block the event loop, never drop silently): a record that does
not fit is counted in the ring header (visible in /metrics), remembered per
(data type, symbol), logged, and turned into a ``drop`` event as soon as the
events ring has room; a dropped book record also calls ``on_book_drop`` so the
connector resyncs that book from a fresh snapshot.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Sequence

from ipc.raw_ring import RawRing
from ipc.ring import RecordRing
from ipc.ringset import RingSetSpec
from ipc.schemas import (
    BOOK_CHANGE_STRUCT,
    EVENT_CODE,
    EVENT_DETAIL_BYTES,
    EVENT_STRUCT,
    NO_SYMBOL,
    TRADE_STRUCT,
    book_snapshot_struct,
    snapshot_levels,
)

log = logging.getLogger("ticktape.outbox")


class Outbox:
    def __init__(
        self,
        spec: RingSetSpec,
        rings: dict[str, RecordRing | RawRing],
        on_book_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.spec = spec
        self.rings = rings
        self.on_book_drop = on_book_drop
        self._lost: dict[tuple[str, int], int] = {}
        self._trades = rings.get("trades")
        self._book = rings.get("book_change")
        self._events = rings["events"]
        raw = rings.get("raw")
        self._raw = raw if isinstance(raw, RawRing) else None
        self._snap_type = next((dt for dt in rings if dt.startswith("book_snapshot_")), None)
        self._snap = rings.get(self._snap_type) if self._snap_type else None
        self.snapshot_levels = snapshot_levels(self._snap_type) if self._snap_type else 0
        self._snap_struct: struct.Struct | None = (
            book_snapshot_struct(self.snapshot_levels) if self._snap_type else None
        )
        self._last_warn = 0.0

    @property
    def raw_enabled(self) -> bool:
        return self._raw is not None

    # -- typed pushes (hot path) -----------------------------------------------
    def trade(
        self, local_ts: int, exchange_ts: int, symbol: int, trade_id: bytes, price: float, amount: float, side: int
    ) -> None:
        ring = self._trades
        if ring is None or not ring.push_packed(  # type: ignore[union-attr]
            TRADE_STRUCT, local_ts, exchange_ts, price, amount, symbol, side, trade_id
        ):
            self._lose("trades", symbol)

    def book_change(
        self,
        local_ts: int,
        exchange_ts: int,
        symbol: int,
        is_snapshot: bool,
        side: int,
        price: float,
        amount: float,
    ) -> bool:
        ring = self._book
        if ring is None or not ring.push_packed(  # type: ignore[union-attr]
            BOOK_CHANGE_STRUCT, local_ts, exchange_ts, price, amount, symbol, side, is_snapshot
        ):
            self._lose("book_change", symbol)
            return False
        return True

    def book_snapshot(self, local_ts: int, exchange_ts: int, symbol: int, values: Sequence[float]) -> None:
        """``values``: bid prices, bid amounts, ask prices, ask amounts, N each (NaN-padded)."""
        ring = self._snap
        if ring is None or self._snap_struct is None:
            self._lose("book_snapshot", symbol)
            return
        if not ring.push_packed(self._snap_struct, local_ts, exchange_ts, symbol, *values):  # type: ignore[union-attr]
            self._lose(self._snap_type or "book_snapshot", symbol)

    def raw(self, local_ts: int, payload: bytes | bytearray | memoryview, conn_id: int, symbol: int, channel: int) -> None:
        if self._raw is not None and not self._raw.push(local_ts, payload, conn_id, symbol, channel):
            self._lose("raw", symbol)

    def event(
        self,
        local_ts: int,
        kind: str,
        symbol: int = NO_SYMBOL,
        channel: int = 0,
        conn_id: int = 0,
        detail: str = "",
        exchange_ts: int = 0,
    ) -> bool:
        data = detail.encode()[:EVENT_DETAIL_BYTES]
        ok = self._events.push_packed(  # type: ignore[union-attr]
            EVENT_STRUCT, local_ts, exchange_ts, conn_id, symbol, channel, EVENT_CODE[kind], data
        )
        if not ok:
            self._lost[("events", symbol)] = self._lost.get(("events", symbol), 0) + 1
        return ok

    # -- full-ring policy --------------------------------------------------------
    def _lose(self, data_type: str, symbol: int) -> None:
        key = (data_type, symbol)
        self._lost[key] = self._lost.get(key, 0) + 1
        if data_type.startswith("book") and self.on_book_drop is not None:
            self.on_book_drop(symbol)
        now = time.monotonic()
        if now - self._last_warn > 5.0:
            self._last_warn = now
            log.warning(
                "ring full: dropping %s records for %s/%s",
                data_type,
                self.spec.exchange,
                self.spec.symbols[symbol] if symbol < len(self.spec.symbols) else symbol,
            )

    @property
    def pending_drops(self) -> int:
        return sum(self._lost.values())

    def flush_pending(self, now_ns: int | None = None) -> None:
        """Write a ``drop`` event for every (type, symbol) that lost records. Cheap when nothing was lost."""
        if not self._lost:
            return
        ts = now_ns if now_ns is not None else time.time_ns()
        for (dt, sym), n in list(self._lost.items()):
            if dt == "events":
                detail = f"events: {n} event rows dropped (ring full)"
            else:
                detail = f"{dt}: {n} records dropped (ring full)"
            if self.event(ts, "drop", symbol=sym, detail=detail):
                del self._lost[(dt, sym)]
                if dt != "events":
                    log.warning("%s/%s %s", self.spec.exchange, self.spec.symbols[sym], detail)
            else:
                break
