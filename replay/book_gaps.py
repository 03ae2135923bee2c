"""A book after a sequence gap (Binance, Bybit, OKX, Deribit, BitMEX), as tardis-dev replays it (the
default) or as ticktape resynced it.

After a gap the connector fetches a new REST snapshot: the archive's ``book_change`` holds no diff from the
gap until the resync, then the snapshot (the buffered diffs merged at its time), then diffs again; the
diffs in between are only in ``raw``. tardis-dev's binance mappers take the first ``depthSnapshot`` of a
connection only and ignore every later one, applying every diff across the hole. So by default
(``bookGaps: "tardis"``) a resync snapshot that is not the first of its connection is dropped, together
with the diffs archived with it, and that stretch's book rows are the archived raw depth frames, decoded
with the connector's own decoder. ``bookGaps: "resync"`` keeps ticktape's resynced book (the snapshot and
every diff after it: the exchange's true book). Without raw frames for the stretch (``raw = false``) the
resynced rows stay, since there is nothing else to build from.

Bybit (linear and spot), OKX (spot and swap), Deribit and BitMEX resync by resubscribing: the snapshot
(BitMEX: the ``partial``) is a frame tardis-dev maps too (every ``orderbook.50`` / ``books`` / ``book`` /
``orderBookL2`` frame), so it stays; only the deltas the connector skipped between the gap and it are added
from ``raw`` before it (looked for only after a ``resync`` event, so a snapshot-only stream costs no read).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.replay.book_change import MERGES_RESYNC
from ticktape.replay.options import NormalizedRequest
from ticktape.replay.rows import BookRows, codes
from ticktape.replay.sources import read_range, ts_ns

#: the binance family (``book_change.MERGES_RESYNC``): BinanceBookChangeMapper and
#: BinanceFuturesBookChangeMapper ignore every depthSnapshot once one was processed (``snapshotProcessed``)
DEPTH_CHANNEL = "depth"


def _concat(parts: list[BookRows]) -> BookRows:
    parts = [p for p in parts if len(p.local)]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return BookRows(*(np.zeros(0, t) for t in (np.int64, np.int64, np.bool_, np.bool_, np.float64, np.float64)))
    return BookRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in BookRows._fields))


def _part(rows: BookRows, lo: int, hi: int) -> BookRows:
    """Rows ``lo:hi`` as views (the whole batch as it is: no copy on the common path)."""
    if lo == 0 and hi == len(rows.local):
        return rows
    return BookRows(*(a[lo:hi] for a in rows))


def _raw_frames(root: str, req: NormalizedRequest, symbol: str, after_ns: int, before_ns: int,
                channels: tuple[str, ...]) -> tuple[np.ndarray, list[bytes]]:
    """Local times and payloads of the symbol's raw frames of ``channels`` with ``after_ns < local < before_ns``
    (drop markers, empty payloads, left out)."""
    start, end = max(after_ns + 1, req.range.start_ns), min(before_ns, req.range.end_ns)
    local_parts: list[np.ndarray] = [np.zeros(0, np.int64)]
    payloads: list[bytes] = []
    for batch in read_range(root, req.exchange, "raw", symbol, start, end, ("local_ts", "channel", "payload")):
        payload = batch.column("payload")
        frame = np.asarray(pc.fill_null(pc.binary_length(payload), 0).to_numpy(zero_copy_only=False)) > 0
        keep = np.flatnonzero((codes(batch.column("channel"), channels) < len(channels)) & frame)
        if not len(keep):
            continue
        local_parts.append(ts_ns(batch)[keep])
        payloads += payload.take(pa.array(keep)).to_pylist()
    return np.concatenate(local_parts), payloads


#: one frame as book rows: (exchange time ns, is snapshot, bids, asks); None for a frame that does not decode
Frame = tuple[int, bool, list[tuple[float, float]], list[tuple[float, float]]] | None


def _binance(payloads: list[bytes]) -> list[Frame]:
    """Binance depth frames through the connector's own decoder (one pass for the whole list)."""
    import msgspec

    from ticktape.exchanges.binance_futures import DepthFrame

    try:
        frames: list[Any] = list(msgspec.json.Decoder(list[DepthFrame], strict=False).decode(
            b"[" + b",".join(payloads) + b"]"))
    except msgspec.DecodeError:  # a malformed frame (counted at capture, kept raw): tardis-dev maps none of it
        one = msgspec.json.Decoder(DepthFrame, strict=False)
        frames = []
        for p in payloads:
            try:
                frames.append(one.decode(p))
            except msgspec.DecodeError:
                frames.append(None)
    return [None if f is None else (f.data.E * 1_000_000, False, f.data.b, f.data.a) for f in frames]


