"""Binance planned reconnect: two connections race during the overlap; every trade
and every diff is applied exactly once, a diff neither connection delivered is a gap."""

from __future__ import annotations

import json

from ticktape.exchanges.connection import Listener


def agg(a):
    return json.dumps({"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": a, "a": a, "s": "BTCUSDT", "p": "100.0",
                                                              "q": "1", "f": a, "l": a, "T": a, "m": False}}).encode()


def diff(u, price):
    return json.dumps({"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "E": u, "T": u, "s": "BTCUSDT",
                                                                 "U": u, "u": u, "pu": u - 1, "b": [[str(price), "1"]], "a": []}}).encode()


def test_trades_and_diffs_once_each_across_the_overlap(rig):
    r = rig("binance-futures", symbols=["BTCUSDT"], channels=["trades", "book_change"], trade_stream="aggTrade")
    sid = r.spec.symbol_id("BTCUSDT")
    old = r.listener
    link = old.link
    new = Listener(link, 2)
    # sync the diff book: snapshot at 10, first diff u=11 (U 11 <= 10? no: U=10 is needed)
    r.frame(json.dumps({"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "E": 1, "T": 1, "s": "BTCUSDT",
                                                                  "U": 9, "u": 11, "pu": 8, "b": [], "a": []}}).encode(), 1)
    r.feed.on_snapshot(sid, 2, b'{"lastUpdateId":10,"E":1,"T":1,"bids":[["1.0","1"]],"asks":[["2.0","1"]]}')
    assert r.feed.sync[sid].state == 1 and r.feed.sync[sid].last_u == 11
    for a in (1, 2):
        r.frame(agg(a), 3)

    link.rolling = True
    r.feed.overlap_started(link)
    order = [(old, agg(3)), (new, agg(4)), (old, agg(4)), (new, agg(3)), (new, agg(5)), (old, agg(5)),
             (old, diff(12, 1.1)), (new, diff(14, 1.3)), (old, diff(13, 1.2)), (new, diff(12, 1.1)),
             (new, diff(13, 1.2)), (old, diff(14, 1.3)), (new, diff(15, 1.4))]
    for i, (lst, f) in enumerate(order):
        r.feed.frame(lst, 10 + i, memoryview(f))
    link.rolling = False
    r.feed.overlap_done(link, 100)
    r.feed.frame(new, 101, memoryview(agg(6)))
    r.feed.frame(new, 102, memoryview(diff(16, 1.5)))

    assert [int(t["id"]) for t in r.records("trades")] == [1, 2, 3, 4, 5, 6]
    rows = r.records("book_change")
    live = rows[rows["is_snapshot"] == 0]
    assert [round(float(p), 1) for p in live["price"]] == [1.1, 1.2, 1.3, 1.4, 1.5]
    assert r.feed.stat("gaps", sid) == 0
    assert "gap" not in [k for k, _, _ in r.events()]
    # the overlap's duplicates are not written to raw twice
    payloads = [x[4] for x in r.raw() if x[1] in ("aggTrade", "depth")]
    assert len(payloads) == len(set(payloads))


def test_a_diff_missing_on_both_connections_is_a_gap(rig):
    r = rig("binance-futures", symbols=["BTCUSDT"], channels=["book_change"])
    sid = r.spec.symbol_id("BTCUSDT")
    old, link = r.listener, r.listener.link
    new = Listener(link, 2)
    r.frame(diff(11, 1.0), 1)
    r.feed.on_snapshot(sid, 2, b'{"lastUpdateId":11,"E":1,"T":1,"bids":[],"asks":[]}')
    link.rolling = True
    r.feed.overlap_started(link)
    r.feed.frame(old, 3, memoryview(diff(12, 1.1)))
    r.feed.frame(new, 4, memoryview(diff(14, 1.3)))  # 13 never comes
    link.rolling = False
    r.feed.overlap_done(link, 5)
    assert [k for k, _, _ in r.events()] == ["gap", "resync"]
    assert r.feed.sync[sid].state == 0
