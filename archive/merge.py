"""Redundant captures merged row by row: the pure part of ``capture merge`` (tables in, tables out).

Two or more captures of the same feeds each hold every row they received. The
canonical archive keeps each venue message once, fills one capture's holes from
another that was live then, and marks what no capture holds:

- ``trades``: one row per trade id, the first source's (sources in the order given).
- ``book_change``: the rows carry no sequence id, but every capture writes a venue
  update as the same rows (exchange time, side, price, amount), in the venue's
  order. A source's *segment* runs from a snapshot (a verified state) to its next
  snapshot or break; the merged book follows one segment, and where it breaks, it
  continues in another source's segment that holds the same last rows (so that
  source was in the same verified state) with its rows after them. Where no
  segment continues, the book has a hole: the break's own events (the
  ``disconnect`` markers of the source that went down last) are kept, and the book
  resumes at the earliest snapshot after the hole.
- ``raw``: one row per (channel, sequence id) where the frame has one (Binance
  ``u``/trade ``t``/``lastUpdateId``, Bybit ``seq``, Hyperliquid ``time``, OKX
  ``seqId``, Deribit ``change_id``...), else per (channel, payload); a payload a
  source received n times is kept max-n times.
- every other table: one row per distinct content (all columns but the local times),
  each kept as often as the source that has it most often.

Local times stay each source's own; merged book rows are raised to their
predecessor's time where two sources' clocks disagree, so a table stays in arrival
order. Everything here is numpy/Arrow over whole columns; Python loops run once
per segment or per splice, never per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.ipc.schemas import LOCAL_TS_NS, arrow_schema_for

#: event kinds that end a source's verified book / live feed
BREAK_KINDS = ("disconnect", "stall", "gap", "drop")
#: events a merge re-derives rather than copies (they describe one capture's connection)
WINDOW_KINDS = (*BREAK_KINDS, "connect", "resync")
#: rows of the previous merged hour whose content starts the next hour's book
TAIL_ROWS = 8
#: the sequence id of a raw frame per (exchange, channel prefix): a regex with one named group
SEQ_PATTERNS: dict[str, tuple[tuple[str, str], ...]] = {
    "binance-futures": (("depthSnapshot", r'"lastUpdateId":(?P<s>\d+)'), ("depth", r'"u":(?P<s>\d+)'),
                        ("trade", r'"t":(?P<s>\d+)'), ("aggTrade", r'"a":(?P<s>\d+)'), ("bookTicker", r'"u":(?P<s>\d+)')),
    "bybit": (("orderbook", r'"seq":(?P<s>\d+)'), ("publicTrade", r'"i":"(?P<s>[^"]+)"')),
    "bybit-spot": (("orderbook", r'"seq":(?P<s>\d+)'), ("publicTrade", r'"i":"(?P<s>[^"]+)"')),
    "hyperliquid": (("l2Book", r'"time":(?P<s>\d+)'), ("trades", r'"tid":(?P<s>\d+)'), ("bbo", r'"time":(?P<s>\d+)')),
    "okex": (("books", r'"seqId":(?P<s>\d+)'), ("trades", r'"tradeId":"(?P<s>[^"]+)"')),
    "okex-swap": (("books", r'"seqId":(?P<s>\d+)'), ("trades", r'"tradeId":"(?P<s>[^"]+)"')),
    "deribit": (("book", r'"change_id":(?P<s>\d+)'), ("trades", r'"trade_id":"(?P<s>[^"]+)"')),
    "bitmex": (("trade", r'"trdMatchID":"(?P<s>[^"]+)"'),),
}


@dataclass
class Stats:
    """What one partition's merge did (summed into the report)."""

    kept: dict[str, int] = field(default_factory=dict)  # rows kept per source name
    duplicates: int = 0  # rows dropped because another copy was kept
    windows: int = 0  # source down windows seen (book segments ending in a break)
    filled: int = 0  # of those, covered entirely by another source
    left: int = 0  # holes no source covers: kept as disconnect markers (a capture's end counts too)

    def add(self, other: Stats) -> None:
        for k, v in other.kept.items():
            self.kept[k] = self.kept.get(k, 0) + v
        self.duplicates += other.duplicates
        self.windows += other.windows
        self.filled += other.filled
        self.left += other.left

    def as_dict(self) -> dict[str, object]:
        return {"kept": dict(sorted(self.kept.items())), "duplicates": self.duplicates, "windows": self.windows,
                "windows_filled": self.filled, "windows_left": self.left}


