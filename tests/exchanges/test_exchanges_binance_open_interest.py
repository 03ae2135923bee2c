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


async def run(rig, seconds: float, interval: float, script=None):
    async with sim_server.Simulator(["binance-futures"], rate=50, seed=4, script=script) as sim:
        from ticktape.exchanges.ingest import run_feed

        r = rig("binance-futures", symbols=SYMS, channels=["derivative_ticker"], url=sim.ws_url("binance-futures"),
                open_interest_interval=interval, options={**FAST, "manual_snapshots": False})
        stop = asyncio.Event()
        task = asyncio.create_task(run_feed(r.feed, stop.is_set))
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait_for(task, 15)
        return sim, r


def test_poll_spreads_weight_evenly_within_budget(rig) -> None:
    interval = 1.0
    assert binance_tickers.oi_weight_per_min(len(SYMS), interval) <= binance_tickers.OI_BUDGET
    sim, r = uvloop.run(run(rig, 4.0, interval))
    log = [x for x in sim.venue("binance-futures").rest_log if x[1] == "/fapi/v1/openInterest"]
    assert 6 <= len(log) <= 14, len(log)  # 12 on an idle machine; fewer if the loop starts late, never more
    times = [t for t, *_ in log]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # never a burst: requests leave >= interval/n apart; arrival at the server can jitter a little
    assert min(gaps) >= interval / len(SYMS) * 0.5, gaps
    # each symbol once per interval, in turn
    syms = [x[3].split(b'"symbol":"')[1].split(b'"')[0].decode() for x in log]
    assert syms[:6] == SYMS + SYMS
    weight_per_min = sum(w for _, _, w, _ in log) / (times[-1] - times[0]) * 60
    assert weight_per_min <= binance_tickers.OI_BUDGET, weight_per_min
    rows = r.records("derivative_ticker")
    assert len(rows) >= len(log) - 1 and r.feed.stat("rest_errors") == 0


def test_rest_error_is_an_event_not_a_crash(rig) -> None:
    F = faults.Fault
    sim, r = uvloop.run(run(rig, 3.5, 0.6 * 3, script=[(0.2, F("rest_error", "binance-futures", count=2))]))
    ev = [e for e in r.events() if e[0] == "info" and e[2].startswith("openInterest HTTP")]
    assert len(ev) == 2 and all(e[2].startswith("openInterest HTTP 503") for e in ev), r.events()
    assert r.feed.stat("rest_errors", 0) + sum(r.feed.stat("rest_errors", r.spec.symbol_id(s)) for s in SYMS) == 2
    ok = [x for x in sim.venue("binance-futures").rest_log if x[1] == "/fapi/v1/openInterest" and x[3]]
    assert len(ok) >= 3  # polling went on after the errors
    oi = r.records("derivative_ticker")
    assert len(oi) >= len(ok) - 1 and not any(e[0] == "malformed" for e in r.events())
