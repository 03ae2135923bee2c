"""The ingest process as the supervisor starts it: spawn, attach rings and stats,
capture over a real socket, stop on the event, leave the shutdown markers."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time

import numpy as np
import pytest
from picows import ws_create_server
from test_exchanges_connection import Conn, Server

from ticktape.engine.config import ExchangeConfig, LogConfig
from ticktape.exchanges import registry
from ticktape.ipc import ringset
from ticktape.ipc.ring import new_ring_name
from ticktape.ipc.schemas import EVENT_KINDS
from ticktape.ipc.stats import F, FeedStats


def serve(server: Server, ready: list, stop: threading.Event) -> None:
    async def main():
        srv = await ws_create_server(lambda req: Conn(server), "127.0.0.1", 0)
        ready.append(srv.sockets[0].getsockname()[1])
        pump = asyncio.create_task(server.pump())
        while not stop.is_set():
            await asyncio.sleep(0.02)
        pump.cancel()
        srv.close()

    asyncio.run(main())


@pytest.mark.slow
def test_ingest_process_captures_and_stops_cleanly(tmp_path):
    server, ready, halt = Server(), [], threading.Event()
    th = threading.Thread(target=serve, args=(server, ready, halt), daemon=True)
    th.start()
    while not ready:
        time.sleep(0.01)
    cfg = ExchangeConfig(symbols=["BTC", "ETH"], channels=["trades"], url=f"ws://127.0.0.1:{ready[0]}")
    registry.validate("hyperliquid", cfg)
    spec = ringset.make_spec("hyperliquid", cfg.symbols, registry.raw_channels("hyperliquid", cfg),
                             registry.data_types("hyperliquid", cfg, True), record_capacity=1 << 14,
                             raw_index_capacity=1 << 14, raw_arena_bytes=8 << 20)
    rings = ringset.create(spec)
    stats = FeedStats(new_ring_name("hl-stats"), len(spec.symbols), len(spec.channels), create=True)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    p = ctx.Process(target=registry.ingest_main, args=(spec, cfg, stats.name, stop, LogConfig(dir=str(tmp_path))))
    try:
        p.start()
        deadline = time.monotonic() + 60  # a spawned child starts in seconds on a busy machine
        while rings["trades"].write_seq < 50:
            assert time.monotonic() < deadline and p.is_alive()
            time.sleep(0.02)
        stop.set()
        p.join(10)
        assert p.exitcode == 0
        _, views = rings["trades"].peek()
        trades = np.concatenate(views)
        ids = [int(x) for x in trades["id"]]
        assert ids == sorted(set(ids)) and ids[0] == 1  # nothing lost or repeated from the first trade on
        _, views = rings["events"].peek()
        ev = np.concatenate(views)
        kinds = [EVENT_KINDS[k] for k in ev["kind"]]
        assert kinds[0] == "connect" and kinds[-1] == "disconnect"
        assert ev["detail"][-1] == b"shutdown"
        sym = spec.symbol_id("BTC")
        assert stats.values[sym, F["messages"]] >= len(ids)
        assert stats.values[sym, F["last_msg_ns"]] > 0
        log = (tmp_path / "capture.log").read_text()
        assert "subscribe hyperliquid/trades/BTC" in log and "connected" in log
    finally:
        if p.is_alive():
            p.kill()
        halt.set()
        th.join(5)
        stats.close()
        ringset.close(rings)
