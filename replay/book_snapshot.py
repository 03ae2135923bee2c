"""``book_snapshot_{depth}[_grouped{step}]_{interval}`` and ``quote[_{interval}]`` computed from book rows with
tardis-dev's ``BookSnapshotComputable`` rules.

The rule is per message (see ``Snap``), but for interval snapshots the book only needs reading before a
message whose interval bucket is past the previous message's: ``Snapshots`` applies the rows between such
messages in bulk (``Book.apply`` over a run of rows) and decides "did the top levels change in between"
exactly without reading the book per message (``Snap._interval_changed``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ticktape.replay import fmt
from ticktape.replay.book import Book
from ticktape.replay.levels import distinct, distinct_ints, snapshot_lines, trailer
from ticktape.replay.merge import Chunk
from ticktape.replay.options import Snapshot
from ticktape.replay.rows import BookRows, json_name


def decimal_places(n: float) -> int:
    """tardis-dev's decimalPlaces: powers of ten until n * 10**k has no fraction."""
    k = 0
    while (n * 10**k) % 1 != 0 and k < 20:
        k += 1
    return k



class Snap:
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
        "out_blocks",
        "out_local",
        "out_price",
        "out_stamp",
    )

    def __init__(self, spec: Snapshot, symbol: str, exchange: str) -> None:
        self.depth = spec.depth
        self.iv = spec.interval_ms
        self.grouping = spec.grouping
        self.gpow = 10.0 ** decimal_places(spec.grouping) if spec.grouping else 1.0
        self.bids: list[tuple[float, float] | None] = [None] * spec.depth
        self.asks: list[tuple[float, float] | None] = [None] * spec.depth
        self.changed = False
        self.initialized = False
        self.last = -(2**62)
        self.out_local: list[int] = []
        self.out_stamp: list[int] = []
        self.out_price: list[float] = []
        self.out_amount: list[float] = []
        # emitted by the interval path, a block at a time: (local, stamp ms, prices (k, 2d), amounts (k, 2d))
        self.out_blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        grouping = b""
        if spec.grouping is not None:
            grouping = b',"grouping":' + fmt.numbers(np.array([spec.grouping])).to_pylist()[0]
        self.header = (
            b'{"type":"book_snapshot","symbol":' + json_name(symbol) + b',"exchange":' + json_name(exchange)
            + b',"name":' + json_name(spec.name) + f',"depth":{spec.depth},"interval":{spec.interval_ms}'.encode()
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

    def _emit(self, local: int, stamp: int | None = None) -> None:
        self.out_local.append(local)
        self.out_stamp.append(self.last if stamp is None else stamp)
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

    def _take(self, book: Book) -> bool:
        """Take the book's top ``depth`` levels; True when they differ from the last taken."""
        bp, ba, ap, aa = book.levels(self.depth)
        d = self.depth
        nb = list(zip(bp, ba, strict=True)) + [None] * (d - len(bp))
        na = list(zip(ap, aa, strict=True)) + [None] * (d - len(ap))
        if nb != self.bids or na != self.asks:
            self.bids, self.asks = nb, na
            return True
        return False

    def after(self, book: Book, t: int, local: int) -> None:
        if self.grouping is None:
            if self._take(book):
                self.changed = True
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

    # --- the interval path: the book is read only where a snapshot may be due -------------------------------

    @property
    def fast(self) -> bool:
        """After its first snapshot, an interval snapshot is only ever emitted before a message whose bucket is
        past the previous message's, so the book needs reading only there."""
        return self.iv > 0 and self.grouping is None and self.initialized

    def boundaries(self, ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Messages (indices into ``ms``) before which this snapshot may be due, and the stamp each would get."""
        prev = np.empty(len(ms), np.int64)
        prev[0] = self.last
        prev[1:] = ms[:-1]
        at = np.flatnonzero(ms // self.iv > prev // self.iv)
        return at, (prev[at] // self.iv + 1) * self.iv

    def taken_vector(self) -> np.ndarray:
        """The taken levels as one vector: bid prices, bid amounts, ask prices, ask amounts (NaN = none)."""
        nan = (math.nan, math.nan)
        b = [lv or nan for lv in self.bids]
        a = [lv or nan for lv in self.asks]
        return np.array([[x[0] for x in b], [x[1] for x in b], [x[0] for x in a], [x[1] for x in a]], np.float64)

    def set_taken(self, vec: np.ndarray) -> None:
        self.bids = [None if p != p else (p, q) for p, q in zip(vec[0].tolist(), vec[1].tolist(), strict=True)]
        self.asks = [None if p != p else (p, q) for p, q in zip(vec[2].tolist(), vec[3].tolist(), strict=True)]

    def emit_vector(self, local: int, stamp: int, vec: np.ndarray) -> None:
        self.out_local.append(local)
        self.out_stamp.append(stamp)
        self.out_price += vec[0].tolist() + vec[2].tolist()
        self.out_amount += vec[1].tolist() + vec[3].tolist()
        self.changed = False

    def emit_block(self, local: np.ndarray, stamp: np.ndarray, tops: np.ndarray) -> None:
        """Snapshots emitted by the interval path: ``tops`` (k, 4, depth) as bid p/a, ask p/a rows."""
        if len(local):
            self.out_blocks.append((local, stamp, np.concatenate([tops[:, 0], tops[:, 2]], axis=1),
                                    np.concatenate([tops[:, 1], tops[:, 3]], axis=1)))

    def flush(self) -> Chunk | None:
        d = self.depth
        blocks = self.out_blocks
        if self.out_local:
            k = len(self.out_local)
            blocks.insert(0, (np.array(self.out_local, np.int64), np.array(self.out_stamp, np.int64),
                              np.array(self.out_price, np.float64).reshape(k, 2 * d),
                              np.array(self.out_amount, np.float64).reshape(k, 2 * d)))
        if not blocks:
            return None
        self.out_local, self.out_stamp, self.out_price, self.out_amount, self.out_blocks = [], [], [], [], []
        local = np.concatenate([b[0] for b in blocks])
        stamp = np.concatenate([b[1] for b in blocks]) * 1_000_000
        price = np.concatenate([b[2] for b in blocks]).reshape(-1, 2 * d)
        amount = np.concatenate([b[3] for b in blocks]).reshape(-1, 2 * d)
        return Chunk(local, snapshot_lines(self.header, trailer(stamp, local), price, amount))


class DenseSide:
    """One side of the book as numpy arrays over the prices seen (ascending); amount 0 = no level."""

    __slots__ = ("amount", "bids", "price")

    def __init__(self, bids: bool, levels: dict[float, float]) -> None:
        self.bids = bids
        self.price = np.array(sorted(levels), np.float64)
        self.amount = np.array([levels[p] for p in self.price.tolist()], np.float64)

    def index(self, prices: np.ndarray) -> np.ndarray:
        """Positions of ``prices`` (adding the new ones; levels at 0 are dropped here, once per batch)."""
        live = self.amount != 0
        uniq, codes = distinct(prices)  # a batch touches few prices: hash the rows, sort only those
        union = np.union1d(self.price[live], uniq)
        amount = np.zeros(len(union), np.float64)
        amount[np.searchsorted(union, self.price[live])] = self.amount[live]
        self.price, self.amount = union, amount
        return np.searchsorted(union, uniq)[codes]

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        nz = np.flatnonzero(self.amount)
        idx = nz[: -n - 1 : -1] if self.bids else nz[:n]
        return self.price[idx], self.amount[idx]


def _last_writes(seg: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows (ascending) that are the last write to their price within their segment: one assignment per
    segment then leaves every price as its last row set it, whatever order numpy assigns in."""
    if len(idx) == 0:
        return np.zeros(0, np.int64)
    n = len(idx)
    width = int(idx.max()) + 1
    key = seg.astype(np.int64) * width + idx
    if (int(seg.max()) - int(seg.min()) + 1) * width > n // 4:  # mostly distinct keys: a sort is cheaper
        order = np.argsort(key, kind="stable")
        ks = key[order]
        last = np.ones(n, np.bool_)
        last[:-1] = ks[1:] != ks[:-1]
        return np.sort(order[last])
    # few keys (one segment's writes): numbered by first appearance from the end in one hash pass; a row is its
    # key's last write exactly when its number is past every number after it
    codes = distinct_ints(key[::-1])[1]
    first = np.empty(n, np.bool_)
    first[0] = True
    first[1:] = codes[1:] > np.maximum.accumulate(codes)[:-1]
    return (n - 1 - np.flatnonzero(first))[::-1]


class DenseBook:
    """The book for the interval path: both sides as arrays over the prices seen."""

    def __init__(self, book: Book) -> None:
        self.bids = DenseSide(True, book.bids.levels)
        self.asks = DenseSide(False, book.asks.levels)


#: cells of one (segments x prices) block: bounds the memory of ``side_tops`` whatever the batch
BLOCK_CELLS = 1 << 21
#: levels past the depth kept in the band of prices the tops are searched in
BAND_EXTRA = 16


def _state_after(start: np.ndarray, seg: np.ndarray, idx: np.ndarray, amount: np.ndarray, clears: np.ndarray,
                 k: int) -> np.ndarray:
    """The side's amounts after segments 0..k-1 (writes deduplicated per segment and in row order)."""
    before = seg < k
    cl = clears[clears < k]
    out = start.copy()
    if len(cl):
        out[:] = 0.0
        before &= seg >= cl.max()
    i, a = idx[before], amount[before]
    last = _last_writes(np.zeros(len(i), np.int64), i)
    out[i[last]] = a[last]
    return out


def side_tops(side: DenseSide, rows: BookRows, rix: np.ndarray, seg: np.ndarray, nseg: int, clears: np.ndarray,
              depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The side's best ``depth`` levels after each of ``nseg`` segments (rows ``rix`` of segment ``seg``, in order;
    a segment in ``clears`` starts from an empty side), best first, NaN-padded; the side ends after the last.

    States are built a block of segments at a time as a (segments x prices) matrix (each segment's last write
    per price, carried forward), over the band of prices around the top the start state has ``depth`` +
    ``BAND_EXTRA`` levels in; a block where some state has fewer than ``depth`` levels left in the band is
    redone over every price. The book is never walked row by row."""
    idx = side.index(rows.price[rix])
    keep = _last_writes(seg, idx)
    seg_k, idx_k, amt_k = seg[keep], idx[keep], rows.amount[rix][keep]
    price = side.price
    npx = len(price)
    out_p = np.full((nseg, depth), np.nan)
    out_a = np.full((nseg, depth), np.nan)
    start = side.amount
    side.amount = _state_after(start, seg_k, idx_k, amt_k, clears, nseg)
    if npx == 0:
        return out_p, out_a
    clear = np.zeros(nseg, np.bool_)
    clear[clears] = True
    live = np.flatnonzero(start > 0)
    w = depth + BAND_EXTRA
    if side.bids:
        band = (int(live[-w]) if len(live) >= w else 0, npx)
    else:
        band = (0, int(live[w - 1]) + 1 if len(live) >= w else npx)
    prev = start[band[0] : band[1]]
    step = max(1, BLOCK_CELLS // max(1, band[1] - band[0]))
    for k0 in range(0, nseg, step):
        k1 = min(nseg, k0 + step)
        lo_w, hi_w = np.searchsorted(seg_k, [k0, k1], "left")
        done = _block(side, price, seg_k[lo_w:hi_w], idx_k[lo_w:hi_w], amt_k[lo_w:hi_w], clear, k0, k1, band, prev,
                      depth, out_p, out_a)
        if done is None:  # the band ran short of levels: every price for this block
            full = _state_after(start, seg_k, idx_k, amt_k, clears, k0)
            done = _block(side, price, seg_k[lo_w:hi_w], idx_k[lo_w:hi_w], amt_k[lo_w:hi_w], clear, k0, k1, (0, npx),
                          full, depth, out_p, out_a)
            assert done is not None
            done = done[band[0] : band[1]]
        prev = done
    return out_p, out_a


def _block(side: DenseSide, price: np.ndarray, seg: np.ndarray, idx: np.ndarray, amount: np.ndarray,
           clear: np.ndarray, k0: int, k1: int, band: tuple[int, int], prev: np.ndarray, depth: int,
           out_p: np.ndarray, out_a: np.ndarray) -> np.ndarray | None:
    """Tops of segments k0..k1-1 over the price columns ``band`` (``prev``: their amounts before k0) into
    ``out_p``/``out_a``; returns the amounts after k1-1, or None when the band cannot answer."""
    c0, c1 = band
    width = c1 - c0
    inb = (idx >= c0) & (idx < c1)
    m = np.full((k1 - k0, width), np.nan)
    m[seg[inb] - k0, idx[inb] - c0] = amount[inb]
    cl = np.flatnonzero(clear[k0:k1])
    if len(cl):
        sub = m[cl]
        sub[np.isnan(sub)] = 0.0
        m[cl] = sub
    pos = np.where(np.isnan(m), -1, np.arange(k1 - k0)[:, None])
    np.maximum.accumulate(pos, axis=0, out=pos)
    filled = np.where(pos >= 0, np.take_along_axis(m, np.maximum(pos, 0), axis=0), prev[None, :])
    nz = filled > 0
    if side.bids:
        nz = nz[:, ::-1]
    rank = np.cumsum(nz, axis=1)
    if (c0, c1) != (0, len(price)) and bool((rank[:, -1] < depth).any()):
        return None
    r_i, c_i = np.nonzero(nz & (rank <= depth))
    col = (width - 1 - c_i) if side.bids else c_i
    slot = rank[r_i, c_i] - 1
    out_p[r_i + k0, slot] = price[col + c0]
    out_a[r_i + k0, slot] = filled[r_i, col]
    return np.asarray(filled[-1])


def interval_changed(rows: BookRows, gs: np.ndarray, g_snap: np.ndarray, a: int, b: int, taken: np.ndarray) -> bool:
    """With the top levels equal before message a and after message b-1: did one of messages a..b-1 change
    them in between? Only rows at or inside the taken top can (or a snapshot message), so those are replayed
    on exactly the levels at or inside the taken top, message by message."""
    n = len(rows.local)
    lo, hi = int(gs[a]), int(gs[b]) if b < len(gs) else n
    bid_thr = taken[0, -1] if taken[0, -1] == taken[0, -1] else -math.inf
    ask_thr = taken[2, -1] if taken[2, -1] == taken[2, -1] else math.inf
    ask = rows.is_ask[lo:hi]
    p = rows.price[lo:hi]
    inside = np.where(ask, p <= ask_thr, p >= bid_thr)
    if not inside.any() and not g_snap[a:b].any():
        return False
    want_b = {x: y for x, y in zip(taken[0].tolist(), taken[1].tolist(), strict=True) if x == x}
    want_a = {x: y for x, y in zip(taken[2].tolist(), taken[3].tolist(), strict=True) if x == x}
    mb, ma = dict(want_b), dict(want_a)
    ends = np.append(gs[a + 1 : b], hi).tolist()
    rows_in = np.flatnonzero(inside) + lo
    pl, ql, al = rows.price[rows_in].tolist(), rows.amount[rows_in].tolist(), rows.is_ask[rows_in].tolist()
    j = 0
    for m, end in zip(range(a, b), ends, strict=True):
        if g_snap[m]:
            mb.clear()
            ma.clear()
        while j < len(pl) and rows_in[j] < end:
            side = ma if al[j] else mb
            if ql[j] == 0:
                side.pop(pl[j], None)
            else:
                side[pl[j]] = ql[j]
            j += 1
        if mb != want_b or ma != want_a:
            return True
    return False


class Snapshots:
    """Every snapshot data type of one symbol over one book.

    Until each is initialized (and for interval 0 or grouped types) every message is walked as tardis-dev
    does; after that, a batch is applied to the book in bulk runs between the messages where some snapshot
    may be due (its interval bucket advanced), and the book is read only there.
    """

    def __init__(self, specs: list[Snapshot], symbol: str, exchange: str, interval_path: bool = True) -> None:
        self.interval_path = interval_path  # False: every message walked (the reference the tests compare with)
        self.book = Book()
        self.received = False  # tardis-dev's book ignores changes until its first snapshot
        self.snaps = [Snap(s, symbol, exchange) for s in specs]
        self.dense: DenseBook | None = None  # the book once every snapshot takes the interval path

    def feed(self, rows: BookRows, gs: np.ndarray, ets: np.ndarray) -> list[Chunk]:
        ms = ets[gs] // 1_000_000
        locs = rows.local[gs]
        g_snap = rows.is_snap[gs]
        g = 0 if self.dense is not None else self._per_message(rows, gs, g_snap, ms, locs)
        if g < len(gs):
            if self.dense is None:
                self.dense = DenseBook(self.book)
            self._intervals(rows, gs, g_snap, g, ms, locs)
        return [c for c in (s.flush() for s in self.snaps) if c is not None]

    def _ready(self) -> bool:
        return self.interval_path and self.received and all(s.fast for s in self.snaps)

    def _per_message(self, rows: BookRows, gs: np.ndarray, g_snap: np.ndarray, ms: np.ndarray,
                     locs: np.ndarray) -> int:
        """tardis-dev's rule message by message, until every snapshot can take the interval path."""
        book = self.book
        book.load(rows.is_ask, rows.price, rows.amount)
        ends = np.append(gs[1:], len(rows.local)).tolist()
        msl, locl, snapl = ms.tolist(), locs.tolist(), g_snap.tolist()
        snaps = self.snaps
        for g, r in enumerate(gs.tolist()):
            t, loc = msl[g], locl[g]
            for s in snaps:
                s.before(t, loc)
            if snapl[g]:
                book.clear()
                self.received = True
            if self.received:
                book.apply(r, ends[g])
            for s in snaps:
                s.after(book, t, loc)
            if self._ready():
                return g + 1
        return len(gs)

    def _intervals(self, rows: BookRows, gs: np.ndarray, g_snap: np.ndarray, g0: int, ms: np.ndarray,
                   locs: np.ndarray) -> None:
        """The rest of the batch: the top levels are computed (vectorized) only before the messages where a
        snapshot may be due (and where a snapshot message clears the book); there each snapshot decides
        whether it changed since its last due point and emits."""
        assert self.dense is not None
        G = len(gs)
        n = len(rows.local)
        # per snapshot type: the messages (ascending) before which it may be due, and the stamps there
        due = [(at + g0, stamps) for at, stamps in (s.boundaries(ms[g0:]) for s in self.snaps)]
        snap_msgs = np.flatnonzero(g_snap[g0:]) + g0
        cuts = np.union1d(np.concatenate([at for at, _ in due]), snap_msgs).astype(np.int64)
        nseg = len(cuts) + 1
        # a segment starting at a snapshot message starts from an empty book
        clears = np.searchsorted(cuts, snap_msgs) + 1
        cut_rows = np.append(gs, n)[cuts]
        r0 = int(gs[g0])
        depth = max(s.depth for s in self.snaps)
        tops = np.empty((nseg, 4, depth))
        # segment of every row: how many cuts are at or before it
        step = np.zeros(n + 1, np.int64)
        step[cut_rows] = 1
        seg_of_row = np.cumsum(step)
        for k, (side, mask) in enumerate(((self.dense.bids, ~rows.is_ask[r0:]), (self.dense.asks, rows.is_ask[r0:]))):
            rix = np.flatnonzero(mask) + r0
            seg = seg_of_row[rix]
            tops[:, 2 * k], tops[:, 2 * k + 1] = side_tops(side, rows, rix, seg, nseg, clears, depth)
        for s, (ms_due, stamps) in zip(self.snaps, due, strict=True):
            self._decide(s, ms_due, stamps, tops, cuts, rows, gs, g_snap, g0, locs)
            s.last = int(ms[G - 1])

    def _decide(self, s: Snap, ms_due: np.ndarray, stamps: np.ndarray, tops: np.ndarray, cuts: np.ndarray,
                rows: BookRows, gs: np.ndarray, g_snap: np.ndarray, g0: int, locs: np.ndarray) -> None:
        """One snapshot type over the batch: at each of its due points (and at the batch's end), did its top
        levels change since its previous one? Vectorized; only equal tops whose interval had rows at or
        inside the top are walked (``interval_changed``)."""
        G = len(gs)
        # segment index whose end is each due point, then the batch's end (the last segment)
        k_due = np.searchsorted(cuts, ms_due)
        ks = np.append(k_due, len(cuts))
        ends_m = np.append(ms_due, G)
        starts_m = np.r_[g0, ms_due]
        now = tops[ks, :, : s.depth]
        was = np.concatenate([s.taken_vector()[None], now[:-1]])
        same = ((now == was) | (np.isnan(now) & np.isnan(was))).reshape(len(ks), -1).all(axis=1)
        nonempty = starts_m < ends_m
        changed = nonempty & ~same
        if s.changed:
            changed[0] = True
        for j in np.flatnonzero(nonempty & same & ~changed).tolist():
            changed[j] = interval_changed(rows, gs, g_snap, int(starts_m[j]), int(ends_m[j]), was[j])
        emit = changed[:-1]
        s.emit_block(locs[ms_due[emit]], stamps[emit], now[:-1][emit])
        s.changed = bool(changed[-1])
        s.set_taken(np.ascontiguousarray(now[-1]))
