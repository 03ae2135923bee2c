"""hyperliquid ``bbo`` as ``book_ticker`` and ``activeAssetCtx`` as ``derivative_ticker``.

``bbo`` is ``[best bid | null, best ask | null]``: a missing side is NaN (null on
disk). ``activeAssetCtx`` carries the full context each time (no deltas, no
time: ``exchange_ts`` stays 0): ``markPx`` -> mark, ``oraclePx`` -> index,
``funding`` (the hourly rate accruing now) -> funding rate, ``openInterest``;
Hyperliquid gives no last price, funding time or separate predicted rate in it.
Hyperliquid has no public liquidation stream (liquidations reach only the
liquidated user's own ``userEvents``), so ``liquidations`` is refused for it.
"""

from __future__ import annotations

import math

import msgspec

from ticktape.exchanges.feed import Feed

NAN = math.nan
NO_LIQUIDATIONS = (
    "hyperliquid has no public liquidation stream (liquidations reach only the liquidated user's userEvents)"
)


class BboLevel(msgspec.Struct, gc=False):
    px: float
    sz: float


class Bbo(msgspec.Struct, gc=False):
    coin: str
    time: int
    bbo: list[BboLevel | None]  # [bid, ask]; a side may be null (or, trimmed, absent)


class Ctx(msgspec.Struct, gc=False):
    funding: float = NAN
    openInterest: float = NAN
    oraclePx: float = NAN
    markPx: float = NAN


class AssetCtx(msgspec.Struct, gc=False):
    coin: str
    ctx: Ctx


class Tickers:
    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.out = feed.out
        self.bbo = msgspec.json.Decoder(Bbo, strict=False)
        self.ctx = msgspec.json.Decoder(AssetCtx, strict=False)

    def on_bbo(self, ts: int, sym: int, d: Bbo) -> None:
        lv = d.bbo
        b = lv[0] if lv else None
        a = lv[1] if len(lv) > 1 else None
        self.out.book_ticker(
            ts, d.time * 1_000_000, sym,
            b.px if b is not None else NAN, b.sz if b is not None else NAN,
            a.px if a is not None else NAN, a.sz if a is not None else NAN,
        )

    def on_ctx(self, ts: int, sym: int, d: AssetCtx) -> None:
        c = d.ctx
        self.out.derivative_ticker(ts, 0, sym, NAN, c.markPx, c.oraclePx, c.funding, 0, NAN, c.openInterest)
