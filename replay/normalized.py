"""Normalized replay: Tardis's normalized messages built from the ``trades``, ``book_change`` and ``events`` tables.

Shapes follow Tardis's "Output Data Types" (trade, book_change,
book_snapshot, trade_bar, disconnect; ``quote`` is the top-of-book snapshot
``book_snapshot`` named ``quote``, depth 1, interval 0, as Tardis Machine
computes it). Timestamps use the same 7-digit form as raw replay;
``timestamp`` is the exchange's time (the local time when the exchange sent
none). Each (request, symbol, table) is one time-sorted source; all sources
of all requests are merged by local timestamp.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.ipc.schemas import NO_SYMBOL_NAME, TRADE_SIDES
from ticktape.replay import book_ticker, derivative_ticker, fmt, liquidation
from ticktape.replay.bars import BarBuilder
from ticktape.replay.book import Book
from ticktape.replay.levels import assemble, constant, trailer
from ticktape.replay.merge import Chunk, merge
from ticktape.replay.options import NormalizedRequest, Snapshot
from ticktape.replay.sources import read_range, ts_ns


def _np(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_timestamp(arr.type):
        arr = arr.view(pa.int64())
    return np.asarray(arr.to_numpy(zero_copy_only=False))


def _exchange_ts(batch: pa.RecordBatch, local: np.ndarray) -> np.ndarray:
    ets = _np(batch.column("exchange_ts")).astype(np.int64, copy=False)
    return np.where(ets == 0, local, ets)


def _codes(col: pa.Array, names: tuple[str, ...]) -> np.ndarray:
    """Dictionary/string column -> index into ``names`` (unknown values -> len(names))."""
    if pa.types.is_dictionary(col.type):
        dct = col.dictionary.to_pylist()
        remap = np.array([names.index(v) if v in names else len(names) for v in dct], np.int8)
        return remap[_np(col.indices).astype(np.int64)]
    idx = pc.index_in(col, pa.array(names))
    return _np(pc.fill_null(idx, len(names))).astype(np.int8)


def _name(text: str) -> bytes:
    import json

    return json.dumps(text).encode()


# --- trades ------------------------------------------------------------------------------------


_SIDE_TEXT = pa.array([b',"side":"' + s.encode() + b'"' for s in TRADE_SIDES], pa.binary())


def trade_lines(batch: pa.RecordBatch, symbol: str, exchange: str) -> Chunk:
    local = ts_ns(batch)
    ets = _exchange_ts(batch, local)
    head = b'{"type":"trade","symbol":' + _name(symbol) + b',"exchange":' + _name(exchange) + b',"id":'
    side = _SIDE_TEXT.take(pa.array(_codes(batch.column("side"), TRADE_SIDES) % len(TRADE_SIDES)))
    lines = fmt.join(
        head,
        fmt.json_strings(batch.column("id")),
        b',"price":',
        fmt.numbers(batch.column("price")),
        b',"amount":',
        fmt.numbers(batch.column("amount")),
        side,
        trailer(ets, local, b""),
    )
    return Chunk(local, lines)


def trade_source(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    bars = [BarBuilder(b, symbol, req.exchange) for b in req.bars]
    for batch in read_range(root, req.exchange, "trades", symbol, req.range.start_ns, req.range.end_ns,
                            batch_rows=req.batch_rows or None):
        parts: list[Chunk] = []
        if req.trade:
            parts.append(trade_lines(batch, symbol, req.exchange))
        for b in bars:
            c = b.feed(batch)
            if c is not None:
                parts.append(c)
        if parts:
            yield _combine(parts)
    tail = [c for c in (b.finish(req.range.end_ns) for b in bars) if c is not None]
    if tail:
        yield _combine(tail)


def _combine(parts: list[Chunk]) -> Chunk:
    """Concatenate chunks of one source and order them by ts (stable: earlier parts first on ties)."""
    parts = [p for p in parts if len(p)]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return Chunk(np.zeros(0, np.int64), pa.array([], pa.binary()))
    ts = np.concatenate([p.ts for p in parts])
    lines = pa.concat_arrays([p.lines for p in parts])
    order = np.argsort(ts, kind="stable")
    return Chunk(ts[order], lines.take(pa.array(order)))


# --- book ----------------------------------------------------------------------------------------


def _decimal_places(n: float) -> int:
    """tardis-dev's decimalPlaces: powers of ten until n * 10**k has no fraction."""
    k = 0
    while (n * 10**k) % 1 != 0 and k < 20:
        k += 1
    return k