def _bybit(payloads: list[bytes]) -> list[Frame]:
    """Bybit orderbook frames through the connector's own envelope and book decoders."""
    import msgspec

    from ticktape.exchanges.bybit import Book, Envelope

    env_dec, book_dec = msgspec.json.Decoder(Envelope), msgspec.json.Decoder(Book, strict=False)
    out: list[Frame] = []
    for p in payloads:
        try:
            env = env_dec.decode(p)
            b = book_dec.decode(env.data)
        except msgspec.DecodeError:
            out.append(None)
            continue
        out.append((env.ts * 1_000_000, env.type == "snapshot", b.b, b.a))
    return out


def _okx(payloads: list[bytes]) -> list[Frame]:
    """OKX ``books`` frames through the connector's own envelope and book decoders, levels as its ``Levels``
    turns them into rows (a frame's first data item: the connector writes that one)."""
    import msgspec

    from ticktape.exchanges.okx import BookData, Envelope
    from ticktape.exchanges.okx_book import Levels

    env_dec, book_dec = msgspec.json.Decoder(Envelope), msgspec.json.Decoder(list[BookData])
    out: list[Frame] = []
    for p in payloads:
        try:
            env = env_dec.decode(p)
            data = book_dec.decode(env.data)
            d = data[0]
            b, a = Levels().apply(d.bids, d.asks)
            out.append((int(d.ts) * 1_000_000, env.action == "snapshot", b, a))
        except (msgspec.DecodeError, ValueError, TypeError, IndexError):
            out.append(None)
    return out


def _deribit(payloads: list[bytes]) -> list[Frame]:
    """Deribit ``book`` notifications through the connector's own frame decoder, its snapshot test (``type``,
    or an older recording's missing ``prev_change_id``) and its level mapping (``delete``: amount 0)."""
    import msgspec

    from ticktape.exchanges.deribit import BookFrame, is_snapshot, levels

    dec = msgspec.json.Decoder(BookFrame, strict=False)
    out: list[Frame] = []
    for p in payloads:
        try:
            b = dec.decode(p).params.data
        except msgspec.DecodeError:
            out.append(None)
            continue
        out.append((b.timestamp * 1_000_000, is_snapshot(b), levels(b.bids), levels(b.asks)))
    return out


def _bitmex(payloads: list[bytes]) -> list[Frame]:
    """BitMEX ``orderBookL2`` frames through the connector's own frame decoder and time parser, levels priced
    as tardis-dev's mapper prices them: the price the item carries (BitMEX sends one on every item today),
    else the id's price from an earlier insert of the stretch; an unpriced level is left out, a delete's
    amount is 0. (tardis-dev also knows ids priced before the stretch: an unpriced update or delete of such
    an id, which only 2021-format frames have, is left out here and kept there.)"""
    import msgspec

    from ticktape.exchanges.bitmex import BookFrame
    from ticktape.exchanges.bitmex_tickers import iso_ns

    dec = msgspec.json.Decoder(BookFrame, strict=False)
    price_of: dict[int, float] = {}
    out: list[Frame] = []
    for p in payloads:
        try:
            f = dec.decode(p)
        except msgspec.DecodeError:
            out.append(None)
            continue
        bids: list[tuple[float, float]] = []
        asks: list[tuple[float, float]] = []
        for x in f.data:
            if x.price == x.price:  # not NaN: priced
                price_of[x.id] = x.price
            price = price_of.get(x.id)
            if price is None:
                continue
            (bids if x.side == "Buy" else asks).append((price, x.size if x.size >= 0 else 0.0))
            if f.action == "delete":
                del price_of[x.id]
        ets = iso_ns(f.data[-1].timestamp) if f.data else 0
        out.append((ets, f.action == "partial", bids, asks))
    return out


#: per exchange: the raw channels its tardis-dev book mapper reads, the decoder, and whether a resync snapshot
#: is ignored (Binance: a REST snapshot after the connection's first) or kept (Bybit, OKX, Deribit, BitMEX: a frame
#: the resubscribe brought, which tardis-dev maps as it maps every frame of the channel)
VENUES: dict[str, tuple[tuple[str, ...], Any, bool]] = {
    **{ex: ((DEPTH_CHANNEL,), _binance, True) for ex in MERGES_RESYNC},
    "bybit": (("orderbook.50",), _bybit, False),
    "bybit-spot": (("orderbook.50",), _bybit, False),
    "okex": (("books",), _okx, False),
    "okex-swap": (("books",), _okx, False),
    "deribit": (("book",), _deribit, False),
    "bitmex": (("orderBookL2",), _bitmex, False),
}


