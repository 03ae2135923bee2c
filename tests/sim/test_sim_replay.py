"""Replay of real recordings: a subscribed client receives the recorded frames
byte for byte, in order, and the recorded REST snapshots at the REST path."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import aiohttp
import uvloop
from recorded_frames import SAMPLES
from sim_test_helpers import connect, until

from ticktape.sim.replay import read_recording, route
from ticktape.sim.server import Simulator

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
            await until(lambda: sim.replayer.done.is_set(), 30)
            await until(lambda: len(c.frames) >= len(expected), 30)
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
            await until(lambda: sim.replayer.done.is_set(), 30)
            await until(lambda: len(c.frames) >= len(expected) + 1, 30)
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
            await until(lambda: sim.replayer.done.is_set(), 30)
            elapsed = time.monotonic() - start
            await until(lambda: len(c.frames) >= len(btc) + 1, 30)
            assert json.loads(c.frames[0])["channel"] == "subscriptionResponse"
            assert c.frames[1:] == btc, "only the subscribed coin's trades"
            assert elapsed >= (len(frames) - 1) * 0.05 * 0.9, "recorded pace"

    uvloop.run(main())


# -- compressed files, aliases, inline REST, connections (issue 13) ---------------------------------------


async def _bybit_client_frames(path: Path, url_path: str, topics: list[str], exchanges: list[str],
                               n: int) -> tuple[list[bytes], Simulator]:
    """Replay ``path``; one client on ``url_path`` subscribed to ``topics``: (its data frames, the simulator)."""
    async with Simulator(exchanges, replay=path) as sim:
        sim.replayer.wait = 0.5
        c = await connect(sim.ws_url() + url_path)
        for i in range(0, len(topics), 10):
            c.send(json.dumps({"req_id": str(i), "op": "subscribe", "args": topics[i:i + 10]}).encode())
        await until(lambda: sim.replayer.done.is_set(), 30)
        await until(lambda: len([f for f in c.frames if b'"topic"' in f]) >= n, 30)
        return [f for f in c.frames if b'"topic"' in f], sim


def test_replay_gzip_and_zstd_files_told_by_magic_bytes(tmp_path: Path) -> None:
    """The same recording gzipped and zstd-compressed, under names that do not say so, replays
    exactly as the plain file."""
    import gzip

    import zstandard

    plain = BY_V2.read_bytes()
    gz = tmp_path / "gz" / BY_V2.name
    zs = tmp_path / "zst" / (BY_V2.name + ".zst")
    gz.parent.mkdir()
    zs.parent.mkdir()
    gz.write_bytes(gzip.compress(plain))
    zs.write_bytes(zstandard.ZstdCompressor().compress(plain))
    expected = data_frames(BY_V2)
    topics = sorted({json.loads(f)["topic"] for f in expected})
    for path in (BY_V2, gz, zs):
        assert read_recording(path)[0] == read_recording(BY_V2)[0]  # (the REST siblings stay behind)
        got, _ = uvloop.run(_bybit_client_frames(path, "/v5/public/linear", topics, ["bybit"], len(expected)))
        assert got == expected, path


def _plain(tmp: Path, frames: list[tuple[int, bytes]]) -> Path:
    rec = tmp / "rec.txt"
    rec.write_bytes(b"".join(b"%d %s\n" % (ts, f) for ts, f in frames))
    return rec


def test_replay_serves_a_recorded_speed_to_a_subscriber_of_another(tmp_path: Path) -> None:
    """A recording of ``@depth@0ms`` reaches a ``@depth@100ms`` subscriber, labelled with its
    stream name; the data byte for byte (here: the real 100 ms frames, recorded under 0ms)."""
    real = [(ts, f) for ts, f in read_recording(BF_V2)[0] if b'"stream":"sushiusdt@depth@100ms"' in f]
    assert len(real) > 100
    rec = _plain(tmp_path, [(int(ts), f.replace(b"@depth@100ms", b"@depth@0ms", 1)) for ts, f in real])

    async def main(url: str) -> list[bytes]:
        async with Simulator(["binance-futures"], replay=rec) as sim:
            c = await connect(sim.ws_url() + url)
            await until(lambda: sim.replayer.done.is_set(), 30)
            await until(lambda: len(c.frames) >= len(real), 30)
            return c.frames

    assert uvloop.run(main("/public/stream?streams=sushiusdt@depth@100ms")) == [f for _, f in real]
    bare = uvloop.run(main("/public/ws/sushiusdt@depth@500ms"))  # a raw /ws stream gets the bare data
    assert [json.loads(x) for x in bare] == [json.loads(f)["data"] for _, f in real]
    from ticktape.sim.bybit import Bybit

    src = Bybit.replay_source
    have = {"orderbook.1.X", "orderbook.200.X", "orderbook.1000.X"}
    assert src(None, "orderbook.50.X", have) == "orderbook.200.X"  # type: ignore[arg-type]
    assert src(None, "orderbook.1.X", {"orderbook.50.X"}) is None  # type: ignore[arg-type]


def test_replay_serves_rest_snapshots_recorded_inline(tmp_path: Path) -> None:
    """``<ns> <frame>`` lines with the REST snapshot inline (Tardis's ``depthSnapshot`` frame): the
    body is served at the REST path, the diffs on the websocket, the snapshot frame is not."""
    frames, http = read_recording(BF_V2)
    body = next(b for u, _, b in http if "symbol=AKROUSDT" in u)
    diffs = [(ts, f) for ts, f in frames if b'"stream":"akrousdt@depth@100ms"' in f]
    inline = b'{"stream":"akrousdt@depthSnapshot","generated":true,"data":%s}' % body
    rec = _plain(tmp_path, [(diffs[0][0] - 1, inline), *diffs])

    async def main() -> None:
        async with Simulator(["binance-futures"], replay=rec) as sim:
            c = await connect(sim.ws_url() + "/public/stream?streams=akrousdt@depth@100ms")
            await until(lambda: sim.replayer.done.is_set(), 30)
            await until(lambda: len(c.frames) >= len(diffs), 30)
            assert c.frames == [f for _, f in diffs]
            async with aiohttp.ClientSession() as s, s.get(sim.rest_url() + "/fapi/v1/depth?symbol=AKROUSDT") as r:
                assert r.status == 200 and await r.read() == body

    uvloop.run(main())


def test_replay_keeps_frames_on_their_recorded_connection(tmp_path: Path) -> None:
    """A v3 recording with a linear and a spot connection: subscribers of every topic on the linear
    path get the linear connection's frames only, on the spot path the spot connection's only; a
    simulator without the spot venue skips (and counts) the spot connection's frames."""
    from recordings import v2_to_v3

    v3 = tmp_path / "bybit.jsonl.zst"
    linear, spot = v2_to_v3([BY_V2, BY_V2.with_name("cryptofeed_v2_v5_BYBIT.ws.2.0")], v3, "BYBIT")
    linear = [f for f in linear if route(f) is not None]
    spot = [f for f in spot if route(f) is not None]
    topics = sorted({json.loads(f)["topic"] for f in linear + spot})
    assert len(topics) == 10 and linear and spot

    got, sim = uvloop.run(_bybit_client_frames(v3, "/v5/public/linear", topics, ["bybit"], len(linear)))
    assert got == linear and sim.replayer.foreign == {"wss://stream.bybit.com/v5/public/spot": len(spot)}

    async def both() -> None:
        async with Simulator(["bybit", "bybit-spot"], replay=v3) as sim:
            lin = await connect(sim.ws_url() + "/v5/public/linear")
            spo = await connect(sim.ws_url() + "/v5/public/spot")
            for c in (lin, spo):
                c.send(json.dumps({"op": "subscribe", "args": topics}).encode())
            await until(lambda: sim.replayer.done.is_set(), 30)
            await until(lambda: len(lin.frames) >= len(linear) + 1 and len(spo.frames) >= len(spot) + 1, 30)
            assert lin.frames[1:] == linear and spo.frames[1:] == spot
            assert json.loads(spo.frames[0]) == {"success": True, "ret_msg": "subscribe",
                                                 "conn_id": json.loads(spo.frames[0])["conn_id"], "op": "subscribe"}

    uvloop.run(both())
