"""Tardis CSV interchange on a real capture: ``capture export`` writes Tardis's documented
files, ``capture import`` of that export gives the same rows back, and importing the
replay server's ``/replay`` output (and the same frames as tardis-dev cache lines)
gives the same raw rows.

The capture is ``capture run --demo`` (the built-in simulator over real websockets:
binance-futures with book_change + depth20 snapshots, bybit with book_change,
hyperliquid with l2Book snapshots only).
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from demo_run import DemoCapture
from replay_proc import replay_server as start_replay

from ticktape.archive.export import export
from ticktape.archive.import_ import import_path
from ticktape.archive.loaders import list_archive, load
from ticktape.ipc.schemas import local_ns

REPO = Path(__file__).resolve().parents[2]
_NOW = datetime.now(UTC)
#: the capture runs now: two days either side (a range is a path per hour, so not a century)
RANGE = (f"{_NOW - timedelta(days=2):%Y-%m-%d}", f"{_NOW + timedelta(days=2):%Y-%m-%d}")

# Tardis's documented columns (docs.tardis.dev, downloadable CSV files / data types), written out
# literally here so the test checks the export against the documentation, not against itself.
TARDIS_COLUMNS = {
    "trades": "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
    "incremental_book_L2": "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount",
    "quotes": "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount",
    "book_ticker": "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount",
    "derivative_ticker": "exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,"
    "predicted_funding_rate,open_interest,last_price,index_price,mark_price",
    "liquidations": "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
}
for _n in (5, 25):
    TARDIS_COLUMNS[f"book_snapshot_{_n}"] = "exchange,symbol,timestamp,local_timestamp," + ",".join(
        f"asks[{i}].price,asks[{i}].amount,bids[{i}].price,bids[{i}].amount" for i in range(_n)
    )
NAME = re.compile(r"^(?P<ex>[a-z-]+)_(?P<ds>[A-Za-z0-9_]+?)_(?P<day>\d{4}-\d{2}-\d{2})_(?P<sym>[A-Z0-9@]+)\.csv\.gz$")


def _csv(path: Path) -> list[str]:
    with gzip.open(path, "rt", newline="") as f:
        return f.read().split("\n")


def _us(col: pa.ChunkedArray) -> np.ndarray:
    from ticktape.archive.export import ts_us

    return ts_us(col)


def _rows(root: str, exchange: str, table: str, symbol: str) -> pa.Table:
    """A table with its timestamps at Tardis's precision (µs), the unit the export carries."""
    t = load(root, exchange, table, symbol, *RANGE)
    cols = {}
    for name in t.column_names:
        c = t.column(name)
        if pa.types.is_timestamp(c.type):
            cols[name] = pa.array(_us(c))
        elif name == "local_ts_ns":
            continue
        else:
            cols[name] = c.combine_chunks().cast(pa.string()) if pa.types.is_dictionary(c.type) else c.combine_chunks()
    return pa.table(cols)


@pytest.fixture(scope="module")
def captured(demo_capture: DemoCapture) -> Path:
    """The session's demo capture (read only here)."""
    return demo_capture.root


