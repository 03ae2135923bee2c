"""``bybit-spot`` against the simulator's spot path (``/v5/public/spot``), over real sockets:
raw frames and trades equal what the simulator sent, one for one; a withheld book delta is a
gap, then a resync, and every book equals the simulator's afterwards."""

from __future__ import annotations

import json

import pytest
import uvloop
from exchanges_book_helpers import rebuild
from test_exchanges_sim import capture, sent_trades, sim_book, trade_rows

from ticktape.sim import faults

EX = {"bybit-spot": ["BTCUSDT", "ETHUSDT", "SOLUSDT"]}


@pytest.mark.slow
def test_bybit_spot_three_symbols_records_equal_what_was_sent_and_books_after_a_gap(rig):
    script = [(0.8, faults.Fault("gap", "bybit-spot", channel="orderbook.50", symbol="ETHUSDT"))]
    sim, rigs = uvloop.run(capture(rig, script, seconds=2.0, rate=120, exchanges=EX,
                                   channels={"bybit-spot": ["trades", "book_change"]}))
    r = rigs["bybit-spot"]
    assert r.feed.ws_url.endswith("/v5/public/spot")  # the spot path (this simulator serves no linear one)
    raw = [(ch, sym, p) for _, ch, sym, _, p in r.raw() if p and sym != "_"]
    sent = [(s.channel, s.symbol, s.data) for s in sim.sent("bybit-spot") if s.fault != "gap"]
    assert raw == sent  # byte for byte, in order (one connection)
    kinds = [(k, s) for k, s, _ in r.events()]
    assert ("gap", "ETHUSDT") in kinds and ("resync", "ETHUSDT") in kinds
    assert not [k for k, s in kinds if k in ("gap", "malformed", "duplicate") and s != "ETHUSDT"], kinds
    rows = r.records("book_change")
    for sym in EX["bybit-spot"]:
        sid = r.spec.symbol_id(sym)
        got = [(t["id"].decode(), float(t["price"]), float(t["amount"]), int(t["side"])) for t in trade_rows(r, sym)]
        want = sent_trades(sim, "bybit-spot", "publicTrade", sym)
        assert len(got) >= 20 and got == want, sym
        assert all("L" not in t for s in sim.sent("bybit-spot", "publicTrade", sym) for t in json.loads(s.data)["data"])
        u = r.feed.seq[f"orderbook.50.{sym}"].last_u
        ev = next(s.event for s in sim.sent("bybit-spot", "orderbook.50", sym) if s.ids[0] == u and not s.fault)
        assert rebuild(rows, sid) == sim_book(sim, "bybit-spot", sym, ev, depth=50), sym
