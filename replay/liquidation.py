"""``liquidation`` messages from the ``liquidations`` table, one per stored forced
order, in Tardis's shape (``id`` left out where the venue gives none; ``side`` is the
liquidation order's side: sell = a long position was liquidated)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa

from ticktape.replay import fmt
from ticktape.replay.fields import exchange_or_local, optional_string
from ticktape.replay.levels import trailer
from ticktape.replay.merge import Chunk
from ticktape.replay.options import NormalizedRequest
from ticktape.replay.sources import read_range, ts_ns


def source(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    head = (b'{"type":"liquidation","symbol":' + json.dumps(symbol).encode() + b',"exchange":'
            + json.dumps(req.exchange).encode())
    for batch in read_range(root, req.exchange, "liquidations", symbol, req.range.start_ns, req.range.end_ns):
        local = ts_ns(batch)
        side = batch.column("side")
        if pa.types.is_dictionary(side.type):
            side = side.dictionary_decode()
        lines = fmt.join(
            head,
            optional_string("id", batch.column("id")),
            b',"price":', fmt.numbers(batch.column("price")),
            b',"amount":', fmt.numbers(batch.column("amount")),
            b',"side":"', side.cast(pa.binary()), b'"',
            trailer(exchange_or_local(batch, local), local, b""),
        )
        yield Chunk(local, lines)
