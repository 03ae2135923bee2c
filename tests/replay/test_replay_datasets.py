"""Tardis's dataset downloads served from the archive: the official Python client (``tardis-dev`` from PyPI)
downloads CSV datasets with its endpoint pointed at ticktape and gets the files ``capture export`` writes,
with every archived row; malformed path components are a 400 with a reason, missing data a 404."""

from __future__ import annotations

import gzip
import http.client
import json
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from replay_helpers import ServerProc

from ticktape.archive.export import export

tardis_dev = pytest.importorskip("tardis_dev")

DATASETS = ["trades", "incremental_book_L2", "book_snapshot_5", "quotes"]
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def parquet_rows(root: Path, table: str, symbol: str, date: str) -> int:
    files = sorted((root / table / "exchange=binance-futures" / f"symbol={symbol}" / f"date={date}").glob("*/data.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def test_python_client_downloads_what_export_writes(server: ServerProc, tmp_path: Path) -> None:
    got = tmp_path / "got"
    # two days: the archive's 2025-01-06 and an empty 2025-01-05 before it
    tardis_dev.download_datasets(exchange="binance-futures", data_types=DATASETS, symbols=SYMBOLS,
                                 from_date="2025-01-05", to_date="2025-01-07", endpoint=f"{server.base}/v1",
                                 download_dir=str(got), concurrency=2)
    want = tmp_path / "want"
    done = export(str(server.root), str(want), "binance-futures", "2025-01-06T00:00:00Z", "2025-01-07T00:00:00Z",
                  SYMBOLS, DATASETS)
    assert len(done) == len(DATASETS) * len(SYMBOLS)
    for item in done:
        name = Path(item.path).name
        body = gzip.decompress((got / name).read_bytes())
        assert body == gzip.decompress(Path(item.path).read_bytes()), name
        assert item.rows > 100 and body.count(b"\n") == item.rows + 1, name
    # every archived row is there (counted from the Parquet footers, not through export)
    for sym in SYMBOLS:
        for dataset, table in (("trades", "trades"), ("incremental_book_L2", "book_change")):
            lines = gzip.decompress((got / f"binance-futures_{dataset}_2025-01-06_{sym}.csv.gz").read_bytes())
            assert lines.count(b"\n") - 1 == parquet_rows(server.root, table, sym, "2025-01-06") > 1000
        head = gzip.decompress((got / f"binance-futures_trades_2025-01-05_{sym}.csv.gz").read_bytes())
        assert head == b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"


def status_of(server: ServerProc, path: str) -> tuple[int, str]:
    """GET with the path sent as is (no client-side normalization of ``..`` or percent escapes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        try:
            return r.status, str(json.loads(body)["message"])
        except (ValueError, KeyError):
            return r.status, body.decode(errors="replace")
    finally:
        conn.close()


@pytest.mark.parametrize(("path", "status", "reason"), [
    ("/v1/binance-futures/trades/2025/01/06/..%2F..%2F..%2Fetc%2Fpasswd.csv.gz", 400, "invalid symbol"),
    ("/v1/binance-futures/trades/2025/01/06/%2e%2e.csv.gz", 400, "invalid symbol"),
    ("/v1/binance-futures/trades/2025/01/06/BTCUSDT.csv", 400, "only <SYMBOL>.csv.gz"),
    ("/v1/binance-futures/trades/2025/01/06/BTCUSDT.parquet", 400, "only <SYMBOL>.csv.gz"),
    ("/v1/%2e%2e/trades/2025/01/06/BTCUSDT.csv.gz", 400, "invalid exchange"),
    ("/v1/Binance/trades/2025/01/06/BTCUSDT.csv.gz", 400, "invalid exchange"),
    ("/v1/binance-futures/%2e%2e/2025/01/06/BTCUSDT.csv.gz", 400, "unknown data type"),
    ("/v1/binance-futures/raw/2025/01/06/BTCUSDT.csv.gz", 400, "unknown data type"),
    ("/v1/binance-futures/trades/2025/02/30/BTCUSDT.csv.gz", 400, "invalid date"),
    ("/v1/binance-futures/trades/25/01/06/BTCUSDT.csv.gz", 400, "invalid date"),
    ("/v1/binance-futures/trades/2025/1/06/BTCUSDT.csv.gz", 400, "invalid date"),
    ("/v1/nosuch/trades/2025/01/06/BTCUSDT.csv.gz", 404, "no exchange 'nosuch'"),
    ("/v1/binance-futures/trades/2025/01/06/NOTACOIN.csv.gz", 404, "no symbol 'NOTACOIN'"),
    ("/v1/binance-futures/liquidations/2025/01/06/BTCUSDT.csv.gz", 404, "no table to make liquidations"),
])
def test_dataset_path_checked(server: ServerProc, path: str, status: int, reason: str) -> None:
    got, message = status_of(server, path)
    assert (got, reason in message) == (status, True), message


def test_python_client_stops_at_a_missing_symbol(server: ServerProc, tmp_path: Path) -> None:
    """404 is final for the client (no retry loop): the user sees the server's reason at once."""
    with pytest.raises(urllib.error.HTTPError) as e:
        tardis_dev.download_datasets(exchange="binance-futures", data_types=["trades"], symbols=["NOTACOIN"],
                                     from_date="2025-01-06", to_date="2025-01-07", endpoint=f"{server.base}/v1",
                                     download_dir=str(tmp_path))
    assert e.value.code == 404 and "NOTACOIN" in str(e.value.msg)


def test_symbol_matches_in_any_case(server: ServerProc) -> None:
    with urllib.request.urlopen(f"{server.base}/v1/binance-futures/trades/2025/01/06/btcusdt.csv.gz", timeout=60) as r:
        assert r.headers["Content-Type"] == "application/gzip"
        assert gzip.decompress(r.read()).startswith(b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n")


@pytest.mark.parametrize(("path", "status", "reason"), [
    ("/exchanges/..%2Fx", 400, "invalid exchange id"),
    ("/v1/exchanges/%2e%2e", 400, "invalid exchange id"),
    ("/v1/exchanges/nosuch", 404, "unknown exchange 'nosuch'"),
    ("/v1/data-feeds/..%2F..%2Fetc?from=2025-01-06T18:00:00Z&offset=0", 400, "invalid exchange id"),
])
def test_exchange_path_components_checked(server: ServerProc, path: str, status: int, reason: str) -> None:
    got, message = status_of(server, path)
    assert (got, reason in message) == (status, True), message
