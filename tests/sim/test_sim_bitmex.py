"""The simulator's BitMEX dialect has the real shapes: every frame kind compared with the 2021
recording and tardis-dev's exemplars (key order, partial headers, ack/error/welcome, text
pong), level ids laid out as BitMEX's, and a book rebuilt from its frames equal to its market."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import uvloop
from sim_test_helpers import connect, until

from ticktape.sim.server import Simulator

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "bitmex"
REC = SAMPLES / "cryptofeed_v2_BITMEX.ws.1.0"
TARDIS = SAMPLES / "tardis_node_mappers_test_bitmex.jsonl"


def recorded() -> list[dict[str, Any]]:
    """Received frames of the cryptofeed recording."""
    return [json.loads(m[1]) for line in REC.read_bytes().splitlines() if (m := re.match(rb"^\d+\.\d+: (.*)$", line))]


def shape(frames: list[dict[str, Any]], table: str, action: str, items: bool = True) -> tuple[list[str], list[str]]:
    """(top-level keys, keys of the first item) of the first such frame (with items, unless ``items`` is False)."""
    f = next(f for f in frames if f.get("table") == table and f.get("action") == action and (f.get("data") or not items))
    return list(f), list(f["data"][0]) if f["data"] else []


def test_frames_have_the_recorded_shapes_and_the_book_is_the_market():
    cf = recorded()
    rec = cf + [json.loads(x) for x in TARDIS.read_bytes().splitlines()]

    async def main():
        async with Simulator({"bitmex": ["XBTUSD", "ETHUSD"]}, rate=200, seed=5) as sim:
            c = await connect(sim.ws_url() + "/realtime")
            req = {"op": "subscribe", "args": [f"{t}:XBTUSD" for t in ("orderBookL2", "trade", "quote", "instrument",
                                                                     "liquidation")]}
            c.send(json.dumps(req).encode())
            c.send(b'{"op":"subscribe","args":["trade:NOPEUSD"]}')
            c.send(b"ping")

            def seen(*kinds: tuple[str, str]) -> bool:
                have = {(d.get("table"), d.get("action")) for d in map(json.loads, (f for f in c.frames if f != b"pong"))}
                return set(kinds) <= have

            await until(lambda: seen(("orderBookL2", "insert"), ("orderBookL2", "update"), ("orderBookL2", "delete"),
                                     ("trade", "insert"), ("quote", "insert"), ("instrument", "update"),
                                     ("liquidation", "insert")), 30)
            sim.rates["bitmex"] = 0.0
            await until(lambda: len(c.frames) > 0, 30)
            c.send(b"ping")
            n = len(c.frames)
            await until(lambda: len(c.frames) > n and c.frames[-1] == b"pong", 30)  # everything before it is read
            return [f for f in c.frames], sim.book("bitmex", "XBTUSD")

    frames, (bids, asks) = uvloop.run(main())
    assert b"pong" in frames
    got = [json.loads(f) for f in frames if f != b"pong"]
    # welcome, ack and error frames
    assert list(got[0]) == list(next(f for f in rec if "info" in f)) and got[0]["limit"] == {"remaining": 39}
    ack = next(f for f in got if f.get("success"))
    assert list(ack) == list(next(f for f in rec if f.get("success"))) and ack["request"]["op"] == "subscribe"
    err = next(f for f in got if "error" in f)
    assert list(err) == ["status", "error", "meta", "request"] and err["status"] == 400 and "NOPEUSD" in err["error"]
    # partials: the recorded headers (keys, types, foreignKeys, attributes, filter)
    for table in ("trade", "quote"):
        (mine, mine_items), (real, real_items) = shape(got, table, "partial", False), shape(rec, table, "partial")
        assert mine == real and mine_items in ([], real_items), table  # a trade partial is empty before a trade
        mf = next(f for f in got if f.get("table") == table and f["action"] == "partial")
        rf = next(f for f in rec if f.get("table") == table and f.get("action") == "partial" and "types" in f)
        assert mf["types"] == rf["types"] and mf["keys"] == rf["keys"] and mf["attributes"] == rf["attributes"]
    today = next(f for f in rec if f.get("table") == "orderBookL2" and f.get("action") == "partial"
                 and "timestamp" in f.get("types", {}))  # tardis-dev's 2022 exemplar: price and timestamp on items
    assert shape(got, "orderBookL2", "partial") == (list(today), list(today["data"][0]))
    mine = next(f for f in got if f.get("table") == "orderBookL2" and f["action"] == "partial")
    assert mine["types"] == today["types"] and mine["keys"] == today["keys"] and mine["filter"] == {"symbol": "XBTUSD"}
    assert shape(got, "orderBookL2", "insert") == (["table", "action", "data"], list(today["data"][0]))
    for table in ("trade", "quote", "liquidation"):
        assert shape(got, table, "insert") == shape(rec, table, "insert"), table
    upd = next(f for f in got if f.get("table") == "instrument" and f["action"] == "update")["data"][0]
    keys = list(upd)
    assert keys[0] == "symbol" and keys[-1] == "timestamp"
    # XBTUSD level ids are 8800000000 - price * 100, in the recording and here
    for frames_ in (cf, got):  # the cryptofeed recording (the exemplars' ids are edited)
        xbt = [x for f in frames_ if f.get("table") == "orderBookL2" and f.get("action") in ("partial", "insert")
               for x in f["data"] if x["symbol"] == "XBTUSD"]
        assert len(xbt) > 100 and all(x["id"] == 8_800_000_000 - round(x["price"] * 100) for x in xbt)
    # the book rebuilt from the frames by (id, side) is the simulator's market
    book: dict[tuple[int, str], list[float]] = {}
    for f in got:
        if f.get("table") != "orderBookL2":
            continue
        for x in f["data"]:
            key = (x["id"], x["side"])
            if f["action"] in ("partial", "insert"):
                assert f["action"] == "partial" or key not in book
                book[key] = [x["price"], x["size"]]
            elif f["action"] == "update":
                assert book[key][0] == x["price"]
                book[key][1] = x["size"]
            else:
                del book[key]
    want = {("Buy", Decimal(str(p)), Decimal(str(q))) for p, q in bids} | {("Sell", Decimal(str(p)), Decimal(str(q)))
                                                                         for p, q in asks}
    assert {(s, Decimal(str(p)), Decimal(str(q))) for (_, s), (p, q) in book.items()} == want
