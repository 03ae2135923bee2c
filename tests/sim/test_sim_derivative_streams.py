"""The simulator's book_ticker / derivative_ticker / liquidation streams: shapes of the
real frames (recorded bookTicker, Tardis exemplars for the rest), funding on each
venue's schedule, liquidations after sharp moves, faults applied to them too."""

from __future__ import annotations

import json
import time

import uvloop
from recorded_frames import SAMPLES
from sim_test_helpers import connect, until
from test_sim_protocols import same_shape

from ticktape.sim.faults import Fault
from ticktape.sim.server import Simulator

H8 = 8 * 3_600_000


def exemplar(path: str, needle: str) -> dict:
    for line in (SAMPLES / path).read_bytes().splitlines():
        if needle.encode() in line and (line[:1] == b"{" or line[:1].isdigit()):
            return json.loads(line.split(b": ", 1)[1] if line[:1].isdigit() else line)
    raise KeyError(needle)


def test_new_streams_have_real_shapes_funding_schedule_and_liquidations() -> None:
    async def main() -> None:
        async with Simulator(["binance-futures", "bybit", "hyperliquid"], rate=300, seed=2, trade_share=0.2) as sim:
            base = sim.ws_url()
            pub = await connect(base + "/public/stream?streams=btcusdt@bookTicker")
            mkt = await connect(base + "/market/stream?streams=btcusdt@markPrice@1s/btcusdt@forceOrder")
            by = await connect(base + "/v5/public/linear")
            by.send(b'{"req_id":"1","op":"subscribe","args":["tickers.BTCUSDT","allLiquidation.BTCUSDT","orderbook.1.BTCUSDT"]}')
            hl = await connect(base + "/ws")
            hl.send(b'{"method":"subscribe","subscription":{"type":"bbo","coin":"BTC"}}')
            hl.send(b'{"method":"subscribe","subscription":{"type":"activeAssetCtx","coin":"BTC"}}')

            def have(c, needle: bytes, n: int = 1) -> bool:
                return sum(needle in f for f in c.frames) >= n

            await until(lambda: have(pub, b"bookTicker", 5) and have(mkt, b"markPriceUpdate", 2)
                        and have(mkt, b"forceOrder") and have(by, b'"type":"delta","data":{"symbol"', 2)
                        and have(by, b"allLiquidation") and have(hl, b'"channel":"bbo"', 3)
                        and have(hl, b"\"channel\":\"activeAssetCtx\"", 2), 20)
            now_ms = time.time_ns() // 1_000_000

            def first(c, needle: bytes) -> dict:
                return json.loads(next(f for f in c.frames if needle in f))

            real_bt = exemplar("binance_futures/cryptofeed_v2_BINANCE_FUTURES.ws.1.0", "@bookTicker")
            same_shape(real_bt, first(pub, b"bookTicker"), "bookTicker")
            mark = first(mkt, b"markPriceUpdate")
            same_shape(exemplar("binance_futures/tardis_node_mappers_test_binance_futures.jsonl", "markPrice@1s"),
                       mark, "markPrice")
            assert mark["data"]["T"] % H8 == 0 and 0 < mark["data"]["T"] - now_ms <= H8  # 00/08/16 UTC
            same_shape(exemplar("binance_futures/tardis_node_mappers_test_binance_futures.jsonl", "forceOrder"),
                       first(mkt, b"forceOrder"), "forceOrder")
            snap = first(by, b'"topic":"tickers.BTCUSDT","type":"snapshot"')
            real = exemplar("bybit/tardis_node_mappers_test_bybit_v5.jsonl", '"topic":"tickers.BTCUSDT"')
            real["data"] = {k: v for k, v in real["data"].items() if k in snap["data"]}  # 24 h stats: not simulated
            same_shape(real, snap, "tickers")
            assert {"lastPrice", "markPrice", "indexPrice", "openInterest", "fundingRate", "nextFundingTime",
                    "bid1Price", "ask1Price"} <= set(snap["data"])
            assert int(snap["data"]["nextFundingTime"]) % H8 == 0
            delta = first(by, b'"type":"delta","data":{"symbol"')
            assert set(delta["data"]) < set(snap["data"])  # only what changed
            same_shape(exemplar("bybit/tardis_node_mappers_test_bybit_v5.jsonl", "allLiquidation"),
                       first(by, b"allLiquidation"), "allLiquidation")
            same_shape(exemplar("bybit/tardis_node_mappers_test_bybit_v5.jsonl", "orderbook.1.BTCUSDT"),
                       first(by, b'"orderbook.1.BTCUSDT","type":"snapshot"'), "orderbook.1")
            bbo = first(hl, b'"channel":"bbo"')
            same_shape(exemplar("hyperliquid/tardis_node_mappers_test_hyperliquid.jsonl", '"coin":"@162"'), bbo, "bbo")
            assert len(bbo["data"]["bbo"]) == 2
            same_shape(exemplar("hyperliquid/tardis_node_mappers_test_hyperliquid.jsonl", "activeAssetCtx"),
                       first(hl, b"\"channel\":\"activeAssetCtx\""), "activeAssetCtx")
            # liquidations follow sharp moves: a forced sell at the bid after the price fell, a buy at the ask after a rise
            for s in sim.sent("binance-futures", "forceOrder", "BTCUSDT"):
                o = json.loads(s.data)["data"]["o"]
                assert o["X"] == "FILLED" and o["S"] in ("BUY", "SELL") and float(o["z"]) > 0
            # faults apply to the new streams too
            sim.fault(Fault("malformed", "bybit", channel="tickers"))
            await until(lambda: any(s.fault == "malformed" and s.channel == "tickers" for s in sim.sent("bybit")), 30)
            bad = next(s for s in sim.sent("bybit") if s.fault == "malformed")
            await until(lambda: bad.data in by.frames)

    uvloop.run(main())