def raw_diff_rows(root: str, req: NormalizedRequest, symbol: str, after_ns: int, before_ns: int) -> BookRows | None:
    """Book rows of the symbol's raw book frames with ``after_ns < local < before_ns`` (bids then asks per
    frame, as the connector emits them); None when the archive kept no raw frames there."""
    channels, decode, _ = VENUES[req.exchange]
    local, payloads = _raw_frames(root, req, symbol, after_ns, before_ns, channels)
    if not payloads:
        return None
    n_rows, ets, snaps, asks, levels = [], [], [], [], []
    for f in decode(payloads):
        if f is None:
            f = (0, False, [], [])
        e, snap, b, a = f
        n_rows.append(len(b) + len(a))
        ets.append(e)
        snaps.append(snap)
        asks += [False] * len(b) + [True] * len(a)
        levels += b
        levels += a
    counts = np.array(n_rows, np.int64)
    lv = np.array(levels, np.float64).reshape(-1, 2)
    return BookRows(np.repeat(local, counts), np.repeat(np.array(ets, np.int64), counts),
                    np.repeat(np.array(snaps, np.bool_), counts), np.array(asks, np.bool_), lv[:, 0].copy(),
                    lv[:, 1].copy())


def _resync_times(root: str, req: NormalizedRequest, symbol: str) -> np.ndarray:
    """Local times of the symbol's ``resync`` events (a kept snapshot needs raw frames only after one)."""
    parts = [np.zeros(0, np.int64)]
    for batch in read_range(root, req.exchange, "events", symbol, req.range.start_ns, req.range.end_ns,
                            ("local_ts", "kind")):
        parts.append(ts_ns(batch)[codes(batch.column("kind"), ("resync",)) == 0])
    return np.concatenate(parts)


def as_tardis(root: str, req: NormalizedRequest, symbol: str, source: Iterator[BookRows],
              drops: np.ndarray) -> Iterator[BookRows]:
    """``source`` with every resync snapshot that is not its connection's first (no drop in ``drops``
    since the previous snapshot) replaced by the raw depth frames from the last row before it to the
    first row after it; a connection that drops during such a stretch has its raw frames up to the drop."""
    ignores = VENUES[req.exchange][2]
    resyncs = np.zeros(0, np.int64) if ignores else _resync_times(root, req, symbol)
    seen = False  # a snapshot of the current connection was passed through
    prev_snap = req.range.start_ns - 1  # local time of the last snapshot seen (drops after it reset ``seen``)
    last = req.range.start_ns - 1  # local time of the last row passed through
    window: tuple[int, int] | None = None  # (last row before, snapshot time) of a resync being replaced
    held: list[BookRows] = []  # the resync's own rows: kept if the archive has no raw frames for it
    for rows in source:
        local, snap = rows.local, rows.is_snap
        n = len(local)
        out: list[BookRows] = []
        i = 0
        while i < n:
            if window is not None:
                k = i + int(np.searchsorted(local[i:], window[1], "right"))
                held.append(_part(rows, i, k))
                if k >= n:
                    break
                raw = raw_diff_rows(root, req, symbol, window[0], int(local[k]))
                out.append(raw if raw is not None else _concat(held))
                window, held = None, []
                i = k
                continue
            starts = np.flatnonzero(snap[i:]) + i
            if not len(starts):
                out.append(_part(rows, i, n))
                last = int(local[n - 1])
                break
            s = int(starts[0])
            at = int(local[s])
            if s > i:
                out.append(_part(rows, i, s))
                last = int(local[s - 1])
            gone = drops[(drops > prev_snap) & (drops <= at)] if seen else drops[:0]
            if len(gone):  # a new connection: this snapshot is its first
                seen = False
                if gone[0] > last:  # diffs the old one sent after its last archived row (a gap cut short)
                    raw = raw_diff_rows(root, req, symbol, last, int(gone[0]) + 1)
                    if raw is not None:
                        out.append(raw)
            prev_snap = at
            if seen and ignores:
                window = (last, at)
                i = s
                continue
            if seen and bool(np.any((resyncs > last) & (resyncs <= at))):
                # a kept resync snapshot (Bybit): the frames it was awaited through come first
                raw = raw_diff_rows(root, req, symbol, last, at)
                if raw is not None:
                    out.append(raw)
            seen = True  # the connection's first snapshot (or a kept one): tardis-dev's too
            g_end = s + int(np.searchsorted(local[s:], at, "right"))  # the snapshot and the rows of its time
            out.append(_part(rows, s, g_end))
            last = at
            i = g_end
        if out:
            yield _concat(out)
    if window is not None:  # the range ends before any row after the resync: raw frames up to its end
        raw = raw_diff_rows(root, req, symbol, window[0], req.range.end_ns)
        yield raw if raw is not None else _concat(held)
