"""book_ticker, derivative_ticker and liquidations: Outbox -> rings -> writer ->
hourly Parquet -> loader, every field, NaN/0/empty as nulls, full ring counted."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from ticktape.archive.loaders import load
from ticktape.engine.config import ArchiveConfig
from ticktape.ipc import ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL, arrow_schema_for
from ticktape.writers.writer import Writer

H0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00Z
NAN = math.nan
TYPES = ["book_ticker", "derivative_ticker", "liquidations"]


def _none(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def test_ticker_tables_round_trip(tmp_path) -> None:
    spec = ringset.make_spec("bybit", ["BTCUSDT", "ETHUSDT"], ["tickers"], TYPES, record_capacity=1 << 10)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings)
        bt = [(H0 + 1, H0, 1, 100.5, 2.0, 100.6, 3.0), (H0 + 2, H0 + 1, 2, NAN, NAN, 9.5, 1.25)]
        dt = [
            (H0 + 3, H0 + 2, 1, 100.0, 100.1, 100.2, 0.0001, H0 + 8 * 3600 * 10**9, NAN, 5000.5),
            (H0 + 4, 0, 2, NAN, 9.9, NAN, NAN, 0, NAN, NAN),
        ]
        lq = [(H0 + 5, H0 + 4, 1, b"", 99.0, 0.5, SIDE_SELL), (H0 + 6, H0 + 5, 2, b"x-1", 9.0, 7.0, SIDE_BUY)]
        for r in bt:
            ob.book_ticker(*r)
        for r in dt:
            ob.derivative_ticker(*r)
        for r in lq:
            ob.liquidation(*r)
        archive = ArchiveConfig(root=str(tmp_path / "a"), flush_interval=0.1)
        w = Writer([spec], archive, host="h")
        assert w.drain_once() == 6
        w.close()
        root = archive.root
        for data_type in TYPES:
            t = load(root, "bybit", data_type, ["BTCUSDT", "ETHUSDT"], "2026-01-01:00", "2026-01-01:00")
            assert t.schema.remove_metadata().field("symbol") is not None
            assert t.drop_columns(["symbol"]).schema.remove_metadata() == arrow_schema_for(data_type)
        rows = load(root, "bybit", "book_ticker", ["BTCUSDT", "ETHUSDT"], "2026-01-01:00", "2026-01-01:00").to_pylist()
        assert [(r["symbol"], r["bid_price"], r["bid_amount"], r["ask_price"], r["ask_amount"]) for r in rows] == [
            ("BTCUSDT", 100.5, 2.0, 100.6, 3.0), ("ETHUSDT", None, None, 9.5, 1.25)
        ]
        assert [r["exchange_ts"] for r in rows] == [_dt(H0), _dt(H0 + 1)]  # µs, UTC
        rows = load(root, "bybit", "derivative_ticker", ["BTCUSDT", "ETHUSDT"], "2026-01-01:00", "2026-01-01:00").to_pylist()
        cols = ["last_price", "mark_price", "index_price", "funding_rate", "predicted_funding_rate", "open_interest"]
        got = [tuple(r[c] for c in cols) for r in rows]
        want = [tuple(_none(x) for x in (d[3], d[4], d[5], d[6], d[8], d[9])) for d in dt]
        assert got == want
        assert rows[0]["funding_timestamp"] == _dt(H0 + 8 * 3600 * 10**9) and rows[1]["funding_timestamp"] is None
        assert rows[1]["exchange_ts"] is None  # 0 in the ring = none
        rows = load(root, "bybit", "liquidations", ["BTCUSDT", "ETHUSDT"], "2026-01-01:00", "2026-01-01:00").to_pylist()
        assert [(r["id"], r["side"], r["price"], r["amount"]) for r in rows] == [
            (None, "sell", 99.0, 0.5), ("x-1", "buy", 9.0, 7.0)
        ]
    finally:
        ringset.close(rings)


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1000 / 1e6, UTC).replace(microsecond=ns // 1000 % 1_000_000)


@pytest.mark.parametrize("data_type", TYPES)
def test_full_ticker_ring_is_counted_not_silent(data_type: str) -> None:
    spec = ringset.make_spec("bybit", ["BTCUSDT"], [], [data_type], record_capacity=4)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings)
        resyncs: list[int] = []
        ob.on_book_drop = resyncs.append
        for i in range(6):
            if data_type == "book_ticker":
                ob.book_ticker(i, i, 1, 1.0, 1.0, 2.0, 1.0)
            elif data_type == "derivative_ticker":
                ob.derivative_ticker(i, i, 1, 1.0, 1.0, 1.0, 0.0, 0, NAN, 1.0)
            else:
                ob.liquidation(i, i, 1, b"", 1.0, 1.0, SIDE_BUY)
        assert rings[data_type].dropped == 2  # type: ignore[union-attr]
        assert ob.pending_drops == 2 and resyncs == []  # a ticker drop needs no book resync
        ob.flush_pending(10)
        ev = rings["events"]
        _, views = ev.peek(10)  # type: ignore[union-attr]
        assert views[0]["detail"][0].decode() == f"{data_type}: 2 records dropped (ring full)"
    finally:
        ringset.close(rings)
