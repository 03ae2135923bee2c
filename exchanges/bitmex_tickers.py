"""bitmex ``quote`` as ``book_ticker``, ``instrument`` as ``derivative_ticker``,
``liquidation`` as ``liquidations``.

``instrument`` sends one ``partial`` (the whole instrument) per subscription,
then ``update`` items holding only the fields that changed: each is merged onto
the last full state, and a row is written when a field the table holds changed
(``lastPrice``, ``markPrice``, ``indicativeSettlePrice`` as the index, as Tardis
maps it, ``fundingRate``, ``fundingTimestamp``, ``indicativeFundingRate`` as the
predicted rate, ``openInterest``). An update before any partial cannot be
merged: a ``gap`` event, kept in raw, and the topic is resubscribed.
``quote``: each ``insert`` item is a row (the partial's is an old quote, raw only, as in
Tardis). ``liquidation``: each ``insert`` item is one forced order (``side`` is the
order's own side; ``update``/``delete`` of a resting one stay raw, as in Tardis).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Protocol

import msgspec

from ticktape.exchanges.book import DeltaSeq
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

NAN = math.nan
#: instrument fields a derivative_ticker row is made of
FIELDS = frozenset({"lastPrice", "markPrice", "indicativeSettlePrice", "fundingRate", "fundingTimestamp",
                    "indicativeFundingRate", "openInterest"})
_SECONDS: dict[str, int] = {}


def iso_ns(s: str) -> int:
    """BitMEX time (``2022-02-14T07:59:54.829Z``) as ns since the epoch; 0 if absent or not a time.
    The whole seconds are cached by their text (a frame's items share them)."""
    if not s:
        return 0
    head = s[:19]
    base = _SECONDS.get(head)
    try:
        if base is None:
            base = int(datetime.fromisoformat(head + "+00:00").timestamp()) * 1_000_000_000
            if len(_SECONDS) > 8192:
                _SECONDS.clear()
            _SECONDS[head] = base
        frac = s[20:].rstrip("Z")
        return base + (int(frac[:9].ljust(9, "0")) if frac else 0)
    except ValueError:
        return 0


class Bitmex(Protocol):
    """What the tickers need from their feed (``exchanges.bitmex.Bitmex``, which imports this
    module: a protocol keeps the dependency one way)."""

    out: Outbox
    spec: RingSetSpec
    sym_id: dict[str, int]

    def gap(self, ts: int, symbol: int, channel: int, conn_id: int, detail: str, exchange_ts: int = 0) -> None: ...

    def resync(self, sym: int, ts: int, why: str, when_room: bool = False, table: str = "orderBookL2") -> None: ...


class Quote(msgspec.Struct, gc=False):
    timestamp: str = ""
    symbol: str = ""
    bidSize: float | None = None
    bidPrice: float | None = None
    askPrice: float | None = None
    askSize: float | None = None


class Liquidation(msgspec.Struct, gc=False):
    orderID: str
    symbol: str = ""
    side: str = ""
    price: float | None = None
    leavesQty: float | None = None


def _num(state: dict[str, Any], key: str) -> float:
    v = state.get(key)
    return NAN if v is None or v == "" else float(v)


def _f(v: float | None) -> float:
    return NAN if v is None else v


class Tickers:
    def __init__(self, feed: Bitmex) -> None:
        self.feed = feed
        self.out = feed.out
        n = len(feed.spec.symbols)
        #: merged instrument per symbol (BitMEX's own field names); None = no partial yet
        self.state: list[dict[str, Any] | None] = [None] * n
        self.seq = [DeltaSeq() for _ in range(n)]  # instrument resubscribe deadlines
        self.items = msgspec.json.Decoder(list[dict[str, Any]])
        self.quotes = msgspec.json.Decoder(list[Quote])
        self.liqs = msgspec.json.Decoder(list[Liquidation])

    # -- instrument -----------------------------------------------------------------
    def on_instrument(self, ts: int, sym: int, chan: int, conn_id: int, action: str, data: msgspec.Raw) -> None:
        """Each item by its own symbol (a table-wide partial lists every instrument)."""
        ids = self.feed.sym_id
        for d in self.items.decode(data):
            sym = ids.get(str(d.get("symbol")), 0)
            if not sym:
                continue
            if action in ("partial", "insert"):
                self.state[sym] = d
                st = self.seq[sym]
                st.synced = st.synced_once = True
                st.resync_deadline = 0.0
            elif action == "update":
                cur = self.state[sym]
                if cur is None:
                    ets = iso_ns(str(d.get("timestamp") or ""))
                    self.feed.gap(ts, sym, chan, conn_id, "instrument update before its partial: not applied", ets)
                    if not self.seq[sym].resync_deadline:  # one resubscribe until the partial comes
                        self.feed.resync(sym, ts, "instrument update before partial", table="instrument")
                    continue
                cur.update(d)
                if FIELDS.isdisjoint(d):
                    continue
            else:
                continue
            self.emit(ts, sym)

    def emit(self, ts: int, sym: int) -> None:
        st = self.state[sym]
        assert st is not None
        self.out.derivative_ticker(
            ts, iso_ns(str(st.get("timestamp") or "")), sym, _num(st, "lastPrice"), _num(st, "markPrice"),
            _num(st, "indicativeSettlePrice"), _num(st, "fundingRate"), iso_ns(str(st.get("fundingTimestamp") or "")),
            _num(st, "indicativeFundingRate"), _num(st, "openInterest"),
        )

    def forget(self, sym: int) -> None:
        """The connection carrying this instrument is gone: the next frame must be a partial."""
        self.state[sym] = None
        self.seq[sym].reset()
        self.seq[sym].resync_deadline = 0.0

    # -- quote -----------------------------------------------------------------------
    def on_quote(self, ts: int, sym: int, action: str, data: msgspec.Raw) -> None:
        """Inserts only: a partial re-sends the last quote from before the subscription (raw keeps it;
        tardis-dev's mapper skips it too)."""
        if action != "insert":
            return
        push = self.out.book_ticker
        ids = self.feed.sym_id
        for q in self.quotes.decode(data):
            s = ids.get(q.symbol, 0) if q.symbol else sym  # each item by its own symbol
            if s:
                push(ts, iso_ns(q.timestamp), s, _f(q.bidPrice), _f(q.bidSize), _f(q.askPrice), _f(q.askSize))

    # -- liquidation -------------------------------------------------------------------
    def on_liquidation(self, ts: int, sym: int, action: str, data: msgspec.Raw) -> None:
        if action != "insert":
            return
        push = self.out.liquidation
        ids = self.feed.sym_id
        for x in self.liqs.decode(data):
            s = ids.get(x.symbol, 0) if x.symbol else sym
            if not s:
                continue
            side = SIDE_BUY if x.side == "Buy" else SIDE_SELL if x.side == "Sell" else SIDE_UNKNOWN
            push(ts, 0, s, x.orderID.encode()[:40], _f(x.price), _f(x.leavesQty), side)