# --- row identities -----------------------------------------------------------------


def _column_codes(col: pa.ChunkedArray) -> np.ndarray:
    """One int64 per row, equal iff the values are equal (nulls equal each other)."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = t.value_type
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t):
        n = len(col)
        flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float64)
        width = len(flat) // n if n else 0
        rows = np.ascontiguousarray(flat.reshape(n, width)).view(np.dtype((np.void, 8 * width))).ravel()
        return np.unique(rows, return_inverse=True)[1].astype(np.int64).ravel()
    if pa.types.is_timestamp(t) or pa.types.is_boolean(t):
        col = col.cast(pa.int64())
        t = pa.int64()
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        vals = col.fill_null(0).to_numpy(zero_copy_only=False)
        bits = vals.astype(np.float64).view(np.int64) if pa.types.is_floating(t) else vals.astype(np.int64)
        return np.where(valid, bits, np.int64(-0x7FFF_FFFF_FFFF_FFF0))
    enc = pc.dictionary_encode(col, null_encoding="encode").combine_chunks()
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _dense(values: np.ndarray) -> tuple[np.ndarray, int]:
    """int64 values -> dense codes 0..m-1 (equal iff equal) and m."""
    uniq, inv = np.unique(values, return_inverse=True)
    return inv.astype(np.int64).ravel(), max(len(uniq), 1)


def row_codes(table: pa.Table, columns: list[str]) -> np.ndarray:
    """One int64 per row, dense (0..m-1): equal iff the rows agree on every column in ``columns``
    (one 1-d sort per column, combined in mixed radix)."""
    if table.num_rows == 0:
        return np.zeros(0, np.int64)
    key, size = np.zeros(table.num_rows, np.int64), 1
    for c in columns:
        code, m = _dense(_column_codes(table.column(c)))
        if size * m >= 1 << 62:
            key, size = _dense(key)
        key, size = key * m + code, size * m
    return key if len(columns) == 1 else _dense(key)[0]  # dense: callers index arrays by it


def occurrence(codes: np.ndarray, src: np.ndarray) -> np.ndarray:
    """For each row: how many earlier rows of the same source have the same code (0, 1, ...)."""
    n = len(codes)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((np.arange(n), codes, src))
    c, s = codes[order], src[order]
    new = np.ones(n, bool)
    new[1:] = (c[1:] != c[:-1]) | (s[1:] != s[:-1])
    starts = np.flatnonzero(new)
    run = np.repeat(starts, np.diff(np.append(starts, n)))
    occ = np.empty(n, np.int64)
    occ[order] = np.arange(n) - run
    return occ


def _stack(tables: list[pa.Table | None], data_type: str) -> tuple[pa.Table, np.ndarray]:
    """The sources' rows in priority order, and each row's source index."""
    schema = arrow_schema_for(data_type)
    parts = [(i, t.select(schema.names).cast(schema)) for i, t in enumerate(tables) if t is not None and t.num_rows]
    if not parts:
        return schema.empty_table(), np.zeros(0, np.int64)
    src = np.concatenate([np.full(t.num_rows, i, np.int64) for i, t in parts])
    return pa.concat_tables([t for _, t in parts]).combine_chunks(), src


def _keep_first(key: np.ndarray) -> np.ndarray:
    """Indices of the first row of each distinct key, in row order."""
    _, first = np.unique(key, return_index=True)
    return np.sort(first)


def _sorted_take(table: pa.Table, idx: np.ndarray) -> pa.Table:
    out = table.take(pa.array(idx, pa.int64()))
    ts = out.column(LOCAL_TS_NS).to_numpy()
    order = np.argsort(ts, kind="stable")
    return out if bool(np.all(order == np.arange(len(order)))) else out.take(pa.array(order))


def _count(stats: Stats, names: list[str], src: np.ndarray, kept: np.ndarray) -> None:
    per = np.bincount(src[kept], minlength=len(names)) if len(kept) else np.zeros(len(names), np.int64)
    for i, n in enumerate(names):
        stats.kept[n] = stats.kept.get(n, 0) + int(per[i])
    stats.duplicates += len(src) - len(kept)


def owned(keys: pa.Table, src: np.ndarray, keep: np.ndarray, edges: pa.Table | None) -> np.ndarray:
    """Of the rows ``keep``, those whose source is the first holding their key here or at the
    near edge of a neighbouring hour (``edges``: the key columns + ``src``): a message two
    captures put on either side of an hour boundary is kept in one hour only."""
    if edges is None or not edges.num_rows or not len(keep):
        return keep
    cols = keys.column_names
    codes = row_codes(pa.concat_tables([keys, edges.select(cols).cast(keys.schema)]), cols)
    n = keys.num_rows
    owner = np.full(int(codes.max()) + 1, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(owner, codes[:n], src)
    np.minimum.at(owner, codes[n:], edges.column("src").to_numpy().astype(np.int64))
    return keep[owner[codes[keep]] == src[keep]]


def merge_trades(tables: list[pa.Table | None], names: list[str], edges: pa.Table | None = None,
                 data_type: str = "trades") -> tuple[pa.Table, Stats]:
    """One row per trade id, the first source's (``edges``: see ``owned``)."""
    stats = Stats()
    table, src = _stack(tables, data_type)
    if not table.num_rows:
        return table, stats
    keys = table.select(["id"])
    keep = owned(keys, src, _keep_first(row_codes(keys, ["id"])), edges)
    _count(stats, names, src, keep)
    return _sorted_take(table, keep), stats


