"""Two simulator runs with the same seed: the same market (prices, sizes, sides),
but trade ids and sequence numbers that never repeat, so two demo runs archived
into the same hour cannot carry the same trade id twice."""

from __future__ import annotations

import json

import uvloop
from sim_test_helpers import connect, until

from ticktape.sim.server import Simulator

SUBS = {
    "binance-futures": ("/public/stream?streams=btcusdt@trade/btcusdt@depth@100ms", []),
    "bybit": ("/v5/public/linear", [b'{"req_id":"1","op":"subscribe","args":["publicTrade.BTCUSDT","orderbook.50.BTCUSDT"]}']),
    "hyperliquid": ("/ws", [b'{"method":"subscribe","subscription":{"type":"trades","coin":"BTC"}}']),
}


def parse(ex: str, frames: list[bytes]) -> tuple[list[int | str], list[int], list[tuple[str, str, str]]]:
    """(trade ids, sequence numbers, (price, size, side) of each trade) in arrival order."""
    ids: list[int | str] = []
    seqs: list[int] = []
    market: list[tuple[str, str, str]] = []
    for f in frames:
        m = json.loads(f)
        if ex == "binance-futures" and "stream" in m:
            d = m["data"]
            if d["e"] == "trade":
                ids.append(d["t"])
                market.append((d["p"], d["q"], str(d["m"])))
            else:
                seqs += [d["U"], d["u"]]
        elif ex == "bybit" and "topic" in m:
            if m["topic"].startswith("publicTrade"):
                for t in m["data"]:
                    ids.append(t["i"])
                    seqs.append(t["seq"])
                    market.append((t["p"], t["v"], t["S"]))
            else:
                seqs += [m["data"]["u"], m["data"]["seq"]]
        elif ex == "hyperliquid" and m.get("channel") == "trades":
            for t in m["data"]:
                ids.append(t["tid"])
                market.append((t["px"], t["sz"], t["side"]))
    return ids, seqs, market


def one_run(ex: str) -> tuple[list[int | str], list[int], list[tuple[str, str, str]]]:
    async def main() -> tuple[list[int | str], list[int], list[tuple[str, str, str]]]:
        async with Simulator([ex], rate=400, seed=5) as sim:
            path, msgs = SUBS[ex]
            c = await connect(sim.ws_url() + path)
            for msg in msgs:
                c.send(msg)
            await until(lambda: len(parse(ex, c.frames)[2]) >= 30)
            assert sim.errors == 0
            return parse(ex, c.frames)

    return uvloop.run(main())


def test_ids_and_sequences_do_not_repeat_across_runs_but_the_market_does() -> None:
    for ex in SUBS:
        ids1, seq1, mk1 = one_run(ex)
        ids2, seq2, mk2 = one_run(ex)
        n = min(len(mk1), len(mk2))
        assert n >= 30 and mk1[:n] == mk2[:n], f"{ex}: same seed, same market"
        assert not set(ids1) & set(ids2), f"{ex}: a trade id repeated across runs"
        if seq1:
            assert not set(seq1) & set(seq2), f"{ex}: a sequence number repeated across runs"
