"""deribit against the simulator over real sockets: a perpetual, a future and an option;
records equal what the simulator sent, books equal its book after injected change_id gaps,
heartbeats answered."""

from __future__ import annotations

import asyncio
import json

import pytest
import uvloop
from exchanges_book_helpers import rebuild
from test_exchanges_sim import FAST, capture, sim_book, trade_rows, wait_for

from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL
from ticktape.sim import deribit as sim_deribit
from ticktape.sim import faults

SYMS = {"deribit": ["BTC-PERPETUAL", "BTC-27JUN25", "BTC-27JUN25-60000-C"]}
CHANNELS = {"deribit": ["trades", "book_change", "book_ticker", "derivative_ticker", "liquidations"]}


def sent_data(sim, channel, sym):
    """Payloads of the frames the simulator delivered (withheld ones left out), in order."""
    return [json.loads(s.data)["params"]["data"] for s in sim.sent("deribit", channel, sym) if s.fault != "gap"]


@pytest.mark.slow
def test_three_instruments_records_equal_what_was_sent_and_books_after_gaps(rig, monkeypatch):
    monkeypatch.setattr(sim_deribit.Deribit, "heartbeat_factor", 0.03)  # a test_request every 0.3 s
    F = faults.Fault
    script = [(0.4, F("gap", "deribit", symbol="BTC-27JUN25")), (0.6, F("gap", "deribit", symbol="BTC-PERPETUAL"))]
    # no client pings: only the answers to the server's test_requests keep the connection open
    sim, rigs = uvloop.run(capture(rig, script, seconds=2.0, rate=150, exchanges=SYMS, channels=CHANNELS,
                                   options={"ping_interval": 0.0}))
    r = rigs["deribit"]
    assert not [f for f in sim.fault_log if f[2] == "heartbeat"], sim.fault_log
    assert sim.venue("deribit").test_requests >= 3  # each answered with public/test in time
    events = r.events()
    assert r.feed.stat("malformed") == 0 and r.feed.stat("subscribe_errors") == 0
    book = r.records("book_change")
    raw = r.raw()
    for sym in SYMS["deribit"]:
        sid = r.spec.symbol_id(sym)
        # trades one for one, liquidations = the trades marked as such
        sent = sent_data(sim, "trades", sym)
        want = [t for frame in sent for t in frame]
        got = trade_rows(r, sym)
        assert len(got) >= 15, (sym, len(got))
        assert [(t["id"].decode(), float(t["price"]), float(t["amount"]), int(t["side"])) for t in got] == [
            (t["trade_id"], t["price"], t["amount"], SIDE_BUY if t["direction"] == "buy" else SIDE_SELL) for t in want]
        liqs = r.records("liquidations")
        assert [x["id"].decode() for x in liqs if x["symbol"] == sid] == [t["trade_id"] for t in want if "liquidation" in t]
        # tickers: every one a book_ticker row; derivative_ticker for the perpetual and the future only
        tick = sent_data(sim, "ticker", sym)
        bt = r.records("book_ticker")
        assert [float(x["bid_price"]) for x in bt if x["symbol"] == sid] == [t["best_bid_price"] for t in tick]
        dt = r.records("derivative_ticker")
        mine = dt[dt["symbol"] == sid]
        assert len(mine) == (0 if sym.endswith("-C") else len(tick)) and len(tick) >= 5, (sym, len(mine), len(tick))
        if sym.endswith("PERPETUAL"):
            assert [float(x["funding_rate"]) for x in mine] == [t["current_funding"] for t in tick]
        # raw: byte for byte what was delivered on each channel
        for channel in ("trades", "book", "ticker"):
            delivered = [s.data for s in sim.sent("deribit", channel, sym) if s.fault != "gap"]
            assert [x[4] for x in raw if x[2] == sym and x[1] == channel and x[4]] == delivered, (sym, channel)
        # book: equal to the simulator's after the last applied change
        last = r.feed.seq[f"book.{sym}.100ms"].last_u
        ev = next(s.event for s in sim.sent("deribit", "book", sym) if s.ids[0] == last and s.fault != "gap")
        assert rebuild(book, sid) == sim_book(sim, "deribit", sym, ev), sym
    for sym in ("BTC-27JUN25", "BTC-PERPETUAL"):
        kinds = [k for k, s, _ in events if s == sym and k in ("gap", "resync")]
        assert kinds == ["gap", "resync", "resync"], (sym, events)  # gap, resubscribe, fresh snapshot
        assert r.feed.stat("gaps", r.spec.symbol_id(sym)) == 1
    assert r.feed.stat("gaps", r.spec.symbol_id("BTC-27JUN25-60000-C")) == 0


