"""Book snapshots from stored ``book_snapshot_N`` tables, for series captured without ``book_change``.

Partial-depth streams (Hyperliquid ``l2Book``, Binance ``depth20``) are stored
as fixed-size top-N snapshots. A ``book_snapshot_{depth}_{interval}`` (depth <=
N) or ``quote`` request on such a series is answered from them with the same
rule as from a rebuilt book: when a stored snapshot's local time enters a new
interval, the previous stored snapshot (the book before it) is emitted, stamped
with the interval start, if its top ``depth`` levels changed; interval 0 emits
each stored snapshot whose top changed. All vectorized over a batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from ticktape.replay.levels import assemble, constant, trailer
from ticktape.replay.merge import Chunk
from ticktape.replay.sources import read_range, ts_ns


def _matrix(col: pa.Array, n: int) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float64)
    return flat.reshape(-1, n)


class _Emitter:
    """One requested snapshot type over one stored series."""

    def __init__(self, header: bytes, depth: int, interval_ms: int) -> None:
        self.header = header
        self.depth = depth
        self.iv = interval_ms * 1_000_000
        self.last_bucket: int | None = None
        self.prev_row: np.ndarray | None = None  # last stored row of the previous batch (4*depth values)
        self.last_emitted: np.ndarray | None = None

    def feed(self, local: np.ndarray, ets: np.ndarray, rows: np.ndarray) -> Chunk | None:
        """``rows``: (n, 4*depth) = bid prices, bid amounts, ask prices, ask amounts."""
        n = len(local)
        if self.iv > 0:
            bucket = local // self.iv
            prev = np.empty(n, np.int64)
            prev[0] = bucket[0] if self.last_bucket is None else self.last_bucket
            prev[1:] = bucket[:-1]
            cross = np.flatnonzero(bucket != prev)
            before = np.concatenate([self.prev_row[None, :], rows]) if self.prev_row is not None else rows
            shift = 1 if self.prev_row is not None else 0
            ok = cross + shift - 1 >= 0
            cross = cross[ok]
            cand = before[cross + shift - 1]
            stamp = bucket[cross] * self.iv
            self.last_bucket = int(bucket[-1])
        else:
            cross = np.arange(n)
            cand = rows
            stamp = ets
        self.prev_row = rows[-1].copy()
        loc = local[cross]
        if len(cand) == 0:
            return None
        # keep a candidate only if it differs from the one before it (equality is transitive, so this is
        # "differs from the last emitted"); NaN padding compares equal
        prior = np.concatenate([self.last_emitted[None, :], cand[:-1]]) if self.last_emitted is not None else None
        if prior is None:
            same = np.zeros(len(cand), np.bool_)
            if len(cand) > 1:
                same[1:] = _rows_equal(cand[1:], cand[:-1])
        else:
            same = _rows_equal(cand, prior)
        empty = np.isnan(cand[:, 0]) & np.isnan(cand[:, 2 * self.depth])
        keep = np.flatnonzero(~same & ~empty)
        self.last_emitted = cand[-1].copy()
        if len(keep) == 0:
            return None
        cand, loc = cand[keep], loc[keep]
        stamp = stamp[keep]
        d = self.depth
        k = len(cand)
        bp, ba, ap, aa = cand[:, :d], cand[:, d : 2 * d], cand[:, 2 * d : 3 * d], cand[:, 3 * d :]
        price = np.concatenate([bp, ap], axis=1).reshape(-1)
        amount = np.concatenate([ba, aa], axis=1).reshape(-1)
        msg = np.repeat(np.arange(k, dtype=np.int64), 2 * d)
        is_ask = np.tile(np.repeat(np.array([False, True]), d), k)
        valid = ~np.isnan(price)
        lines = assemble(constant(self.header, k), trailer(stamp, loc), msg[valid], is_ask[valid], price[valid],
                         amount[valid])
        return Chunk(np.ascontiguousarray(loc), lines)


def _rows_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.all((a == b) | (np.isnan(a) & np.isnan(b)), axis=1)


def table_source(
    root: str, exchange: str, symbol: str, levels: int, start_ns: int, end_ns: int,
    specs: list[tuple[bytes, int, int]],
) -> Iterator[Chunk]:
    """``specs``: (line header, depth <= levels, interval ms) per requested snapshot type."""
    ems = [_Emitter(h, d, i) for h, d, i in specs]
    for batch in read_range(root, exchange, f"book_snapshot_{levels}", symbol, start_ns, end_ns):
        local = ts_ns(batch)
        ets = np.asarray(batch.column("exchange_ts").view(pa.int64()).to_numpy()).astype(np.int64)
        ets = np.where(ets == 0, local, ets)
        cols = [_matrix(batch.column(c), levels) for c in ("bid_price", "bid_amount", "ask_price", "ask_amount")]
        parts = []
        for e in ems:
            rows = np.concatenate([c[:, : e.depth] for c in cols], axis=1)
            c = e.feed(local, ets, rows)
            if c is not None:
                parts.append(c)
        if parts:
            from ticktape.replay.normalized import _combine

            yield _combine(parts)
