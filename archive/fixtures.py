"""Capture-like archives made of synthetic data, for tests and benchmarks (S3, loaders, replay).

Files follow exactly what the writer produces: the Arrow schemas of
``ipc.schemas``, zstd Parquet, ``layout.file_metadata``, temp name + rename.
Deterministic for a given seed, so two calls write the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ticktape.archive.catalog import TimeLike, as_time
from ticktape.archive.layout import HOUR_NS, FileKey, file_metadata, floor_hour, safe_join
from ticktape.ipc import schemas as S

FIXTURE_HOST = "fixture"


def _base_price(symbol: str) -> float:
    return 1000.0 + (sum(symbol.encode()) % 97) * 100.0


def sample_table(key: FileKey, rows: int, seed: int = 0) -> pa.Table:
    """``rows`` synthetic records of ``key.data_type`` spread over ``key``'s hour, sorted by local_ts."""
    rng = np.random.default_rng([seed, key.hour_ns // HOUR_NS, sum(key.symbol.encode()), len(key.data_type)])
    start = key.hour_ns
    local = np.sort(rng.integers(start, start + HOUR_NS, rows, dtype=np.int64))
    exch = local - rng.integers(1_000_000, 50_000_000, rows, dtype=np.int64)
    ts = lambda a: pa.array(a, pa.int64()).view(S.TS)  # noqa: E731
    price = _base_price(key.symbol) + np.cumsum(rng.normal(0, 0.5, rows))
    dt = key.data_type
    if dt == "trades":
        ids = pa.array(np.arange(rows, dtype=np.int64) + start // 1_000_000).cast(pa.string())
        side = pa.DictionaryArray.from_arrays(
            pa.array(rng.integers(1, 3, rows).astype(np.int8)), pa.array(S.TRADE_SIDES)
        )
        cols = [ts(local), ts(exch), ids, pa.array(price), pa.array(rng.exponential(0.5, rows)), side]
        return pa.Table.from_arrays(cols, schema=S.TRADES_SCHEMA)
    if dt == "book_change":
        side = pa.DictionaryArray.from_arrays(
            pa.array(rng.integers(0, 2, rows).astype(np.int8)), pa.array(S.BOOK_SIDES)
        )
        amount = np.where(rng.random(rows) < 0.2, 0.0, rng.exponential(2.0, rows))
        cols = [
            ts(local),
            ts(exch),
            pa.array(np.zeros(rows, np.bool_)),
            side,
            pa.array(price),
            pa.array(amount),
        ]
        return pa.Table.from_arrays(cols, schema=S.BOOK_CHANGE_SCHEMA)
    if dt == "events":
        kind = pa.DictionaryArray.from_arrays(
            pa.array(rng.integers(0, 3, rows).astype(np.int8)), pa.array(S.EVENT_KINDS)
        )
        cols = [
            ts(local),
            ts(exch),
            kind,
            pa.array(["trades"] * rows),
            pa.array(np.ones(rows, np.uint32)),
            pa.array([f"event {i}" for i in range(rows)]),
        ]
        return pa.Table.from_arrays(cols, schema=S.EVENTS_SCHEMA)
    if dt == "raw":
        payload = [f'{{"e":"trade","s":"{key.symbol}","p":"{p:.2f}"}}'.encode() for p in price]
        cols = [ts(local), pa.array(["trade"] * rows), pa.array(np.ones(rows, np.uint32)), pa.array(payload)]
        return pa.Table.from_arrays(cols, schema=S.RAW_SCHEMA)
    n = S.snapshot_levels(dt)
    steps = np.arange(1, n + 1, dtype=np.float64) * 0.1

    def levels(a: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), n)

    bid = price[:, None] - steps[None, :]
    ask = price[:, None] + steps[None, :]
    cols = [
        ts(local),
        ts(exch),
        levels(bid),
        levels(rng.exponential(1.0, (rows, n))),
        levels(ask),
        levels(rng.exponential(1.0, (rows, n))),
    ]
    return pa.Table.from_arrays(cols, schema=S.book_snapshot_schema(n))


def write_file(root: str, key: FileKey, table: pa.Table, row_group_size: int | None = None) -> str:
    """Write like the writer does: zstd, file metadata, temp name (leading '.') then rename."""
    path = safe_join(root, key.relpath())
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp")
    table = table.replace_schema_metadata(file_metadata(key, FIXTURE_HOST))
    pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size or 256_000)
    os.replace(tmp, path)
    return path


def write_sample_archive(
    root: str,
    *,
    exchange: str = "binance-futures",
    symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT"),
    data_types: Sequence[str] = ("trades",),
    start: TimeLike = "2025-01-05:22",
    hours: int = 5,
    rows_per_hour: int = 1000,
    row_group_size: int | None = None,
    seed: int = 0,
) -> list[FileKey]:
    """Write ``hours`` hourly files per (data type, symbol) from ``start``; returns their keys."""
    h0: datetime = floor_hour(as_time(start))
    keys: list[FileKey] = []
    for dt in data_types:
        for sym in symbols:
            for i in range(hours):
                key = FileKey(exchange, dt, sym, h0 + timedelta(hours=i))
                write_file(root, key, sample_table(key, rows_per_hour, seed), row_group_size)
                keys.append(key)
    return keys
