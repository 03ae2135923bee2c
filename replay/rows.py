"""The shared source layer of normalized replay: one (table, symbol) series read, cut and typed as rows.

Every normalized type is built from these: trade batches, book rows
(``BookRows``: local time, exchange time, snapshot flag, side, price, amount,
never cutting a message in two) from ``book_change`` or, without it, from a
stored ``book_snapshot_N`` series (each stored snapshot one isSnapshot
message, as tardis-dev maps Hyperliquid's l2Book), and the local times of a
request's messages (for disconnect stamps). Reading and ordering live here;
what a message looks like lives in the type's own module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.replay.options import NormalizedRequest
from ticktape.replay.sources import hour_paths, read_range, ts_ns


def np_col(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_timestamp(arr.type):
        arr = arr.view(pa.int64())
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def exchange_ts(batch: pa.RecordBatch, local: np.ndarray) -> np.ndarray:
    ets = np_col(batch.column("exchange_ts")).astype(np.int64, copy=False)
    return np.where(ets == 0, local, ets)


def codes(col: pa.Array, names: tuple[str, ...]) -> np.ndarray:
    """Dictionary/string column -> index into ``names`` (unknown values -> len(names))."""
    if pa.types.is_dictionary(col.type):
        dct = col.dictionary.to_pylist()
        remap = np.array([names.index(v) if v in names else len(names) for v in dct], np.int8)
        return remap[np_col(col.indices).astype(np.int64)]
    idx = pc.index_in(col, pa.array(names))
    return np_col(pc.fill_null(idx, len(names))).astype(np.int8)


def json_name(text: str) -> bytes:
    return json.dumps(text).encode()



def trade_batches(root: str, req: NormalizedRequest, symbol: str) -> Iterator[pa.RecordBatch]:
    return read_range(root, req.exchange, "trades", symbol, req.range.start_ns, req.range.end_ns,
                      batch_rows=req.batch_rows or None)


def whole_groups(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Re-cut batches so rows of one local time never straddle two batches (a message, or a resync's
    snapshot with the diffs it absorbs, is always whole)."""
    carry: pa.RecordBatch | None = None
    for b in batches:
        if carry is not None:
            b = pa.Table.from_batches([carry, b]).combine_chunks().to_batches()[0]
            carry = None
        if len(b) == 0:
            continue
        local = ts_ns(b)
        cut = int(np.searchsorted(local, local[-1], "left"))
        if cut == 0:
            carry = b
            continue
        if cut < len(b):
            carry = b.slice(cut)
        yield b.slice(0, cut)
    if carry is not None and len(carry):
        yield carry



class BookRows(NamedTuple):
    local: np.ndarray
    ets: np.ndarray
    is_snap: np.ndarray
    is_ask: np.ndarray
    price: np.ndarray
    amount: np.ndarray

    def take(self, idx: np.ndarray) -> BookRows:
        return BookRows(*(a[idx] for a in self))



#: the columns book rows need (``local_ts`` comes from ``local_ts_ns``: the µs copy is not decoded)
BOOK_COLUMNS = ("exchange_ts", "is_snapshot", "side", "price", "amount")


def change_rows(root: str, req: NormalizedRequest, symbol: str) -> Iterator[BookRows]:
    """The symbol's ``book_change`` rows in local time order, never cutting a local time in two."""
    batches = read_range(root, req.exchange, "book_change", symbol, req.range.start_ns, req.range.end_ns,
                         BOOK_COLUMNS, batch_rows=req.batch_rows or None)
    for batch in whole_groups(batches):
        yield BookRows(
            ts_ns(batch),
            np_col(batch.column("exchange_ts")).astype(np.int64, copy=False),
            np_col(batch.column("is_snapshot")).astype(np.bool_),
            codes(batch.column("side"), ("bid", "ask")) == 1,
            np_col(batch.column("price")).astype(np.float64, copy=False),
            np_col(batch.column("amount")).astype(np.float64, copy=False),
        )



