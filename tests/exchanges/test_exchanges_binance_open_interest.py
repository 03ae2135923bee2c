"""binance-futures open interest: the REST poll keeps within its weight budget (requests
spread evenly, each symbol once per interval), and a REST error is an event and a
counter while polling goes on, never a crash."""

from __future__ import annotations

import asyncio
import itertools

import uvloop

from ticktape.exchanges import binance_tickers
from ticktape.sim import faults
from ticktape.sim import server as sim_server

SYMS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "stall_timeout": 2.0, "ping_interval": 0.5}


def oi_polls(sim, answered: bool = False) -> list:
    """The simulator's log of openInterest requests (only the answered ones: body not empty)."""
    log = sim.venue("binance-futures").rest_log
    return [x for x in log if x[1] == "/fapi/v1/openInterest" and (x[3] or not answered)]


async def run(rig, polls: int, interval: float, script=None, errors: int = 0):
    """Run the feed until the simulator has answered ``polls`` openInterest requests and failed
    ``errors`` (waited for, not a fixed run time: a busy machine starts the feed seconds late)."""
    async with sim_server.Simulator(["binance-futures"], rate=50, seed=4, script=script) as sim:
        from ticktape.exchanges.ingest import run_feed

        r = rig("binance-futures", symbols=SYMS, channels=["derivative_ticker"], url=sim.ws_url("binance-futures"),
                open_interest_interval=interval, options={**FAST, "manual_snapshots": False})
        stop = asyncio.Event()
        task = asyncio.create_task(run_feed(r.feed, stop.is_set))
        end = asyncio.get_running_loop().time() + 120
        while len(oi_polls(sim, answered=True)) < polls or len(oi_polls(sim)) - len(oi_polls(sim, True)) < errors:
            assert not task.done(), task
            assert asyncio.get_running_loop().time() < end, f"{len(oi_polls(sim))} openInterest polls after 120 s"
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 15)
        return sim, r


def test_poll_spreads_weight_evenly_within_budget(rig) -> None:
    interval = 1.5
    assert binance_tickers.oi_weight_per_min(len(SYMS), interval) <= binance_tickers.OI_BUDGET
    sim, r = uvloop.run(run(rig, 8, interval))
    log = oi_polls(sim)
    times = [t for t, *_ in log]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # never a burst: requests leave >= interval/n apart. Their arrival at the server is late by up to a
    # scheduler delay (JITTER, generous: a busy machine delays one by 0.2 s), so any k+1 of them span at
    # least k spacings minus it: all symbols at once, or three in a catch-up burst, fail this
    spacing, jitter = interval / len(SYMS), 0.6
    for i, j in itertools.combinations(range(len(times)), 2):
        assert times[j] - times[i] >= (j - i) * spacing - jitter, (i, j, gaps)
    # (i=0, j=last: never faster than the schedule on the whole)
    # each symbol once per interval, in turn
    syms = [x[3].split(b'"symbol":"')[1].split(b'"')[0].decode() for x in log]
    assert syms[:6] == SYMS + SYMS
    weight_per_min = sum(w for _, _, w, _ in log) / (times[-1] - times[0]) * 60
    assert weight_per_min <= binance_tickers.OI_BUDGET, weight_per_min
    rows = r.records("derivative_ticker")
    assert len(rows) >= len(log) - 1 and r.feed.stat("rest_errors") == 0


def test_rest_error_is_an_event_not_a_crash(rig) -> None:
    F = faults.Fault
    sim, r = uvloop.run(run(rig, 3, 0.6 * 3, script=[(0.2, F("rest_error", "binance-futures", count=2))],
                               errors=2))
    ev = [e for e in r.events() if e[0] == "info" and e[2].startswith("openInterest HTTP")]
    assert len(ev) == 2 and all(e[2].startswith("openInterest HTTP 503") for e in ev), r.events()
    assert r.feed.stat("rest_errors", 0) + sum(r.feed.stat("rest_errors", r.spec.symbol_id(s)) for s in SYMS) == 2
    ok = oi_polls(sim, answered=True)
    assert len(ok) >= 3  # polling went on after the errors
    oi = r.records("derivative_ticker")
    assert len(oi) >= len(ok) - 1 and not any(e[0] == "malformed" for e in r.events())