@pytest.mark.slow
def test_truncated_book_frame_and_dropped_connection_resync_to_the_simulators_books(rig):
    F = faults.Fault
    # truncated: cut in half, so the channel name survives (a third of a short change frame would cut it)
    script = [(0.3, F("truncated", "deribit", channel="book", symbol="BTC-27JUN25-60000-C")),
              (0.5, F("duplicate", "deribit", channel="trades", symbol="BTC-PERPETUAL", count=2)),
              (0.5, F("duplicate", "deribit", channel="book", symbol="BTC-27JUN25")),
              (0.9, F("drop", "deribit"))]
    sim, rigs = uvloop.run(capture(rig, script, seconds=2.2, rate=150, exchanges=SYMS,
                                   channels={"deribit": ["trades", "book_change"]}))
    r = rigs["deribit"]
    ev = r.events()
    opt = [k for k, s, _ in ev if s == "BTC-27JUN25-60000-C" and k in ("malformed", "resync")]
    assert opt[:2] == ["malformed", "resync"], ev  # the broken frame resubscribes that book
    assert ("disconnect", "BTC-PERPETUAL", "connection lost") in ev
    assert sum(1 for k, _, _ in ev if k == "connect") == 2
    # frames sent twice: counted, one duplicate event per burst, applied once
    assert r.feed.stat("duplicates", r.spec.symbol_id("BTC-PERPETUAL")) >= 2
    assert r.feed.stat("duplicates", r.spec.symbol_id("BTC-27JUN25")) >= 1
    dup = {s for k, s, _ in ev if k == "duplicate"}
    assert {"BTC-PERPETUAL", "BTC-27JUN25"} <= dup, ev
    book = r.records("book_change")
    for sym in SYMS["deribit"]:
        sid = r.spec.symbol_id(sym)
        last = r.feed.seq[f"book.{sym}.100ms"].last_u
        sent = [s for s in sim.sent("deribit", "book", sym) if s.fault == ""]
        assert sum(1 for s in sent if s.ids[1] is None) >= 2, sym  # a fresh snapshot after the reconnect
        ev_no = next(s.event for s in sent if s.ids[0] == last)
        assert rebuild(book, sid) == sim_book(sim, "deribit", sym, ev_no), sym
        got = [t["id"].decode() for t in trade_rows(r, sym)]
        want = [t["trade_id"] for frame in sent_data(sim, "trades", sym) for t in frame]
        assert len(got) == len(set(got)) and set(got) <= set(want) and len(got) >= 10, sym
        assert r.feed.stat("gaps", sid) == 0, sym


@pytest.mark.slow
def test_refused_subscribe_is_retried_per_channel_and_an_unknown_instrument_is_a_subscribe_error(rig):
    async def main():
        from ticktape.exchanges.ingest import run_feed
        from ticktape.sim.server import Simulator

        async with Simulator({"deribit": ["BTC-PERPETUAL"]}, rate=80, seed=5) as sim:
            sim.fault(faults.Fault("subscribe_error", "deribit"))  # the first request is refused as a whole
            r = rig("deribit", symbols=["BTC-PERPETUAL", "NOPE-PERPETUAL"], channels=["trades", "book_change"],
                    url=sim.ws_url(), options=FAST)
            stop = asyncio.Event()
            run = asyncio.create_task(run_feed(r.feed, stop.is_set))
            await wait_for(lambda: r.feed.stat("subscribe_errors", 2) >= 2 and r.feed.seq["book.BTC-PERPETUAL.100ms"].synced
                           and len(trade_rows(r, "BTC-PERPETUAL")) > 0, 30, "errors for NOPE, BTC streaming")
            stop.set()
            await run
            return r

    r = uvloop.run(main())
    ev = r.events()
    assert [k for k, _, _ in ev][:2] == ["connect", "info"] and ev[1][2].startswith("subscribe refused: Invalid params")
    errs = sorted(d for k, s, d in ev if k == "subscribe_error")
    assert errs == ["not subscribed: book.NOPE-PERPETUAL.100ms", "not subscribed: trades.NOPE-PERPETUAL.100ms"], ev
    assert all(s == "NOPE-PERPETUAL" for k, s, _ in ev if k == "subscribe_error")


