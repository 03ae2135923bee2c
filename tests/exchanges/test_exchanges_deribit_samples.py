"""deribit decoding, change_id continuity, tickers and faults on real recorded frames
(cryptofeed 2021 options recording, tardis-dev's mapper exemplars)."""

from __future__ import annotations

import json
import math

import pytest
from exchanges_book_helpers import rebuild
from recorded_frames import SAMPLES, cryptofeed_frames

from ticktape.engine.config import ExchangeConfig
from ticktape.exchanges import registry
from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL

WS = SAMPLES / "deribit/cryptofeed_v2_DERIBIT.ws.1.0"
TARDIS = SAMPLES / "deribit/tardis_node_mappers_test_deribit.jsonl"


def recorded_instruments(frames):
    return sorted({json.loads(f)["params"]["channel"].split(".")[1] for _, f in frames if b'"subscription"' in f})


def reference(frames, symbol):
    """The book the recording describes, rebuilt here with json (a snapshot replaces it)."""
    book = {"b": {}, "a": {}}
    for _, f in frames:
        m = json.loads(f)
        if m.get("params", {}).get("channel") != f"book.{symbol}.raw":
            continue
        d = m["params"]["data"]
        if d["type"] == "snapshot":
            book = {"b": {}, "a": {}}
        for side, key in (("b", "bids"), ("a", "asks")):
            for act, p, q in d[key]:
                if act == "delete":
                    book[side].pop(p, None)
                else:
                    book[side][p] = q
    return book


def test_options_recording_books_tickers_and_raw(rig):
    frames = cryptofeed_frames(WS)
    syms = recorded_instruments(frames)
    assert len(syms) == 10
    r = rig("deribit", symbols=syms, channels=["trades", "book_change", "book_ticker", "derivative_ticker"])
    for ts, f in frames:
        r.frame(f, ts)
    assert r.feed.stat("malformed") == 0 and r.feed.stat("subscribe_errors") == 0
    rows = r.records("book_change")
    n_changes = 0
    for sym in syms:
        sid = r.spec.symbol_id(sym)
        assert r.feed.stat("gaps", sid) == 0 and r.feed.stat("duplicates", sid) == 0, sym
        assert rebuild(rows, sid) == reference(frames, sym), sym
        n_changes += sum(1 for _, f in frames if f'"book.{sym}.raw"'.encode() in f and b'"change"' in f)
    assert n_changes > 30
    raw = r.raw()
    assert [x[4] for x in raw] == [f for _, f in frames]  # every frame kept, in order, the ack too
    assert {x[1] for x in raw} == {"book", "ticker", ""}
    # options: every ticker a book_ticker row, none a derivative_ticker row (Tardis: option_summary)
    tickers = [json.loads(f)["params"]["data"] for _, f in frames if b'"channel":"ticker.' in f]
    bt = r.records("book_ticker")
    assert len(bt) == len(tickers) == 89
    assert [float(x["bid_price"]) for x in bt] == [float(t["best_bid_price"]) for t in tickers]
    assert [int(x["exchange_ts"]) for x in bt] == [t["timestamp"] * 10**6 for t in tickers]
    assert len(r.records("derivative_ticker")) == 0


def test_tardis_exemplars_trades_liquidations_and_perpetual_ticker(rig):
    r = rig("deribit", symbols=["BTC-PERPETUAL", "ETH-PERPETUAL"],
            channels=["trades", "book_change", "derivative_ticker", "liquidations"])
    lines = [x for x in TARDIS.read_bytes().splitlines() if b"PERPETUAL" in x]
    for i, line in enumerate(lines):
        r.frame(line, 1_000 + i)
    trades = r.records("trades")
    want = [t for line in lines if b'"trades.' in line for t in json.loads(line)["params"]["data"]]
    assert [x["id"].decode() for x in trades] == [t["trade_id"] for t in want]
    assert [float(x["amount"]) for x in trades] == [t["amount"] for t in want]
    assert [int(x["side"]) for x in trades] == [SIDE_BUY if t["direction"] == "buy" else SIDE_SELL for t in want]
    liqs = r.records("liquidations")
    # "T": the taker side was liquidated (side = direction); "M": the maker side (the opposite)
    assert [(x["id"].decode(), int(x["side"])) for x in liqs] == [("66460463", SIDE_SELL), ("66460626", SIDE_SELL)]
    dt = r.records("derivative_ticker")
    assert len(dt) == 2 and dt[0]["mark_price"] == 10094.1 and not math.isnan(dt[1]["funding_rate"])
    # the ETH-PERPETUAL book: a snapshot without "type" (older recording), then a change whose
    # prev_change_id does not link: a gap and a resubscribe, no rows of the unlinked change
    ev = r.events()
    assert [k for k, s, _ in ev if s == "ETH-PERPETUAL"] == ["gap", "resync"], ev
    book = r.records("book_change")
    assert list(book["is_snapshot"]) == [1, 1, 1, 1]


