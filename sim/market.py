"""A deterministic market per (exchange, symbol): one seeded RNG, an order book
of integer price ticks and quantity lots, and a stream of trade / book events.

Prices and sizes stay integers until a venue formats them as the exchange's
decimal strings (``Spec.px`` / ``Spec.qty``), so a test can compare books
exactly. The RNG is seeded from (seed, exchange, symbol), so a market's event
sequence does not depend on which other markets exist or on timing.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

BID, ASK = 0, 1


@dataclass(frozen=True)
class Spec:
    """Tick/lot sizes as decimals: price = ticks * 10**-px_dec, qty = lots * 10**-qty_dec."""

    px_dec: int
    qty_dec: int
    base_ticks: int  # starting mid price in ticks
    tick_step: int = 1  # price increment in ticks (e.g. 10 for BTCUSDT's 0.10 tick shown with 2 decimals)
    lot_max: int = 5000  # typical level size in lots

    def px(self, ticks: int) -> str:
        d = self.px_dec
        if d == 0:
            return str(ticks)
        m = 10**d
        return f"{ticks // m}.{ticks % m:0{d}d}"

    def qty(self, lots: int) -> str:
        d = self.qty_dec
        if d == 0:
            return str(lots)
        m = 10**d
        return f"{lots // m}.{lots % m:0{d}d}"


# Realistic specs for the seed's symbols; anything else gets a generic spec from its name.
_SPECS: dict[str, Spec] = {
    "BTCUSDT": Spec(2, 3, 97_000_00, tick_step=10, lot_max=3000),
    "ETHUSDT": Spec(2, 3, 3_400_00, tick_step=1, lot_max=20000),
    "SOLUSDT": Spec(4, 2, 180_0000, tick_step=100, lot_max=50000),
    "DYDXUSDT": Spec(4, 1, 1_2500, tick_step=10, lot_max=20000),
    "BTC": Spec(1, 5, 97_000_0, tick_step=10, lot_max=200000),
    "ETH": Spec(1, 4, 34_000, lot_max=400000),
    "SOL": Spec(2, 2, 18_000, lot_max=50000),
    # BitMEX contracts: integer sizes
    "XBTUSD": Spec(1, 0, 97_000_0, tick_step=5, lot_max=300_000),
    "ETHUSD": Spec(2, 0, 3_400_00, tick_step=5, lot_max=50_000),
    "SOLUSD": Spec(2, 0, 180_00, tick_step=1, lot_max=20_000),
}


def spec_for(symbol: str) -> Spec:
    s = _SPECS.get(symbol.upper().replace("-", ""))
    if s is not None:
        return s
    h = int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=4).digest(), "big")
    return Spec(4, 1, 1_0000 + h % 500_0000, tick_step=1, lot_max=10000)


def _seed(seed: int, exchange: str, symbol: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}/{exchange}/{symbol}".encode(), digest_size=8).digest(), "big")


@dataclass
class Trade:
    """One taker order: ``fills`` (price ticks, lots) at one price; ``buy`` = taker bought."""

    n: int  # market event number
    buy: bool
    px: int
    fills: list[int]


@dataclass
class BookEvent:
    """Level changes (side, price ticks, lots; 0 lots removes) applied as one update."""

    n: int
    changes: list[tuple[int, int, int]]


@dataclass
class Market:
    exchange: str
    symbol: str
    seed: int
    levels: int = 300  # levels kept per side
    trade_share: float = 0.5
    history_limit: int = 1_000_000  # book events kept for book(at=...) (0 = none)
    spec: Spec = field(init=False)
    rng: random.Random = field(init=False)
    bids: dict[int, int] = field(init=False)
    asks: dict[int, int] = field(init=False)
    n: int = 0  # events so far
    credit: float = 0.0  # fractional events due (the simulator's pump)
    last_prev: list[int] = field(default_factory=list)  # quantities the last book event replaced
    bb: int = 0  # best bid / ask ticks
    ba: int = 0
    book_events: int = 0
    initial: tuple[dict[int, int], dict[int, int]] = field(init=False)
    history: list[BookEvent] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.spec = spec_for(self.symbol)
        self.rng = random.Random(_seed(self.seed, self.exchange, self.symbol))
        st = self.spec.tick_step
        mid = self.spec.base_ticks // st * st
        r = self.rng
        self.bids = {mid - st * (i + 1): self._size() for i in range(self.levels)}
        self.asks = {mid + st * i: self._size() for i in range(self.levels)}
        del r
        self.initial = (dict(self.bids), dict(self.asks))
        self.bb, self.ba = max(self.bids), min(self.asks)
        self.level_cache: dict[tuple[int, int], bytes] = {}  # venues' rendered (price, size) levels

    def _next_level(self, side: int, p: int, out: dict[tuple[int, int], int]) -> int:
        """The best level after removing ``p``: walk the tick grid (the book is dense near
        the touch), full scan as a fallback."""
        book = self.bids if side == BID else self.asks
        st = -self.spec.tick_step if side == BID else self.spec.tick_step
        x = p
        for _ in range(64):
            x += st
            q = out.get((side, x))
            if q or (q is None and x in book):
                return x
        alive = [y for y in book if y != p and out.get((side, y), 1)] + [y for (s, y), q in out.items() if s == side and q]
        return max(alive) if side == BID else min(alive)

    def _size(self) -> int:
        return 1 + int(self.rng.expovariate(1.0) * self.spec.lot_max / 3)

    # -- book queries ---------------------------------------------------------------
    def best(self) -> tuple[int, int]:
        return self.bb, self.ba

    def top(self, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        b = self.bids
        a = self.asks
        bp = sorted(b, reverse=True)[:depth]
        ap = sorted(a)[:depth]
        return [(p, b[p]) for p in bp], [(p, a[p]) for p in ap]

    def book_at(self, event: int | None = None) -> tuple[dict[int, int], dict[int, int]]:
        """The book after market event ``event`` (None: now). Rebuilt from history."""
        if event is None or event >= self.n - 1:
            return dict(self.bids), dict(self.asks)
        if self.history_limit <= 0 or (len(self.history) >= self.history_limit):
            raise ValueError("book history not kept (history_limit reached or 0)")
        bids, asks = dict(self.initial[0]), dict(self.initial[1])
        for ev in self.history:
            if ev.n > event:
                break
            apply(bids, asks, ev.changes)
        return bids, asks

    # -- events ---------------------------------------------------------------------
    def step(self) -> Trade | BookEvent:
        r = self.rng
        n = self.n
        self.n += 1
        if r.random() < self.trade_share:
            buy = r.random() < 0.5
            bb, ba = self.best()
            px = ba if buy else bb
            k = 1 if r.random() < 0.7 else r.randint(2, 4)
            fills = [1 + int(r.expovariate(1.0) * self.spec.lot_max / 20) for _ in range(k)]
            return Trade(n, buy, px, fills)
        changes = self._changes()
        b, a = self.bids, self.asks
        self.last_prev = [(a if side == ASK else b).get(p, 0) for side, p, _ in changes]
        apply(b, a, changes)
        ev = BookEvent(n, changes)
        self.book_events += 1
        if self.history_limit > 0 and len(self.history) < self.history_limit:
            self.history.append(ev)
        return ev

    def _changes(self) -> list[tuple[int, int, int]]:
        """1-4 changes near the touch, keeping the book uncrossed and its size bounded."""
        r = self.rng
        st = self.spec.tick_step
        out: dict[tuple[int, int], int] = {}
        bb, ba = self.best()
        for _ in range(r.randint(1, 4)):
            side = ASK if r.random() < 0.5 else BID
            book = self.asks if side == ASK else self.bids
            x = r.random()
            if x < 0.15 and len(book) > self.levels // 2:
                # remove the best level: the price moves
                p = ba if side == ASK else bb
                out[(side, p)] = 0
            elif x < 0.40 and ba - bb > st:
                # a new level inside the spread
                p = ba - st if side == ASK else bb + st
                out[(side, p)] = self._size()
            elif x < 0.46 and len(book) < self.levels:
                # a new far level keeps the side deep
                p = (max(book) + st) if side == ASK else (min(book) - st)
                out[(side, p)] = self._size()
            else:
                k = min(int(r.expovariate(0.15)), len(book) - 1)
                p = (ba + st * k) if side == ASK else (bb - st * k)
                out[(side, p)] = self._size() if (p in book or r.random() < 0.8) else 0
                if len(book) > self.levels + self.levels // 4:
                    far = max(book) if side == ASK else min(book)
                    if far != p:
                        out[(side, far)] = 0
            # keep the view of the touch consistent for the next change
            q = out[(side, p)]
            if side == BID:
                if q and p > bb:
                    bb = p
                elif not q and p == bb:
                    bb = self._next_level(BID, p, out)
            else:
                if q and p < ba:
                    ba = p
                elif not q and p == ba:
                    ba = self._next_level(ASK, p, out)
        self.bb, self.ba = bb, ba
        res = [(s, p, q) for (s, p), q in out.items() if q > 0 or p in (self.asks if s == ASK else self.bids)]
        if not res:  # every change removed an absent level: an event always changes something
            res = [(BID, bb, self._size())]
        return res


def apply(bids: dict[int, int], asks: dict[int, int], changes: list[tuple[int, int, int]]) -> None:
    for side, p, q in changes:
        book = asks if side == ASK else bids
        if q:
            book[p] = q
        else:
            book.pop(p, None)


def render_levels(m: Market, levels: list[tuple[int, int]], render: Callable[[str, str, int], bytes]) -> bytes:
    """Comma-joined rendered levels, cached per (price ticks, size lots) in the
    market: most of a top-N view repeats frame to frame. ``render(price text,
    size text, size lots)`` writes one level in the venue's own shape."""
    px, qty = m.spec.px, m.spec.qty
    cache = m.level_cache
    out = []
    for lv in levels:
        b = cache.get(lv)
        if b is None:
            if len(cache) > 200_000:
                cache.clear()
            p, q = lv
            b = cache[lv] = render(px(p), qty(q), q)
        out.append(b)
    return b",".join(out)
