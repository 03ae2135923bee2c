"""Each scripted fault does what it says, seen from a real websocket client."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time

import aiohttp
import uvloop
from sim_test_helpers import connect, until

from ticktape.sim.faults import Fault
from ticktape.sim.server import Simulator

BF_DEPTH = "/public/stream?streams=btcusdt@depth@0ms"  # one frame per update


def test_drop_closes_without_close_frame_and_stall_withholds_frames_and_pongs() -> None:
    async def main() -> None:
        async with Simulator(["binance-futures", "bybit"], rate=300, seed=1) as sim:
            a = await connect(sim.ws_url() + BF_DEPTH)
            b = await connect(sim.ws_url() + "/v5/public/linear")
            b.send(b'{"req_id":"1","op":"subscribe","args":["orderbook.50.BTCUSDT"]}')
            await until(lambda: len(a.frames) > 5 and len(b.frames) > 5)
            # 4 s: the 0.5 s looked at stays inside the stall even when a busy machine delays this loop
            sim.fault(Fault("stall", "bybit", seconds=4.0))
            stall_end = time.monotonic() + 4.0
            await until(lambda: any(s.fault == "stall" for s in sim.sent("bybit")))  # a frame withheld: it holds
            await asyncio.sleep(0.05)  # frames written before it are read
            n = len(b.frames)
            b.send(b'{"req_id":"p","op":"ping"}')
            await asyncio.sleep(0.4)
            assert len(b.frames) == n, "a stalled connection sends nothing, not even a pong"
            assert time.monotonic() < stall_end, "looked after the stall ended: the check above proved nothing"
            assert not b.closed
            await until(lambda: len(b.frames) > n + 5)  # the stall ends by itself
            sim.fault(Fault("drop", "binance-futures"))
            await until(lambda: a.closed)
            assert not a.close_frame, "drop sends no close frame"
            assert not b.closed, "only the named exchange is dropped"

    uvloop.run(main())


def test_malformed_truncated_duplicate_reorder_and_gap() -> None:
    async def main() -> None:
        async with Simulator(["binance-futures"], rate=400, seed=3, trade_share=0.0) as sim:
            c = await connect(sim.ws_url() + BF_DEPTH)
            await until(lambda: len(c.frames) > 5)
            def sent() -> list:
                return sim.sent("binance-futures")

            for kind in ("malformed", "truncated", "duplicate", "reorder", "gap"):
                sim.fault(Fault(kind, "binance-futures"))
                await until(lambda kind=kind: any(s.fault == kind for s in sent()))  # it hit a frame
            # a few frames past the last fault, then everything up to there has arrived (counting frames
            # from ``len(c.frames)`` raced the ones still in flight on a busy machine)
            n_sent = len(sent())
            await until(lambda: len(sent()) >= n_sent + 3)
            tail = sent()[-1].data
            await until(lambda: tail in c.frames)
            bad = 0
            ok: list[dict] = []
            for f in c.frames:
                try:
                    ok.append(json.loads(f)["data"])
                except ValueError:
                    bad += 1
            assert bad == 2, "one malformed and one truncated frame"
            sent = sim.sent("binance-futures")
            assert [s.fault for s in sent if s.fault] == ["malformed", "truncated", "duplicate", "reorder", "gap"]
            trunc = next(s for s in sent if s.fault == "truncated")
            assert trunc.data in c.frames and len(trunc.data) < 200
            us = [d["u"] for d in ok]
            dup = next(s for s in sent if s.fault == "duplicate")
            assert us.count(dup.ids[1]) == 2, "duplicate delivered twice"
            held = next(s for s in sent if s.fault == "reorder")
            i = us.index(held.ids[1])
            assert us[i - 1] > us[i], "the held frame arrives after its successor"
            gap = next(s for s in sent if s.fault == "gap")
            assert gap.ids[1] not in us, "a gap frame is withheld"
            j = next(k for k, d in enumerate(ok) if d["pu"] == gap.ids[1])
            assert ok[j - 1]["u"] != ok[j]["pu"], "the client sees pu != previous u"

    uvloop.run(main())


def test_bybit_gap_is_a_u_jump_and_subscribe_errors_have_real_shapes() -> None:
    async def main() -> None:
        async with Simulator(["bybit", "hyperliquid", "binance-futures"], rate=300, seed=4) as sim:
            b = await connect(sim.ws_url() + "/v5/public/linear")
            b.send(b'{"req_id":"1","op":"subscribe","args":["orderbook.50.BTCUSDT"]}')
            await until(lambda: len(b.frames) > 5)
            sim.fault(Fault("gap", "bybit", count=2))
            await until(lambda: len(b.frames) > 20)
            us = [json.loads(f)["data"]["u"] for f in b.frames if b'"topic"' in f]
            jumps = [y - x for x, y in itertools.pairwise(us) if y - x != 1]
            assert jumps == [3], "two withheld deltas: u jumps by 3"

            sim.fault(Fault("subscribe_error", "bybit"))
            b.send(b'{"req_id":"2","op":"subscribe","args":["publicTrade.BTCUSDT"]}')
            await until(lambda: any(b'"req_id":"2"' in f for f in b.frames))
            err = json.loads(next(f for f in b.frames if b'"req_id":"2"' in f))
            assert err["success"] is False and set(err) == {"success", "ret_msg", "conn_id", "req_id", "op"}

            h = await connect(sim.ws_url() + "/ws")
            sim.fault(Fault("subscribe_error", "hyperliquid"))
            h.send(b'{"method":"subscribe","subscription":{"type":"trades","coin":"BTC"}}')
            await until(lambda: bool(h.frames))
            assert json.loads(h.frames[0])["channel"] == "error"

            sim.fault(Fault("subscribe_error", "binance-futures"))
            from picows import WSHandshakeError

            try:
                await connect(sim.ws_url() + BF_DEPTH)
            except WSHandshakeError as e:
                assert e.response is not None and int(e.response.status) == 400
            else:
                raise AssertionError("the upgrade must be refused")
            w = await connect(sim.ws_url() + "/public/ws")
            sim.fault(Fault("subscribe_error", "binance-futures"))
            w.send(b'{"method":"SUBSCRIBE","params":["btcusdt@depth@100ms"],"id":7}')
            await until(lambda: bool(w.frames))
            assert json.loads(w.frames[0])["id"] == 7 and json.loads(w.frames[0])["error"]["code"] == 2

            sim.fault(Fault("rest_error", "binance-futures"))
            async with aiohttp.ClientSession() as s:
                async with s.get(sim.rest_url() + "/fapi/v1/depth?symbol=BTCUSDT&limit=100") as r:
                    assert r.status == 503 and (await r.json())["code"] == -1001
                async with s.get(sim.rest_url() + "/fapi/v1/depth?symbol=BTCUSDT&limit=100") as r:
                    assert r.status == 200, "one fault, one refused request"
                async with s.get(sim.rest_url() + "/fapi/v1/depth?limit=100") as r:
                    assert r.status == 400 and (await r.json())["code"] == -1102

    uvloop.run(main())


def test_script_lifetime_server_pings_and_idle_timeout() -> None:
    async def main() -> None:
        script = [(40, Fault("drop", "bybit")), (0.3, Fault("malformed", "hyperliquid"))]
        async with Simulator(["binance-futures", "bybit", "hyperliquid"], rate=400, seed=5, script=script,
                             max_conn_age=0.8, ping_interval=0.1, idle_timeout={"hyperliquid": 0.6}) as sim:
            t0 = time.monotonic()
            a = await connect(sim.ws_url() + BF_DEPTH)
            b = await connect(sim.ws_url() + "/v5/public/linear")
            b.send(b'{"req_id":"1","op":"subscribe","args":["orderbook.50.BTCUSDT"]}')
            h = await connect(sim.ws_url() + "/ws")
            h.send(b'{"method":"subscribe","subscription":{"type":"l2Book","coin":"ETH"}}')
            await until(lambda: b.closed, 30)
            assert sim.venue("bybit").frames >= 40
            await until(lambda: a.closed and h.closed, 30)
            assert a.close_frame, "the lifetime limit closes with a close frame"
            assert a.pings >= 3, "binance server pings"
            assert time.monotonic() - t0 >= 0.6
            kinds = {(e, k) for _, e, k, _, _ in sim.fault_log}
            assert ("binance-futures", "lifetime") in kinds and ("hyperliquid", "idle") in kinds
            assert any(s.fault == "malformed" for s in sim.sent("hyperliquid"))

    uvloop.run(main())


def test_slow_consumer_is_dropped() -> None:
    async def main() -> None:
        async with Simulator(["bybit"], rate=2000, seed=6, max_buffer=64 << 10) as sim:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", sim.port))
            await loop.sock_sendall(sock, (
                f"GET /v5/public/linear HTTP/1.1\r\nHost: 127.0.0.1:{sim.port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            head = await loop.sock_recv(sock, 4096)
            assert head.startswith(b"HTTP/1.1 101")
            sub = b'{"req_id":"1","op":"subscribe","args":["orderbook.200.BTCUSDT","publicTrade.BTCUSDT"]}'
            mask = b"\x00\x00\x00\x00"
            assert len(sub) < 126
            await loop.sock_sendall(sock, b"\x81" + bytes([0x80 | len(sub)]) + mask + sub)
            sim.fault(Fault("slow", "bybit", seconds=60.0, factor=20))
            await until(lambda: any("max_buffer" in detail for _, _, _, _, detail in sim.fault_log), 30)
            await until(lambda: not sim.connections("bybit"), 30)
            assert sim.venue("bybit").rate_factor == 20
            sock.close()

    uvloop.run(main())


def test_binance_incoming_message_limit_and_per_exchange_rates() -> None:
    async def main() -> None:
        async with Simulator(["binance-futures", "bybit"], rate={"bybit": 0}, seed=7) as sim:
            c = await connect(sim.ws_url() + "/public/ws")
            for i in range(10):
                c.send(b'{"method":"LIST_SUBSCRIPTIONS","id":%d}' % i)
            await until(lambda: len(c.frames) == 10)
            assert not c.closed, "10 messages a second are allowed"
            c.send(b'{"method":"LIST_SUBSCRIPTIONS","id":10}')
            await until(lambda: c.closed)
            assert any(k == "rate_limit" for _, _, k, _, _ in sim.fault_log)
            b = await connect(sim.ws_url() + "/v5/public/linear")
            b.send(b'{"req_id":"1","op":"subscribe","args":["publicTrade.BTCUSDT"]}')
            await until(lambda: len(b.frames) >= 1)  # the subscribe's answer
            await asyncio.sleep(0.3)  # and no trade after it
            assert len(b.frames) == 1 and sim.stats()["events"]["bybit"] == 0, "rate 0: no bybit events"
            assert sim.stats()["errors"] == 0

    uvloop.run(main())


def test_bybit_restart_sends_a_u1_snapshot_then_deltas_from_there() -> None:
    async def main() -> None:
        async with Simulator(["bybit"], rate=300, seed=9) as sim:
            c = await connect(sim.ws_url() + "/v5/public/linear")
            c.send(b'{"req_id":"1","op":"subscribe","args":["orderbook.50.ETHUSDT"]}')
            await until(lambda: len(c.frames) > 10)
            sim.fault(Fault("restart", "bybit"))

            def since_restart() -> int:  # frames from the u=1 one on (frames still in flight don't count)
                us = [json.loads(f)["data"]["u"] for f in c.frames[1:]]
                return len(us) - us.index(1) if 1 in us else 0

            await until(lambda: since_restart() >= 5)
            msgs = [json.loads(f) for f in c.frames[1:]]
            i = next(k for k, m in enumerate(msgs) if m["data"]["u"] == 1)
            assert msgs[i]["type"] == "snapshot" and msgs[i - 1]["data"]["u"] > 1000
            assert [m["data"]["u"] for m in msgs[i:i + 5]] == [1, 2, 3, 4, 5]
            assert [s.fault for s in sim.sent("bybit") if s.fault] == ["restart"]

    uvloop.run(main())


def test_binance_stale_rest_snapshot_cannot_bridge_then_a_fresh_one_does() -> None:
    async def main() -> None:
        async with Simulator({"binance-futures": ["BTCUSDT"]}, rate=400, seed=10, trade_share=0.2) as sim:
            await asyncio.sleep(0.3)  # the market runs before the client comes
            c = await connect(sim.ws_url() + BF_DEPTH)
            await until(lambda: len(c.frames) > 20)
            sim.fault(Fault("rest_stale", "binance-futures"))
            url = sim.rest_url() + "/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
            async with aiohttp.ClientSession() as s:
                async with s.get(url) as r:
                    stale = (await r.json())["lastUpdateId"]
                async with s.get(url) as r:
                    fresh = (await r.json())["lastUpdateId"]
            diffs = [json.loads(f)["data"] for f in c.frames]
            assert diffs[0]["pu"] > stale, "older than anything the client buffered"
            assert not any(d["U"] <= stale <= d["u"] for d in diffs)
            assert any(d["U"] <= fresh <= d["u"] for d in diffs)

    uvloop.run(main())
