"""Connection lifecycle over real websockets on 127.0.0.1 (a small scripted picows
server speaking Hyperliquid's trades channel): drop, stall, planned rollover.
Protocol faithfulness is the simulator's job; these tests pin the markers."""

from __future__ import annotations

import asyncio
import json

import pytest
import uvloop
from picows import WSListener, WSMsgType, ws_create_server

from ticktape.exchanges.ingest import run_feed

FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "stall_timeout": 0.8, "ping_interval": 0.2, "subscribe_interval": 0.0}


class Server:
    """Pushes one BTC trade every 5 ms to every subscribed connection; on subscribe it
    first re-sends the last 3 trades, as Hyperliquid's recent-trades snapshot does."""

    def __init__(self) -> None:
        self.conns: list[Conn] = []
        self.tid = 0
        self.sent: list[int] = []  # tids sent to at least one connection
        self.history: list[dict] = []
        self.stall = False
        self.subscribes = 0
        self.pings = 0

    def trade(self, tid: int) -> dict:
        return {"coin": "BTC", "side": "B" if tid % 2 else "A", "px": f"{100 + tid % 7}.5", "sz": "0.1", "time": 1_730_000_000_000 + tid, "hash": "0x0", "tid": tid}

    async def pump(self) -> None:
        while True:
            await asyncio.sleep(0.005)
            live = [c for c in self.conns if c.subscribed and not c.gone and not self.stall]
            if not live:
                continue
            self.tid += 1
            t = self.trade(self.tid)
            self.history.append(t)
            self.sent.append(self.tid)
            for c in live:
                c.send({"channel": "trades", "data": [t]})