def merge_content(tables: list[pa.Table | None], names: list[str], data_type: str) -> tuple[pa.Table, Stats]:
    """One row per distinct content (every column but the local times), as many times as the
    source that has it most often."""
    stats = Stats()
    table, src = _stack(tables, data_type)
    if not table.num_rows:
        return table, stats
    cols = [c for c in table.column_names if c not in ("local_ts", LOCAL_TS_NS)]
    codes = row_codes(table, cols)
    occ = occurrence(codes, src)
    keep = _keep_first(codes * (int(occ.max()) + 1) + occ)
    _count(stats, names, src, keep)
    return _sorted_take(table, keep), stats


def raw_identity(exchange: str, table: pa.Table) -> pa.Table:
    """``table`` (raw rows) plus ``_id``: the frame's sequence id where its channel has one, else its payload."""
    payload = table.column("payload").combine_chunks() if table.num_rows else pa.array([], pa.binary())
    ident = payload
    channel = table.column("channel").combine_chunks() if table.num_rows else pa.array([], pa.string())
    for prefix, pattern in SEQ_PATTERNS.get(exchange, ()):
        mask = pc.starts_with(channel, prefix)
        if not pc.any(mask).as_py():
            continue
        m = pc.extract_regex(payload, pattern)
        seq = pc.binary_join_element_wise(pa.scalar(b"#"), pc.struct_field(m, [0]), pa.scalar(b""))
        take = pc.and_(mask, pc.is_valid(m))
        ident = pc.if_else(take, seq, ident)
    return table.append_column("_id", ident)


def merge_raw(exchange: str, tables: list[pa.Table | None], names: list[str],
              markers: pa.Table | None = None, edges: pa.Table | None = None) -> tuple[pa.Table, Stats]:
    """One row per (channel, sequence id or payload) (see the module doc), the sources'
    empty rows (their disconnect markers) replaced by ``markers`` (``edges``: see ``owned``;
    columns ``channel``, ``_id``, ``src``)."""
    stats = Stats()
    table, src = _stack(tables, "raw")
    if table.num_rows:
        live = pc.greater(pc.binary_length(table.column("payload")), 0).to_numpy(zero_copy_only=False)
        table, src = table.filter(pa.array(live)), src[live]
    if table.num_rows:
        table = raw_identity(exchange, table)
        codes = row_codes(table, ["channel", "_id"])
        occ = occurrence(codes, src)
        keep = _keep_first(codes * (int(occ.max()) + 1) + occ)
        keep = owned(table.select(["channel", "_id"]), src, keep, edges)
        _count(stats, names, src, keep)
        table = table.drop_columns(["_id"]).take(pa.array(keep))
    if markers is not None and markers.num_rows:
        table = pa.concat_tables([table, markers.select(table.schema.names).cast(table.schema)])
    return _sorted_take(table, np.arange(table.num_rows)), stats


