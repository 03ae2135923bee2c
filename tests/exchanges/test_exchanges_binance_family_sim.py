"""binance (spot) and binance-delivery (COIN-M) against their simulator dialects over real
sockets, 3 symbols each: raw frames equal what the simulator sent, trades one for one, a
withheld diff is one gap event and a resync, a malformed diff one malformed event and a resync,
the first snapshots refused (503) and a stale one are fetched again, and every book equals the
simulator's after all of it."""

from __future__ import annotations

import json
import math

import pytest
import uvloop
from exchanges_book_helpers import rebuild
from test_exchanges_sim import capture, sent_trades, sim_book, trade_rows

from ticktape.sim import faults

SYMS = {"binance": ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "binance-delivery": ["BTCUSD_PERP", "ETHUSD_PERP", "BTCUSD_260327"]}
CHANNELS = {"binance": ["trades", "book_change", "book_snapshot", "book_ticker"],
            "binance-delivery": ["trades", "book_change", "book_snapshot", "book_ticker", "derivative_ticker",
                                 "liquidations"]}
EXTRA = {"binance": {"trade_stream": "aggTrade", "depth_speed": "100ms"},
         # open interest polled every second (one symbol at a time): polls within the run, under the weight budget
         "binance-delivery": {"trade_stream": "aggTrade", "depth_speed": "100ms", "open_interest_interval": 3.0}}
GAPPED = {"binance": "ETHUSDT", "binance-delivery": "ETHUSD_PERP"}
BROKEN = {"binance": "SOLUSDT", "binance-delivery": "BTCUSD_260327"}  # a malformed diff
RAW = {"binance": ("aggTrade", "depth", "depth20", "bookTicker"),
       "binance-delivery": ("aggTrade", "depth", "depth20", "bookTicker", "markPrice", "forceOrder")}


@pytest.mark.slow
def test_spot_and_coinm_against_the_simulator(rig):
    F = faults.Fault
    # the resync after the gap is first answered with a snapshot 1000 diffs old (a lagging REST replica)
    script = [(1.0, F("rest_stale", ex)) for ex in SYMS]
    script += [(1.0, F("gap", ex, channel="depth", symbol=sym)) for ex, sym in GAPPED.items()]
    script += [(1.2, F("malformed", ex, channel="depth", symbol=sym)) for ex, sym in BROKEN.items()]
    # the first snapshot requests answered 503 (COIN-M: two, since its first open-interest poll may take one)
    at_start = [F("rest_error", ex, count=1 if ex == "binance" else 2) for ex in SYMS]
    sim, rigs = uvloop.run(capture(rig, script, seconds=2.5, rate=150, exchanges=SYMS, channels=CHANNELS, extra=EXTRA,
                                   at_start=at_start))
    assert sim.errors == 0
    assert {(e, k) for _, e, k, _, _ in sim.fault_log} >= {(e, k) for e in SYMS for k in ("gap", "malformed",
                                                                                       "rest_error", "rest_stale")}
    for ex, syms in SYMS.items():
        r = rigs[ex]
        events = r.events()
        # the withheld diff: one gap on that symbol, the chain rule of the venue named, then a resync that syncs
        gaps = [e for e in events if e[0] == "gap"]
        assert [s for _, s, _ in gaps] == [GAPPED[ex]], events
        assert ("+ 1" in gaps[0][2]) == (ex == "binance") and ("pu " in gaps[0][2]) == (ex != "binance"), gaps
        assert r.feed.stat("resyncs", r.spec.symbol_id(GAPPED[ex])) == 1
        assert [s for k, s, _ in events if k == "malformed"] == [BROKEN[ex]], events
        assert r.feed.stat("resyncs", r.spec.symbol_id(BROKEN[ex])) == 1
        # the refused snapshot is an info event and retried; the stale one cannot bridge and is fetched again
        assert any(k == "info" and "snapshot HTTP 503" in d for k, _, d in events), events
        assert sum(r.feed.stat("snapshot_retries", r.spec.symbol_id(s)) for s in syms) >= 1
        raw = r.raw()
        books = r.records("book_change")
        tickers = r.records("book_ticker")
        snaps = r.records("book_snapshot_20")
        for sym in syms:
            sid = r.spec.symbol_id(sym)
            assert r.feed.stat("malformed", sid) == (sym == BROKEN[ex]) and r.feed.stat("duplicates", sid) == 0
            # raw: every frame the simulator sent on each stream, byte for byte, in order (the malformed one too)
            for ch in RAW[ex]:
                got = [x[4] for x in raw if x[1] == ch and x[2] == sym and x[4]]
                sent = [s.data for s in sim.sent(ex, ch, sym) if s.fault in ("", "malformed")]
                assert got == sent, (ex, sym, ch, len(got), len(sent))
            # trades one for one
            got_t = [(t["id"].decode(), float(t["price"]), float(t["amount"]), int(t["side"])) for t in trade_rows(r, sym)]
            sent_t = sent_trades(sim, ex, "aggTrade", sym)
            assert got_t == sent_t and len(got_t) >= 20, (ex, sym, len(got_t), len(sent_t))
            # the book equals the simulator's at the last applied diff (after the resync for the gapped one)
            last_u = r.feed.sync[sid].last_u
            ev = next(s.event for s in sim.sent(ex, "depth", sym) if s.ids[1] == last_u and not s.fault)
            assert rebuild(books, sid) == sim_book(sim, ex, sym, ev), (ex, sym)
            # book_ticker: one row per bookTicker frame; book_snapshot: the last partial depth frame's levels
            n_bt = len([s for s in sim.sent(ex, "bookTicker", sym) if not s.fault])
            assert (tickers["symbol"] == sid).sum() == n_bt > 0, (ex, sym)
            mine = snaps[snaps["symbol"] == sid]
            last = json.loads([s.data for s in sim.sent(ex, "depth20", sym) if not s.fault][-1])["data"]
            bids = last["bids"] if ex == "binance" else last["b"]  # spot's partial depth: lastUpdateId/bids/asks
            assert [float(p) for p, _ in bids] == [x for x in mine[-1]["bid_price"] if not math.isnan(x)], (ex, sym)
    # COIN-M open interest comes from /dapi/v1/openInterest and is kept as Tardis's generated frame
    oi = [x for x in rigs["binance-delivery"].raw() if x[1] == "openInterest"]
    assert oi and all(json.loads(x[4])["data"]["pair"] for x in oi)
    dt = rigs["binance-delivery"].records("derivative_ticker")
    assert len(dt) > 0 and not math.isnan(dt[-1]["mark_price"])


