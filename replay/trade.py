"""``trade`` messages from the ``trades`` table, one vector pass per batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.ipc.schemas import TRADE_SIDES
from ticktape.replay import fmt
from ticktape.replay.levels import distinct, trailer
from ticktape.replay.merge import Chunk
from ticktape.replay.options import NormalizedRequest
from ticktape.replay.rows import codes, exchange_ts, json_name, np_col
from ticktape.replay.sources import read_range, ts_ns

#: exchanges whose tardis-dev trades mapper skips the first trades frame of each coin it sees (Hyperliquid's
#: subscription sends recent trades first): at the start of a replay and after each disconnect
SKIPS_FIRST_FRAME = ("hyperliquid",)

_SIDE_TEXT = pa.array([b',"side":"' + s.encode() + b'"' for s in TRADE_SIDES], pa.binary())


def trade_lines(batch: pa.RecordBatch, symbol: str, exchange: str) -> Chunk:
    local = ts_ns(batch)
    ets = exchange_ts(batch, local)
    head = b'{"type":"trade","symbol":' + json_name(symbol) + b',"exchange":' + json_name(exchange) + b',"id":'
    side = codes(batch.column("side"), TRADE_SIDES) % len(TRADE_SIDES)
    ids, price, amount = (batch.column(c) for c in ("id", "price", "amount"))
    trailers = trailer(ets, local, b"")
    if ids.null_count or price.null_count or amount.null_count:  # null pieces make a null line, as before
        return Chunk(local, fmt.join(head, fmt.json_strings(ids), b',"price":', fmt.numbers(price), b',"amount":',
                                     fmt.numbers(amount), _SIDE_TEXT.take(pa.array(side)), trailers))
    # pieces: head, id, ',"price":', price, ',"amount":', amount, side + trailer; each distinct price and
    # amount formatted once, every piece copied once in order (fmt.gather)
    text = ids.cast(pa.string())
    plain = not (len(text) and fmt.needs_escape(text))
    consts = pa.array([head + b'"', b'","price":', b',"amount":'] if plain else [head, b',"price":', b',"amount":'],
                      pa.binary())
    up, pi = distinct(np_col(price))
    ua, ai = distinct(np_col(amount))
    n = len(local)
    ids_bin = text.cast(pa.binary()) if plain else fmt.json_strings(ids)
    part = np.empty((n, 8), np.int32)
    row = np.empty((n, 8), np.int64)
    every = np.arange(n, dtype=np.int64)
    part[:] = (0, 1, 0, 2, 0, 3, 4, 5)
    row[:, 0], row[:, 1], row[:, 2], row[:, 3] = 0, every, 1, pi
    row[:, 4], row[:, 5], row[:, 6], row[:, 7] = 2, ai, side, every
    lines = fmt.gather([consts, ids_bin, fmt.numbers(up), fmt.numbers(ua), _SIDE_TEXT, trailers],
                       part.reshape(-1), row.reshape(-1), np.arange(0, 8 * n + 1, 8, dtype=np.int64))
    return Chunk(local, lines)


def skipped_frames(root: str, req: NormalizedRequest, symbol: str, drops: np.ndarray) -> np.ndarray:
    """Local times of the trades frames tardis-dev's mapper skips: the symbol's first archived ``trades`` frame
    after the start and after each drop (its mapper is new then). Their rows (same local time) are left out."""
    out: list[int] = []
    taken: set[int] = set()
    for batch in read_range(root, req.exchange, "raw", symbol, req.range.start_ns, req.range.end_ns,
                            ["local_ts", "channel", "payload"], read_dictionary=["channel"]):
        chan = batch.column("channel")
        txt = chan.dictionary_decode() if pa.types.is_dictionary(chan.type) else chan
        keep = pc.and_(pc.equal(txt, "trades"), pc.greater(pc.binary_length(batch.column("payload")), 0))
        ts = ts_ns(batch)[np.asarray(keep.to_numpy(zero_copy_only=False), np.bool_)]
        if not len(ts):
            continue
        seg = np.searchsorted(drops, ts, "right")
        segs, first = np.unique(seg, return_index=True)
        for g, i in zip(segs.tolist(), first.tolist(), strict=True):
            if g not in taken:
                taken.add(g)
                out.append(int(ts[i]))
    return np.array(out, np.int64)
