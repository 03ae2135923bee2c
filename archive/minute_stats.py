"""Per-minute VWAP, volume, trade count and book-update count of a day, two ways: a Dask job over
the archive's tables wherever they live (``s3://bucket/prefix`` through s3fs, or a local root), and
the same figures from DuckDB over a local copy, the reference the Dask job is checked against.

Both read the table directories whole (``<root>/trades``, ``<root>/book_change``), so every
capture's files count: the tagged files of a sharded fleet (``data-shard-K-of-N.parquet``) are
just more files of an hour. A minute is ``local_ts_ns // 60 s`` (arrival time, UTC), exact in
both engines whatever their time zone settings. ``book_updates`` counts ``book_change`` rows
(one per price level changed, snapshots included).

Dask is optional (the ``test`` extra has it: ``pip install "dask[dataframe,distributed]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MINUTE_NS = 60_000_000_000
COLUMNS = ["symbol", "minute", "vwap", "volume", "trades", "book_updates"]


def dask_minute_stats(
    root: str,
    exchange: str,
    symbols: Sequence[str],
    day: str,
    storage_options: dict[str, Any] | None = None,
) -> Any:
    """The day's per-minute figures as a pandas DataFrame (``COLUMNS``), computed by Dask on the
    current client (a ``distributed.Client`` if one is active, else Dask's default scheduler)."""
    import dask.dataframe as dd

    base = root.rstrip("/")
    where = [("exchange", "==", exchange), ("symbol", "in", list(symbols)), ("date", "==", day)]
    trades = dd.read_parquet(f"{base}/trades", columns=["symbol", "local_ts_ns", "price", "amount"],
                             filters=where, storage_options=storage_options)
    trades = trades.assign(minute=trades.local_ts_ns // MINUTE_NS, pv=trades.price * trades.amount,
                           symbol=trades.symbol.astype(str))
    # a day's minutes are a few thousand groups per symbol: a tree reduction into one partition, no shuffle
    per_min = trades.groupby(["symbol", "minute"]).agg({"pv": "sum", "amount": "sum", "price": "count"}, split_out=1)
    book = dd.read_parquet(f"{base}/book_change", columns=["symbol", "local_ts_ns"], filters=where,
                           storage_options=storage_options)
    book = book.assign(minute=book.local_ts_ns // MINUTE_NS, symbol=book.symbol.astype(str))
    updates = book.groupby(["symbol", "minute"]).size(split_out=1).rename("book_updates")
    t, b = dd.compute(per_min, updates)
    out = t.join(b.to_frame(), how="outer").reset_index()
    out["vwap"] = out["pv"] / out["amount"]
    out = out.rename(columns={"amount": "volume", "price": "trades"})
    return _finish(out)


def duckdb_minute_stats(root: str, exchange: str, symbols: Sequence[str], day: str) -> Any:
    """The same figures from DuckDB over a local archive root (pandas DataFrame, ``COLUMNS``)."""
    import duckdb

    con = duckdb.connect()
    root = root.replace("'", "''")
    params = [exchange, list(symbols), day]
    sql = f"""
        WITH t AS (
            SELECT symbol, local_ts_ns // {MINUTE_NS} AS minute, sum(price * amount) AS pv,
                   sum(amount) AS volume, count(*) AS trades
            FROM read_parquet('{root}/trades/**/*.parquet', hive_partitioning = true)
            WHERE exchange = ? AND list_contains(?, symbol) AND date = CAST(? AS DATE) GROUP BY ALL),
        b AS (
            SELECT symbol, local_ts_ns // {MINUTE_NS} AS minute, count(*) AS book_updates
            FROM read_parquet('{root}/book_change/**/*.parquet', hive_partitioning = true)
            WHERE exchange = ? AND list_contains(?, symbol) AND date = CAST(? AS DATE) GROUP BY ALL)
        SELECT coalesce(t.symbol, b.symbol) AS symbol, coalesce(t.minute, b.minute) AS minute,
               t.pv / t.volume AS vwap, t.volume, t.trades, b.book_updates
        FROM t FULL OUTER JOIN b ON t.symbol = b.symbol AND t.minute = b.minute"""
    out = con.execute(sql, params + params).df()
    return _finish(out)


def _finish(df: Any) -> Any:
    import pandas as pd

    df = df.copy()
    df["symbol"] = df["symbol"].astype(str)
    df["minute"] = pd.to_datetime(df["minute"].astype("int64") * MINUTE_NS, utc=True)
    df["trades"] = df["trades"].fillna(0).astype("int64")
    df["book_updates"] = df["book_updates"].fillna(0).astype("int64")
    df["volume"] = df["volume"].fillna(0.0).astype("float64")
    df["vwap"] = df["vwap"].astype("float64")
    return df[COLUMNS].sort_values(["symbol", "minute"], ignore_index=True)