class Conn(WSListener):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.subscribed = False
        self.gone = False
        self.t = None

    def on_ws_connected(self, transport) -> None:
        self.t = transport
        self.server.conns.append(self)

    def send(self, msg: dict) -> None:
        self.t.send(WSMsgType.TEXT, json.dumps(msg).encode())

    def on_ws_frame(self, transport, frame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        msg = json.loads(frame.get_payload_as_bytes())
        if msg.get("method") == "ping":
            self.server.pings += 1
            if not self.server.stall:
                self.send({"channel": "pong"})
        elif msg.get("method") == "subscribe":
            self.server.subscribes += 1
            self.send({"channel": "subscriptionResponse", "data": msg})
            if msg["subscription"]["type"] == "trades":
                recent = self.server.history[-3:]
                if recent:
                    self.send({"channel": "trades", "data": recent})
                self.subscribed = True

    def on_ws_disconnected(self, transport) -> None:
        self.gone = True


async def scenario(rig, script, options, front=None):
    """``front(port)``: an optional proxy in front of the server (returns the port to connect to)."""
    server = Server()
    srv = await ws_create_server(lambda req: Conn(server), "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    if front is not None:
        port = await front(port)
    r = rig("hyperliquid", symbols=["BTC"], channels=["trades"], url=f"ws://127.0.0.1:{port}", options={**FAST, **options})
    stop = asyncio.Event()
    pump = asyncio.create_task(server.pump())
    run = asyncio.create_task(run_feed(r.feed, stop.is_set))
    try:
        await script(server, r)
    finally:
        stop.set()
        await asyncio.wait_for(run, 10)
        pump.cancel()
        srv.close()
    return server, r


async def until(cond, timeout=30.0):
    """Generous: only a failing test reaches the timeout, a busy machine delays frames by seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


def trades_of(r):
    return [int(t["id"]) for t in r.records("trades")]


@pytest.mark.slow
def test_drop_reconnect_resubscribe_and_markers(rig):
    async def script(server, r):
        await until(lambda: len(server.sent) >= 20)
        for c in list(server.conns):
            c.t.disconnect()  # the exchange drops us
        await until(lambda: server.subscribes >= 2 and len(server.sent) >= 60)

    server, r = uvloop.run(scenario(rig, script, {}))
    ids = trades_of(r)
    assert ids == sorted(set(ids)), "no duplicates, in order"
    # everything sent while connected arrived; the recent-trades snapshot recovered the last 3 before the drop
    missing = set(server.sent) - set(ids)
    assert len(missing) <= 5 and max(server.sent) - max(ids) <= 2
    ev = r.events()
    kinds = [k for k, _, _ in ev]
    assert kinds[:1] == ["connect"]
    assert kinds.count("disconnect") == 2  # the drop, then the shutdown
    assert kinds.index("disconnect") < kinds.index("connect", 1)
    assert ("disconnect", "BTC", "connection lost") in ev and ("disconnect", "BTC", "shutdown") in ev
    assert "duplicate" in kinds  # the recent trades re-sent after resubscribe were dropped by tid
    raw = r.raw()
    empties = [x for x in raw if x[4] == b""]
    assert [(x[1], x[2]) for x in empties] == [("trades", "BTC")] * 2
    assert len({x[3] for x in raw}) >= 2  # two connection ids
    assert r.feed.stat("reconnects") == 1 and r.feed.stat("disconnects") == 1  # the shutdown is no loss


@pytest.mark.slow
def test_stall_is_a_disconnect(rig):
    async def script(server, r):
        await until(lambda: len(server.sent) >= 10)
        server.stall = True  # no frames, no pongs
        await until(lambda: any(c.gone for c in server.conns))
        server.stall = False
        await until(lambda: server.subscribes >= 2 and len(server.sent) >= 30)

    server, r = uvloop.run(scenario(rig, script, {}))
    kinds = [k for k, _, _ in r.events()]
    assert kinds.index("stall") < kinds.index("disconnect") < kinds.index("connect", 1)
    assert ("disconnect", "BTC", "stall") in r.events()
    ids = trades_of(r)
    assert ids == sorted(set(ids)) and server.pings >= 1


@pytest.mark.slow
def test_planned_rollover_overlaps_without_gap_or_duplicates(rig):
    async def script(server, r):
        await until(lambda: server.subscribes >= 4 and len(server.sent) >= 150)

    server, r = uvloop.run(scenario(rig, script, {"max_lifetime": 0.4, "overlap": 0.15}))
    ids = trades_of(r)
    sent_until_stop = [t for t in server.sent if t <= max(ids)]
    assert ids == sent_until_stop, "every trade once, none lost across the rollovers"
    ev = r.events()
    assert {d for k, _, d in ev if k == "disconnect"} == {"shutdown"}  # no unplanned disconnect
    assert sum(1 for k, _, d in ev if k == "info" and "planned reconnect" in d) >= 2
    raw = r.raw()
    first_marker = next(i for i, x in enumerate(raw) if x[4] == b"")
    assert all(x[4] == b"" for x in raw[first_marker:])  # markers only at the shutdown


@pytest.mark.slow
def test_stop_while_a_planned_reconnect_opens_closes_the_new_connection_too(rig):
    """A stop that comes while the rollover's new connection is still opening: that connection
    is closed too (it streamed on after the old one's shutdown markers, until cancelled)."""
    state = {"accepted": 0}

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    async def front(port):
        async def handle(reader, writer):
            state["accepted"] += 1
            if state["accepted"] == 2:  # the rollover's connection: held until the feed is stopping
                await until(lambda: state["feed"].links[0].closing)
            up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

        proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
        return proxy.sockets[0].getsockname()[1]

    async def script(server, r):
        state["feed"] = r.feed
        await until(lambda: state["accepted"] >= 2 and len(server.sent) >= 20)

    server, r = uvloop.run(scenario(rig, script, {"max_lifetime": 0.4, "overlap": 0.15}, front))
    raw = r.raw()
    first_marker = next(i for i, x in enumerate(raw) if x[4] == b"")
    assert all(x[4] == b"" for x in raw[first_marker:]), "frames after the shutdown markers"
    assert {d for k, _, d in r.events() if k == "disconnect"} == {"shutdown"}
    assert all(c.gone for c in server.conns), "a connection left open"
    ids = trades_of(r)
    assert ids == sorted(set(ids)) and ids


@pytest.mark.slow
def test_upgrade_refused_is_a_subscribe_error_and_retried(rig):
    from picows import WSUpgradeResponse, WSUpgradeResponseWithListener

    async def main():
        attempts = []

        def factory(req):
            attempts.append(req.path)
            body = b'{"code":-1121,"msg":"Invalid symbol."}'
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(400, body), None)

        srv = await ws_create_server(factory, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r = rig("binance-futures", symbols=["FOOUSDT"], channels=["trades"], trade_stream="aggTrade", url=f"ws://127.0.0.1:{port}", options=FAST)
        stop = asyncio.Event()
        run = asyncio.create_task(run_feed(r.feed, stop.is_set))
        await until(lambda: len(attempts) >= 3)
        stop.set()
        await asyncio.wait_for(run, 10)
        srv.close()
        return r, attempts

    r, attempts = uvloop.run(main())
    assert attempts[0] == b"/market/stream?streams=foousdt@aggTrade"
    ev = r.events()
    errs = [e for e in ev if e[0] == "subscribe_error"]
    assert len(errs) >= 3 and errs[0][1] == "FOOUSDT" and "HTTP 400" in errs[0][2] and "Invalid symbol" in errs[0][2]
    assert r.feed.stat("subscribe_errors") >= 3
