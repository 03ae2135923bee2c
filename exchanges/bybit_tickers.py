"""bybit ``orderbook.1`` as ``book_ticker``, ``tickers`` as ``derivative_ticker``,
``allLiquidation`` as ``liquidations``.

``tickers`` sends one full snapshot per subscription, then deltas holding only
the fields that changed: each delta is merged onto the last full ticker and the
merged state becomes the row. A delta before any snapshot (or after the
connection was lost, before the new snapshot) cannot be merged: it is a
``gap`` (event + counter), kept in raw, never guessed, and the topic is
resubscribed for a fresh snapshot. ``orderbook.1`` keeps one level a side with
the book's ``u`` rules (``Bybit.on_book``'s sequencing applies to it too).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import msgspec

from ticktape.exchanges.book import DeltaSeq
from ticktape.exchanges.common import num
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN


class Book(Protocol):
    """An ``orderbook.1`` body (``exchanges.bybit.Book``): levels as (price, amount)."""

    b: list[tuple[float, float]]
    a: list[tuple[float, float]]


class Bybit(Protocol):
    """What the tickers need from their feed (``exchanges.bybit.Bybit``, which imports this
    module: a protocol keeps the dependency one way)."""

    out: Outbox
    spec: RingSetSpec
    seq: dict[str, DeltaSeq]

    def gap(self, ts: int, symbol: int, channel: int, conn_id: int, detail: str, exchange_ts: int = 0) -> None: ...

    def resync(self, topic: str, ts: int, why: str) -> None: ...

NAN = math.nan


class Liquidation(msgspec.Struct, gc=False):
    T: int
    S: str
    v: float
    p: float


_num = num


class Tickers:
    def __init__(self, feed: Bybit) -> None:
        self.feed = feed
        self.out = feed.out
        n = len(feed.spec.symbols)
        #: merged full ticker per symbol (the venue's own field names and strings); None = no snapshot yet
        self.state: list[dict[str, Any] | None] = [None] * n
        #: best bid price, amount, best ask price, amount per symbol (orderbook.1)
        self.bbo: list[list[float]] = [[NAN, NAN, NAN, NAN] for _ in range(n)]
        self.ticker = msgspec.json.Decoder(dict[str, Any])
        self.liqs = msgspec.json.Decoder(list[Liquidation], strict=False)

    # -- tickers --------------------------------------------------------------------
    def on_ticker(self, ts: int, sym: int, chan: int, conn_id: int, topic: str, typ: str, ets: int,
                  data: msgspec.Raw) -> None:
        d = self.ticker.decode(data)
        if typ == "snapshot":
            self.state[sym] = d
        else:
            st = self.state[sym]
            if st is None:
                feed = self.feed
                feed.gap(ts, sym, chan, conn_id, "tickers delta before any snapshot: not applied", ets)
                if not feed.seq[topic].resync_deadline:  # one resubscribe until the snapshot comes
                    feed.resync(topic, ts, "tickers delta before snapshot")
                return
            st.update(d)
        self.emit(ts, ets, sym)

    def emit(self, ts: int, ets: int, sym: int) -> None:
        st = self.state[sym]
        assert st is not None
        nft = st.get("nextFundingTime")
        funding_ts = int(nft) * 1_000_000 if nft not in (None, "", "0") else 0
        self.out.derivative_ticker(
            ts, ets, sym, _num(st, "lastPrice"), _num(st, "markPrice"), _num(st, "indexPrice"),
            _num(st, "fundingRate"), funding_ts, NAN, _num(st, "openInterest"),
        )

    def forget(self, sym: int) -> None:
        """The connection carrying this ticker is gone: the next frame must be a snapshot."""
        self.state[sym] = None

    # -- orderbook.1 ----------------------------------------------------------------------
    def on_bbo(self, ts: int, ets: int, sym: int, snapshot: bool, b: Book) -> None:
        st = self.bbo[sym]
        if snapshot:
            st[:] = [NAN, NAN, NAN, NAN]
        for off, levels in ((0, b.b), (2, b.a)):
            for p, a in levels:
                if a == 0:
                    if p == st[off]:
                        st[off] = st[off + 1] = NAN
                else:
                    st[off], st[off + 1] = p, a
        self.out.book_ticker(ts, ets, sym, st[0], st[1], st[2], st[3])

    # -- allLiquidation -----------------------------------------------------------------
    def on_liquidations(self, ts: int, sym: int, data: msgspec.Raw) -> None:
        push = self.out.liquidation
        for x in self.liqs.decode(data):
            # Bybit's S is the liquidated position's side: "Buy" = a long liquidated = a sell order
            side = SIDE_SELL if x.S == "Buy" else SIDE_BUY if x.S == "Sell" else SIDE_UNKNOWN
            push(ts, x.T * 1_000_000, sym, b"", x.p, x.v, side)
