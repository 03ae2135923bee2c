"""A Binance book after a sequence gap, as tardis-dev replays it (the default) or as ticktape resynced it.

After a gap the connector fetches a new REST snapshot: the archive's ``book_change`` holds no diff from the
gap until the resync, then the snapshot (the buffered diffs merged at its time), then diffs again; the
diffs in between are only in ``raw``. tardis-dev's binance mappers take the first ``depthSnapshot`` of a
connection only and ignore every later one, applying every diff across the hole. So by default
(``bookGaps: "tardis"``) a resync snapshot that is not the first of its connection is dropped, together
with the diffs archived with it, and that stretch's book rows are the archived raw depth frames, decoded
with the connector's own decoder. ``bookGaps: "resync"`` keeps ticktape's resynced book (the snapshot and
every diff after it: the exchange's true book). Without raw frames for the stretch (``raw = false``) the
resynced rows stay, since there is nothing else to build from.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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


def raw_diff_rows(root: str, req: NormalizedRequest, symbol: str, after_ns: int, before_ns: int) -> BookRows | None:
    """Book rows of the symbol's raw depth frames with ``after_ns < local < before_ns`` (bids then asks per
    frame, as the connector emits a diff); None when the archive kept no raw frames there."""
    import msgspec

    from ticktape.exchanges.binance_futures import DepthFrame  # the connector's decoding, only when needed

    start, end = max(after_ns + 1, req.range.start_ns), min(before_ns, req.range.end_ns)
    local_parts: list[np.ndarray] = []
    payloads: list[bytes] = []
    for batch in read_range(root, req.exchange, "raw", symbol, start, end, ("local_ts", "channel", "payload")):
        payload = batch.column("payload")
        frame = np.asarray(pc.fill_null(pc.binary_length(payload), 0).to_numpy(zero_copy_only=False)) > 0
        keep = np.flatnonzero((codes(batch.column("channel"), (DEPTH_CHANNEL,)) == 0) & frame)  # no drop marker
        if not len(keep):
            continue
        local_parts.append(ts_ns(batch)[keep])
        payloads += payload.take(pa.array(keep)).to_pylist()
    if not payloads:
        return None
    local = np.concatenate(local_parts)
    decoder = msgspec.json.Decoder(list[DepthFrame], strict=False)
    one = msgspec.json.Decoder(DepthFrame, strict=False)
    try:
        frames: list[DepthFrame | None] = list(decoder.decode(b"[" + b",".join(payloads) + b"]"))
    except msgspec.DecodeError:  # a malformed frame (counted at capture, kept raw): tardis-dev maps none of it
        frames = []
        for p in payloads:
            try:
                frames.append(one.decode(p))
            except msgspec.DecodeError:
                frames.append(None)
    n_rows, ets, asks, levels = [], [], [], []
    for f in frames:
        if f is None:
            n_rows.append(0)
            ets.append(0)
            continue
        d = f.data
        n_rows.append(len(d.b) + len(d.a))
        ets.append(d.E * 1_000_000)
        asks += [False] * len(d.b) + [True] * len(d.a)
        levels += d.b
        levels += d.a
    counts = np.array(n_rows, np.int64)
    lv = np.array(levels, np.float64).reshape(-1, 2)
    m = len(lv)
    return BookRows(np.repeat(local, counts), np.repeat(np.array(ets, np.int64), counts), np.zeros(m, np.bool_),
                    np.array(asks, np.bool_), lv[:, 0].copy(), lv[:, 1].copy())


def as_tardis(root: str, req: NormalizedRequest, symbol: str, source: Iterator[BookRows],
              drops: np.ndarray) -> Iterator[BookRows]:
    """``source`` with every resync snapshot that is not its connection's first (no drop in ``drops``
    since the previous snapshot) replaced by the raw depth frames from the last row before it to the
    first row after it; a connection that drops during such a stretch has its raw frames up to the drop."""
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
            if seen:
                window = (last, at)
                i = s
                continue
            seen = True  # the connection's first snapshot: tardis-dev's too
            g_end = s + int(np.searchsorted(local[s:], at, "right"))  # the snapshot and the rows of its time
            out.append(_part(rows, s, g_end))
            last = at
            i = g_end
        if out:
            yield _concat(out)
    if window is not None:  # the range ends before any row after the resync: raw frames up to its end
        raw = raw_diff_rows(root, req, symbol, window[0], req.range.end_ns)
        yield raw if raw is not None else _concat(held)
