"""Querying at scale: a Dask job on a distributed LocalCluster reads a day of several symbols
straight from the S3 dataset (moto's server, through s3fs) and computes per-minute VWAP, volume,
trade and book-update counts; its figures equal DuckDB's over the local copy. The day was written
by two shards of a fleet (tagged files side by side), so the job reads the union."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from archive_samples import sample_table, write_file

from ticktape.archive.layout import FileKey
from ticktape.archive.minute_stats import dask_minute_stats, duckdb_minute_stats
from ticktape.archive.s3 import sync_archive

pytestmark = [pytest.mark.slow, pytest.mark.s3,
              pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning")]  # dask's own reset_index

EX = "binance-futures"
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
DAY = datetime(2025, 1, 5, tzinfo=UTC)


def write_day(root: Path) -> int:
    """Hourly trades and book changes of DAY for SYMBOLS, each symbol by one of two shards (plus the
    next day's first hour, which the job must leave out); returns the trades of the day."""
    n = 0
    for i, sym in enumerate(SYMBOLS):
        tag = f"shard-{i % 2 + 1}-of-2"
        for h in range(25):
            hour = DAY + timedelta(hours=h)
            for table, rows in (("trades", 40 + h), ("book_change", 90)):
                k = FileKey(EX, table, sym, hour, tag)
                write_file(str(root), k, sample_table(k, rows, seed=i))
            n += 40 + h if h < 24 else 0
    return n


def test_dask_over_s3_equals_duckdb_over_the_local_copy(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    from distributed import Client, LocalCluster

    local = tmp_path / "archive"
    trades = write_day(local)
    url = f"s3://{bucket}/fleet"
    assert sync_archive(str(local), url, endpoint_url=s3_endpoint).ok
    storage = {"key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
               "endpoint_url": s3_endpoint}
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster):
        got = dask_minute_stats(url, EX, SYMBOLS, f"{DAY:%Y-%m-%d}", storage_options=storage)
    want = duckdb_minute_stats(str(local), EX, SYMBOLS, f"{DAY:%Y-%m-%d}")

    assert int(got["trades"].sum()) == trades and int(got["book_updates"].sum()) == 3 * 24 * 90
    assert sorted(set(got["symbol"])) == SYMBOLS and got["minute"].min() >= DAY
    assert got["minute"].max() < DAY + timedelta(days=1)
    assert got[["symbol", "minute", "trades", "book_updates"]].equals(want[["symbol", "minute", "trades", "book_updates"]])
    # sums in another order: equal to the last bits that order can change
    for col in ("vwap", "volume"):
        assert np.allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-12, atol=0, equal_nan=True), col