# --- book_change: segments and splices ---------------------------------------------------


def row_hash(table: pa.Table) -> np.ndarray:
    """A 64-bit hash of each book_change row's venue content (exchange time, side, price, amount,
    snapshot flag): equal rows of two captures hash equal, whatever their local times."""
    if table.num_rows == 0:
        return np.zeros(0, np.uint64)
    ets = table.column("exchange_ts").cast(pa.int64()).fill_null(0).to_numpy().astype(np.uint64)
    side = table.column("side")
    side_txt = side.cast(pa.string()) if pa.types.is_dictionary(side.type) else side
    ask = pc.equal(side_txt, "ask").to_numpy(zero_copy_only=False).astype(np.uint64)
    snap = table.column("is_snapshot").to_numpy(zero_copy_only=False).astype(np.uint64)
    price = table.column("price").to_numpy().astype(np.float64).view(np.uint64)
    amount = table.column("amount").to_numpy().astype(np.float64).view(np.uint64)
    with np.errstate(over="ignore"):
        h = ets * np.uint64(0x9E3779B97F4A7C15)
        for v, k in ((price, 0xBF58476D1CE4E5B9), (amount, 0x94D049BB133111EB), (ask * 2 + snap, 0xD6E8FEB86659FD93)):
            h ^= (v + np.uint64(k)) * np.uint64(0x2545F4914F6CDD1D)
            h ^= h >> np.uint64(31)
    return h


@dataclass
class BookSource:
    """One source's book_change rows of a symbol and hour (optionally after some rows of the
    previous hour: ``context`` rows, which are matched against but belong to that hour)."""

    name: str
    table: pa.Table
    events: pa.Table  # the symbol's events rows of the hour
    context: int = 0

    def __post_init__(self) -> None:
        t = self.table
        self.ts = t.column(LOCAL_TS_NS).to_numpy().astype(np.int64) if t.num_rows else np.zeros(0, np.int64)
        self.hash = row_hash(t)
        snap = t.column("is_snapshot").to_numpy(zero_copy_only=False).astype(bool) if t.num_rows else np.zeros(0, bool)
        self.snap = snap
        ets = t.column("exchange_ts").cast(pa.int64()).fill_null(0).to_numpy() if t.num_rows else np.zeros(0, np.int64)
        first = snap.copy()
        first[1:] &= ~(snap[:-1] & (self.ts[1:] == self.ts[:-1]) & (ets[1:] == ets[:-1]))
        starts = np.flatnonzero(first)
        #: segment starts (snapshot frames) and ends (exclusive); rows before the first snapshot
        #: continue the previous hour's book: a segment too (the context rows start it, so the
        #: previous merged hour's last rows are found there as in this hour's rows)
        if len(t) and (not len(starts) or starts[0] > 0):
            starts = np.r_[0, starts]
        self.starts = starts.astype(np.int64)
        self.ends = (np.r_[starts[1:], len(t)] if len(starts) else starts).astype(np.int64)
        #: this hour's first row continues a book (not a snapshot): the source was live across the hour
        self.leading = len(t) > self.context and not bool(snap[self.context])
        ev = self.events
        if ev.num_rows:
            kind = ev.column("kind")
            txt = kind.cast(pa.string()) if pa.types.is_dictionary(kind.type) else kind
            brk = pc.is_in(txt, pa.array(BREAK_KINDS)).to_numpy(zero_copy_only=False)
            at = ev.column(LOCAL_TS_NS).to_numpy()[brk]
            self.break_ts = np.unique(at)
            own = pc.equal(ev.column("detail"), "shutdown").fill_null(False).to_numpy(zero_copy_only=False)[brk]
            #: break times that are a capture's own stop (every row's detail "shutdown"): no window
            self.shutdown_ts = set(np.unique(at[own]).tolist()) - set(np.unique(at[~own]).tolist())
        else:
            self.break_ts = np.zeros(0, np.int64)
            self.shutdown_ts = set()

    def segment_of(self, row: int) -> int:
        return int(np.searchsorted(self.starts, row, "right")) - 1

    def find(self, tail: np.ndarray) -> int | None:
        """The row where ``tail`` (the hashes of consecutive diff rows) ends here, if it occurs
        exactly once and inside one segment; else None."""
        k = len(tail)
        if k == 0 or len(self.hash) < k:
            return None
        cand = np.flatnonzero(self.hash == tail[-1])
        cand = cand[cand >= k - 1]
        hits = [int(c) for c in cand if np.array_equal(self.hash[c - k + 1: c + 1], tail)]
        if len(hits) != 1:
            return None
        end = hits[0]
        seg = self.segment_of(end)
        if seg < 0 or self.starts[seg] > end - k + 1:
            return None
        return end

    def break_after(self, ts: int, before: int | None) -> int | None:
        """The first break event after local time ``ts`` (and not after ``before``)."""
        i = int(np.searchsorted(self.break_ts, ts, "right"))
        if i < len(self.break_ts) and (before is None or self.break_ts[i] <= before):
            return int(self.break_ts[i])
        return None