class _Snap:
    """One snapshot data type over one symbol, with tardis-dev's ``BookSnapshotComputable`` rules.

    Levels are compared one by one with the last ones taken (missing levels are empty, ``{}`` in the
    output); the book "changed" when any of the top ``depth`` differs. Before a message: if the book
    changed and the message's exchange time (ms) is in a later interval bucket than the last update,
    the snapshot is emitted stamped with the end of the last update's interval. After applying it:
    the first change ever, or any change with interval 0, is emitted stamped with the message's time.
    """

    __slots__ = (
        "asks",
        "bids",
        "changed",
        "depth",
        "gpow",
        "grouping",
        "header",
        "initialized",
        "iv",
        "last",
        "out_amount",
        "out_local",
        "out_price",
        "out_stamp",
    )

    def __init__(self, spec: Snapshot, symbol: str, exchange: str) -> None:
        self.depth = spec.depth
        self.iv = spec.interval_ms
        self.grouping = spec.grouping
        self.gpow = 10.0 ** _decimal_places(spec.grouping) if spec.grouping else 1.0
        self.bids: list[tuple[float, float] | None] = [None] * spec.depth
        self.asks: list[tuple[float, float] | None] = [None] * spec.depth
        self.changed = False
        self.initialized = False
        self.last = -(2**62)
        self.out_local: list[int] = []
        self.out_stamp: list[int] = []
        self.out_price: list[float] = []
        self.out_amount: list[float] = []
        grouping = b""
        if spec.grouping is not None:
            grouping = b',"grouping":' + fmt.numbers(np.array([spec.grouping])).to_pylist()[0]
        self.header = (
            b'{"type":"book_snapshot","symbol":' + _name(symbol) + b',"exchange":' + _name(exchange)
            + b',"name":' + _name(spec.name) + f',"depth":{spec.depth},"interval":{spec.interval_ms}'.encode()
            + grouping + b',"bids":['
        )

    def _due(self, t: int) -> bool:
        if not self.changed:
            return False
        if self.iv == 0 or not self.initialized:
            return True
        if t // self.iv > self.last // self.iv:
            self.last = (self.last // self.iv + 1) * self.iv
            return True
        return False

    def _emit(self, local: int) -> None:
        self.out_local.append(local)
        self.out_stamp.append(self.last)
        nan = float("nan")
        for lv in (*self.bids, *self.asks):
            if lv is None:
                self.out_price.append(nan)
                self.out_amount.append(nan)
            else:
                self.out_price.append(lv[0])
                self.out_amount.append(lv[1])
        self.changed = False

    def before(self, t: int, local: int) -> None:
        if self._due(t):
            self._emit(local)

    def after(self, book: Book, t: int, local: int) -> None:
        if self.grouping is None:
            bp, ba, ap, aa = book.levels(self.depth)
            d = self.depth
            nb = list(zip(bp, ba, strict=True)) + [None] * (d - len(bp))
            na = list(zip(ap, aa, strict=True)) + [None] * (d - len(ap))
            if nb != self.bids or na != self.asks:
                self.bids, self.asks, self.changed = nb, na, True
        else:
            self._grouped(book.bids, self.bids, False)
            self._grouped(book.asks, self.asks, True)
        self.last = t
        if self._due(t):
            self._emit(local)
            self.initialized = True

    def _grouped(self, side: Any, cur: list[tuple[float, float] | None], asks: bool) -> None:
        """tardis-dev's _updateSideGrouped, float for float (levels past the last group are left as they were)."""
        pw = self.gpow
        gp = self.grouping * pw  # type: ignore[operator]
        levels = side.levels
        keys = side.keys if asks else reversed(side.keys)
        group = float("nan")  # none yet
        agg = 0.0
        depth = 0
        for p in keys:
            pp = p * pw
            rem = math.fmod(pp, gp) / pw
            g = (pp - rem * pw + (gp if asks and rem > 0 else 0.0)) / pw
            if group != group:
                group = g
            if group != g:
                lv = (group, agg)
                if cur[depth] != lv:
                    cur[depth] = lv
                    self.changed = True
                depth += 1
                if depth == self.depth:
                    break
                group, agg = g, 0.0
            agg += levels[p]
        if depth < self.depth and agg > 0:
            lv = (group, agg)
            if cur[depth] != lv:
                cur[depth] = lv
                self.changed = True

    def flush(self) -> Chunk | None:
        k = len(self.out_local)
        if not k:
            return None
        local = np.array(self.out_local, np.int64)
        stamp = np.array(self.out_stamp, np.int64) * 1_000_000
        price = np.array(self.out_price, np.float64)
        amount = np.array(self.out_amount, np.float64)
        self.out_local, self.out_stamp, self.out_price, self.out_amount = [], [], [], []
        d = self.depth
        msg = np.repeat(np.arange(k, dtype=np.int64), 2 * d)
        is_ask = np.tile(np.repeat(np.array([False, True]), d), k)
        lines = assemble(constant(self.header, k), trailer(stamp, local), msg, is_ask, price, amount)
        return Chunk(local, lines)


def _whole_groups(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
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


class _Rows(NamedTuple):
    local: np.ndarray
    ets: np.ndarray
    is_snap: np.ndarray
    is_ask: np.ndarray
    price: np.ndarray
    amount: np.ndarray

    def take(self, idx: np.ndarray) -> _Rows:
        return _Rows(*(a[idx] for a in self))


def _merge_resyncs(rows: _Rows) -> _Rows:
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
    pieces: list[_Rows] = []
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
        pieces.append(_Rows(
            np.full(m, local[lo], np.int64), np.full(m, ets[lo], np.int64), np.ones(m, np.bool_),
            np.r_[np.zeros(nb, np.bool_), np.ones(na, np.bool_)],
            np.array(sides[0][0] + sides[1][0], np.float64), np.array(sides[0][1] + sides[1][1], np.float64)))
        cur = hi
        g = h
    if not pieces:
        return rows
    if cur < n:
        pieces.append(rows.take(np.arange(cur, n)))
    return _Rows(*(np.concatenate([getattr(p, f) for p in pieces]) for f in _Rows._fields))


def change_rows(root: str, req: NormalizedRequest, symbol: str) -> Iterator[_Rows]:
    """The symbol's ``book_change`` rows in local time order, never cutting a local time in two."""
    batches = read_range(root, req.exchange, "book_change", symbol, req.range.start_ns, req.range.end_ns,
                         batch_rows=req.batch_rows or None)
    for batch in _whole_groups(batches):
        yield _Rows(
            ts_ns(batch),
            _np(batch.column("exchange_ts")).astype(np.int64, copy=False),
            _np(batch.column("is_snapshot")).astype(np.bool_),
            _codes(batch.column("side"), ("bid", "ask")) == 1,
            _np(batch.column("price")).astype(np.float64, copy=False),
            _np(batch.column("amount")).astype(np.float64, copy=False),
        )


def snapshot_table_rows(root: str, req: NormalizedRequest, symbol: str, levels: int) -> Iterator[_Rows]:
    """A stored ``book_snapshot_N`` series (Hyperliquid l2Book, Binance depthN) as book_change rows: every
    stored snapshot is one isSnapshot message, its bids then its asks (padding dropped), as tardis-dev maps
    l2Book frames."""
    for batch in read_range(root, req.exchange, f"book_snapshot_{levels}", symbol, req.range.start_ns,
                            req.range.end_ns, batch_rows=req.batch_rows or None):
        k = len(batch)
        local = ts_ns(batch)
        ets = _np(batch.column("exchange_ts")).astype(np.int64, copy=False)
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
        yield _Rows(local[msg][keep], ets[msg][keep], np.ones(m, np.bool_), is_ask[keep], price[keep], amount[keep])


def book_source(req: NormalizedRequest, symbol: str, source: Iterator[_Rows]) -> Iterator[Chunk]:
    ex = req.exchange
    book = Book()
    received = False  # tardis-dev's book ignores changes until its first snapshot
    snaps = [_Snap(s, symbol, ex) for s in req.snapshots]
    head_t = b'{"type":"book_change","symbol":' + _name(symbol) + b',"exchange":' + _name(ex) + b',"isSnapshot":true,"bids":['
    head_f = head_t.replace(b'"isSnapshot":true', b'"isSnapshot":false')
    for rows in source:
        if ex in MERGES_RESYNC:
            rows = _merge_resyncs(rows)
        local, raw_ets, is_snap, is_ask, price, amount = rows
        ets = np.where(raw_ets == 0, local, raw_ets)
        n = len(local)
        brk = np.ones(n, np.bool_)
        brk[1:] = (local[1:] != local[:-1]) | (raw_ets[1:] != raw_ets[:-1]) | (is_snap[1:] != is_snap[:-1])
        gs = np.flatnonzero(brk)
        g_snap = is_snap[gs]
        parts: list[Chunk] = []
        if req.book_change:
            msg = np.cumsum(brk) - 1
            heads = pc.if_else(pa.array(g_snap), pa.scalar(head_t, pa.binary()), pa.scalar(head_f, pa.binary()))
            lines = assemble(heads, trailer(ets[gs], local[gs]), msg, is_ask, price, amount)
            parts.append(Chunk(local[gs], lines))
        if snaps:
            book.load(is_ask, price, amount)
            ends = np.append(gs[1:], n).tolist()
            ms = (ets[gs] // 1_000_000).tolist()
            locs = local[gs].tolist()
            for g, r in enumerate(gs.tolist()):
                t, loc = ms[g], locs[g]
                for s in snaps:
                    s.before(t, loc)
                if g_snap[g]:
                    book.clear()
                    received = True
                if received:
                    book.apply(r, ends[g])
                for s in snaps:
                    s.after(book, t, loc)
            parts += [c for c in (s.flush() for s in snaps) if c is not None]
        # equal local times: the book_change first, then the snapshots computed from it (tardis-dev's order)
        if parts:
            yield _combine(parts)


#: exchanges whose resync snapshot absorbs the diffs buffered before it (tardis-dev's binance mappers)
MERGES_RESYNC = ("binance-futures",)


# --- disconnects -------------------------------------------------------------------------------


def _event_source(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    line = b'{"type":"disconnect","exchange":' + _name(req.exchange) + b',"localTimestamp":"'
    cols = ("local_ts", "kind")
    for batch in read_range(root, req.exchange, "events", symbol, req.range.start_ns, req.range.end_ns, cols):
        kind = batch.column("kind")
        txt = kind.dictionary_decode() if pa.types.is_dictionary(kind.type) else kind
        idx = np.flatnonzero(_np(pc.equal(txt, "disconnect")).astype(np.bool_))
        if len(idx) == 0:
            continue
        ts = ts_ns(batch)[idx]
        ts = ts[np.concatenate(([True], ts[1:] != ts[:-1]))]
        yield Chunk(ts, fmt.join(line, fmt.ts_strings(ts, fmt.LOCAL_DIGITS), b'"}\n'))


def _message_times(root: str, req: NormalizedRequest) -> np.ndarray:
    """Local times of the request's messages (its symbols' trades and book rows), sorted."""
    from ticktape.replay.sources import hour_paths

    rng = req.range
    parts = [np.zeros(0, np.int64)]
    for sym in req.symbols:
        tables = []
        if req.needs_trades:
            tables.append("trades")
        if req.needs_book:
            if hour_paths(root, req.exchange, "book_change", sym, rng.start_ns, rng.end_ns):
                tables.append("book_change")
            else:
                tables += [f"book_snapshot_{n}" for n in _stored_levels(root, req.exchange, sym)]
        for t in tables:
            for batch in read_range(root, req.exchange, t, sym, rng.start_ns, rng.end_ns, ["local_ts"]):
                parts.append(ts_ns(batch))
    return np.unique(np.concatenate(parts))


def disconnect_source(root: str, req: NormalizedRequest) -> Iterator[Chunk]:
    """A disconnect of the request's symbols or of the exchange's connections, as tardis-dev reports it:
    stamped with the last message before it, not before any message, once between two messages."""
    srcs = [_event_source(root, req, s) for s in [*req.symbols, NO_SYMBOL_NAME]]
    drops = [c.ts for c in merge(srcs, ahead=False)]  # in a pool thread already: no nested waits on the pool
    if not drops:
        return
    at = np.unique(np.concatenate(drops))
    times = _message_times(root, req)
    prev = np.searchsorted(times, at, "left") - 1
    keep = prev >= 0
    keep[1:] &= prev[1:] != prev[:-1]
    at, prev = at[keep], prev[keep]
    if len(at):
        line = b'{"type":"disconnect","exchange":' + _name(req.exchange) + b',"localTimestamp":"'
        yield Chunk(at, fmt.join(line, fmt.ts_strings(times[prev], fmt.LOCAL_DIGITS), b'"}\n'))


def book_table(root: str, req: NormalizedRequest, symbol: str) -> str | None:
    """The table a symbol's book comes from: book_change when the range has it; else the deepest stored
    book_snapshot_N series (each stored snapshot replaces the book, as tardis-dev maps Hyperliquid's l2Book)."""
    from ticktape.replay.sources import hour_paths

    rng = req.range
    if hour_paths(root, req.exchange, "book_change", symbol, rng.start_ns, rng.end_ns):
        return "book_change"
    for levels in reversed(_stored_levels(root, req.exchange, symbol)):
        if hour_paths(root, req.exchange, f"book_snapshot_{levels}", symbol, rng.start_ns, rng.end_ns):
            return f"book_snapshot_{levels}"
    return None


def _book_or_snapshots(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    table = book_table(root, req, symbol)
    if table is None:
        return iter(())
    if table == "book_change":
        return book_source(req, symbol, change_rows(root, req, symbol))
    return book_source(req, symbol, snapshot_table_rows(root, req, symbol, int(table.rsplit("_", 1)[1])))


def _stored_levels(root: str, exchange: str, symbol: str) -> list[int]:
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


def series(root: str, reqs: list[NormalizedRequest]) -> list[tuple[str, str, str]]:
    """(exchange, table, symbol) of every series the stream reads in bulk (for the memory plan)."""
    out: list[tuple[str, str, str]] = []
    for req in reqs:
        for s in req.symbols:
            if req.needs_trades:
                out.append((req.exchange, "trades", s))
            table = book_table(root, req, s) if req.needs_book else None
            if table is not None:
                out.append((req.exchange, table, s))
    return out


def sources(root: str, reqs: list[NormalizedRequest]) -> list[Iterator[Chunk]]:
    out: list[Iterator[Chunk]] = []
    for req in reqs:
        for s in req.symbols:
            if req.needs_trades:
                out.append(trade_source(root, req, s))
            if req.needs_book:
                out.append(_book_or_snapshots(root, req, s))
            for name, src in _TICKER_SOURCES.items():
                if getattr(req, name):
                    out.append(src(root, req, s))
        if req.disconnect:
            out.append(disconnect_source(root, req))
    return out


#: one module per type, each built from its own table
_TICKER_SOURCES = {"book_ticker": book_ticker.source, "derivative_ticker": derivative_ticker.source,
                   "liquidation": liquidation.source}


def stream(root: str, reqs: list[NormalizedRequest]) -> Iterator[Chunk]:
    return merge(sources(root, reqs))
