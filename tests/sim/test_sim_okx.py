"""The OKX dialect: frames have the real samples' shapes (2022 recording, tardis-dev exemplars for
the swap channels), every books message's checksum is right when recomputed here independently,
seqIds chain, the rebuilt book equals the simulator's, and a connection belongs to the id of its
first instrument (spot and swaps share one path, as at OKX)."""

from __future__ import annotations

import json
import zlib
from decimal import Decimal
from typing import Any

import uvloop
from sim_test_helpers import connect, until
from test_sim_protocols import SAMPLES, first, has, real_frames, same_shape

from ticktape.sim.server import Simulator

V2 = SAMPLES / "okx/cryptofeed_v2_OKX.ws.1.0"
TARDIS = SAMPLES / "okx/tardis_node_mappers_test_okx_v5.jsonl"


def arg_is(channel: str, action: str | None = None) -> Any:
    return lambda m: (m.get("arg", {}).get("channel") == channel and "data" in m
                      and (action is None or m.get("action") == action))


def crc(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """OKX's checksum, written here from its documentation: top 25 a side, bid:ask interleaved."""
    parts: list[str] = []
    for i in range(25):
        parts += [f"{p}:{s}" for p, s in (bids[i : i + 1] + asks[i : i + 1])]
    c = zlib.crc32(":".join(parts).encode())
    return c - 2**32 if c >= 2**31 else c


def test_okx_frames_shapes_checksums_and_book() -> None:
    async def main() -> None:
        async with Simulator({"okex": ["BTC-USDT"], "okex-swap": ["BTC-USDT-SWAP"]}, rate=300, seed=3) as sim:
            spot = await connect(sim.ws_url() + "/ws/v5/public")
            spot.send(b'{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},'
                      b'{"channel":"trades","instId":"BTC-USDT"},{"channel":"tickers","instId":"BTC-USDT"},'
                      b'{"channel":"books","instId":"NOPE-USDT"}]}')
            spot.send(b"ping")
            swap = await connect(sim.ws_url() + "/ws/v5/public")
            swap.send(b'{"op":"subscribe","args":[{"channel":"mark-price","instId":"BTC-USDT-SWAP"},'
                      b'{"channel":"open-interest","instId":"BTC-USDT-SWAP"},'
                      b'{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},'
                      b'{"channel":"liquidation-orders","instType":"SWAP"},'
                      b'{"channel":"index-tickers","instId":"BTC-USDT"}]}')
            wanted = [(spot, arg_is("books", "snapshot")), (spot, arg_is("trades")),
                      (spot, lambda m: m.get("event") == "error"), (swap, arg_is("mark-price")),
                      (swap, arg_is("open-interest")), (swap, arg_is("funding-rate")),
                      (swap, arg_is("liquidation-orders")), (spot, arg_is("tickers")), (swap, arg_is("index-tickers"))]
            await until(lambda: all(has(c.frames, p) for c, p in wanted) and
                        sum(has([f], arg_is("books", "update")) for f in spot.frames) >= 200, timeout=30.0)
            sim.rates["okex"] = 0.0
            await until(lambda: len(sim.sent("okex", "books")) == sum(
                has([f], arg_is("books")) for f in spot.frames), timeout=10.0)
            # the swap connection was handed to okex-swap on its first subscription
            assert [c.id for c in sim.connections("okex-swap")] == [2] and [c.id for c in sim.connections("okex")] == [1]
            last_event = sim.sent("okex", "books")[-1].event
            sim_bids, sim_asks = sim.book("okex", "BTC-USDT", event=last_event)

        assert b"pong" in spot.frames  # the text ping's answer
        spot.frames.remove(b"pong")
        # shapes: the 2022 recording for spot books/trades/acks, tardis-dev's exemplars for the swap channels
        real_snap = real_frames(V2, arg_is("books", "snapshot"))[0]
        our_snap = first(spot.frames, arg_is("books", "snapshot"))
        same_shape(real_snap, our_snap, "books snapshot")
        assert list(real_snap) == list(our_snap)
        assert [k for k in our_snap["data"][0] if k in real_snap["data"][0]] == list(real_snap["data"][0])
        assert set(our_snap["data"][0]) - set(real_snap["data"][0]) == {"prevSeqId", "seqId"}  # since 2022
        real_up = real_frames(V2, lambda m: arg_is("books", "update")(m) and m["data"][0]["bids"] and m["data"][0]["asks"])[0]
        our_up = first(spot.frames, lambda m: arg_is("books", "update")(m) and m["data"][0]["bids"] and m["data"][0]["asks"])
        same_shape(real_up, our_up, "books update")
        real_tr = real_frames(V2, arg_is("trades"))[0]
        our_tr = first(spot.frames, arg_is("trades"))
        same_shape(real_tr, our_tr, "trades")
        assert list(real_tr["data"][0]) == list(our_tr["data"][0])
        real_ack = real_frames(V2, lambda m: m.get("event") == "subscribe")[0]
        assert first(spot.frames, lambda m: m.get("event") == "subscribe") == {
            **real_ack, "arg": {"channel": "books", "instId": "BTC-USDT"}}
        err = first(spot.frames, lambda m: m.get("event") == "error")
        assert err["code"] == "60018" and "instId:NOPE-USDT " in err["msg"]
        real_tk = real_frames(V2, lambda m: arg_is("tickers")(m) and m["arg"]["instId"] == "BTC-USDT")[0]
        our_tk = first(spot.frames, arg_is("tickers"))
        same_shape(real_tk, our_tk, "tickers")
        assert list(real_tk["data"][0]) == list(our_tk["data"][0])
        for ch in ("mark-price", "open-interest", "funding-rate", "liquidation-orders", "index-tickers"):
            real = real_frames(TARDIS, arg_is(ch))[-1]
            same_shape(real, first(swap.frames, arg_is(ch)), ch)

        # books: seqIds chain, every checksum right when recomputed here, the final book is the simulator's
        bids: dict[Decimal, tuple[str, str]] = {}
        asks: dict[Decimal, tuple[str, str]] = {}
        prev = None
        books = [json.loads(f) for f in spot.frames if has([f], arg_is("books"))]
        assert books[0]["action"] == "snapshot" and len(books) > 200
        for m in books:
            d = m["data"][0]
            if m["action"] == "snapshot":
                bids.clear()
                asks.clear()
                assert d["prevSeqId"] == -1
            else:
                assert d["prevSeqId"] == prev and d["seqId"] > prev
            prev = d["seqId"]
            for side, levels in ((bids, d["bids"]), (asks, d["asks"])):
                for p, s, zero, n in levels:
                    assert zero == "0" and (n == "0") == (s == "0")
                    if Decimal(s) == 0:
                        side.pop(Decimal(p), None)
                    else:
                        side[Decimal(p)] = (p, s)
            top_b = [bids[p] for p in sorted(bids, reverse=True)[:25]]
            top_a = [asks[p] for p in sorted(asks)[:25]]
            assert crc(top_b, top_a) == d["checksum"], d["seqId"]
        assert [(p, Decimal(s)) for p, (_, s) in sorted(bids.items(), reverse=True)] == sim_bids
        assert [(p, Decimal(s)) for p, (_, s) in sorted(asks.items())] == sim_asks

    uvloop.run(main())
