"""``book_ticker`` messages from the ``book_ticker`` table: one per stored row (the
venue's own best bid/offer update), Tardis's field names in the order its mapper for
the exchange writes them; a side the venue did not give is left out (undefined)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from ticktape.replay import fmt
from ticktape.replay.fields import exchange_or_local, optional_number
from ticktape.replay.levels import trailer
from ticktape.replay.merge import Chunk
from ticktape.replay.options import NormalizedRequest
from ticktape.replay.sources import read_range, ts_ns

#: Tardis's key order per exchange mapper (bid first for hyperliquid, ask first for binance and bybit)
ORDER = {"hyperliquid": ("bidPrice", "bidAmount", "askPrice", "askAmount")}
DEFAULT_ORDER = ("askAmount", "askPrice", "bidPrice", "bidAmount")
COLUMN = {"bidPrice": "bid_price", "bidAmount": "bid_amount", "askPrice": "ask_price", "askAmount": "ask_amount"}


def source(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    head = (b'{"type":"book_ticker","symbol":' + json.dumps(symbol).encode() + b',"exchange":'
            + json.dumps(req.exchange).encode())
    order = ORDER.get(req.exchange, DEFAULT_ORDER)
    for batch in read_range(root, req.exchange, "book_ticker", symbol, req.range.start_ns, req.range.end_ns):
        local = ts_ns(batch)
        ets = exchange_or_local(batch, local)
        parts = [optional_number(k, batch.column(COLUMN[k])) for k in order]
        yield Chunk(local, fmt.join(head, *parts, trailer(ets, local, b"")))

