"""Normalized replay: Tardis's normalized messages, one module per type over one source layer.

Shapes follow Tardis's "Output Data Types"; each type is built in its own
module from rows the shared source layer (``rows``) reads: ``trade`` and
``bars`` (trade_bar) from trade batches, ``book_change`` and
``book_snapshot`` (also quote) from book rows, ``disconnect`` from events,
``book_ticker``/``derivative_ticker``/``liquidation`` from their tables.
Here they are put together: one time-sorted source per (request, symbol,
table), all merged by local timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from ticktape.replay import (
    book_change,
    book_gaps,
    book_ticker,
    derivative_ticker,
    disconnect,
    liquidation,
    trade,
)
from ticktape.replay.bars import BarBuilder
from ticktape.replay.book_snapshot import Snapshots
from ticktape.replay.merge import Chunk, merge, sort_lines
from ticktape.replay.options import NormalizedRequest
from ticktape.replay.rows import BookRows, book_rows, book_table, trade_batches
from ticktape.replay.sources import ts_ns


def _resets(root: str, req: NormalizedRequest) -> np.ndarray:
    """When computables start afresh: at every disconnect tardis-dev reports (it resets an exchange's
    computables on each disconnect message, so only when those are asked for)."""
    return disconnect.drop_times(root, req) if req.disconnect else np.zeros(0, np.int64)


def _pieces(local: np.ndarray, resets: np.ndarray, ri: int) -> tuple[list[int], int]:
    """Cut points (row indices) of a batch before which computables reset; ``ri``: the next reset to use.
    A reset at a message's own time comes before it (tardis-dev sees the drop first)."""
    cuts = []
    while ri < len(resets) and (not len(local) or resets[ri] <= local[-1]):
        cuts.append(int(np.searchsorted(local, resets[ri], "left")))
        ri += 1
    return cuts, ri


def trade_source(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    """trade and trade_bar messages of one symbol, from the same batches: each bar right after the trade that
    closed it (several trades of one frame share a local time; tardis-dev computes after each message)."""
    resets = _resets(root, req) if req.bars else np.zeros(0, np.int64)
    ri = 0
    bars = [BarBuilder(b, symbol, req.exchange) for b in req.bars]
    skip = (trade.skipped_frames(root, req, symbol, disconnect.drop_times(root, req))
            if req.exchange in trade.SKIPS_FIRST_FRAME else None)
    for batch in trade_batches(root, req, symbol):
        if skip is not None and len(skip):
            drop = np.isin(ts_ns(batch), skip)
            if drop.any():
                batch = batch.filter(pa.array(~drop))
            if not len(batch):
                continue
        parts: list[Chunk] = []
        at: list[np.ndarray] = []  # per part: the batch row each line follows
        if req.trade:
            parts.append(trade.trade_lines(batch, symbol, req.exchange))
            at.append(np.arange(len(batch), dtype=np.int64))
        if bars:
            cuts, ri = _pieces(ts_ns(batch), resets, ri)
            lo = 0
            for k, cut in enumerate([*cuts, len(batch)]):
                if cut > lo:
                    for b in bars:
                        c = b.feed(batch.slice(lo, cut - lo))
                        if c is not None:
                            parts.append(c)
                            at.append(b.closed_at + lo)
                    lo = cut
                if k < len(cuts):  # a disconnect: the bars in progress are dropped, as tardis-dev's reset does
                    bars = [BarBuilder(b, symbol, req.exchange) for b in req.bars]
        if len(parts) == 1:
            yield parts[0]
        elif parts:  # by closing row; on one row the trade first, then the bars in request order
            order = np.lexsort((np.concatenate([np.full(len(a), k) for k, a in enumerate(at)]), np.concatenate(at)))
            yield Chunk(np.concatenate([p.ts for p in parts])[order],
                        pa.concat_arrays([p.lines for p in parts]).take(pa.array(order)))


def _combine(parts: list[Chunk]) -> Chunk:
    """Concatenate chunks of one source and order them by ts (stable: earlier parts first on ties)."""
    parts = [p for p in parts if len(p)]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return Chunk(np.zeros(0, np.int64), pa.array([], pa.binary()))
    ts, lines, _ = sort_lines([p.ts for p in parts], [p.lines for p in parts])
    return Chunk(ts, lines)



def book_source(req: NormalizedRequest, symbol: str, source: Iterator[BookRows],
                resets: np.ndarray | None = None) -> Iterator[Chunk]:
    """book_change and book_snapshot messages of one symbol, from the same rows; the snapshots start afresh
    (empty book, first snapshot at the first change) at each of ``resets``."""
    lines = book_change.Lines(symbol, req.exchange) if req.book_change else None
    snaps = Snapshots(req.snapshots, symbol, req.exchange) if req.snapshots else None
    resets = np.zeros(0, np.int64) if resets is None else resets
    ri = 0
    for rows in source:
        if req.exchange in book_change.MERGES_RESYNC:
            rows = book_change.merge_resyncs(rows)
        local, raw_ets, is_snap = rows.local, rows.ets, rows.is_snap
        ets = np.where(raw_ets == 0, local, raw_ets)
        n = len(local)
        brk = np.ones(n, np.bool_)
        brk[1:] = (local[1:] != local[:-1]) | (raw_ets[1:] != raw_ets[:-1]) | (is_snap[1:] != is_snap[:-1])
        gs = np.flatnonzero(brk)
        parts: list[Chunk] = []
        if lines is not None:
            parts.append(lines(rows, brk, gs, ets))
        if snaps is not None:
            cuts, ri = _pieces(local[gs], resets, ri)
            if not cuts:
                parts += snaps.feed(rows, gs, ets)
            else:
                lo = 0
                for k, cut in enumerate([*cuts, len(gs)]):
                    if cut > lo:
                        r0, r1 = int(gs[lo]), int(gs[cut]) if cut < len(gs) else n
                        parts += snaps.feed(rows.take(np.arange(r0, r1)), gs[lo:cut] - r0, ets[r0:r1])
                        lo = cut
                    if k < len(cuts):
                        snaps = Snapshots(req.snapshots, symbol, req.exchange)
        # equal local times: the book_change first, then the snapshots computed from it (tardis-dev's order)
        if parts:
            yield _combine(parts)


def _book_rows(root: str, req: NormalizedRequest, symbol: str) -> Iterator[BookRows]:
    """The symbol's book rows; for the binance family, by default a resync after a sequence gap as
    tardis-dev's mapper has it (``book_gaps``), unless the client asked for ticktape's (``bookGaps``)."""
    rows = book_rows(root, req, symbol)
    if (req.exchange in book_gaps.VENUES and req.book_gaps == "tardis"
            and book_table(root, req, symbol) == "book_change"):
        rows = book_gaps.as_tardis(root, req, symbol, rows, disconnect.drop_times(root, req))
    return rows


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
                resets = _resets(root, req) if req.snapshots else None
                out.append(book_source(req, s, _book_rows(root, req, s), resets))
            for name, src in _TICKER_SOURCES.items():
                if getattr(req, name):
                    out.append(src(root, req, s))
        if req.disconnect:
            out.append(disconnect.source(root, req))
    return out


#: one module per type, each built from its own table
_TICKER_SOURCES = {"book_ticker": book_ticker.source, "derivative_ticker": derivative_ticker.source,
                   "liquidation": liquidation.source}


def stream(root: str, reqs: list[NormalizedRequest]) -> Iterator[Chunk]:
    return merge(sources(root, reqs))
