"""Order book state rebuilt from ``book_change`` rows, and the snapshots taken from it.

The only per-update Python work in normalized replay lives here, and it is
kept small: rows between two points where the book must be read are applied
in bulk (``dict.update`` over a zip of lists, last write wins, then the
levels whose final amount is 0 are removed), and a side's top N is recomputed
only when a touched price could have changed it.

Snapshot rule (``book_snapshot_{depth}_{interval}``), on local timestamps:
for interval > 0, when a message's local time enters a new interval, the book
as it stood before that message is emitted with ``timestamp`` = the start of
that interval and ``localTimestamp`` = the message's, if its top ``depth``
levels differ from the last snapshot emitted; for interval 0 (and ``quote``)
the book after each message, when its top levels changed. A message with
``isSnapshot`` rows replaces the book.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np


class Side:
    __slots__ = ("_top", "_top_n", "bids", "levels")

    def __init__(self, bids: bool) -> None:
        self.levels: dict[float, float] = {}
        self.bids = bids
        self._top: list[float] = []
        self._top_n = 0

    def clear(self) -> None:
        self.levels.clear()
        self._top = []
        self._top_n = 0

    def apply(self, price: np.ndarray, amount: np.ndarray) -> None:
        if len(price) == 0:
            return
        d = self.levels
        d.update(zip(price.tolist(), amount.tolist(), strict=True))
        zero = amount == 0
        if zero.any():
            for p in price[zero].tolist():
                if d.get(p) == 0:
                    del d[p]
        if self._top_n:
            # a touched price no better than the current worst of the top leaves the top as it is
            worst = self._top[-1] if self._top else None
            if len(self._top) < self._top_n or worst is None:
                self._top_n = 0
            elif self.bids:
                if bool((price >= worst).any()):
                    self._top_n = 0
            elif bool((price <= worst).any()):
                self._top_n = 0

    def top(self, n: int) -> list[float]:
        """Best ``n`` prices, best first."""
        if self._top_n >= n:
            return self._top[:n]
        k = max(n, 25)
        d = self.levels
        if len(d) <= k:
            self._top = sorted(d, reverse=self.bids)
        else:
            self._top = heapq.nlargest(k, d) if self.bids else heapq.nsmallest(k, d)
        self._top_n = k
        return self._top[:n]


@dataclass(slots=True)
class Book:
    bids: Side = field(default_factory=lambda: Side(True))
    asks: Side = field(default_factory=lambda: Side(False))

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def apply(self, side: np.ndarray, price: np.ndarray, amount: np.ndarray) -> None:
        """Rows of one segment; side 0 = bid, 1 = ask."""
        if len(side) == 0:
            return
        b = side == 0
        if b.all():
            self.bids.apply(price, amount)
        elif not b.any():
            self.asks.apply(price, amount)
        else:
            self.bids.apply(price[b], amount[b])
            a = ~b
            self.asks.apply(price[a], amount[a])

    def levels(self, depth: int) -> tuple[list[float], list[float], list[float], list[float]]:
        bp = self.bids.top(depth)
        ap = self.asks.top(depth)
        bd, ad = self.bids.levels, self.asks.levels
        return bp, [bd[p] for p in bp], ap, [ad[p] for p in ap]
