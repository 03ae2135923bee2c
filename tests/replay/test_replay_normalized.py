"""/replay-normalized equals a reference computed here, row by row in plain Python, from the Parquet tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from replay_helpers import SYNTH_END, SYNTH_START, ServerProc, get_lines, tardis_ts

LO, HI = 1_736_186_400_000_000_000, 1_736_193_600_000_000_000  # the synthetic two hours


def rows(root: Path, exchange: str, data_type: str, symbol: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    folder = root / data_type / f"exchange={exchange}" / f"symbol={symbol}"
    for f in sorted(folder.glob("date=*/hour=*/data.parquet")):
        t = pq.read_table(f)
        # as ns ints: local_ts exact (local_ts_ns), exchange_ts 0 where none (null on disk)
        t = t.set_column(t.schema.get_field_index("local_ts"), "local_ts", t.column("local_ts_ns"))
        ets = pc.multiply(pc.fill_null(t.column("exchange_ts").cast(pa.int64()), 0), 1000)
        t = t.set_column(t.schema.get_field_index("exchange_ts"), "exchange_ts", ets)
        out += [r for r in t.to_pylist() if LO <= r["local_ts"] < HI]
    return out


def ref_trades(root: Path, exchange: str, symbol: str) -> list[dict[str, Any]]:
    return [
        {"type": "trade", "symbol": symbol, "exchange": exchange, "id": r["id"], "price": r["price"],
         "amount": r["amount"], "side": r["side"], "timestamp": tardis_ts(r["exchange_ts"] or r["local_ts"]),
         "localTimestamp": tardis_ts(r["local_ts"])}
        for r in rows(root, exchange, "trades", symbol)
    ]


def messages(root: Path, exchange: str, symbol: str) -> list[list[dict[str, Any]]]:
    """book_change rows grouped into messages: consecutive rows of one (local_ts, exchange_ts, is_snapshot)."""
    out: list[list[dict[str, Any]]] = []
    for r in rows(root, exchange, "book_change", symbol):
        if out and (out[-1][0]["local_ts"], out[-1][0]["exchange_ts"], out[-1][0]["is_snapshot"]) == (
            r["local_ts"], r["exchange_ts"], r["is_snapshot"]
        ):
            out[-1].append(r)
        else:
            out.append([r])
    return out


def ref_book_changes(root: Path, exchange: str, symbol: str) -> list[dict[str, Any]]:
    out = []
    for m in messages(root, exchange, symbol):
        r0 = m[0]
        out.append({
            "type": "book_change", "symbol": symbol, "exchange": exchange, "isSnapshot": r0["is_snapshot"],
            "bids": [{"price": r["price"], "amount": r["amount"]} for r in m if r["side"] == "bid"],
            "asks": [{"price": r["price"], "amount": r["amount"]} for r in m if r["side"] == "ask"],
            "timestamp": tardis_ts(r0["exchange_ts"]), "localTimestamp": tardis_ts(r0["local_ts"]),
        })
    return out


class RefBook:
    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.in_snapshot = False

    def apply(self, m: list[dict[str, Any]]) -> None:
        if m[0]["is_snapshot"] and not self.in_snapshot:
            self.bids.clear()
            self.asks.clear()
        self.in_snapshot = m[0]["is_snapshot"]
        for r in m:
            side = self.bids if r["side"] == "bid" else self.asks
            if r["amount"] == 0:
                side.pop(r["price"], None)
            else:
                side[r["price"]] = r["amount"]

    def top(self, depth: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        b = sorted(self.bids, reverse=True)[:depth]
        a = sorted(self.asks)[:depth]
        return [{"price": p, "amount": self.bids[p]} for p in b], [{"price": p, "amount": self.asks[p]} for p in a]


def ref_snapshots(root: Path, exchange: str, symbol: str, depth: int, interval_ms: int, name: str) -> list[dict[str, Any]]:
    """The documented rule: when a message enters a new interval, the book before it, if its top changed."""
    book, out, last, prev_bucket = RefBook(), [], None, None
    iv = interval_ms * 1_000_000
    for m in messages(root, exchange, symbol):
        t = m[0]["local_ts"]
        if interval_ms > 0:
            bucket = t // iv
            if prev_bucket is not None and bucket != prev_bucket:
                top = book.top(depth)
                if top != last and (top[0] or top[1]):
                    out.append(_snap(symbol, exchange, name, depth, interval_ms, top, bucket * iv, t))
                    last = top
            prev_bucket = bucket
        book.apply(m)
        if interval_ms == 0:
            top = book.top(depth)
            if top != last and (top[0] or top[1]):
                out.append(_snap(symbol, exchange, name, depth, 0, top, m[0]["exchange_ts"], t))
                last = top
    return out


def _snap(symbol: str, exchange: str, name: str, depth: int, interval: int, top: Any, ts: int, local: int) -> dict[str, Any]:
    return {"type": "book_snapshot", "symbol": symbol, "exchange": exchange, "name": name, "depth": depth,
            "interval": interval, "bids": top[0], "asks": top[1], "timestamp": tardis_ts(ts),
            "localTimestamp": tardis_ts(local)}


def fetch(server: ServerProc, options: Any) -> list[dict[str, Any]]:
    lines = get_lines(server.url("replay-normalized", options))
    assert all(line.endswith(b"\n") for line in lines)
    return [json.loads(line) for line in lines]


def opts(exchange: str, symbols: list[str], types: list[str], **kw: Any) -> dict[str, Any]:
    return {"exchange": exchange, "symbols": symbols, "from": SYNTH_START, "to": SYNTH_END, "dataTypes": types, **kw}


def test_trades_one_for_one(server: ServerProc) -> None:
    got = fetch(server, opts("binance-futures", ["BTCUSDT", "ETHUSDT"], ["trade"]))
    for sym in ("BTCUSDT", "ETHUSDT"):
        want = ref_trades(server.root, "binance-futures", sym)
        assert len(want) == 6000
        assert [m for m in got if m["symbol"] == sym] == want
    stamps = [m["localTimestamp"] for m in got]
    assert stamps == sorted(stamps)


def test_book_changes_one_for_one(server: ServerProc) -> None:
    got = fetch(server, opts("binance-futures", ["btcusdt"], ["book_change"]))
    want = ref_book_changes(server.root, "binance-futures", "BTCUSDT")
    assert sum(m["isSnapshot"] for m in want) == 2  # one snapshot per hour file
    assert got == want


@pytest.mark.parametrize(("dtype", "depth", "interval"), [("book_snapshot_5_1s", 5, 1000),
                                                          ("book_snapshot_3_100ms", 3, 100),
                                                          ("book_snapshot_2_0ms", 2, 0)])
def test_book_snapshots_equal_book_rebuilt_from_changes(server: ServerProc, dtype: str, depth: int, interval: int) -> None:
    got = fetch(server, opts("binance-futures", ["ETHUSDT"], [dtype]))
    want = ref_snapshots(server.root, "binance-futures", "ETHUSDT", depth, interval, dtype)
    assert len(want) > 100
    assert got == want


def test_quote_is_top_of_book_after_each_change(server: ServerProc) -> None:
    got = fetch(server, opts("binance-futures", ["BTCUSDT"], ["quote"]))
    assert got == ref_snapshots(server.root, "binance-futures", "BTCUSDT", 1, 0, "quote")


def test_mixed_types_keep_each_stream_and_global_order(server: ServerProc) -> None:
    got = fetch(server, opts("binance-futures", ["BTCUSDT"], ["trade", "book_change", "book_snapshot_5_1s"]))
    stamps = [m["localTimestamp"] for m in got]
    assert stamps == sorted(stamps)
    assert [m for m in got if m["type"] == "trade"] == ref_trades(server.root, "binance-futures", "BTCUSDT")
    assert [m for m in got if m["type"] == "book_change"] == ref_book_changes(server.root, "binance-futures", "BTCUSDT")
    assert [m for m in got if m["type"] == "book_snapshot"] == ref_snapshots(
        server.root, "binance-futures", "BTCUSDT", 5, 1000, "book_snapshot_5_1s")


def test_tick_and_time_trade_bars(server: ServerProc) -> None:
    got = fetch(server, opts("binance-futures", ["BTCUSDT"], ["trade_bar_100ticks", "trade_bar_10m"]))
    trades = rows(server.root, "binance-futures", "trades", "BTCUSDT")
    ticks = [m for m in got if m["name"] == "trade_bar_100ticks"]
    assert len(ticks) == len(trades) // 100
    for i, bar in enumerate(ticks):
        part = trades[i * 100 : (i + 1) * 100]
        prices = [t["price"] for t in part]
        assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (prices[0], max(prices), min(prices), prices[-1])
        assert bar["trades"] == 100 and bar["kind"] == "tick" and bar["type"] == "trade_bar"
        assert bar["volume"] == pytest.approx(sum(t["amount"] for t in part))
        assert bar["buyVolume"] == pytest.approx(sum(t["amount"] for t in part if t["side"] == "buy"))
        assert bar["localTimestamp"] == tardis_ts(part[-1]["local_ts"])
    minutes = [m for m in got if m["name"] == "trade_bar_10m"]
    assert len(minutes) == 12  # two hours of 10-minute bars, each ended inside the range
    assert sum(b["trades"] for b in minutes) == len(trades)
    assert all(b["interval"] == 600_000 and b["kind"] == "time" for b in minutes)


def test_disconnect_messages(server: ServerProc) -> None:
    got = fetch(server, opts("binance-futures", ["BTCUSDT", "ETHUSDT"], ["trade"], withDisconnectMessages=True))
    disc = [m for m in got if m["type"] == "disconnect"]
    want = sorted({r["local_ts"] for s in ("BTCUSDT", "ETHUSDT") for r in rows(server.root, "binance-futures", "events", s)
                   if r["kind"] == "disconnect"})
    assert [m["localTimestamp"] for m in disc] == [tardis_ts(t) for t in want]
    assert all(m == {"type": "disconnect", "exchange": "binance-futures", "localTimestamp": m["localTimestamp"]}
               for m in disc)


def test_multi_exchange_is_globally_ordered(server: ServerProc) -> None:
    a = opts("binance-futures", ["BTCUSDT"], ["trade", "book_change"])
    b = opts("bybit", ["BTCUSDT"], ["trade", "book_change"])
    got = fetch(server, [a, b])
    stamps = [m["localTimestamp"] for m in got]
    assert stamps == sorted(stamps)
    assert [m for m in got if m["exchange"] == "binance-futures"] == fetch(server, a)
    assert [m for m in got if m["exchange"] == "bybit"] == fetch(server, b)
    assert {m["exchange"] for m in got} == {"binance-futures", "bybit"}


def ref_table_snapshots(root: Path, depth: int, interval_ms: int, name: str) -> list[dict[str, Any]]:
    """The same rule applied to stored top-20 snapshots: each stored row is the whole book at its time."""
    out, last, prev, prev_bucket = [], None, None, None
    iv = interval_ms * 1_000_000
    for r in rows(root, "hyperliquid", "book_snapshot_20", "BTC"):
        def top(row: dict[str, Any]) -> Any:
            bids = [{"price": p, "amount": a} for p, a in zip(row["bid_price"], row["bid_amount"], strict=True)
                    if p == p][:depth]
            asks = [{"price": p, "amount": a} for p, a in zip(row["ask_price"], row["ask_amount"], strict=True)
                    if p == p][:depth]
            return bids, asks

        if interval_ms > 0:
            bucket = r["local_ts"] // iv
            if prev is not None and bucket != prev_bucket:
                t = top(prev)
                if t != last:
                    out.append(_snap("BTC", "hyperliquid", name, depth, interval_ms, t, bucket * iv, r["local_ts"]))
                    last = t
            prev_bucket = bucket
        else:
            t = top(r)
            if t != last:
                out.append(_snap("BTC", "hyperliquid", name, depth, 0, t, r["exchange_ts"], r["local_ts"]))
                last = t
        prev = r
    return out


@pytest.mark.parametrize(("dtype", "depth", "interval"), [("book_snapshot_10_1m", 10, 60_000),
                                                          ("book_snapshot_20_1s", 20, 1000),
                                                          ("book_snapshot_5_0ms", 5, 0)])
def test_snapshots_from_stored_l2book_tables(server: ServerProc, dtype: str, depth: int, interval: int) -> None:
    got = fetch(server, opts("hyperliquid", ["BTC"], [dtype]))
    want = ref_table_snapshots(server.root, depth, interval, dtype)
    assert len(want) > 50
    assert got == want


def test_quote_from_stored_l2book_tables(server: ServerProc) -> None:
    got = fetch(server, opts("hyperliquid", ["BTC"], ["quote"]))
    assert got == ref_table_snapshots(server.root, 1, 0, "quote")
    assert 1000 < len(got) < 4000  # repeated tops are not re-sent
