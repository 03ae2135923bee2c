"""The perpetual-futures side of a simulated market: mark, index, funding, open
interest and liquidations, driven by the market's own book.

Own RNG per (seed, exchange, symbol) (never the market's, so the trade/book
event sequence is unchanged). Mark = mid x (1 + premium); index = mid x (1 +
small basis noise); funding = clamp(base + premium / 3) as the venue computes
it, its time the next boundary of the venue's schedule (Binance and Bybit every
8 h at 00/08/16 UTC, Hyperliquid every hour); open interest a random walk that
liquidations reduce. A liquidation fires when the touch has moved at least
``SHARP_TICKS`` steps within the last ``WINDOW`` book events (a sharp move):
a fall liquidates longs (a sell order at the bid), a rise shorts (a buy at the
ask), at most one per ``LIQ_GAP_S`` per symbol (Binance's own snapshot rule).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import deque
from dataclasses import dataclass, field

from ticktape.sim.market import Market

WINDOW = 12
SHARP_TICKS = 3
LIQ_GAP_S = 1.0
FUNDING_PERIOD_MS = {"binance-futures": 8 * 3_600_000, "binance-delivery": 8 * 3_600_000, "bybit": 8 * 3_600_000,
                     "hyperliquid": 3_600_000, "bitmex": 8 * 3_600_000, "okex-swap": 8 * 3_600_000}


@dataclass
class Liq:
    sell: bool  # True: a long was liquidated (the forced order sells)
    px: int  # price ticks
    lots: int


@dataclass
class Derivs:
    exchange: str
    m: Market
    seed: int
    rng: random.Random = field(init=False)
    premium: float = 0.0
    basis: float = 0.0
    oi_lots: int = 0
    mids: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW))
    last_liq: float = 0.0
    last_top: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        h = hashlib.blake2b(f"{self.seed}/{self.exchange}/{self.m.symbol}/derivs".encode(), digest_size=8).digest()
        self.rng = random.Random(int.from_bytes(h, "big"))
        self.oi_lots = self.m.spec.lot_max * (2000 + self.rng.randrange(2000))

    # -- values (floats; each venue formats them its own way) -------------------------
    def mid(self) -> float:
        bb, ba = self.m.best()
        return (bb + ba) / 2 / 10**self.m.spec.px_dec

    def step(self) -> None:
        """Called on each timed push: premium and basis drift, open interest walks."""
        r = self.rng
        self.premium = max(-0.002, min(0.002, self.premium * 0.95 + r.gauss(0, 0.0001)))
        self.basis = max(-0.0005, min(0.0005, self.basis * 0.9 + r.gauss(0, 0.00005)))
        self.oi_lots = max(self.m.spec.lot_max, self.oi_lots + int(r.gauss(0, self.m.spec.lot_max / 4)))

    def mark(self) -> float:
        return self.mid() * (1 + self.premium)

    def index(self) -> float:
        return self.mid() * (1 + self.basis)

    def funding(self) -> float:
        rate = 0.0001 + self.premium / 3
        if self.exchange == "hyperliquid":
            rate /= 8  # hourly
        return max(-0.0075, min(0.0075, rate))

    def next_funding_ms(self, now_ms: int | None = None) -> int:
        period = FUNDING_PERIOD_MS[self.exchange]
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        return (now // period + 1) * period

    def open_interest(self) -> str:
        return self.m.spec.qty(self.oi_lots)

    # -- book-driven ------------------------------------------------------------------------
    def top_changed(self) -> bool:
        """True (once) when best bid/ask price or size changed since the last call."""
        m = self.m
        bb, ba = m.best()
        top = (bb, m.bids.get(bb, 0), ba, m.asks.get(ba, 0))
        if top == self.last_top:
            return False
        self.last_top = top
        return True

    def on_book(self) -> Liq | None:
        """After a book event: a liquidation if the touch moved sharply."""
        m = self.m
        bb, ba = m.best()
        mid = bb + ba
        self.mids.append(mid)
        step = 2 * m.spec.tick_step * SHARP_TICKS
        now = time.monotonic()
        if len(self.mids) < 2 or now - self.last_liq < LIQ_GAP_S:
            return None
        lo, hi = min(self.mids), max(self.mids)
        if hi - lo < step:
            return None
        sell = mid < self.mids[0]  # the price fell: longs are forced out
        self.last_liq = now
        self.mids.clear()
        self.mids.append(mid)
        lots = 1 + int(self.rng.expovariate(1.0) * m.spec.lot_max / 5)
        self.oi_lots = max(m.spec.lot_max, self.oi_lots - lots)
        return Liq(sell, bb if sell else ba, lots)
