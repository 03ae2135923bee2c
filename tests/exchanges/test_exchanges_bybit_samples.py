"""bybit v5 decoding, book continuity and faults on real recorded frames."""

from __future__ import annotations

import json

import pytest
from exchanges_book_helpers import rebuild
from recorded_frames import SAMPLES, cryptofeed_frames

from ticktape.ipc.schemas import SIDE_BUY

WS = SAMPLES / "bybit/cryptofeed_v2_v5_BYBIT.ws.1.0"
TARDIS = SAMPLES / "bybit/tardis_node_mappers_test_bybit_v5.jsonl"
SYMBOLS = ["BANDUSDT", "RADUSDT", "SNTUSDT", "AIOZUSDT"]


def reference(frames, symbol):
    book = {"b": {}, "a": {}}
    for _, f in frames:
        m = json.loads(f)
        if m.get("topic") != f"orderbook.1.{symbol}":
            continue
        if m["type"] == "snapshot":
            book = {"b": {}, "a": {}}
        for side in ("b", "a"):
            for p, q in m["data"][side]:
                if float(q) == 0:
                    book[side].pop(float(p), None)
                else:
                    book[side][float(p)] = float(q)
    return book




def test_orderbook1_recording(rig):
    r = rig("bybit", symbols=SYMBOLS, channels=["book_change"], depth=1)
    frames = cryptofeed_frames(WS)
    for ts, f in frames:
        r.frame(f, ts)
    assert r.feed.stat("malformed") == 0 and r.feed.stat("subscribe_errors") == 0
    rows = r.records("book_change")
    for sym in SYMBOLS:
        sid = r.spec.symbol_id(sym)
        assert r.feed.stat("gaps", sid) == 0
        assert rebuild(rows, sid) == reference(frames, sym)
    raw = r.raw()
    assert [x[4] for x in raw] == [f for _, f in frames]
    assert {x[1] for x in raw} == {"orderbook.1", ""}  # acks under channel ""


def test_tardis_exemplars_trades_and_orderbook50(rig):
    r = rig("bybit", symbols=["BTCUSDT", "LTCUSDT", "BTCPERP"], channels=["trades", "book_change"], depth=50)
    lines = TARDIS.read_bytes().splitlines()
    for i, line in enumerate(lines):
        r.frame(line, 1_000 + i)
    trades = r.records("trades")
    ltc = [t for t in trades if r.spec.symbols[t["symbol"]] == "LTCUSDT"]
    assert len(ltc) == 1
    t = ltc[0]
    assert t["id"].decode() == "4c7b6bdc-b4a3-5716-9c7b-bbe01dc7072f" and t["price"] == 94.53 and t["amount"] == 0.4
    assert t["side"] == SIDE_BUY and t["exchange_ts"] == 1680688979983 * 10**6
    book = r.records("book_change")
    perp = book[book["symbol"] == r.spec.symbol_id("BTCPERP")]
    # snapshot (2 rows, is_snapshot) then delta (2 rows)
    assert list(perp["is_snapshot"]) == [1, 1, 0, 0]
    assert list(perp["price"]) == [28555.2, 28555.3, 28555.2, 28555.3]
    assert list(perp["amount"]) == [0.597, 0.225, 0.677, 0.029]


def _ob(u, typ="delta", b=(("100.0", "1"),), a=(("101.0", "2"),), sym="BTCUSDT"):
    data = {"s": sym, "b": [list(x) for x in b], "a": [list(x) for x in a], "u": u, "seq": u * 10}
    return json.dumps({"topic": f"orderbook.50.{sym}", "type": typ, "ts": 1700000000000 + u, "data": data}).encode()


def test_gap_duplicate_restart_and_malformed(rig):
    r = rig("bybit", symbols=["BTCUSDT"], channels=["book_change"], depth=50)
    sid = r.spec.symbol_id("BTCUSDT")
    r.frame(_ob(10, "delta"), 1)  # before any snapshot: unusable, not normalized
    r.frame(_ob(10, "snapshot", b=(("99.0", "5"),)), 2)
    r.frame(_ob(11), 3)
    r.frame(_ob(11), 4)  # duplicate
    r.frame(_ob(13), 5)  # gap (12 missing)
    r.frame(_ob(14), 6)  # ignored until a snapshot arrives
    r.frame(b'{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{"s":"BTCUSDT","b":[["x"]]', 7)  # malformed
    r.frame(_ob(20, "snapshot", b=(("98.0", "1"),)), 8)
    r.frame(_ob(1), 9)  # u == 1: service restart, overwrite
    r.frame(_ob(2), 10)
    ev = r.events()
    kinds = [k for k, _, _ in ev]
    # the duplicate burst's one row is written when the burst ends (here: at the read)
    assert kinds == ["gap", "resync", "malformed", "resync", "resync", "duplicate"], ev
    assert ev[-1][2] == "1 duplicate orderbook updates dropped (11)"
    assert r.feed.stat("gaps", sid) == 1 and r.feed.stat("malformed", sid) == 1
    rows = r.records("book_change")
    assert [(int(x["local_ts"]), int(x["is_snapshot"])) for x in rows] == [
        (2, 1), (2, 1), (3, 0), (3, 0), (8, 1), (8, 1), (9, 1), (9, 1), (10, 0), (10, 0)
    ]
    raw = r.raw()
    assert len(raw) == 10  # every frame kept, the malformed one too
    assert raw[6][4].startswith(b'{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{"s":"BTCUSDT","b":[["x"]]')


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure_python"])
def test_malformed_level_array_on_the_fast_path_is_kept_raw_and_resyncs(rig, compiled):
    """A compact delta (the one-pass path) whose u chains but whose level array is not levels:
    none of its levels reach book_change; counted malformed, kept raw, resynced, with the C level
    parser and with msgspec's (pure Python)."""
    r = rig("bybit", symbols=["BTCUSDT"], channels=["book_change"], depth=50, compiled=compiled)
    sid = r.spec.symbol_id("BTCUSDT")

    def compact(u, typ="delta"):
        return json.dumps(json.loads(_ob(u, typ)), separators=(",", ":")).encode()

    r.frame(compact(10, "snapshot"), 1)
    r.frame(compact(11), 2)
    bad = compact(12).replace(b'"a":[', b'"a":[["1.5"],', 1)
    r.frame(bad, 3)
    assert [k for k, _, _ in r.events()] == ["malformed", "resync"]
    assert r.feed.stat("malformed", sid) == 1 and not r.feed.seq["orderbook.50.BTCUSDT"].synced
    assert [int(x["local_ts"]) for x in r.records("book_change")] == [1, 1, 2, 2]
    raw = r.raw()
    assert len(raw) == 3 and raw[-1][4] == bad


def test_subscribe_error_is_an_event(rig):
    r = rig("bybit", symbols=["BTCUSDT"], channels=["trades"])
    r.frame(b'{"success":false,"ret_msg":"error:handler not found","conn_id":"x","req_id":"1","op":"subscribe"}', 5)
    assert r.events() == [("subscribe_error", "BTCUSDT", "subscribe: error:handler not found")]  # req_id 1 = our request
    assert r.feed.stat("subscribe_errors", r.spec.symbol_id("BTCUSDT")) == 1