def _book(cid, prev=None, typ="change", bids=(("new", 100.0, 1.0),), asks=(("new", 101.0, 2.0),)):
    data = {"type": typ, "timestamp": 1700000000000 + cid, "instrument_name": "BTC-PERPETUAL", "change_id": cid,
            "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}
    if prev is not None:
        data["prev_change_id"] = prev
    return json.dumps({"jsonrpc": "2.0", "method": "subscription",
                       "params": {"channel": "book.BTC-PERPETUAL.100ms", "data": data}}).encode()


def test_chain_gap_duplicate_malformed_and_heartbeat(rig):
    r = rig("deribit", symbols=["BTC-PERPETUAL"], channels=["book_change"])
    sent: list[bytes] = []
    r.listener.send = sent.append  # type: ignore[method-assign]
    sid = r.spec.symbol_id("BTC-PERPETUAL")
    r.frame(_book(5, 3), 1)  # before any snapshot: unusable
    r.frame(_book(10, typ="snapshot", bids=(("new", 99.0, 5.0),)), 2)
    r.frame(_book(17, 10), 3)
    r.frame(_book(17, 10), 4)  # duplicate
    r.frame(_book(30, 25), 5)  # gap: 17 -> 25 missing
    r.frame(_book(31, 30), 6)  # in flight before the new snapshot: not applied
    r.frame(b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms","data":{"bids":[["x"]', 7)
    r.frame(_book(40, typ="snapshot", bids=(("new", 98.0, 1.0),)), 8)
    r.frame(_book(41, 40, bids=(("delete", 98.0, 0.0),)), 9)
    r.frame(b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}', 10)
    kinds = [k for k, _, _ in r.events()]
    assert kinds == ["gap", "resync", "malformed", "resync", "duplicate"], r.events()
    assert r.feed.stat("gaps", sid) == 1 and r.feed.stat("malformed", sid) == 1
    rows = r.records("book_change")
    assert [(int(x["local_ts"]), int(x["is_snapshot"])) for x in rows] == [
        (2, 1), (2, 1), (3, 0), (3, 0), (8, 1), (8, 1), (9, 0), (9, 0)
    ]
    assert rebuild(rows, sid) == {"b": {}, "a": {101.0: 2.0}}  # the resynced book, 98 deleted
    assert len(r.raw()) == 10
    assert any(b'"public/test"' in m for m in sent)  # the test_request answered


def test_subscribe_answers_missing_channel_and_error(rig):
    r = rig("deribit", symbols=["BTC-PERPETUAL", "NOPE-PERPETUAL"], channels=["trades"])
    req = r.feed.rpc("public/subscribe", {"channels": ["trades.BTC-PERPETUAL.100ms", "trades.NOPE-PERPETUAL.100ms"]})
    rid = json.loads(req)["id"]
    r.frame(json.dumps({"jsonrpc": "2.0", "id": rid, "result": ["trades.BTC-PERPETUAL.100ms"]}).encode(), 5)
    assert r.events() == [("subscribe_error", "NOPE-PERPETUAL", "not subscribed: trades.NOPE-PERPETUAL.100ms")]
    req = r.feed.rpc("public/subscribe", {"channels": ["trades.NOPE-PERPETUAL.100ms"]})
    r.frame(json.dumps({"jsonrpc": "2.0", "id": json.loads(req)["id"],
                        "error": {"code": -32602, "message": "Invalid params"}}).encode(), 6)
    assert r.events()[-1] == ("subscribe_error", "NOPE-PERPETUAL", "error -32602: Invalid params")
    # a connection's own subscribe is sent again on every reconnect: its answer is checked each time
    plan = json.loads(r.feed.plans()[0].subscribe[1])
    answer = json.dumps({"jsonrpc": "2.0", "id": plan["id"], "result": ["trades.BTC-PERPETUAL.100ms"]}).encode()
    r.frame(answer, 7)
    r.frame(answer, 8)
    assert [k for k, _, _ in r.events()].count("subscribe_error") == 4


def test_refused_set_heartbeat_is_an_info_event_not_a_subscribe_error(rig):
    r = rig("deribit", symbols=["BTC-PERPETUAL"], channels=["trades"])
    hb = json.loads(r.feed.plans()[0].subscribe[0])
    assert hb["method"] == "public/set_heartbeat" and hb["params"] == {"interval": 10}
    r.frame(json.dumps({"jsonrpc": "2.0", "id": hb["id"], "error": {"code": -32602, "message": "Invalid params"}}).encode(), 5)
    assert r.events() == [("info", "_", "set_heartbeat refused: Invalid params")]
    assert r.feed.stat("subscribe_errors") == 0


def test_config_errors_name_the_problem():
    cases = [
        ({"symbols": ["BTCUSDT"]}, r"symbol 'BTCUSDT' is not a deribit symbol \(expected e.g. BTC-PERPETUAL"),
        ({"symbols": ["BTC-PERPETUAL"], "channels": ["book_snapshot"]}, r"'book_snapshot' is not supported by deribit"),
        ({"symbols": ["BTC-PERPETUAL"], "trade_stream": "aggTrade"}, r"trade_stream is a binance-futures option"),
        ({"symbols": ["BTC-PERPETUAL"], "url": "http://x"}, r"url 'http://x': scheme must be ws or wss"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            registry.validate("deribit", ExchangeConfig(**kw))
    for ok in ("BTC-PERPETUAL", "SOL_USDC-PERPETUAL", "BTC-27JUN25", "BTC-27JUN25-60000-C", "MATIC_USDC-9MAR24-1d02-C"):
        registry.validate("deribit", ExchangeConfig(symbols=[ok]))
