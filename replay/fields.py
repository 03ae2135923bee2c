"""Optional message fields, as JSON.stringify writes a Tardis message whose field is
``undefined``: left out. One vector pass per column (``,"name":value`` or nothing)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticktape.replay import fmt

_EMPTY = pa.scalar(b"", pa.binary())


def present(col: pa.Array) -> pa.Array:
    """Valid and, for doubles, finite (NaN means "the venue gives none")."""
    ok = pc.is_valid(col)
    if pa.types.is_floating(col.type):
        ok = pc.and_(ok, pc.fill_null(pc.is_finite(col), False))
    return ok


def optional_number(name: str, col: pa.Array) -> pa.Array:
    """``,"name":<number>`` where the value is present, else nothing."""
    text = fmt.join(b',"' + name.encode() + b'":', fmt.numbers(pc.fill_null(col, np.nan)))
    return pc.if_else(present(col), text, _EMPTY)


def optional_time(name: str, col: pa.Array, digits: int = fmt.EXCHANGE_DIGITS) -> pa.Array:
    """``,"name":"<ISO time>"`` from a timestamp column (any unit), nothing where null."""
    ns = np.asarray(pc.fill_null(col.cast(pa.timestamp("ns")).view(pa.int64()), 0).to_numpy(zero_copy_only=False))
    text = fmt.join(b',"' + name.encode() + b'":"', fmt.ts_strings(ns, digits), b'"')
    return pc.if_else(pc.is_valid(col), text, _EMPTY)


def optional_string(name: str, col: pa.Array) -> pa.Array:
    text = fmt.join(b',"' + name.encode() + b'":', fmt.json_strings(pc.fill_null(col, "")))
    return pc.if_else(pc.and_(pc.is_valid(col), pc.not_equal(pc.fill_null(col, ""), "")), text, _EMPTY)


def exchange_or_local(batch: pa.RecordBatch, local: np.ndarray) -> np.ndarray:
    """``timestamp``: the exchange's time, or the local time where the venue sent none (as tardis-dev)."""
    col = batch.column("exchange_ts")
    ets = np.asarray(col.view(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    return np.where(ets == 0, local, ets)