def snapshot_table_rows(root: str, req: NormalizedRequest, symbol: str, levels: int) -> Iterator[BookRows]:
    """A stored ``book_snapshot_N`` series (Hyperliquid l2Book, Binance depthN) as book_change rows: every
    stored snapshot is one isSnapshot message, its bids then its asks (padding dropped), as tardis-dev maps
    l2Book frames."""
    for batch in read_range(root, req.exchange, f"book_snapshot_{levels}", symbol, req.range.start_ns,
                            req.range.end_ns, batch_rows=req.batch_rows or None):
        k = len(batch)
        local = ts_ns(batch)
        ets = np_col(batch.column("exchange_ts")).astype(np.int64, copy=False)
        cols = []
        for c in ("bid_price", "bid_amount", "ask_price", "ask_amount"):
            col = batch.column(c)
            cols.append(np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float64).reshape(k, levels))
        price = np.concatenate([cols[0], cols[2]], axis=1).reshape(-1)
        amount = np.concatenate([cols[1], cols[3]], axis=1).reshape(-1)
        is_ask = np.tile(np.repeat(np.array([False, True]), levels), k)
        msg = np.repeat(np.arange(k), 2 * levels)
        keep = ~np.isnan(price)
        m = int(keep.sum())
        yield BookRows(local[msg][keep], ets[msg][keep], np.ones(m, np.bool_), is_ask[keep], price[keep], amount[keep])



def book_table(root: str, req: NormalizedRequest, symbol: str) -> str | None:
    """The table a symbol's book comes from: book_change when the range has it; else the deepest stored
    book_snapshot_N series (each stored snapshot replaces the book, as tardis-dev maps Hyperliquid's l2Book)."""
    rng = req.range
    if hour_paths(root, req.exchange, "book_change", symbol, rng.start_ns, rng.end_ns):
        return "book_change"
    for levels in reversed(stored_levels(root, req.exchange, symbol)):
        if hour_paths(root, req.exchange, f"book_snapshot_{levels}", symbol, rng.start_ns, rng.end_ns):
            return f"book_snapshot_{levels}"
    return None



def book_rows(root: str, req: NormalizedRequest, symbol: str) -> Iterator[BookRows]:
    table = book_table(root, req, symbol)
    if table is None:
        return iter(())
    if table == "book_change":
        return change_rows(root, req, symbol)
    return snapshot_table_rows(root, req, symbol, int(table.rsplit("_", 1)[1]))


def stored_levels(root: str, exchange: str, symbol: str) -> list[int]:
    """Depths N of the book_snapshot_N series stored for a symbol, smallest first."""
    from ticktape.replay.inventory import Inventory

    inv = _INVENTORIES.get(root)
    if inv is None:
        inv = _INVENTORIES[root] = Inventory(root)
    out = []
    for t in inv.data_types(exchange):
        if t.startswith("book_snapshot_") and symbol in inv.symbols(exchange, t):
            out.append(int(t.rsplit("_", 1)[1]))
    return sorted(out)


_INVENTORIES: dict[str, Any] = {}


def message_times(root: str, req: NormalizedRequest) -> np.ndarray:
    """Local times of the request's messages (its symbols' trades, book rows and ticker/liquidation rows:
    one per frame tardis-dev's disconnect stamp can follow), sorted."""
    rng = req.range
    parts = [np.zeros(0, np.int64)]
    for sym in req.symbols:
        tables = []
        if req.needs_trades:
            tables.append("trades")
        if req.book_ticker:
            tables.append("book_ticker")
        if req.derivative_ticker:
            tables.append("derivative_ticker")
        if req.liquidation:
            tables.append("liquidations")
        if req.needs_book:
            if hour_paths(root, req.exchange, "book_change", sym, rng.start_ns, rng.end_ns):
                tables.append("book_change")
            else:
                tables += [f"book_snapshot_{n}" for n in stored_levels(root, req.exchange, sym)]
        for t in tables:
            for batch in read_range(root, req.exchange, t, sym, rng.start_ns, rng.end_ns, ["local_ts"]):
                parts.append(ts_ns(batch))
    return np.unique(np.concatenate(parts))


