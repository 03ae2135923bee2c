"""Order book state rebuilt from ``book_change`` rows, and the snapshots taken from it.

The only per-update Python work in normalized replay lives here, and it is
kept small: rows between two points where the book must be read are applied
in bulk (``dict.update`` over a zip of lists, last write wins, then the
levels whose final amount is 0 are removed); each side also keeps its prices
in a sorted list (``bisect``, touched only for new and removed levels), so a
top N is a slice.

Snapshot rule (``book_snapshot_{depth}_{interval}``), on local timestamps:
for interval > 0, when a message's local time enters a new interval, the book
as it stood before that message is emitted with ``timestamp`` = the start of
that interval and ``localTimestamp`` = the message's, if its top ``depth``
levels differ from the last snapshot emitted; for interval 0 (and ``quote``)
the book after each message, when its top levels changed. A message with
``isSnapshot`` rows replaces the book.
"""

from __future__ import annotations

from bisect import bisect_left, insort

import numpy as np


class Side:
    """One side: price -> amount, plus its prices kept sorted (ascending) so a top N is a slice."""

    __slots__ = ("bids", "keys", "levels")

    def __init__(self, bids: bool) -> None:
        self.levels: dict[float, float] = {}
        self.bids = bids
        self.keys: list[float] = []

    def clear(self) -> None:
        self.levels.clear()
        self.keys.clear()

    def apply(self, pl: list[float], al: list[float], zl: list[int], a: int, b: int) -> None:
        """Rows a..b of this side's per-batch lists; ``zl`` = sorted row indices whose amount is 0."""
        d = self.levels
        keys = self.keys
        seg = pl[a:b]
        new = [p for p in seg if p not in d]
        d.update(zip(seg, al[a:b], strict=True))
        i = bisect_left(zl, a)
        nz = len(zl)
        while i < nz and zl[i] < b:
            p = pl[zl[i]]
            if d.get(p) == 0:
                del d[p]
                j = bisect_left(keys, p)
                if j < len(keys) and keys[j] == p:
                    del keys[j]
            i += 1
        if new:
            for p in set(new) if len(new) > 1 else new:
                if p in d:
                    insort(keys, p)

    def top(self, n: int) -> list[float]:
        """Best ``n`` prices, best first."""
        if self.bids:
            return self.keys[: -n - 1 : -1]
        return self.keys[:n]


class Book:
    def __init__(self) -> None:
        self.bids = Side(True)
        self.asks = Side(False)
        self._cum_b: list[int] = [0]
        self._cum_a: list[int] = [0]
        empty: tuple[list[float], list[float], list[int]] = ([], [], [])
        self._b = empty
        self._a = empty

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def load(self, is_ask: np.ndarray, price: np.ndarray, amount: np.ndarray) -> None:
        """Take a batch's rows; ``apply(lo, hi)`` then applies row ranges of it."""
        bid = ~is_ask
        self._cum_b = np.concatenate(([0], np.cumsum(bid))).tolist()
        self._cum_a = np.concatenate(([0], np.cumsum(is_ask))).tolist()
        pb, ab = price[bid], amount[bid]
        pa_, aa = price[is_ask], amount[is_ask]
        self._b = (pb.tolist(), ab.tolist(), np.flatnonzero(ab == 0).tolist())
        self._a = (pa_.tolist(), aa.tolist(), np.flatnonzero(aa == 0).tolist())

    def apply(self, lo: int, hi: int) -> None:
        """Apply rows lo..hi of the loaded batch."""
        a, b = self._cum_b[lo], self._cum_b[hi]
        if b > a:
            self.bids.apply(*self._b, a, b)
        a, b = self._cum_a[lo], self._cum_a[hi]
        if b > a:
            self.asks.apply(*self._a, a, b)

    def levels(self, depth: int) -> tuple[list[float], list[float], list[float], list[float]]:
        bp = self.bids.top(depth)
        ap = self.asks.top(depth)
        bd, ad = self.bids.levels, self.asks.levels
        return bp, [bd[p] for p in bp], ap, [ad[p] for p in ap]
