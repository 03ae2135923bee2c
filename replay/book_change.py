"""``book_change`` messages from book rows: one message per run of rows with the same local time, exchange
time and snapshot flag, bids then asks, as tardis-dev's mappers emit them; Binance resyncs merged first."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.replay.levels import assemble, trailer
from ticktape.replay.merge import Chunk
from ticktape.replay.rows import BookRows, json_name

#: exchanges whose resync snapshot absorbs the diffs buffered before it (tardis-dev's binance mappers)
MERGES_RESYNC = ("binance-futures", "binance", "binance-delivery")


def merge_resyncs(rows: BookRows) -> BookRows:
    """Binance resync: the diffs buffered while the REST snapshot was fetched are archived right after it
    with its local time; tardis-dev merges them into the snapshot (level by level, new prices appended in
    arrival order) and sends one isSnapshot book_change with the snapshot's time. Done here the same way."""
    local, ets, snap = rows.local, rows.ets, rows.is_snap
    n = len(local)
    if n == 0 or not snap.any():
        return rows
    brk = np.ones(n, np.bool_)
    brk[1:] = (local[1:] != local[:-1]) | (ets[1:] != ets[:-1]) | (snap[1:] != snap[:-1])
    gs = np.flatnonzero(brk)
    ends = np.append(gs[1:], n)
    pieces: list[BookRows] = []
    cur = 0
    g = 0
    ng = len(gs)
    while g < ng:
        if not snap[gs[g]] or g + 1 >= ng or snap[gs[g + 1]] or local[gs[g + 1]] != local[gs[g]]:
            g += 1
            continue
        h = g + 1
        while h < ng and not snap[gs[h]] and local[gs[h]] == local[gs[g]]:
            h += 1
        lo, hi = int(gs[g]), int(ends[h - 1])
        if lo > cur:
            pieces.append(rows.take(np.arange(cur, lo)))
        sides: list[tuple[list[float], list[float]]] = []
        for ask in (False, True):
            s_idx = [i for i in range(lo, int(ends[g])) if bool(rows.is_ask[i]) == ask]
            prices = [float(rows.price[i]) for i in s_idx]
            amounts = [float(rows.amount[i]) for i in s_idx]
            where = {p: k for k, p in enumerate(prices)}
            for i in range(int(ends[g]), hi):
                if bool(rows.is_ask[i]) != ask:
                    continue
                p, a = float(rows.price[i]), float(rows.amount[i])
                k = where.get(p)
                if k is None:
                    where[p] = len(prices)
                    prices.append(p)
                    amounts.append(a)
                else:
                    amounts[k] = a
            sides.append((prices, amounts))
        nb, na = len(sides[0][0]), len(sides[1][0])
        m = nb + na
        pieces.append(BookRows(
            np.full(m, local[lo], np.int64), np.full(m, ets[lo], np.int64), np.ones(m, np.bool_),
            np.r_[np.zeros(nb, np.bool_), np.ones(na, np.bool_)],
            np.array(sides[0][0] + sides[1][0], np.float64), np.array(sides[0][1] + sides[1][1], np.float64)))
        cur = hi
        g = h
    if not pieces:
        return rows
    if cur < n:
        pieces.append(rows.take(np.arange(cur, n)))
    return BookRows(*(np.concatenate([getattr(p, f) for p in pieces]) for f in BookRows._fields))



class Lines:
    """The book_change lines of one symbol's message groups."""

    def __init__(self, symbol: str, exchange: str) -> None:
        self.head_t = (b'{"type":"book_change","symbol":' + json_name(symbol) + b',"exchange":' + json_name(exchange)
                       + b',"isSnapshot":true,"bids":[')
        self.head_f = self.head_t.replace(b'"isSnapshot":true', b'"isSnapshot":false')

    def __call__(self, rows: BookRows, brk: np.ndarray, gs: np.ndarray, ets: np.ndarray) -> Chunk:
        msg = np.cumsum(brk) - 1
        heads = pc.if_else(pa.array(rows.is_snap[gs]), pa.scalar(self.head_t, pa.binary()),
                           pa.scalar(self.head_f, pa.binary()))
        lines = assemble(heads, trailer(ets[gs], rows.local[gs]), msg, rows.is_ask, rows.price, rows.amount)
        return Chunk(rows.local[gs], lines)
