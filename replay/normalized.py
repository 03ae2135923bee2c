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

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.ipc.schemas import NO_SYMBOL_NAME, TRADE_SIDES
from ticktape.replay import fmt
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
    for batch in read_range(root, req.exchange, "trades", symbol, req.range.start_ns, req.range.end_ns):
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


class _Snap:
    """One snapshot data type's emission state."""

    __slots__ = ("amounts", "counts", "header", "interval_ns", "last", "last_bucket", "local", "prices", "spec",
                 "stamp")

    def __init__(self, spec: Snapshot, symbol: str, exchange: str, quote: bool = False) -> None:
        self.spec = spec
        self.interval_ns = spec.interval_ms * 1_000_000
        self.last_bucket: int | None = None
        self.last: tuple[list[float], ...] | None = None
        # emitted snapshots, flat: per snapshot its times, level counts (bids, asks) and levels
        self.local: list[int] = []
        self.stamp: list[int] = []
        self.counts: list[int] = []
        self.prices: list[float] = []
        self.amounts: list[float] = []
        self.header = (
            b'{"type":"book_snapshot","symbol":' + _name(symbol) + b',"exchange":' + _name(exchange)
            + b',"name":' + _name("quote" if quote else spec.name)
            + f',"depth":{spec.depth},"interval":{spec.interval_ms},"bids":['.encode()
        )

    def take(self, book: Book, local: int, stamp: int) -> None:
        lv = book.levels(self.spec.depth)
        if lv == self.last or (not lv[0] and not lv[2]):
            return
        self.last = lv
        bp, ba, ap, aa = lv
        self.local.append(local)
        self.stamp.append(stamp)
        self.counts += (len(bp), len(ap))
        self.prices += bp
        self.prices += ap
        self.amounts += ba
        self.amounts += aa

    def flush(self) -> Chunk | None:
        k = len(self.local)
        if not k:
            return None
        local = np.array(self.local, np.int64)
        stamp = np.array(self.stamp, np.int64)
        counts = np.array(self.counts, np.int64)
        price = np.array(self.prices, np.float64)
        amount = np.array(self.amounts, np.float64)
        self.local, self.stamp, self.counts, self.prices, self.amounts = [], [], [], [], []
        per_msg = counts[0::2] + counts[1::2]
        msg = np.repeat(np.arange(k, dtype=np.int64), per_msg)
        is_ask = np.repeat(np.tile(np.array([False, True]), k), counts)
        lines = assemble(constant(self.header, k), trailer(stamp, local), msg, is_ask, price, amount)
        return Chunk(local, lines)