@pytest.mark.slow
def test_spot_and_coinm_planned_reconnects_before_the_age_limit_without_gaps(rig):
    """Connections rolled over before the server's age limit (both halves live for a moment): no gap,
    no disconnect, each trade and diff once (the overlap's repeats counted as duplicates), books right."""
    syms = {"binance": ["BTCUSDT", "ETHUSDT"], "binance-delivery": ["BTCUSD_PERP", "ETHUSD_PERP"]}
    extra = {ex: {"trade_stream": "aggTrade", "depth_speed": "100ms"} for ex in syms}
    sim, rigs = uvloop.run(capture(rig, None, seconds=2.6, rate=150, exchanges=syms, extra=extra, max_conn_age=1.0,
                                   channels={ex: ["trades", "book_change"] for ex in syms},
                                   options={"max_lifetime": 0.5, "overlap": 0.15}))
    for ex, names in syms.items():
        r = rigs[ex]
        ev = r.events()
        assert sum(1 for k, _, d in ev if k == "info" and "planned reconnect" in d) >= 2, ev  # one link, >= 2 rollovers
        assert {d for k, _, d in ev if k == "disconnect"} == {"shutdown"}, ev  # the server never had to cut us
        assert r.feed.stat("gaps") == 0 and not [e for e in ev if e[0] == "gap"], ev
        rows = r.records("book_change")
        for sym in names:
            sid = r.spec.symbol_id(sym)
            got = [t["id"].decode() for t in trade_rows(r, sym)]
            sent = [x[0] for x in sent_trades(sim, ex, "aggTrade", sym)]
            assert got == sent[: len(got)] and len(sent) - len(got) <= 3, (ex, sym)
            last_u = r.feed.sync[sid].last_u
            ev_no = next(s.event for s in sim.sent(ex, "depth", sym) if s.ids[1] == last_u)
            assert rebuild(rows, sid) == sim_book(sim, ex, sym, ev_no), (ex, sym)
            assert r.feed.stat("duplicates", sid) > 0, (ex, sym)  # the overlaps really delivered frames twice
