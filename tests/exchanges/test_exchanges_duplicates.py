"""Duplicates are handled the same way on every venue: dropped by the venue's own ids
(trade ids, sequence numbers), counted (FeedStats -> /metrics) and reported as one
``duplicate`` events row per burst; Hyperliquid's re-sent recent trades are dropped
across captures too (tids read back from the archive)."""

from __future__ import annotations

import pytest
from feeds_run_helpers import CaptureRun, metric

from ticktape.sim.faults import Fault
from ticktape.sim.thread import SimulatorThread

EXCHANGES = {
    "binance-futures": {"symbols": ["BTCUSDT"], "channels": ["trades", "book_change"]},
    "bybit": {"symbols": ["BTCUSDT"], "channels": ["trades", "book_change"], "depth": 50},
    "hyperliquid": {"symbols": ["BTC"], "channels": ["trades", "book_snapshot"], "depth": 20},
}
SYMBOL = {"binance-futures": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}
#: the simulator's channel names of each venue's trades and book
TRADES = {"binance-futures": "trade", "bybit": "publicTrade", "hyperliquid": "trades"}
BOOK = {"binance-futures": "depth", "bybit": "orderbook.50", "hyperliquid": "l2Book"}


def trade_ids(run: CaptureRun, ex: str) -> list[str]:
    return [str(x) for x in run.load(ex, "trades", SYMBOL[ex])["id"].to_pylist()]


@pytest.mark.slow
def test_duplicate_fault_on_every_venue_no_duplicate_rows_one_event_per_burst(tmp_path):
    with SimulatorThread(list(EXCHANGES), rate=150, seed=4) as sim:
        run = CaptureRun(tmp_path, sim, EXCHANGES)
        try:
            run.until(lambda m: all(metric(m, "ticktape_feed_messages_total", exchange=ex) >= 100 for ex in EXCHANGES),
                      what="every venue streaming")
            for ex in EXCHANGES:
                sim.fault(Fault("duplicate", ex, channel=TRADES[ex], count=3))
                sim.fault(Fault("duplicate", ex, channel=BOOK[ex], count=3))
            run.until(lambda m: all(metric(m, "ticktape_feed_duplicates_total", exchange=ex) >= 6 for ex in EXCHANGES),
                      what="every venue counted its duplicates")
            assert run.stop() == 0, run.output()[-3000:]
        finally:
            run.kill()
        applied = [(ex, kind) for _, ex, kind, _, _ in sim.call(lambda s: list(s.fault_log))]
    for ex in EXCHANGES:
        assert (ex, "duplicate") in applied
        ids = trade_ids(run, ex)
        assert len(ids) >= 20 and len(ids) == len(set(ids)), f"{ex}: a trade written twice"
        dup = [e for e in run.events(ex, SYMBOL[ex]) if e["kind"] == "duplicate"]
        # one row per burst: the 3 duplicated trade frames are one burst, the 3 book frames another
        assert sorted(e["channel"] for e in dup) == sorted([TRADES[ex], BOOK[ex]]), (ex, dup)
        assert all(" duplicate " in e["detail"] and " dropped" in e["detail"] for e in dup), dup


@pytest.mark.slow
def test_hyperliquid_restart_writes_no_trade_twice(tmp_path):
    ex = {"hyperliquid": {"symbols": ["BTC", "ETH"], "channels": ["trades"]}}
    with SimulatorThread(["hyperliquid"], rate=150, seed=8) as sim:
        for i in range(2):
            run = CaptureRun(tmp_path, sim, ex)
            try:
                run.until(lambda m: metric(m, "ticktape_feed_messages_total", exchange="hyperliquid") >= 60,
                          what="trades streaming")
                assert run.stop() == 0, run.output()[-3000:]
            finally:
                run.kill()
            if i:  # the second capture was re-sent the recent trades on subscribe: dropped, counted
                assert "trade ids of the last" in run.logs()
    for sym in ("BTC", "ETH"):
        ids = [str(x) for x in run.load("hyperliquid", "trades", sym)["id"].to_pylist()]
        assert len(ids) >= 40 and len(ids) == len(set(ids)), f"{sym}: a trade written twice across the restart"
