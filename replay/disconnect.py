"""``disconnect`` messages from the ``events`` table, as tardis-dev reports a dropped connection."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.ipc.schemas import NO_SYMBOL_NAME
from ticktape.replay import fmt
from ticktape.replay.merge import Chunk, merge
from ticktape.replay.options import NormalizedRequest
from ticktape.replay.rows import json_name, message_times, np_col
from ticktape.replay.sources import read_range, ts_ns


def _event_source(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    line = b'{"type":"disconnect","exchange":' + json_name(req.exchange) + b',"localTimestamp":"'
    cols = ("local_ts", "kind")
    for batch in read_range(root, req.exchange, "events", symbol, req.range.start_ns, req.range.end_ns, cols):
        kind = batch.column("kind")
        txt = kind.dictionary_decode() if pa.types.is_dictionary(kind.type) else kind
        idx = np.flatnonzero(np_col(pc.equal(txt, "disconnect")).astype(np.bool_))
        if len(idx) == 0:
            continue
        ts = ts_ns(batch)[idx]
        ts = ts[np.concatenate(([True], ts[1:] != ts[:-1]))]
        yield Chunk(ts, fmt.join(line, fmt.ts_strings(ts, fmt.LOCAL_DIGITS), b'"}\n'))



def drop_times(root: str, req: NormalizedRequest) -> np.ndarray:
    """Local times (sorted, unique) of the drops of the request's symbols or of the exchange's connections."""
    srcs = [_event_source(root, req, s) for s in [*req.symbols, NO_SYMBOL_NAME]]
    drops = [c.ts for c in merge(srcs, ahead=False)]  # in a pool thread already: no nested waits on the pool
    return np.unique(np.concatenate(drops)) if drops else np.zeros(0, np.int64)


def source(root: str, req: NormalizedRequest) -> Iterator[Chunk]:
    """A disconnect of the request's symbols or of the exchange's connections, as tardis-dev reports it:
    stamped with the last message before it, not before any message, once between two messages."""
    at = drop_times(root, req)
    if not len(at):
        return
    times = message_times(root, req)
    prev = np.searchsorted(times, at, "left") - 1
    keep = prev >= 0
    keep[1:] &= prev[1:] != prev[:-1]
    at, prev = at[keep], prev[keep]
    if len(at):
        line = b'{"type":"disconnect","exchange":' + json_name(req.exchange) + b',"localTimestamp":"'
        yield Chunk(at, fmt.join(line, fmt.ts_strings(times[prev], fmt.LOCAL_DIGITS), b'"}\n'))

