"""``trade`` messages from the ``trades`` table, one vector pass per batch."""

from __future__ import annotations

import pyarrow as pa

from ticktape.ipc.schemas import TRADE_SIDES
from ticktape.replay import fmt
from ticktape.replay.levels import trailer
from ticktape.replay.merge import Chunk
from ticktape.replay.rows import codes, exchange_ts, json_name
from ticktape.replay.sources import ts_ns

_SIDE_TEXT = pa.array([b',"side":"' + s.encode() + b'"' for s in TRADE_SIDES], pa.binary())


def trade_lines(batch: pa.RecordBatch, symbol: str, exchange: str) -> Chunk:
    local = ts_ns(batch)
    ets = exchange_ts(batch, local)
    head = b'{"type":"trade","symbol":' + json_name(symbol) + b',"exchange":' + json_name(exchange) + b',"id":'
    side = _SIDE_TEXT.take(pa.array(codes(batch.column("side"), TRADE_SIDES) % len(TRADE_SIDES)))
    lines = fmt.join(
        head,
        fmt.json_strings(batch.column("id")),
        b',"price":',
        fmt.numbers(batch.column("price")),
        b',"amount":',
        fmt.numbers(batch.column("amount")),
        side,
        trailer(ets, local, b""),
    )
    return Chunk(local, lines)


