"""okex / okex-swap ``tickers`` as ``book_ticker``; a swap's ``funding-rate``, ``mark-price``,
``open-interest``, ``index-tickers`` and ``tickers`` (last price) as one ``derivative_ticker``
row stream; ``liquidation-orders`` as ``liquidations``.

OKX splits what Tardis's derivative_ticker holds over five channels, each
pushing its own fields: a symbol's state is merged from the latest of each
(NaN until a channel has spoken), and every frame writes the merged row
(Tardis's okex-swap mapper does the same). ``funding_timestamp`` is
``fundingTime`` (the settlement the rate applies to), the predicted rate
``nextFundingRate`` (OKX sends "" when it forecasts none: NaN). A ``tickers``
frame is also the best bid/ask (``bidPx``/``bidSz``/``askPx``/``askSz``; ""
= that side empty: NaN).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from ticktape.exchanges.common import num
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

NAN = math.nan
#: ``Tickers.on_frame`` ``which``: the channel a frame came from
FUNDING, MARK, OPEN_INTEREST, TICKER, INDEX = 0, 1, 2, 3, 4


class Detail(msgspec.Struct, gc=False):
    bkPx: float
    sz: float
    side: str
    ts: int


class LiqItem(msgspec.Struct, gc=False):
    instId: str = ""
    details: list[Detail] = []


class Tickers:
    def __init__(self, out: Outbox, n_symbols: int, bbo: bool = False, deriv: bool = True) -> None:
        self.out = out
        self.bbo = bbo  # tickers frames become book_ticker rows
        self.deriv = deriv  # and feed the derivative state (last price)
        #: mark, funding rate, funding ts (ns), predicted rate, open interest, last, index per symbol
        self.state: list[list[float]] = [[NAN, NAN, 0.0, NAN, NAN, NAN, NAN] for _ in range(n_symbols)]
        self._items = msgspec.json.Decoder(list[dict[str, Any]])
        self._liqs = msgspec.json.Decoder(list[LiqItem], strict=False)

    def on_frame(self, ts: int, sym: int, which: int, data: msgspec.Raw) -> None:
        st = self.state[sym]
        for d in self._items.decode(data):
            t = d.get("ts")
            ets = int(t) * 1_000_000 if t not in (None, "") else ts  # funding-rate has carried no ts until 2023
            if which == TICKER:
                if self.bbo:
                    self.out.book_ticker(ts, ets, sym, num(d, "bidPx"), num(d, "bidSz"), num(d, "askPx"), num(d, "askSz"))
                if not self.deriv:
                    continue
                st[5] = num(d, "last")
            elif which == MARK:
                st[0] = num(d, "markPx")
            elif which == FUNDING:
                st[1] = num(d, "fundingRate")
                ft = d.get("fundingTime")
                st[2] = float(int(ft) * 1_000_000) if ft not in (None, "", "0") else 0.0
                st[3] = num(d, "nextFundingRate")
            elif which == INDEX:
                st[6] = num(d, "idxPx")
            else:
                st[4] = num(d, "oi")
            self.out.derivative_ticker(ts, ets, sym, st[5], st[0], st[6], st[1], int(st[2]), st[3], st[4])

    def liquidations(self, data: msgspec.Raw) -> list[LiqItem]:
        return self._liqs.decode(data)

    def on_liquidation(self, ts: int, sym: int, item: LiqItem) -> None:
        push = self.out.liquidation
        for x in item.details:
            # ``side`` is the liquidation order's own side (a long liquidated = a sell)
            side = SIDE_BUY if x.side == "buy" else SIDE_SELL if x.side == "sell" else SIDE_UNKNOWN
            push(ts, x.ts * 1_000_000, sym, b"", x.bkPx, x.sz, side)
