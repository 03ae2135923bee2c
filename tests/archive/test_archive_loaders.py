import logging
import os
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from archive_samples import write_sample_archive

from ticktape.archive.layout import safe_join
from ticktape.archive.loaders import inventory, list_archive, load
from ticktape.ipc.schemas import TRADES_SCHEMA, book_snapshot_schema

EX = "binance-futures"


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("archive"))
    # small row groups so range loads have row groups to skip; 2025-01-31:22 .. 2025-02-01:02 crosses a month
    write_sample_archive(
        root,
        data_types=("trades", "book_snapshot_5"),
        start="2025-01-31:22",
        hours=5,
        rows_per_hour=600,
        row_group_size=100,
    )
    # things a loader / hive reader must not take for data
    os.makedirs(os.path.join(root, ".journal", "trades", "exchange=x"), exist_ok=True)
    with open(os.path.join(root, ".journal", "trades", "exchange=x", "data.arrows"), "wb") as f:
        f.write(b"not parquet")
    os.makedirs(os.path.join(root, ".tmp"), exist_ok=True)
    with open(os.path.join(root, ".tmp", "trades,exchange=x.w0.tmp"), "wb") as f:
        f.write(b"half a file")
    return root


def _all_rows(root: str, data_type: str, symbol: str) -> pa.Table:
    files = sorted(
        os.path.join(dp, f)
        for dp, _, fs in os.walk(os.path.join(root, data_type, f"exchange={EX}", f"symbol={symbol}"))
        for f in fs
        if f == "data.parquet"
    )
    return pa.concat_tables([pq.ParquetFile(f).read() for f in files])


def _ns(t: str) -> int:
    return int(np.datetime64(t.replace("Z", ""), "ns").astype(np.int64))


def test_range_filter_matches_brute_force(archive_root: str):
    full = _all_rows(archive_root, "trades", "BTCUSDT")
    ts = full["local_ts_ns"].to_numpy()
    lo, hi = _ns("2025-01-31T23:17:00Z"), _ns("2025-02-01T01:05:30Z")
    expect = full.filter(pa.array((ts >= lo) & (ts < hi)))
    got = load(archive_root, EX, "trades", "BTCUSDT", "2025-01-31T23:17:00Z", "2025-02-01T01:05:30Z")
    assert got.schema.remove_metadata() == TRADES_SCHEMA
    assert got.num_rows == expect.num_rows > 0
    assert got.equals(expect)
    gts = got["local_ts_ns"].to_numpy()
    assert gts.min() >= lo and gts.max() < hi and np.all(np.diff(gts) >= 0)


def test_hour_bounds_include_end_hour(archive_root: str):
    got = load(archive_root, EX, "trades", "BTCUSDT", "2025-01-31:22", "2025-02-01:02")
    assert got.num_rows == 5 * 600
    assert load(archive_root, EX, "trades", "BTCUSDT", "2025-02-01:00", "2025-02-01:00").num_rows == 600


def test_several_symbols_add_symbol_column_sorted(archive_root: str):
    got = load(archive_root, EX, "trades", ["BTCUSDT", "ETHUSDT"], "2025-01-31:23", "2025-02-01:00")
    assert got.num_rows == 4 * 600
    assert got.schema.field("symbol").type == pa.dictionary(pa.int16(), pa.string())
    counts = got["symbol"].to_pandas().value_counts().to_dict()
    assert counts == {"BTCUSDT": 1200, "ETHUSDT": 1200}
    assert np.all(np.diff(got["local_ts_ns"].to_numpy()) >= 0)


def test_empty_range_and_missing_files(archive_root: str, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="ticktape.archive"):
        t = load(archive_root, EX, "book_snapshot", "BTCUSDT", "2025-03-01:00", "2025-03-01:05", depth=5)
    assert t.num_rows == 0 and t.schema.remove_metadata() == book_snapshot_schema(5)
    assert "6 of 6 files missing" in caplog.text
    # partly missing: only the present hours load, no error
    t = load(archive_root, EX, "trades", "BTCUSDT", "2025-01-31:20", "2025-01-31:22")
    assert t.num_rows == 600
    t = load(
        archive_root, EX, "trades", "BTCUSDT", "2025-03-01:00", "2025-03-01:01", columns=["local_ts", "price"]
    )
    assert t.schema.names == ["local_ts", "price"] and t.num_rows == 0


