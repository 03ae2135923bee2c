"""bitmex orderBookL2 / trade / quote decoding and missed-update detection on real recorded frames
(cryptofeed 2021: update and delete carry no price, the id's price is used)."""

from __future__ import annotations

import json

from exchanges_book_helpers import rebuild
from recorded_frames import SAMPLES, cryptofeed_frames

WS = SAMPLES / "bitmex/cryptofeed_v2_BITMEX.ws.1.0"
TARDIS = SAMPLES / "bitmex/tardis_node_mappers_test_bitmex.jsonl"
SYMBOLS = ["XRPU21", "UNIUSDT", "XBTUSD", "ADAUSDT", "SOLUSDT", "TRXU21", "EOSUSDT", "TRXUSDT", "BCHUSD", "MATICUSDT"]


def reference_books(frames: list[bytes]) -> dict[str, dict[str, dict[float, float]]]:
    """Books rebuilt from the recording with plain json, keyed by (id, side) as BitMEX keys them."""
    levels: dict[str, dict[tuple[int, str], list[float]]] = {}
    for f in frames:
        m = json.loads(f)
        if m.get("table") != "orderBookL2":
            continue
        if m["action"] == "partial":
            levels[m["filter"]["symbol"]] = {}
        for x in m["data"]:
            book = levels[x["symbol"]]
            key = (x["id"], x["side"])
            if m["action"] in ("partial", "insert"):
                book[key] = [x["price"], x["size"]]
            elif m["action"] == "update":
                book[key][1] = x["size"]
            else:
                del book[key]
    return {s: {"b": {p: q for (_, side), (p, q) in b.items() if side == "Buy"},
                "a": {p: q for (_, side), (p, q) in b.items() if side == "Sell"}} for s, b in levels.items()}


def recorded_trades(frames: list[bytes], symbol: str) -> list[tuple[str, float, float]]:
    out = []
    for f in frames:
        m = json.loads(f)
        if m.get("table") == "trade" and m["action"] == "insert":
            out += [(t["trdMatchID"], t["price"], t["size"]) for t in m["data"] if t["symbol"] == symbol]
    return out


def test_recording_books_trades_quotes_and_raw(rig):
    r = rig("bitmex", symbols=SYMBOLS, channels=["trades", "book_change", "book_ticker"])
    frames = cryptofeed_frames(WS)
    for ts, f in frames:
        r.frame(f, ts)
    assert r.feed.stat("malformed") == 0 and r.feed.stat("subscribe_errors") == 0
    assert r.feed.stat("gaps") == 0 and not [e for e in r.events() if e[0] in ("gap", "resync")]
    rows = r.records("book_change")
    ref = reference_books([f for _, f in frames])
    for sym in SYMBOLS:
        sid = r.spec.symbol_id(sym)
        assert r.feed.stat("gaps", sid) == 0
        assert rebuild(rows, sid) == ref[sym], sym
    assert len(ref["XBTUSD"]["b"]) + len(ref["XBTUSD"]["a"]) > 5000
    trades = r.records("trades")
    n = 0
    for sym in SYMBOLS:
        got = [(t["id"].decode(), t["price"], t["amount"]) for t in trades[trades["symbol"] == r.spec.symbol_id(sym)]]
        assert got == recorded_trades([f for _, f in frames], sym), sym
        n += len(got)
    assert n == 17  # the 17 trades of the 7 recorded inserts; the partials' older trades are raw only, as in Tardis
    quotes = r.records("book_ticker")
    assert len(quotes) == sum(len(json.loads(f)["data"]) for _, f in frames  # inserts: a partial's quote is old
                              if f.startswith(b'{"table":"quote","action":"insert"')) > 0
    raw = r.raw()
    assert [x[4] for x in raw] == [f for _, f in frames]  # every frame, byte for byte, in order
    assert {x[1] for x in raw} == {"orderBookL2", "trade", "quote", ""}  # welcome and acks under channel ""


def _book(action, *levels, sym="XBTUSD"):
    data = [{"symbol": sym, "id": i, "side": s, **({"size": q} if q is not None else {}),
             **({"price": p} if p is not None else {}), "timestamp": "2022-02-14T08:06:54.742Z"}
            for i, s, q, p in levels]
    return json.dumps({"table": "orderBookL2", "action": action, "data": data}).encode()


def test_missed_updates_are_gaps_then_a_resync(rig):
    r = rig("bitmex", symbols=["XBTUSD"], channels=["book_change"])
    sid = r.spec.symbol_id("XBTUSD")
    r.frame(_book("update", (1, "Buy", 5, 100.0)), 1)  # before the partial: unusable
    r.frame(_book("partial", (1, "Buy", 5, 100.0), (2, "Sell", 7, 101.0)), 2)
    r.frame(_book("update", (1, "Buy", 6, None)), 3)  # no price: the id's
    r.frame(_book("update", (9, "Buy", 6, None)), 4)  # unknown id: a missed insert
    r.frame(_book("update", (1, "Buy", 8, None)), 5)  # ignored until the new partial
    r.frame(_book("partial", (1, "Buy", 8, 100.0)), 6)
    r.frame(_book("insert", (1, "Buy", 2, 100.0)), 7)  # known id: a missed delete
    r.frame(_book("partial", (1, "Buy", 8, 100.0)), 8)
    r.frame(_book("delete", (2, "Sell", None, None)), 9)  # unknown id
    r.frame(_book("partial", (1, "Buy", 8, 100.0)), 10)
    r.frame(_book("update", (1, "Buy", 3, 100.5)), 11)  # a price the id does not have
    r.frame(_book("partial", (1, "Buy", 8, 100.0)), 12)
    r.frame(_book("insert", (1, "Sell", 2, 100.0)), 13)  # the Buy level at that price is still there
    ev = r.events()
    assert [k for k, _, _ in ev] == ["gap", "resync", "resync", "gap", "resync", "resync", "gap", "resync", "resync",
                                     "gap", "resync", "resync", "gap", "resync"], ev
    assert ev[0][2] == "update of unknown level id 9 Buy" and ev[3][2] == "insert of known level id 1 Buy"
    assert ev[6][2] == "delete of unknown level id 2 Sell" and ev[9][2] == "update of level id 1 at 100.5, known at 100.0"
    assert ev[12][2] == "insert of Sell level id 1 where the other side stands (a missed delete)"
    assert r.feed.stat("gaps", sid) == 5 and r.feed.stat("resyncs", sid) == 4
    rows = r.records("book_change")
    assert [(int(x["local_ts"]), int(x["is_snapshot"]), x["price"], x["amount"]) for x in rows] == [
        (2, 1, 100.0, 5), (2, 1, 101.0, 7), (3, 0, 100.0, 6), (6, 1, 100.0, 8), (8, 1, 100.0, 8), (10, 1, 100.0, 8),
        (12, 1, 100.0, 8)]
    assert all(x["exchange_ts"] == 1644826014742000000 for x in rows)