@pytest.fixture(scope="module")
def exported(captured: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tardis")
    for ex in ("binance-futures", "bybit", "hyperliquid"):
        proc = subprocess.run(
            [sys.executable, "-m", "ticktape.engine.cli", "export", str(captured), str(out), "--exchange", ex,
             "--from", RANGE[0], "--to", RANGE[1]],
            capture_output=True, text=True, timeout=180,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_export_of_a_capture_has_tardis_names_columns_and_units(captured: Path, exported: Path) -> None:
    files = sorted(exported.iterdir())
    seen: set[tuple[str, str]] = set()
    for f in files:
        m = NAME.match(f.name)
        assert m, f.name
        lines = _csv(f)
        assert lines[0] == TARDIS_COLUMNS[m["ds"]], f.name
        assert lines[-1] == "" and len(lines) > 2  # LF-terminated, at least one row
        day_lo = int(datetime.fromisoformat(m["day"]).replace(tzinfo=UTC).timestamp()) * 1_000_000
        for row in lines[1:-1]:
            cells = row.split(",")
            assert len(cells) == lines[0].count(",") + 1
            assert (cells[0], cells[1]) == (m["ex"], m["sym"])
            assert re.fullmatch(r"\d{16}", cells[3]) and day_lo <= int(cells[3]) < day_lo + 86_400_000_000
            assert re.fullmatch(r"\d{16}|0", cells[2])
        seen.add((m["ex"], m["ds"]))
    assert {"trades", "incremental_book_L2", "book_snapshot_25", "book_snapshot_5", "quotes"} <= {
        ds for ex, ds in seen if ex == "binance-futures"}
    assert ("bybit", "incremental_book_L2") in seen and ("hyperliquid", "book_snapshot_5") in seen
    assert ("hyperliquid", "incremental_book_L2") not in seen  # no book_change captured there

    # every trade and book change of the capture is in the export, in order
    for s in list_archive(str(captured)):
        if s.data_type not in ("trades", "book_change") or s.symbol == "_":
            continue
        ds = "trades" if s.data_type == "trades" else "incremental_book_L2"
        t = load(str(captured), s.exchange, s.data_type, s.symbol, *RANGE)
        rows = [r for f in exported.glob(f"{s.exchange}_{ds}_*_{s.symbol}.csv.gz") for r in _csv(f)[1:-1]]
        assert len(rows) == t.num_rows > 0
        assert [int(r.split(",")[3]) for r in rows] == _us(t.column("local_ts")).tolist()
        if ds == "trades":
            assert [r.split(",")[4] for r in rows] == t.column("id").to_pylist()
            assert [float(r.split(",")[6]) for r in rows] == t.column("price").to_pylist()


def _naive_quotes(t: pa.Table) -> list[tuple[float, float, float, float]]:
    """Best bid/ask after each message, rebuilt with plain dicts (a message = rows with the same
    local and exchange time; snapshot rows after other rows start a new book)."""
    local = local_ns(t).tolist()
    ets = t.column("exchange_ts").cast(pa.int64()).to_pylist()
    snap = t.column("is_snapshot").to_pylist()
    side = t.column("side").cast(pa.string()).to_pylist()
    price, amount = t.column("price").to_pylist(), t.column("amount").to_pylist()
    books: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    out: list[tuple[float, float, float, float]] = []
    known, last = False, None
    n = len(local)
    i = 0
    while i < n:
        j = i + 1
        while j < n and local[j] == local[i] and ets[j] == ets[i] and not (snap[j] and not snap[j - 1]):
            j += 1
        if snap[i] and (i == 0 or not snap[i - 1]):
            books = {"bid": {}, "ask": {}}
            known = True
        for k in range(i, j):
            if amount[k] == 0:
                books[side[k]].pop(price[k], None)
            else:
                books[side[k]][price[k]] = amount[k]
        i = j
        if not known:
            continue
        bid = max(books["bid"]) if books["bid"] else None
        ask = min(books["ask"]) if books["ask"] else None
        q = (books["ask"].get(ask, float("nan")) if ask else float("nan"), ask or float("nan"),
             bid or float("nan"), books["bid"].get(bid, float("nan")) if bid else float("nan"))
        if q != last and (bid or ask):
            out.append(q)
        last = q
    return out


@pytest.mark.slow
def test_export_quotes_are_the_top_of_book_after_each_change(captured: Path, exported: Path) -> None:
    """quotes (Tardis: best bid/ask each time it changed, from the L2 updates) equal an
    independent plain-dict rebuild of the captured book_change rows."""
    for ex, sym in (("binance-futures", "BTCUSDT"), ("bybit", "ETHUSDT")):
        (f,) = exported.glob(f"{ex}_quotes_*_{sym}.csv.gz")
        rows = [tuple(float(x) for x in r.split(",")[4:]) for r in _csv(f)[1:-1]]
        want = _naive_quotes(load(str(captured), ex, "book_change", sym, *RANGE))
        assert len(rows) == len(want) > 10
        assert rows == want


@pytest.mark.slow
def test_import_of_the_export_gives_the_same_rows(captured: Path, exported: Path, tmp_path: Path) -> None:
    root = tmp_path / "imported"
    files = sorted(str(f) for f in exported.iterdir())
    proc = subprocess.run([sys.executable, "-m", "ticktape.engine.cli", "import", str(root), *files],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for s in list_archive(str(captured)):
        if s.data_type not in ("trades", "book_change") or s.symbol == "_":
            continue
        a = _rows(str(captured), s.exchange, s.data_type, s.symbol)
        b = _rows(str(root), s.exchange, s.data_type, s.symbol)
        assert b.num_rows == a.num_rows > 0
        assert b.equals(a), (s.exchange, s.data_type, s.symbol)
    # the derived datasets come back as tables of their own, and export again to the same bytes
    again = tmp_path / "again"
    for ex in ("binance-futures", "bybit", "hyperliquid"):
        export(str(root), str(again), ex, *RANGE)
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in exported.iterdir())
    for f in exported.iterdir():
        assert _csv(f) == _csv(again / f.name), f.name
    # importing the same files again adds nothing
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}
    res = [import_path(str(root), f) for f in files]
    assert sum(sum(r.rows.values()) for r in res) == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")} == before


@pytest.fixture(scope="module")
def replay_server(captured: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with start_replay(captured, tmp_path_factory.mktemp("replay") / "server.log") as srv:
        yield srv.port


def _raw_rows(root: str, exchange: str) -> set[tuple[int, str, str, bytes]]:
    """(local_ts at /replay's 100 ns precision, symbol, channel, payload) of every frame."""
    out = set()
    for s in list_archive(root):
        if s.exchange != exchange or s.data_type != "raw" or s.symbol == "_":
            continue
        t = load(root, exchange, "raw", s.symbol, *RANGE)
        ts = local_ns(t)
        for n, ch, p in zip(ts.tolist(), t.column("channel").to_pylist(), t.column("payload").to_pylist(), strict=True):
            if p:
                out.add((n // 100, s.symbol, ch, p))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("exchange", ["binance-futures", "bybit"])
def test_import_of_replay_output_gives_the_same_raw_rows(
    captured: Path, replay_server: int, tmp_path: Path, exchange: str
) -> None:
    t0 = min(s.first_hour for s in list_archive(str(captured)) if s.exchange == exchange)
    t1 = max(s.last_hour for s in list_archive(str(captured)) if s.exchange == exchange) + timedelta(hours=1)
    opts = {"exchange": exchange, "from": t0.strftime("%Y-%m-%dT%H:00:00Z"), "to": t1.strftime("%Y-%m-%dT%H:00:00Z")}
    url = f"http://127.0.0.1:{replay_server}/replay?options={urllib.parse.quote_plus(json.dumps(opts))}"
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    lines = body.splitlines(keepends=True)
    assert len(lines) > 100
    replay_file = tmp_path / f"{exchange}.replay.ndjson"
    replay_file.write_bytes(body)
    # the same frames as tardis-dev cache lines: "<ISO time> <frame>", gzipped
    cache_file = tmp_path / f"{exchange}.cache.ndjson.gz"
    with gzip.open(cache_file, "wb") as f:
        for line in lines:
            obj_ts = line[len(b'{"localTimestamp":"') : line.index(b'","message":')]
            f.write(obj_ts + b" " + line[line.index(b'","message":') + 12 : line.rstrip().rindex(b"}")] + b"\n")

    want = _raw_rows(str(captured), exchange)
    assert len(want) > 100
    for src in (replay_file, cache_file):
        root = tmp_path / f"from-{src.name}"
        proc = subprocess.run([sys.executable, "-m", "ticktape.engine.cli", "import", str(root), str(src),
                               "--exchange", exchange], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _raw_rows(str(root), exchange) == want, src.name


@pytest.mark.slow
def test_export_loads_in_nautilus_trader(exported: Path) -> None:
    loader_mod = pytest.importorskip("nautilus_trader.adapters.tardis.loaders", reason="nautilus_trader not installed")
    loader = loader_mod.TardisCSVDataLoader()
    (trades,) = exported.glob("binance-futures_trades_*_BTCUSDT.csv.gz")
    (deltas,) = exported.glob("binance-futures_incremental_book_L2_*_BTCUSDT.csv.gz")
    (quotes,) = exported.glob("binance-futures_quotes_*_BTCUSDT.csv.gz")
    assert len(loader.load_trades(str(trades))) == len(_csv(trades)) - 2
    assert len(loader.load_deltas(str(deltas))) == len(_csv(deltas)) - 2
    assert len(loader.load_quotes(str(quotes))) == len(_csv(quotes)) - 2
