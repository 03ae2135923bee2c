"""Simulator frames have the real samples' shapes, and its sequences follow the
exchanges' rules: a Binance REST snapshot bridges into the diff stream by
U/u/pu, Bybit ``u`` rises by one, books rebuilt from frames equal the sim's."""

from __future__ import annotations

import asyncio
import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from recorded_frames import SAMPLES
from sim_test_helpers import connect, until

from ticktape.sim.server import Simulator


def shape(obj: Any) -> Any:
    """Key sets and JSON types, recursively (lists: the shape of their first item)."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    return type(obj).__name__


def same_shape(real: Any, ours: Any, where: str) -> None:
    """Every key of the real frame is in ours, with the same JSON type (and decimal strings stay
    decimal strings); extra keys are checked by the callers."""
    if isinstance(real, dict):
        assert isinstance(ours, dict), where
        missing = set(real) - set(ours)
        assert not missing, f"{where}: missing {missing}"
        for k in real:
            same_shape(real[k], ours[k], f"{where}.{k}")
    elif isinstance(real, list) and real:
        assert isinstance(ours, list) and ours, where
        same_shape(real[0], ours[0], f"{where}[0]")
    else:
        assert type(real) is type(ours), f"{where}: {type(real).__name__} != {type(ours).__name__}"
        if isinstance(real, str):  # decimal strings stay decimal strings
            assert _is_num(real) == _is_num(ours), f"{where}: {real!r} vs {ours!r}"


def _is_num(s: str) -> bool:
    try:
        Decimal(s)
    except ArithmeticError:
        return False
    return True


def real_frames(path: Path, pred: Any) -> list[dict[str, Any]]:
    out = []
    for line in path.read_bytes().splitlines():
        i = line.find(b"{")
        if i < 0:
            continue
        try:
            msg = json.loads(line[i:])
        except ValueError:
            continue
        if pred(msg):
            out.append(msg)
    return out


def has(frames: list[bytes], pred: Any) -> bool:
    """Whether a frame matching ``pred`` has arrived (a frame that is not JSON never matches)."""
    for f in frames:
        try:
            m = json.loads(f)
        except ValueError:
            continue
        if isinstance(m, dict) and pred(m):
            return True
    return False


def first(frames: list[bytes], pred: Any) -> dict[str, Any]:
    for f in frames:
        m = json.loads(f)
        if pred(m):
            return m
    raise AssertionError("no such frame")


def test_shapes_match_real_samples() -> None:
    bf = SAMPLES / "binance_futures/cryptofeed_v2_BINANCE_FUTURES.ws.1.0"
    tardis_bf = SAMPLES / "binance_futures/tardis_node_mappers_test_binance_futures.jsonl"
    by_v5 = SAMPLES / "bybit/cryptofeed_v2_v5_BYBIT.ws.1.0"
    tardis_by = SAMPLES / "bybit/tardis_node_mappers_test_bybit_v5.jsonl"
    hl = SAMPLES / "hyperliquid/tardis_node_mappers_test_hyperliquid.jsonl"

    def stream_is(kind: str) -> Any:
        # a frame with every list filled, so element shapes compare too
        return lambda m: m.get("stream", "").endswith(kind) and all(v for v in m["data"].values() if isinstance(v, list))

    async def main() -> None:
        async with Simulator(rate=400, seed=5) as sim:
            base = sim.ws_url()
            pub = await connect(base + "/public/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker/btcusdt@trade/btcusdt@depth20@100ms")
            mkt = await connect(base + "/market/stream?streams=btcusdt@aggTrade")
            by = await connect(base + "/v5/public/linear")
            by.send(b'{"req_id":"1","op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}')
            hq = await connect(base + "/ws")
            hq.send(b'{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC"}}')
            hq.send(b'{"method":"subscribe","subscription":{"type":"trades","coin":"BTC"}}')
            # wait for every kind of frame compared below (frame totals alone say nothing about which
            # streams have spoken yet: on a busy machine a total can be reached before a slow stream's first frame)
            wanted = [
                *((pub, stream_is(k)) for k in ("@depth@100ms", "@bookTicker", "@trade", "@depth20@100ms")),
                (mkt, stream_is("@aggTrade")),
                (by, lambda m: m.get("op") == "subscribe"),
                (by, lambda m: m.get("type") == "snapshot" and m.get("topic", "").startswith("orderbook")),
                (by, lambda m: m.get("type") == "delta" and bool(m["data"]["b"]) and bool(m["data"]["a"])),
                (by, lambda m: m.get("topic", "").startswith("publicTrade")),
                (hq, lambda m: m.get("channel") == "l2Book"),
                (hq, lambda m: m.get("channel") == "trades"),
            ]
            await until(lambda: all(has(c.frames, pred) for c, pred in wanted), timeout=30.0)
            async with aiohttp.ClientSession() as s, s.get(sim.rest_url() + "/fapi/v1/depth?symbol=BTCUSDT&limit=1000") as r:
                snap = json.loads(await r.read())

        # binance: real cryptofeed frames (2021) and tardis exemplars
        for kind, frames in (("@depth@100ms", pub.frames), ("@bookTicker", pub.frames), ("@aggTrade", mkt.frames)):
            real = real_frames(bf, stream_is(kind))[0]
            same_shape(real, first(frames, stream_is(kind)), kind)
            assert set(real["data"]) == set(first(frames, stream_is(kind))["data"]), kind
        # the newer exemplars carry X (MARKET / INSURANCE_FUND), as EXCHANGES.md says
        real_trade = real_frames(tardis_bf, lambda m: stream_is("@trade")(m) and "X" in m["data"])[0]
        assert set(real_trade["data"]) == set(first(pub.frames, stream_is("@trade"))["data"])
        same_shape(real_trade, first(pub.frames, stream_is("@trade")), "trade")
        d20 = first(pub.frames, stream_is("@depth20@100ms"))
        same_shape(real_frames(bf, stream_is("@depth@100ms"))[0], d20, "depth20")
        assert len(d20["data"]["b"]) == len(d20["data"]["a"]) == 20
        real_snap = json.loads((SAMPLES / "binance_futures/cryptofeed_v2_BINANCE_FUTURES.http.0.0").read_bytes().splitlines()[0].split(b": ", 1)[1])
        same_shape(real_snap, snap, "depth snapshot")
        assert set(real_snap) == set(snap) and len(snap["bids"]) > 100

        # bybit: real v5 orderbook.1 frames (2025) and the tardis v5 exemplars
        real_ack = real_frames(by_v5, lambda m: m.get("op") == "subscribe" and "success" in m)[0]
        ack = first(by.frames, lambda m: m.get("op") == "subscribe")
        assert list(real_ack) == list(ack) and ack["success"] is True and ack["req_id"] == "1"
        real_snap_by = real_frames(by_v5, lambda m: m.get("type") == "snapshot")[0]
        ours = first(by.frames, lambda m: m.get("type") == "snapshot" and m.get("topic", "").startswith("orderbook"))
        same_shape(real_snap_by, ours, "bybit snapshot")
        assert list(real_snap_by) == list(ours) and list(real_snap_by["data"]) == list(ours["data"])
        real_delta = real_frames(tardis_by, lambda m: m.get("type") == "delta" and m["topic"].startswith("orderbook"))[0]
        same_shape(real_delta, first(by.frames, lambda m: m.get("type") == "delta" and m["data"]["b"] and m["data"]["a"]), "bybit delta")
        real_pt = real_frames(tardis_by, lambda m: m.get("topic", "").startswith("publicTrade"))[0]
        our_pt = first(by.frames, lambda m: m.get("topic", "").startswith("publicTrade"))
        same_shape(real_pt, our_pt, "publicTrade")
        # RPI and seq are newer than the exemplar (EXCHANGES.md lists them)
        assert set(our_pt["data"][0]) - set(real_pt["data"][0]) == {"RPI", "seq"}

        # hyperliquid exemplars
        real_book = real_frames(hl, lambda m: m.get("channel") == "l2Book" and m["data"]["levels"][0])[0]
        our_book = first(hq.frames, lambda m: m.get("channel") == "l2Book")
        same_shape(real_book, our_book, "l2Book")
        assert len(our_book["data"]["levels"][0]) == len(our_book["data"]["levels"][1]) == 20
        real_tr = real_frames(hl, lambda m: m.get("channel") == "trades")[0]
        our_tr = first(hq.frames, lambda m: m.get("channel") == "trades")
        same_shape(real_tr, our_tr, "trades")
        assert set(our_tr["data"][0]) - set(real_tr["data"][0]) == {"users"}
        assert first(hq.frames, lambda m: m.get("channel") == "subscriptionResponse")["data"]["subscription"] == {"type": "l2Book", "coin": "BTC"}

    uvloop.run(main())


def test_binance_rest_snapshot_bridges_into_diff_stream() -> None:
    async def main() -> None:
        async with Simulator(["binance-futures"], rate=500, seed=11, trade_share=0.2) as sim:
            c = await connect(sim.ws_url() + "/public/stream?streams=ethusdt@depth@100ms")
            await until(lambda: len(c.frames) > 5, timeout=60.0)
            inside = 0
            for _ in range(3):
                async with aiohttp.ClientSession() as s, s.get(sim.rest_url() + "/fapi/v1/depth?symbol=ETHUSDT&limit=1000") as r:
                    assert r.status == 200
                    snap = json.loads(await r.read())
                last = snap["lastUpdateId"]
                # ten 100 ms diffs past the snapshot's id: the bridge and a pu chain to check
                await until(lambda last=last: sum(json.loads(f)["data"]["u"] >= last for f in c.frames[-12:]) >= 10,
                            timeout=60.0)
                diffs = [json.loads(f)["data"] for f in c.frames]
                book = {0: {Decimal(p): Decimal(q) for p, q in snap["bids"]}, 1: {Decimal(p): Decimal(q) for p, q in snap["asks"]}}
                live = [d for d in diffs if d["u"] >= last]
                first_d = live[0]
                assert first_d["U"] <= last <= first_d["u"], (first_d["U"], last, first_d["u"])
                inside += last < first_d["u"]
                prev = None
                for d in live:
                    if prev is not None:
                        assert d["pu"] == prev, "pu must equal the previous u"
                    prev = d["u"]
                    for side, key in ((0, "b"), (1, "a")):
                        for p, q in d[key]:
                            if Decimal(q) == 0:
                                book[side].pop(Decimal(p), None)
                            else:
                                book[side][Decimal(p)] = Decimal(q)
                ev = sim.event_at("binance-futures", "depth", "ETHUSDT", update_id=prev)
                bids, asks = sim.book("binance-futures", "ETHUSDT", event=ev, depth=1000)
                top = len(snap["bids"])
                assert sorted(book[0].items(), reverse=True)[:top - 50] == bids[:top - 50]
                assert sorted(book[1].items())[:top - 50] == asks[:top - 50]
            assert inside >= 1, "snapshots should fall inside a diff's U..u range"

    uvloop.run(main())


def test_bybit_u_rises_by_one_and_book_matches() -> None:
    async def main() -> None:
        async with Simulator({"bybit": ["BTCUSDT", "ETHUSDT"]}, rate=400, seed=2) as sim:
            c = await connect(sim.ws_url() + "/v5/public/linear")
            c.send(b'{"req_id":"a","op":"subscribe","args":["orderbook.50.BTCUSDT","orderbook.1.BTCUSDT"]}')
            await until(lambda: len(c.frames) > 150)
            c.send(b'{"req_id":"b","op":"subscribe","args":["orderbook.50.NOPEUSDT"]}')
            await until(lambda: any(b'"req_id":"b"' in f for f in c.frames))
            msgs = [json.loads(f) for f in c.frames]
            err = next(m for m in msgs if m.get("req_id") == "b")
            assert err["success"] is False and err["op"] == "subscribe" and "NOPEUSDT" in err["ret_msg"]
            for topic in ("orderbook.50.BTCUSDT", "orderbook.1.BTCUSDT"):
                frames = [m for m in msgs if m.get("topic") == topic]
                assert frames[0]["type"] == "snapshot"
                us = [m["data"]["u"] for m in frames]
                assert all(b == a + 1 for a, b in itertools.pairwise(us)), topic
                seqs = [m["data"]["seq"] for m in frames]
                assert seqs == sorted(seqs)
            depth = 50
            book: dict[str, dict[Decimal, Decimal]] = {"b": {}, "a": {}}
            for m in msgs:
                if m.get("topic") != "orderbook.50.BTCUSDT":
                    continue
                if m["type"] == "snapshot":
                    book = {"b": {}, "a": {}}
                for k in ("b", "a"):
                    for p, q in m["data"][k]:
                        if Decimal(q) == 0:
                            book[k].pop(Decimal(p), None)
                        else:
                            book[k][Decimal(p)] = Decimal(q)
            last_u = [m for m in msgs if m.get("topic") == "orderbook.50.BTCUSDT"][-1]["data"]["u"]
            ev = sim.event_at("bybit", "orderbook.50", "BTCUSDT", update_id=last_u)
            sent_at = next(s.ts_ns for s in sim.sent("bybit", "orderbook.50", "BTCUSDT") if s.ids[0] == last_u)
            assert ev == sim.event_at("bybit", "orderbook.50", "BTCUSDT", ts_ns=sent_at)
            bids, asks = sim.book("bybit", "BTCUSDT", event=ev, depth=depth)
            assert sorted(book["b"].items(), reverse=True) == bids
            assert sorted(book["a"].items()) == asks
            c.send(b'{"req_id":"p","op":"ping"}')
            await until(lambda: any(b'"ret_msg":"pong"' in f for f in c.frames))
            pong = json.loads(next(f for f in c.frames if b'"ret_msg":"pong"' in f))
            assert pong["op"] == "ping" and pong["success"] is True and pong["req_id"] == "p"

    uvloop.run(main())


def test_binance_raw_ws_subscribe_list_unsubscribe_and_deterministic_market() -> None:
    async def run(seed: int) -> list[tuple[object, ...]]:
        async with Simulator(["binance-futures"], rate=300, seed=seed) as sim:
            c = await connect(sim.ws_url() + "/market/ws")
            c.send(b'{"method":"SUBSCRIBE","params":["solusdt@aggTrade"],"id":1}')
            c.send(b'{"method":"LIST_SUBSCRIPTIONS","id":2}')
            await until(lambda: len(c.frames) > 20)
            c.send(b'{"method":"UNSUBSCRIBE","params":["solusdt@aggTrade"],"id":3}')
            c.send(b'{"method":"NOPE","id":4}')
            await until(lambda: any(b'"id":4' in f for f in c.frames))
            assert c.frames[0] == b'{"result":null,"id":1}'
            assert json.loads(c.frames[1]) == {"result": ["solusdt@aggTrade"], "id": 2}
            assert b'{"result":null,"id":3}' in c.frames
            assert json.loads(c.frames[-1])["error"]["code"] == 2
            n = len(c.frames)
            await asyncio.sleep(0.2)
            assert len(c.frames) == n, "no frames after UNSUBSCRIBE"
            assert sim.errors == 0
            trades = [json.loads(f) for f in c.frames if f.startswith(b'{"e":"aggTrade"')]
            return [(t["a"], t["p"], t["q"], t["m"]) for t in trades]

    a = uvloop.run(run(9))
    b = uvloop.run(run(9))
    n = min(len(a), len(b))
    assert n > 10 and [t[1:] for t in a[:n]] == [t[1:] for t in b[:n]], "same seed, same trades"
    assert min(t[0] for t in b) > max(t[0] for t in a), "a later run's trade ids never repeat an earlier run's"
