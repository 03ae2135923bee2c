"""binance-futures over real sockets: a scripted diff-depth server (picows) plus a REST
snapshot server (aiohttp) on 127.0.0.1. The book syncs from REST, a dropped connection
resyncs from a new snapshot, and the rebuilt book equals the server's own book."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
import uvloop
from aiohttp import web
from exchanges_book_helpers import rebuild
from picows import WSListener, WSMsgType, ws_create_server

from ticktape.exchanges.ingest import run_feed

FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "stall_timeout": 2.0, "ping_interval": 0.5, "rest_interval": 0.05}


class Market:
    """One symbol's book moving every 4 ms: each diff carries U/u/pu like Binance."""

    def __init__(self) -> None:
        self.rng = random.Random(7)
        self.u = 1000
        self.book = {"b": {100.0 - i * 0.5: 1.0 for i in range(20)}, "a": {100.5 + i * 0.5: 1.0 for i in range(20)}}
        self.at: dict[int, dict] = {}  # u -> copy of the book after it
        self.conns: list[Conn] = []
        self.trade_id = 0
        self.trades: list[int] = []

    def step(self) -> list[bytes]:
        pu, U = self.u, self.u + 1
        self.u += self.rng.randint(1, 3)
        changes = {"b": [], "a": []}
        for _ in range(self.rng.randint(1, 4)):
            side = self.rng.choice("ba")
            p = (100.0 - self.rng.randint(0, 25) * 0.5) if side == "b" else (100.5 + self.rng.randint(0, 25) * 0.5)
            q = 0.0 if self.rng.random() < 0.3 else round(self.rng.uniform(0.1, 5), 3)
            if q == 0:
                self.book[side].pop(p, None)
            else:
                self.book[side][p] = q
            changes[side].append([f"{p:.1f}", f"{q:.3f}" if q else "0"])
        self.at[self.u] = {"b": dict(self.book["b"]), "a": dict(self.book["a"])}
        d = {"e": "depthUpdate", "E": self.u, "T": self.u, "s": "BTCUSDT", "U": U, "u": self.u, "pu": pu, "b": changes["b"], "a": changes["a"]}
        self.trade_id += 1
        self.trades.append(self.trade_id)
        t = {"e": "aggTrade", "E": self.u, "a": self.trade_id, "s": "BTCUSDT", "p": "100.25", "q": "0.5", "f": 1, "l": 1, "T": self.u, "m": True}
        return [json.dumps({"stream": "btcusdt@depth@100ms", "data": d}).encode(), json.dumps({"stream": "btcusdt@aggTrade", "data": t}).encode()]

    async def pump(self) -> None:
        while True:
            await asyncio.sleep(0.004)
            depth, trade = self.step()
            for c in self.conns:
                if not c.gone:
                    c.t.send(WSMsgType.TEXT, depth if "depth" in c.streams else trade)

    async def rest(self, request: web.Request) -> web.Response:
        assert request.query["symbol"] == "BTCUSDT"
        body = {"lastUpdateId": self.u, "E": self.u, "T": self.u,
                "bids": [[f"{p:.1f}", f"{q:.3f}"] for p, q in sorted(self.book["b"].items(), reverse=True)],
                "asks": [[f"{p:.1f}", f"{q:.3f}"] for p, q in sorted(self.book["a"].items())]}
        await asyncio.sleep(0.02)  # the snapshot arrives after some diffs were buffered
        return web.json_response(body)


class Conn(WSListener):
    def __init__(self, market: Market, path: str) -> None:
        self.market, self.streams, self.gone, self.t = market, path, False, None

    def on_ws_connected(self, transport) -> None:
        self.t = transport
        self.market.conns.append(self)

    def on_ws_disconnected(self, transport) -> None:
        self.gone = True




@pytest.mark.slow
def test_sync_drop_resync_over_sockets(rig):
    async def main():
        m = Market()
        srv = await ws_create_server(lambda req: Conn(m, req.path.decode()), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/fapi/v1/depth", m.rest)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        rest_port = site._server.sockets[0].getsockname()[1]
        r = rig("binance-futures", symbols=["BTCUSDT"], channels=["trades", "book_change"], url=f"ws://127.0.0.1:{port}",
                rest_url=f"http://127.0.0.1:{rest_port}", options={**FAST, "manual_snapshots": False})
        stop = asyncio.Event()
        pump = asyncio.create_task(m.pump())
        run = asyncio.create_task(run_feed(r.feed, stop.is_set))
        sid = r.spec.symbol_id("BTCUSDT")
        try:
            for _ in range(500):
                await asyncio.sleep(0.01)
                if r.feed.sync[sid].state == 1 and len(m.trades) > 60:
                    break
            assert r.feed.sync[sid].state == 1, "synced from the REST snapshot"
            for c in list(m.conns):
                c.t.disconnect()
            await asyncio.sleep(0.1)
            for _ in range(500):
                await asyncio.sleep(0.01)
                if r.feed.sync[sid].state == 1 and r.feed.sync[sid].synced_once and len(m.trades) > 150:
                    break
            assert r.feed.sync[sid].state == 1, "resynced after the reconnect"
            await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(run, 10)
            pump.cancel()
            srv.close()
            await runner.cleanup()
        return m, r, sid

    m, r, sid = uvloop.run(main())
    rows = r.records("book_change")
    last_u = r.feed.sync[sid].last_u if r.feed.sync[sid].state == 1 else None
    ev = r.events()
    kinds = [k for k, _, _ in ev]
    assert kinds.count("resync") >= 1 and "gap" not in kinds
    assert ("disconnect", "BTCUSDT", "connection lost") in ev
    # the book as rebuilt from the rows equals the server's book at the last applied u
    # (state was reset by the shutdown disconnect, so use the u of the last emitted diff)
    last_ets = int(rows["exchange_ts"][-1]) // 1_000_000
    assert rebuild(rows, sid) == m.at[last_ets]
    assert last_u is None or last_u >= last_ets
    trades = [int(t["id"]) for t in r.records("trades")]
    assert trades == sorted(set(trades))
    raw_channels = {x[1] for x in r.raw()}
    assert {"depth", "depthSnapshot", "trade"} <= raw_channels
    snaps = [x for x in r.raw() if x[1] == "depthSnapshot" and x[4]]
    assert len(snaps) >= 2 and all(json.loads(x[4])["stream"] == "btcusdt@depthSnapshot" for x in snaps)
