"""/replay-normalized equals a reference computed here, row by row in plain Python, from the Parquet tables.

Computed types (book snapshots, quotes, trade bars, disconnects) follow tardis-dev's computables: the
differential suite (test_replay_tardis_diff.py) checks them against tardis-dev itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from replay_helpers import SYNTH_END, SYNTH_START, ServerProc, get_lines, tardis_ms, tardis_us

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
         "amount": r["amount"], "side": r["side"], "timestamp": tardis_ms(r["exchange_ts"] or r["local_ts"]),
         "localTimestamp": tardis_us(r["local_ts"])}
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
            "timestamp": tardis_ms(r0["exchange_ts"]), "localTimestamp": tardis_us(r0["local_ts"]),
        })
    return out


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


def test_multi_exchange_is_globally_ordered(server: ServerProc) -> None:
    a = opts("binance-futures", ["BTCUSDT"], ["trade", "book_change"])
    b = opts("bybit", ["BTCUSDT"], ["trade", "book_change"])
    got = fetch(server, [a, b])
    stamps = [m["localTimestamp"] for m in got]
    assert stamps == sorted(stamps)
    assert [m for m in got if m["exchange"] == "binance-futures"] == fetch(server, a)
    assert [m for m in got if m["exchange"] == "bybit"] == fetch(server, b)
    assert {m["exchange"] for m in got} == {"binance-futures", "bybit"}
