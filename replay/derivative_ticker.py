"""``derivative_ticker`` messages from the ``derivative_ticker`` table.

Each stored row is the venue's full ticker after one update; as tardis-dev's
pending-ticker helper does, a message goes out only when one of the seven values
differs from the last message of that symbol in this replay (the first row with
any value starts it). Values the venue never gave are left out (undefined).
Field order and names are tardis-dev's: lastPrice, openInterest, fundingRate,
fundingTimestamp, predictedFundingRate, indexPrice, markPrice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.replay import fmt
from ticktape.replay.fields import exchange_or_local, optional_number, optional_time
from ticktape.replay.levels import trailer
from ticktape.replay.merge import Chunk
from ticktape.replay.options import NormalizedRequest
from ticktape.replay.sources import read_range, ts_ns

FIELDS = (
    ("lastPrice", "last_price"),
    ("openInterest", "open_interest"),
    ("fundingRate", "funding_rate"),
    ("fundingTimestamp", "funding_timestamp"),
    ("predictedFundingRate", "predicted_funding_rate"),
    ("indexPrice", "index_price"),
    ("markPrice", "mark_price"),
)


def values(batch: pa.RecordBatch) -> np.ndarray:
    """(rows, 7) float64 of the values, NaN where absent (funding time as ns)."""
    cols = []
    for _, c in FIELDS:
        col = batch.column(c)
        if pa.types.is_timestamp(col.type):
            ns = pc.fill_null(col.cast(pa.timestamp("ns")).view(pa.int64()), -1)
            arr = np.asarray(ns.to_numpy(zero_copy_only=False), np.float64)
            arr[arr < 0] = np.nan
        else:
            arr = np.asarray(pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False), np.float64)
        cols.append(arr)
    return np.stack(cols, axis=1) if cols[0].size else np.zeros((0, len(FIELDS)))


def changed(vals: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Rows whose values differ from the row before (NaN equals NaN; NaN never replaces a value)."""
    before = np.vstack([prev[None, :], vals[:-1]])
    same = (vals == before) | np.isnan(vals)
    return ~same.all(axis=1)


def source(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    head = (b'{"type":"derivative_ticker","symbol":' + json.dumps(symbol).encode() + b',"exchange":'
            + json.dumps(req.exchange).encode())
    prev = np.full(len(FIELDS), np.nan)
    for batch in read_range(root, req.exchange, "derivative_ticker", symbol, req.range.start_ns, req.range.end_ns):
        vals = values(batch)
        if not len(vals):
            continue
        # tardis-dev keeps the last known value of a field, so compare against the carried state
        state = vals.copy()
        for j in range(state.shape[1]):
            col = state[:, j]
            ok = ~np.isnan(col)
            idx = np.where(ok, np.arange(len(col)), -1)
            np.maximum.accumulate(idx, out=idx)
            carried = np.where(idx >= 0, col[np.maximum(idx, 0)], prev[j])
            state[:, j] = carried
        keep = changed(state, prev)
        prev = state[-1]
        idx = np.flatnonzero(keep)
        if not len(idx):
            continue
        sel = batch.take(pa.array(idx))
        local = ts_ns(sel)
        parts = [optional_time(k, sel.column(c)) if k == "fundingTimestamp" else optional_number(k, sel.column(c))
                 for k, c in FIELDS]
        yield Chunk(local, fmt.join(head, *parts, trailer(exchange_or_local(sel, local), local, b"")))