def test_columns_and_formats(archive_root: str):
    t = load(
        archive_root,
        EX,
        "book_snapshot_5",
        "ETHUSDT",
        "2025-02-01:01",
        "2025-02-01:01",
        columns=["bid_price"],
    )
    assert t.schema.names == ["bid_price"] and t.num_rows == 600
    df = load(
        archive_root, EX, "trades", "BTCUSDT,ETHUSDT", "2025-02-01:01", "2025-02-01:01", format="pandas"
    )
    assert isinstance(df, pd.DataFrame) and len(df) == 1200 and set(df["symbol"]) == {"BTCUSDT", "ETHUSDT"}
    pf = load(archive_root, EX, "trades", "BTCUSDT", "2025-02-01:01", "2025-02-01:01", format="polars")
    assert isinstance(pf, pl.DataFrame) and pf.height == 600
    with pytest.raises(ValueError, match="unknown column"):
        load(archive_root, EX, "trades", "BTCUSDT", "2025-02-01:01", "2025-02-01:01", columns=["nope"])


def test_duckdb_polars_pandas_read_a_table_directory(archive_root: str):
    table = os.path.join(archive_root, "trades")
    rel = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{table}/**/*.parquet') "
        f"WHERE exchange='{EX}' AND symbol='ETHUSDT' AND date='2025-02-01'"
    )
    assert rel is not None and rel.fetchall() == [(3 * 600,)]
    lf = pl.scan_parquet(table)
    got = lf.filter(pl.col("symbol") == "BTCUSDT").select(pl.len()).collect().item()
    assert got == 5 * 600
    df = pd.read_parquet(table, filters=[("symbol", "=", "BTCUSDT")])
    assert len(df) == 5 * 600


def test_inventory(archive_root: str):
    series = list_archive(archive_root)
    assert [(s.data_type, s.symbol, s.files) for s in series] == [
        ("book_snapshot_5", "BTCUSDT", 5),
        ("book_snapshot_5", "ETHUSDT", 5),
        ("trades", "BTCUSDT", 5),
        ("trades", "ETHUSDT", 5),
    ]
    inv = inventory(archive_root)
    assert inv[EX]["trades"]["BTCUSDT"]["first_hour"] == "2025-01-31T22:00:00Z"
    assert inv[EX]["trades"]["BTCUSDT"]["last_hour"] == "2025-02-01T02:00:00Z"
    assert safe_join(archive_root, "trades/exchange=x").startswith(archive_root)


def test_reads_only_the_row_groups_of_the_range(tmp_path):
    """Row groups outside the range are made unreadable on disk: a load of the range still works,
    so the loader never touched them (footer statistics decide)."""
    from ticktape.archive.layout import FileKey

    root = str(tmp_path)
    (key,) = write_sample_archive(
        root, symbols=("BTCUSDT",), start="2025-01-05:22", hours=1, rows_per_hour=600, row_group_size=100
    )
    path = os.path.join(root, key.relpath())
    md = pq.ParquetFile(path).metadata
    assert md.num_row_groups == 6
    orig_ts = pq.ParquetFile(path).read()["local_ts_ns"].to_numpy()
    lo, hi = _ns("2025-01-05T22:20:00Z"), _ns("2025-01-05T22:30:00Z")
    ns_col = md.schema.names.index("local_ts_ns")
    stats = [md.row_group(i).column(ns_col).statistics for i in range(6)]
    keep = [i for i, s in enumerate(stats) if s.max >= lo and s.min < hi]
    assert 0 < len(keep) < 6
    data = bytearray(Path(path).read_bytes())
    for i in set(range(6)) - set(keep):
        for c in range(md.num_columns):
            col = md.row_group(i).column(c)
            start = col.dictionary_page_offset or col.data_page_offset
            data[start : start + col.total_compressed_size] = b"\xff" * col.total_compressed_size
    Path(path).write_bytes(bytes(data))
    with pytest.raises(Exception):  # noqa: B017 - the damage is real: reading everything fails
        pq.ParquetFile(path).read()
    got = load(root, EX, "trades", "BTCUSDT", "2025-01-05T22:20:00Z", "2025-01-05T22:30:00Z")
    ts = got["local_ts_ns"].to_numpy()
    assert got.num_rows == int(((orig_ts >= lo) & (orig_ts < hi)).sum()) > 0
    assert ts.min() >= lo and ts.max() < hi
    assert FileKey.from_relpath(key.relpath()) == key