@dataclass
class BookMerge:
    """The merged rows of a symbol's hour and what the merge decided."""

    table: pa.Table
    markers: list[tuple[int, int]]  # (source index, local time of that source's break events kept)
    resumes: list[tuple[int, int]]  # (source index, local time of the snapshot the book (re)started at)
    fills: list[tuple[int, int, int]]  # (from source, to source, local time of the splice)
    stats: Stats
    ended_in_hole: bool


def _tail(src: BookSource, end: int) -> np.ndarray:
    """Hashes of up to TAIL_ROWS diff rows ending at row ``end`` (inclusive) within its segment."""
    seg = src.segment_of(end)
    lo = max(int(src.starts[seg]) if seg >= 0 else 0, end - TAIL_ROWS + 1)
    rows = np.arange(lo, end + 1)
    rows = rows[~src.snap[rows]]
    if len(rows) == 0 or rows[-1] != end:
        return np.zeros(0, np.uint64)
    contiguous = rows[np.flatnonzero(np.r_[True, np.diff(rows) == 1])[-1]:] if len(rows) else rows
    return src.hash[contiguous]


def merge_book(sources: list[BookSource], start_tail: np.ndarray | None, hour_start_ns: int) -> BookMerge:
    """Follow verified segments across sources (see the module doc)."""
    names = [s.name for s in sources]
    stats = Stats(kept={n: 0 for n in names})
    pieces: list[tuple[int, int, int]] = []  # (source, first row, end row exclusive)
    markers: list[tuple[int, int]] = []
    resumes: list[tuple[int, int]] = []
    fills: list[tuple[int, int, int]] = []
    cur: tuple[int, int, int] | None = None  # (source, row, segment end)
    if start_tail is not None and len(start_tail):
        for i, s in enumerate(sources):
            at = s.find(start_tail)
            if at is not None:
                cur = (i, at + 1, int(s.ends[s.segment_of(at)]))
                break
    if cur is None:
        lead = [i for i, s in enumerate(sources) if s.leading]
        if lead:
            s = sources[lead[0]]
            cur = (lead[0], s.context, int(s.ends[s.segment_of(s.context)]))
    last_ts = hour_start_ns - 1
    ended_in_hole = False
    holes: list[list[int]] = []  # [last row's time, time the book resumed (or -1)]
    for _ in range(1_000_000):  # each turn emits new venue rows or ends
        if cur is None:  # the earliest snapshot after the last row emitted
            best: tuple[int, int, int] | None = None
            for i, s in enumerate(sources):
                if not len(s.starts):
                    continue
                ok = np.flatnonzero((s.ts[s.starts] > last_ts) & s.snap[s.starts] & (s.starts >= s.context))
                if len(ok):
                    j = int(ok[0])
                    cand = (int(s.ts[s.starts[j]]), i, j)
                    if best is None or cand < best:
                        best = cand
            if best is None:
                break
            _, i, j = best
            s = sources[i]
            cur = (i, int(s.starts[j]), int(s.ends[j]))
            resumes.append((i, int(s.ts[s.starts[j]])))  # the first start too: a connect for readers
            if holes and holes[-1][1] < 0:
                holes[-1][1] = int(s.ts[s.starts[j]])
        i, row, end = cur
        s = sources[i]
        if end > row:
            pieces.append((i, row, end))
            last_ts = max(last_ts, int(s.ts[end - 1]))
            ended_in_hole = False
        last_row = end - 1
        # where this segment ends: does another source hold its last rows and go on?
        tail = _tail(s, last_row) if last_row >= 0 else np.zeros(0, np.uint64)
        nxt: tuple[int, int, int] | None = None
        best_end = -1
        for j, o in enumerate(sources):
            if j == i or not len(tail):
                continue
            at = o.find(tail)
            if at is None:
                continue
            seg_end = int(o.ends[o.segment_of(at)])
            if seg_end > at + 1 and int(o.ts[seg_end - 1]) > best_end:
                nxt, best_end = (j, at + 1, seg_end), int(o.ts[seg_end - 1])
        if nxt is not None:
            fills.append((i, nxt[0], int(sources[nxt[0]].ts[nxt[1]])))
            cur = nxt
            continue
        own_next = np.flatnonzero(s.starts == end)
        next_snap_ts = int(s.ts[end]) if end < len(s.ts) else None
        brk = s.break_after(int(s.ts[last_row]) if last_row >= 0 else hour_start_ns, next_snap_ts)
        if brk is not None:
            markers.append((i, brk))
            holes.append([last_ts, -1])
            ended_in_hole = True
        elif len(own_next):
            cur = (i, end, int(s.ends[own_next[0]]))  # a snapshot with no break before it: go on
            continue
        cur = None
    stats.left = len(holes)
    # each source's own down windows (a segment ending in a break): filled unless a hole meets them
    for s in sources:
        for a0, b0 in zip(s.starts.tolist(), s.ends.tolist(), strict=True):
            if b0 <= max(a0, s.context):
                continue
            t0 = int(s.ts[b0 - 1])
            t1 = int(s.ts[b0]) if b0 < len(s.ts) else None
            brk = s.break_after(t0, t1)
            if brk is None or brk in s.shutdown_ts:
                continue
            stats.windows += 1
            end_t = t1 if t1 is not None else np.iinfo(np.int64).max
            if not any(h0 < end_t and (h1 < 0 or h1 > t0) for h0, h1 in holes):
                stats.filled += 1
    parts = [sources[i].table.slice(a, b - a) for i, a, b in pieces]
    for i, a, b in pieces:
        stats.kept[names[i]] += b - a
    schema = arrow_schema_for("book_change")
    table = pa.concat_tables([p.select(schema.names).cast(schema) for p in parts]) if parts else schema.empty_table()
    if table.num_rows:
        ts = np.maximum.accumulate(np.maximum(table.column(LOCAL_TS_NS).to_numpy().astype(np.int64), hour_start_ns))
        if not np.array_equal(ts, table.column(LOCAL_TS_NS).to_numpy()):
            table = table.set_column(table.schema.get_field_index(LOCAL_TS_NS), LOCAL_TS_NS, pa.array(ts, pa.int64()))
            us = pa.array(ts // 1000, pa.int64()).cast(schema.field("local_ts").type)
            table = table.set_column(table.schema.get_field_index("local_ts"), "local_ts", us)
    # rows not taken: another source's copy was, or they were never verified (before a snapshot)
    stats.duplicates = sum(len(s.table) - s.context for s in sources) - table.num_rows
    return BookMerge(table, markers, resumes, fills, stats, ended_in_hole)
