from datetime import UTC, datetime

import pytest

from ticktape.archive.catalog import keys_for_range, paths_for_range, resolve_data_type, time_range
from ticktape.archive.layout import LayoutError


def test_seed_example_five_hours_per_type():
    paths = paths_for_range(
        "./archives",
        "binance-futures",
        "book_snapshot,trades",
        "BTCUSDT",
        "2025-01-05:22",
        "2025-01-06:02",
        depth=20,
    )
    assert paths == [
        "./archives/book_snapshot_20/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour=22/data.parquet",
        "./archives/book_snapshot_20/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour=23/data.parquet",
        "./archives/book_snapshot_20/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-06/hour=00/data.parquet",
        "./archives/book_snapshot_20/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-06/hour=01/data.parquet",
        "./archives/book_snapshot_20/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-06/hour=02/data.parquet",
        "./archives/trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour=22/data.parquet",
        "./archives/trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour=23/data.parquet",
        "./archives/trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-06/hour=00/data.parquet",
        "./archives/trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-06/hour=01/data.parquet",
        "./archives/trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-06/hour=02/data.parquet",
    ]


def test_month_and_year_crossing_and_s3_root():
    keys = keys_for_range("bybit", "trades", ["BTCUSDT", "ETHUSDT"], "2024-12-31:23", "2025-01-01:00")
    assert [(k.symbol, k.hour) for k in keys] == [
        ("BTCUSDT", datetime(2024, 12, 31, 23, tzinfo=UTC)),
        ("BTCUSDT", datetime(2025, 1, 1, 0, tzinfo=UTC)),
        ("ETHUSDT", datetime(2024, 12, 31, 23, tzinfo=UTC)),
        ("ETHUSDT", datetime(2025, 1, 1, 0, tzinfo=UTC)),
    ]
    p = paths_for_range("s3://bkt/ticks/", "bybit", "trades", "BTCUSDT", "2025-01-31:23", "2025-02-01:00")
    assert p == [
        "s3://bkt/ticks/trades/exchange=bybit/symbol=BTCUSDT/date=2025-01-31/hour=23/data.parquet",
        "s3://bkt/ticks/trades/exchange=bybit/symbol=BTCUSDT/date=2025-02-01/hour=00/data.parquet",
    ]


def test_iso_bounds_are_instants_end_exclusive():
    keys = keys_for_range("bybit", "trades", "BTCUSDT", "2025-01-05T22:30Z", "2025-01-06T01:00Z")
    assert [k.hour.hour for k in keys] == [22, 23, 0]  # 01:00 exclusive -> hour 01 not needed
    keys = keys_for_range("bybit", "trades", "BTCUSDT", "2025-01-05T22:30Z", "2025-01-06T01:00:01Z")
    assert [k.hour.hour for k in keys] == [22, 23, 0, 1]
    assert keys_for_range("bybit", "trades", "BTCUSDT", "2025-01-05T22:30Z", "2025-01-05T22:30Z") == []


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="before its start"):
        time_range("2025-01-06:02", "2025-01-05:22")
    with pytest.raises(ValueError, match="needs a depth"):
        resolve_data_type("book_snapshot")
    with pytest.raises(LayoutError):
        keys_for_range("binance-futures", "trades", "../../etc", "2025-01-05:22", "2025-01-05:23")
    with pytest.raises(LayoutError):
        keys_for_range("Binance/..", "trades", "BTCUSDT", "2025-01-05:22", "2025-01-05:23")
    with pytest.raises(LayoutError):
        keys_for_range("bybit", "quotes", "BTCUSDT", "2025-01-05:22", "2025-01-05:23")
    with pytest.raises(ValueError, match="bad time"):
        keys_for_range("bybit", "trades", "BTCUSDT", "yesterday", "2025-01-05:23")