def test_tardis_exemplars_instrument_and_liquidation(rig):
    r = rig("bitmex", symbols=["XBTUSD", "ETHUSD", "ETHM19"], channels=["trades", "derivative_ticker", "liquidations"])
    for i, line in enumerate(TARDIS.read_bytes().splitlines()):
        r.frame(line, 1_000 + i)
    liq = r.records("liquidations")
    assert [(x["id"].decode(), x["price"], x["amount"], int(x["side"])) for x in liq] == [
        ("dd9cea25-207c-0dab-15b5-b88da776f500", 10106.0, 9214.0, 1)]  # insert only; the delete stays raw
    d = r.records("derivative_ticker")
    eth = d[d["symbol"] == r.spec.symbol_id("ETHM19")]
    assert len(eth) == 2 and eth[-1]["last_price"] == 267.75  # partial, then the lastPrice update merged
    # ETHUSD's openInterest update comes with no partial before it: a gap, not a guessed row
    assert r.feed.stat("gaps", r.spec.symbol_id("ETHUSD")) == 1 and len(d[d["symbol"] == r.spec.symbol_id("ETHUSD")]) == 0
    t = r.records("trades")
    assert [(x["id"].decode(), x["price"], x["amount"]) for x in t] == [("f73b6f28-075a-3548-a81c-8c843afd2746", 8544.5, 1000.0)]


def test_subscribe_error_and_pong(rig):
    r = rig("bitmex", symbols=["XBTUSD", "NOPEUSD"], channels=["trades"])
    r.frame(b'{"status":400,"error":"Unknown or expired symbol.","meta":{},"request":{"op":"subscribe","args":["trade:NOPEUSD"]}}', 5)
    r.frame(b"pong", 6)
    assert r.events() == [("subscribe_error", "NOPEUSD", "subscribe: Unknown or expired symbol.")]
    assert r.feed.stat("subscribe_errors", r.spec.symbol_id("NOPEUSD")) == 1
    assert [x[4] for x in r.raw()][-1] == b"pong"


def test_one_subscribe_message_per_symbol_with_every_table(rig):
    r = rig("bitmex", symbols=["XBTUSD", "ETHUSD"], channels=["trades", "book_change", "derivative_ticker"],
            url="ws://127.0.0.1:9400")
    (plan,) = r.feed.plans()
    assert plan.url == "ws://127.0.0.1:9400/realtime"
    assert [json.loads(m) for m in plan.subscribe] == [
        {"op": "subscribe", "args": ["trade:XBTUSD", "orderBookL2:XBTUSD", "instrument:XBTUSD"]},
        {"op": "subscribe", "args": ["trade:ETHUSD", "orderBookL2:ETHUSD", "instrument:ETHUSD"]},
    ]


def test_a_frame_with_two_symbols_goes_to_each_book(rig):
    r = rig("bitmex", symbols=["XBTUSD", "ETHUSD"], channels=["book_change"])
    r.frame(_book("partial", (1, "Buy", 5, 100.0)), 1)
    r.frame(_book("partial", (7, "Sell", 3, 20.0), sym="ETHUSD"), 2)
    both = json.loads(_book("update", (1, "Buy", 6, None)))
    both["data"] += json.loads(_book("update", (7, "Sell", 4, None), sym="ETHUSD"))["data"]
    r.frame(json.dumps(both).encode(), 3)
    assert r.feed.stat("gaps", 1) == 0 and r.feed.stat("gaps", 2) == 0
    rows = r.records("book_change")
    assert rebuild(rows, r.spec.symbol_id("XBTUSD")) == {"b": {100.0: 6.0}, "a": {}}
    assert rebuild(rows, r.spec.symbol_id("ETHUSD")) == {"b": {}, "a": {20.0: 4.0}}


def test_a_frame_cut_before_its_table_resyncs_every_book(rig):
    r = rig("bitmex", symbols=["XBTUSD", "ETHUSD"], channels=["book_change", "trades"])
    r.frame(_book("partial", (1, "Buy", 5, 100.0)), 1)
    r.frame(_book("partial", (7, "Sell", 3, 20.0), sym="ETHUSD"), 2)
    r.frame(b'{"tab', 3)  # which table, which symbol: unknown; a book may have lost an update
    ev = r.events()
    assert [(k, s) for k, s, _ in ev] == [("malformed", "_"), ("resync", "XBTUSD"), ("resync", "ETHUSD")], ev
    assert [x[4] for x in r.raw()][-1] == b'{"tab'  # kept