def test_instruments_checked_against_get_instruments():
    from ticktape.engine.config import ExchangeConfig
    from ticktape.exchanges import registry
    from ticktape.sim.thread import SimulatorThread

    with SimulatorThread({"deribit": None}) as sim:
        ok = ExchangeConfig(symbols=["BTC-PERPETUAL", "BTC-27JUN25", "BTC-27JUN25-60000-C"], url=sim.ws_url())
        assert registry.check_listed("deribit", ok) is None
        bad = ExchangeConfig(symbols=["BTC-PERPETUAL", "NOTA-PERPETUAL"], url=sim.ws_url())
        with pytest.raises(ValueError, match=r"^symbol\(s\) NOTA-PERPETUAL not listed by deribit \(http://.*"
                                             r"/api/v2/public/get_instruments\?currency=any&expired=false"):
            registry.check_listed("deribit", bad)


@pytest.mark.slow
def test_resync_after_a_full_book_ring_waits_for_room_and_completes(tmp_path):
    import os
    import signal

    from feeds_run_helpers import CaptureRun, archived_book, metric

    from ticktape.sim.thread import SimulatorThread

    sym = "BTC-PERPETUAL"

    def feed(m, name):
        return metric(m, f"ticktape_feed_{name}_total", exchange="deribit", symbol=sym)

    with SimulatorThread({"deribit": None}, rate=1500, trade_share=0.0, seed=23) as sim:
        run = CaptureRun(tmp_path, sim, {"deribit": {"symbols": [sym], "channels": ["book_change"]}}, raw=True,
                         records=4096)
        try:
            m = run.until(lambda m: feed(m, "messages") >= 20, what="the book streaming")
            writer = int(metric(m, "ticktape_child_pid", role="writer"))
            os.kill(writer, signal.SIGSTOP)  # the writer stalls: the book ring fills up
            try:
                run.until(lambda m: metric(m, "ticktape_ring_dropped_records_total", exchange="deribit",
                                           table="book_change") > 0 and feed(m, "gaps") >= 1, what="book rows dropped")
            finally:
                os.kill(writer, signal.SIGCONT)
            m = run.until(lambda m: feed(m, "resyncs") >= 1, timeout=120, what="the resync completed")
            seen = feed(m, "messages")
            run.until(lambda m: feed(m, "messages") >= seen + 20, what="changes applied after the resync")
            assert run.stop() == 1, run.output()[-3000:]  # records were dropped: the exit code says so
        finally:
            run.kill()
        ev = [e for e in run.events("deribit", sym) if e["kind"] in ("gap", "resync", "drop")]
        gaps = [e for e in ev if e["kind"] == "gap"]
        # one gap for the drop (the resubscribe waited for room instead of dropping snapshot after snapshot)
        assert len(gaps) == 1 and gaps[0]["detail"].startswith("book records dropped (ring full) after change_id "), ev
        assert any(e["kind"] == "resync" and e["detail"].startswith("snapshot at change_id=") for e in ev), ev
        raw = [r["payload"] for r in run.load("deribit", "raw", sym).to_pylist() if r["payload"]]
        last = json.loads(raw[-1])["params"]["data"]["change_id"]
        event = next(s.event for s in sim.sent("deribit", "book", sym) if s.ids[0] == last and s.fault == "")
        bids, asks = sim.book("deribit", sym, event=event)
        want = {"bid": {float(p): float(q) for p, q in bids}, "ask": {float(p): float(q) for p, q in asks}}
        assert archived_book(run, "deribit", sym) == want