def _whole_groups(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Re-cut batches so no (local_ts, exchange_ts) message straddles two batches."""
    carry: pa.RecordBatch | None = None
    for b in batches:
        if carry is not None:
            b = pa.Table.from_batches([carry, b]).combine_chunks().to_batches()[0]
            carry = None
        if len(b) == 0:
            continue
        local = ts_ns(b)
        ets = _np(b.column("exchange_ts")).astype(np.int64, copy=False)
        last = len(b) - 1
        same = (local == local[last]) & (ets == ets[last])
        cut = int(np.flatnonzero(~same)[-1]) + 1 if not same.all() else 0
        if cut == 0:
            carry = b
            continue
        if cut < len(b):
            carry = b.slice(cut)
        yield b.slice(0, cut)
    if carry is not None and len(carry):
        yield carry


def book_source(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    ex = req.exchange
    book = Book()
    pre = [_Snap(s, symbol, ex) for s in req.snapshots if s.interval_ms > 0]
    post = [_Snap(s, symbol, ex) for s in req.snapshots if s.interval_ms == 0]
    if req.quote:
        post.append(_Snap(Snapshot("quote", 1, 0), symbol, ex, quote=True))
    need_book = bool(pre or post)
    head_t = b'{"type":"book_change","symbol":' + _name(symbol) + b',"exchange":' + _name(ex) + b',"isSnapshot":true,"bids":['
    head_f = head_t.replace(b'"isSnapshot":true', b'"isSnapshot":false')
    prev_snap = False
    batches = read_range(root, ex, "book_change", symbol, req.range.start_ns, req.range.end_ns)
    for batch in _whole_groups(batches):
        local = ts_ns(batch)
        ets = _exchange_ts(batch, local)
        raw_ets = _np(batch.column("exchange_ts")).astype(np.int64, copy=False)
        n = len(local)
        is_snap = _np(batch.column("is_snapshot")).astype(np.bool_)
        is_ask = _codes(batch.column("side"), ("bid", "ask")) == 1
        price = _np(batch.column("price")).astype(np.float64, copy=False)
        amount = _np(batch.column("amount")).astype(np.float64, copy=False)
        brk = np.ones(n, np.bool_)
        brk[1:] = (local[1:] != local[:-1]) | (raw_ets[1:] != raw_ets[:-1]) | (is_snap[1:] != is_snap[:-1])
        gs = np.flatnonzero(brk)
        g_snap = is_snap[gs]
        before: list[Chunk] = []
        after: list[Chunk] = []
        if need_book:
            prev_snap = _walk_book(book, pre, post, gs, g_snap, local, ets, is_ask, price, amount, prev_snap)
            before = [c for c in (s.flush() for s in pre) if c is not None]
            after = [c for c in (s.flush() for s in post) if c is not None]
        changes: list[Chunk] = []
        if req.book_change:
            msg = np.cumsum(brk) - 1
            heads = pc.if_else(pa.array(g_snap), pa.scalar(head_t, pa.binary()), pa.scalar(head_f, pa.binary()))
            lines = assemble(heads, trailer(ets[gs], local[gs]), msg, is_ask, price, amount)
            changes.append(Chunk(local[gs], lines))
        # on equal local time: snapshots of the book before a message, the message, snapshots after it
        parts = before + changes + after
        if parts:
            yield _combine(parts)


def _walk_book(
    book: Book,
    pre: list[_Snap],
    post: list[_Snap],
    gs: np.ndarray,
    g_snap: np.ndarray,
    local: np.ndarray,
    ets: np.ndarray,
    is_ask: np.ndarray,
    price: np.ndarray,
    amount: np.ndarray,
    prev_snap: bool,
) -> bool:
    """Apply the batch to the book, taking snapshots where the rules say; returns whether it ended in a snapshot."""
    n, ng = len(local), len(gs)
    ends = np.append(gs[1:], n)
    book.load(is_ask, price, amount)
    reset = g_snap.copy()
    if ng:
        reset[0] = g_snap[0] and not prev_snap
        reset[1:] = g_snap[1:] & ~g_snap[:-1]
    crossing: list[np.ndarray] = []
    for s in pre:
        bucket = local[gs] // s.interval_ns
        prev = np.empty(ng, np.int64)
        if ng:
            prev[0] = bucket[0] if s.last_bucket is None else s.last_bucket
            prev[1:] = bucket[:-1]
            s.last_bucket = int(bucket[-1])
        crossing.append(bucket != prev)
    if post:
        visit = np.arange(ng)
    else:
        mask = reset.copy()
        for c in crossing:
            mask |= c
        visit = np.flatnonzero(mask)
    cur = 0
    for g in visit.tolist():
        r = int(gs[g])
        if r > cur:
            book.apply(cur, r)
            cur = r
        for s, c in zip(pre, crossing, strict=True):
            if c[g]:
                s.take(book, int(local[r]), (int(local[r]) // s.interval_ns) * s.interval_ns)
        if reset[g]:
            book.clear()
        if post:
            e = int(ends[g])
            book.apply(r, e)
            cur = e
            for s in post:
                s.take(book, int(local[r]), int(ets[r]))
    if cur < n:
        book.apply(cur, n)
    return bool(g_snap[-1]) if ng else prev_snap


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
        yield Chunk(ts, fmt.join(line, fmt.ts_strings(ts), b'"}\n'))


def disconnect_source(root: str, req: NormalizedRequest) -> Iterator[Chunk]:
    """Every disconnect of the request's symbols and of the exchange's connections, once per instant."""
    srcs = [_event_source(root, req, s) for s in [*req.symbols, NO_SYMBOL_NAME]]
    last = None
    for c in merge(srcs, ahead=False):  # runs inside a pool thread already: no nested waits on the pool
        keep = np.ones(len(c), np.bool_)
        keep[1:] = c.ts[1:] != c.ts[:-1]
        if last is not None and len(c):
            keep[0] = c.ts[0] != last
        last = int(c.ts[-1]) if len(c) else last
        if not keep.all():
            idx = np.flatnonzero(keep)
            c = Chunk(c.ts[idx], c.lines.take(pa.array(idx)))
        if len(c):
            yield c


def _book_or_snapshots(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    """From book_change when the range has it; else snapshots/quotes from a stored book_snapshot_N table."""
    from ticktape.replay import snapshots
    from ticktape.replay.sources import hour_paths

    rng = req.range
    if hour_paths(root, req.exchange, "book_change", symbol, rng.start_ns, rng.end_ns):
        return book_source(root, req, symbol)
    specs = [(_Snap(s, symbol, req.exchange).header, s.depth, s.interval_ms) for s in req.snapshots]
    if req.quote:
        specs.append((_Snap(Snapshot("quote", 1, 0), symbol, req.exchange, quote=True).header, 1, 0))
    need = max((d for _, d, _ in specs), default=0)
    for levels in _stored_levels(root, req.exchange, symbol):
        if specs and levels >= need and hour_paths(root, req.exchange, f"book_snapshot_{levels}", symbol,
                                                   rng.start_ns, rng.end_ns):
            return snapshots.table_source(root, req.exchange, symbol, levels, rng.start_ns, rng.end_ns, specs)
    return iter(())


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


def sources(root: str, reqs: list[NormalizedRequest]) -> list[Iterator[Chunk]]:
    out: list[Iterator[Chunk]] = []
    for req in reqs:
        for s in req.symbols:
            if req.needs_trades:
                out.append(trade_source(root, req, s))
            if req.needs_book:
                out.append(_book_or_snapshots(root, req, s))
        if req.disconnect:
            out.append(disconnect_source(root, req))
    return out


def stream(root: str, reqs: list[NormalizedRequest]) -> Iterator[Chunk]:
    return merge(sources(root, reqs))
