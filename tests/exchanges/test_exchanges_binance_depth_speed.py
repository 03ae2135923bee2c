"""binance-futures ``depth_speed``: the connector subscribes ``@depth@<speed>``, the
simulator batches each speed as Binance does (0ms: a frame per update; 100/500 ms:
the window's updates folded into one frame, U..u spanning them, pu chaining the
frames), and the REST snapshot bridge syncs the book for every speed."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
import uvloop
from exchanges_book_helpers import rebuild

from ticktape.sim import server as sim_server

FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "stall_timeout": 2.0, "ping_interval": 0.5, "rest_interval": 0.02}


async def run(rig, speed: str, frames: int):
    """Run the feed until it has bridged ``frames`` diff frames the simulator sent (waited for,
    not a fixed run time: on a busy machine the feed connects seconds late)."""
    async with sim_server.Simulator(["binance-futures"], rate=200, seed=9, trade_share=0.0) as sim:
        from ticktape.exchanges.ingest import run_feed

        r = rig("binance-futures", symbols=["BTCUSDT"], channels=["book_change"], url=sim.ws_url("binance-futures"),
                depth_speed=speed, options={**FAST, "manual_snapshots": False})
        stop = asyncio.Event()
        task = asyncio.create_task(run_feed(r.feed, stop.is_set))
        sid = r.spec.symbol_id("BTCUSDT")

        def done() -> bool:
            sent = [s for s in sim.sent("binance-futures", "depth", "BTCUSDT") if not s.fault]
            return len(sent) >= frames and r.feed.sync[sid].last_u >= sent[frames - 1].ids[1]

        end = asyncio.get_running_loop().time() + 120
        while not done():
            assert not task.done() and asyncio.get_running_loop().time() < end, "frames not bridged in 120 s"
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 15)
        return sim, r


@pytest.mark.parametrize("speed", ["0ms", "100ms", "500ms"])
def test_each_speed_batches_and_bridges(rig, speed: str) -> None:
    sim, r = uvloop.run(run(rig, speed, 6))
    assert f"btcusdt@depth@{speed}" in r.feed.get_plans()[0].url
    sent = [s for s in sim.sent("binance-futures", "depth", "BTCUSDT") if not s.fault]
    frames = [json.loads(s.data)["data"] for s in sent]
    assert len(frames) >= 4
    for a, b in itertools.pairwise(frames):
        assert b["pu"] == a["u"] and b["U"] > a["u"]  # one chain, no hole between frames
    events = [s.event for s in sent]
    if speed == "0ms":
        # a frame per update: consecutive market events, none folded (timing-free, so it holds on a loaded machine)
        assert all(b - a == 1 for a, b in itertools.pairwise(events)), events
    else:
        window = int(speed[:-2]) / 1000
        gaps_s = [(b.ts_ns - a.ts_ns) / 1e9 for a, b in itertools.pairwise(sent)]
        assert min(gaps_s) >= window * 0.8, (speed, min(gaps_s))
        assert max(b - a for a, b in itertools.pairwise(events)) > 1  # several updates folded into a frame
    sid = r.spec.symbol_id("BTCUSDT")
    assert r.feed.stat("gaps", sid) == 0 and r.feed.stat("rest_errors", sid) == 0
    last_u = r.feed.sync[sid].last_u
    ev = next(s.event for s in sent if s.ids[1] == last_u)
    bids, asks = sim.book("binance-futures", "BTCUSDT", event=ev)
    assert rebuild(r.records("book_change"), sid) == {"b": {float(p): float(q) for p, q in bids},
                                                      "a": {float(p): float(q) for p, q in asks}}
