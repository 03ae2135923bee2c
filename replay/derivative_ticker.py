"""``derivative_ticker`` messages from the ``derivative_ticker`` table.

Each stored row is the venue's full ticker after one update; as tardis-dev's
pending-ticker helper does, a message goes out only when one of the seven values
differs from the last message of that symbol in this replay (the first row with
any value starts it). Values the venue never gave are left out (undefined).
Field order and names are tardis-dev's: lastPrice, openInterest, fundingRate,
fundingTimestamp, predictedFundingRate, indexPrice, markPrice.

``timestamp`` on Binance (``POLLED``): tardis-dev's mapper takes it from markPrice ``E`` only
(never moving back) and an ``@openInterest`` message changes the value, not the time; the first
message before any markPrice takes its local time, which then stays until an ``E`` passes it. So a
row made by the open-interest poll is found (``poll_rows``) and carries that running time by
default; ``openInterestTime: "poll"`` keeps each row's own time (a poll row: the REST answer's).
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
from ticktape.replay.sources import hour_paths, read_range, ts_ns

#: exchanges whose open interest comes from a REST poll (``exchanges.binance_tickers``), one row per answer
POLLED = ("binance-futures", "binance-delivery")
#: the raw channel of the poll's answers (Tardis's generated ``<sym>@openInterest`` frame)
OI_CHANNEL = "openInterest"

FIELDS = (
    ("lastPrice", "last_price"),
    ("openInterest", "open_interest"),
    ("fundingRate", "funding_rate"),
    ("fundingTimestamp", "funding_timestamp"),
    ("predictedFundingRate", "predicted_funding_rate"),
    ("indexPrice", "index_price"),
    ("markPrice", "mark_price"),
)
OI = 1  # FIELDS' openInterest


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


class PollTimes:
    """Local times of the poll's raw frames, read alongside the rows (one pass over ``raw``'s
    ``channel`` column, no payloads); ``None`` from ``rows`` when the range has no raw."""

    def __init__(self, root: str, req: NormalizedRequest, symbol: str) -> None:
        args = (root, req.exchange, "raw", symbol, req.range.start_ns, req.range.end_ns)
        self.present = bool(hour_paths(*args))
        self._batches = read_range(*args, columns=["channel"], read_dictionary=["channel"])
        self._pending = np.zeros(0, np.int64)
        self._done = False

    def rows(self, local: np.ndarray) -> np.ndarray | None:
        """Mask of ``local`` (one batch of rows, ascending) that are poll answers."""
        if not self.present:
            return None
        last = int(local[-1]) if len(local) else -1
        while not self._done and (not len(self._pending) or self._pending[-1] <= last):
            batch = next(self._batches, None)
            if batch is None:
                self._done = True
                break
            ch = batch.column("channel")
            keep = pc.equal(ch.cast(pa.string()) if pa.types.is_dictionary(ch.type) else ch, OI_CHANNEL)
            times = ts_ns(batch)[np.asarray(pc.fill_null(keep, False).to_numpy(zero_copy_only=False), np.bool_)]
            self._pending = np.concatenate([self._pending, times])
        mask = np.isin(local, self._pending[self._pending <= last])
        self._pending = self._pending[self._pending > last]
        return mask


def poll_rows(vals: np.ndarray, last: np.ndarray, from_raw: np.ndarray | None) -> np.ndarray:
    """Rows made by the open-interest poll: by the raw frames when archived, else by value (only
    open interest differs from the stored row before; a row that repeats it counts as a markPrice)."""
    if from_raw is not None:
        return from_raw
    before = np.vstack([last[None, :], vals[:-1]])
    same = (vals == before) | (np.isnan(vals) & np.isnan(before))
    return np.delete(same, OI, axis=1).all(axis=1) & ~same[:, OI]


def own_values(vals: np.ndarray, poll: np.ndarray) -> np.ndarray:
    """What each message gives tardis-dev's mapper: a poll answer its open interest only, a
    markPrice everything but it (a stored row is the connector's whole merged state)."""
    out = vals.copy()
    out[poll] = np.nan
    out[poll, OI] = vals[poll, OI]
    out[~poll, OI] = np.nan
    return out


def carried(vals: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Each field's last known value up to each row (``prev`` before the first)."""
    state = vals.copy()
    for j in range(state.shape[1]):
        col = state[:, j]
        idx = np.where(~np.isnan(col), np.arange(len(col)), -1)
        np.maximum.accumulate(idx, out=idx)
        state[:, j] = np.where(idx >= 0, col[np.maximum(idx, 0)], prev[j])
    return state


def state_columns(state: np.ndarray) -> list[pa.Array]:
    """The message fields from carried state rows (NaN = undefined; funding time back to whole ms)."""
    parts = []
    for j, (k, _) in enumerate(FIELDS):
        col = state[:, j]
        if k == "fundingTimestamp":
            ms = np.round(np.nan_to_num(col) / 1e6).astype(np.int64) * 1_000_000
            parts.append(optional_time(k, pa.array(ms, pa.int64(), mask=np.isnan(col)).view(pa.timestamp("ns"))))
        else:
            parts.append(optional_number(k, pa.array(col, pa.float64())))
    return parts


def tardis_times(own: np.ndarray, local: np.ndarray, poll: np.ndarray, keep: np.ndarray, carry: int) -> np.ndarray:
    """tardis-dev's ``timestamp`` per row: the running maximum of markPrice times (poll rows add
    none), seeded by the local time of the first message sent before any (``carry`` -1 = unset)."""
    marks = np.where(poll, -1, own)
    if carry < 0 and keep.any():
        f = int(np.argmax(keep))
        if marks[: f + 1].max() < 0:
            marks[f] = local[f]
    return np.maximum.accumulate(np.concatenate([[carry], marks]))[1:]


def source(root: str, req: NormalizedRequest, symbol: str) -> Iterator[Chunk]:
    head = (b'{"type":"derivative_ticker","symbol":' + json.dumps(symbol).encode() + b',"exchange":'
            + json.dumps(req.exchange).encode())
    prev = np.full(len(FIELDS), np.nan)
    polls = PollTimes(root, req, symbol) if req.exchange in POLLED and req.open_interest_time == "tardis" else None
    last = prev  # the stored row before this batch (telling poll rows by value)
    carry = -1  # tardis-dev's running timestamp (ns; -1 = none yet)
    for batch in read_range(root, req.exchange, "derivative_ticker", symbol, req.range.start_ns, req.range.end_ns):
        vals = values(batch)
        if not len(vals):
            continue
        local = ts_ns(batch)
        stamps = exchange_or_local(batch, local)
        poll = None
        if polls is not None:
            poll = poll_rows(vals, last, polls.rows(local))
            last = vals[-1]
            vals = own_values(vals, poll)
        # tardis-dev keeps the last known value of a field, so compare against the carried state
        state = carried(vals, prev)
        keep = changed(state, prev)
        if poll is not None:
            stamps = tardis_times(stamps, local, poll, keep, carry)
            carry = int(stamps[-1])
        prev = state[-1]
        idx = np.flatnonzero(keep)
        if not len(idx):
            continue
        if poll is not None:
            parts = state_columns(state[idx])
        else:
            sel = batch.take(pa.array(idx))
            parts = [optional_time(k, sel.column(c)) if k == "fundingTimestamp" else optional_number(k, sel.column(c))
                     for k, c in FIELDS]
        yield Chunk(local[idx], fmt.join(head, *parts, trailer(stamps[idx], local[idx], b"")))
