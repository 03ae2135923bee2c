"""Replay of real recordings: a subscribed client receives the recorded frames
byte for byte, in order, and the recorded REST snapshots at the REST path."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import aiohttp
import uvloop
from sim_test_helpers import connect, until

from ticktape.sim.replay import read_recording, route
from ticktape.sim.server import Simulator

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples"
BF_V2 = SAMPLES / "binance_futures/cryptofeed_v2_BINANCE_FUTURES.ws.1.0"
BF_V3 = SAMPLES / "binance_futures/cryptofeed_v3_BINANCE_FUTURES.jsonl.zst"
BY_V2 = SAMPLES / "bybit/cryptofeed_v2_v5_BYBIT.ws.1.0"


def data_frames(path: Path) -> list[bytes]:
    frames, _ = read_recording(path)
    return [f for _, f in frames if route(f) is not None]


def binance_replay(path: Path) -> None:
    expected = data_frames(path)
    streams = sorted({json.loads(f)["stream"] for f in expected})
    _, http = read_recording(path)
    snaps = {re.search(r"symbol=(\w+)", u)[1]: body for u, _, body in http if "/fapi/v1/depth" in u}  # type: ignore[index]
    assert len(expected) > 1000 and len(snaps) == 4

    async def main() -> None:
        async with Simulator(["binance-futures"], replay=path) as sim:
            c = await connect(sim.ws_url() + "/public/stream?streams=" + "/".join(streams))
            await until(lambda: sim.replayer.done.is_set(), 10)
            await until(lambda: len(c.frames) >= len(expected), 5)
            assert c.frames == expected
            async with aiohttp.ClientSession() as s:
                for sym, body in snaps.items():
                    async with s.get(sim.rest_url() + f"/fapi/v1/depth?symbol={sym}&limit=1000") as r:
                        assert r.status == 200 and await r.read() == body
            sent = sim.sent("binance-futures")
            assert [s.data for s in sent] == expected
            assert {s.channel for s in sent} == {"aggTrade", "depth", "kline_1m", "bookTicker"}

    uvloop.run(main())


def test_replay_binance_cryptofeed_v2_byte_for_byte() -> None:
    binance_replay(BF_V2)


def test_replay_binance_cryptofeed_v3_zstd_byte_for_byte() -> None:
    binance_replay(BF_V3)


def test_replay_bybit_v5_byte_for_byte_to_op_subscribers() -> None:
    expected = data_frames(BY_V2)
    topics = sorted({json.loads(f)["topic"] for f in expected})
    assert expected and topics

    async def main() -> None:
        async with Simulator(["bybit"], replay=BY_V2) as sim:
            c = await connect(sim.ws_url() + "/v5/public/linear")
            c.send(json.dumps({"req_id": "1", "op": "subscribe", "args": topics}).encode())
            await until(lambda: sim.replayer.done.is_set(), 10)
            await until(lambda: len(c.frames) >= len(expected) + 1, 5)
            ack = json.loads(c.frames[0])
            assert ack["success"] is True and ack["op"] == "subscribe"
            assert c.frames[1:] == expected

    uvloop.run(main())


def test_replay_plain_lines_at_recorded_pace_routes_by_coin(tmp_path: Path) -> None:
    lines = [json.loads(x) for x in (SAMPLES / "hyperliquid/tardis_node_mappers_test_hyperliquid.jsonl").read_text().splitlines()]
    frames = [json.dumps(m, separators=(",", ":")).encode() for m in lines if m["channel"] in ("trades", "l2Book")]
    rec = tmp_path / "hl.txt"
    t0 = 1_730_160_000_000_000_000
    rec.write_bytes(b"".join(b"%d %s\n" % (t0 + i * 50_000_000, f) for i, f in enumerate(frames)))
    btc = [f for f in frames if b'"coin":"BTC"' in f]
    assert btc and len(btc) < len(frames)

    async def main() -> None:
        async with Simulator(["hyperliquid"], replay=rec, replay_speed=1.0) as sim:
            sim.replayer.wait = 0.2
            c = await connect(sim.ws_url() + "/ws")
            c.send(b'{"method":"subscribe","subscription":{"type":"trades","coin":"BTC"}}')
            start = time.monotonic()
            await until(lambda: sim.replayer.done.is_set(), 10)
            elapsed = time.monotonic() - start
            await until(lambda: len(c.frames) >= len(btc) + 1, 5)
            assert json.loads(c.frames[0])["channel"] == "subscriptionResponse"
            assert c.frames[1:] == btc, "only the subscribed coin's trades"
            assert elapsed >= (len(frames) - 1) * 0.05 * 0.9, "recorded pace"

    uvloop.run(main())
