"""okex and okex-swap against the simulator over real sockets: trades one for one, every
books checksum verified, books equal the simulator's after a withheld update (seqId gap)
and after a frame with a wrong checksum, derivative and liquidation rows as sent."""

from __future__ import annotations

import json

import pytest
import uvloop
from exchanges_book_helpers import rebuild
from test_exchanges_sim import capture, sim_book, trade_rows

from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL
from ticktape.sim import faults

SYMS = {"okex": ["BTC-USDT", "ETH-USDT", "SOL-USDT"], "okex-swap": ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"]}
CHANNELS = {"okex": ["trades", "book_change", "book_ticker"],
            "okex-swap": ["trades", "book_change", "book_ticker", "derivative_ticker", "liquidations"]}
DERIV = ("funding-rate", "mark-price", "open-interest", "tickers", "index-tickers")


def sent_trades(sim, ex, sym, channel="trades"):
    out = []
    for s in sim.sent(ex, channel, sym):
        if not s.fault:
            for t in json.loads(s.data)["data"]:
                out.append((t["tradeId"], float(t["px"]), float(t["sz"]), SIDE_BUY if t["side"] == "buy" else SIDE_SELL))
    return out


def book_matches(sim, r, ex, sym):
    """The archive's book for ``sym`` equals the simulator's after the last update the feed applied."""
    sid = r.spec.symbol_id(sym)
    last = r.feed.chains[sid].last
    ev = next(s.event for s in sim.sent(ex, "books", sym) if s.ids[0] == last and not s.fault)
    return rebuild(r.records("book_change"), sid) == sim_book(sim, ex, sym, ev)


@pytest.mark.slow
def test_okx_records_equal_what_was_sent_and_books_survive_gap_and_bad_checksum(rig):
    F = faults.Fault
    script = [
        (0.3, F("gap", "okex", symbol="ETH-USDT")),
        (0.3, F("checksum", "okex-swap", symbol="BTC-USDT-SWAP")),
        (0.6, F("checksum", "okex", symbol="SOL-USDT")),
        (0.6, F("gap", "okex-swap", symbol="SOL-USDT-SWAP")),
    ]
    sim, rigs = uvloop.run(capture(rig, script, seconds=1.6, rate=120, exchanges=SYMS, channels=CHANNELS))
    faulted = {("okex", "ETH-USDT"): "gap", ("okex-swap", "BTC-USDT-SWAP"): "checksum",
               ("okex", "SOL-USDT"): "checksum", ("okex-swap", "SOL-USDT-SWAP"): "gap"}
    assert {(e, k) for _, e, k, _, _ in sim.fault_log} == {(e, k) for (e, _), k in faulted.items()}
    for ex, syms in SYMS.items():
        r = rigs[ex]
        ev = r.events()
        for sym in syms:
            sid = r.spec.symbol_id(sym)
            assert r.feed.stat("malformed", sid) == 0, (ex, sym)
            # trades one for one, in order
            got = [(t["id"].decode(), float(t["price"]), float(t["amount"]), int(t["side"])) for t in trade_rows(r, sym)]
            assert len(got) >= 20 and got == sent_trades(sim, ex, sym), (ex, sym)
            # raw: every frame of the symbol's books and trades as sent, in order
            raw = [x[4] for x in r.raw() if x[2] == sym and x[1] in ("books", "trades") and x[4]]
            assert raw == [s.data for s in sim.sent(ex, symbol=sym) if s.channel in ("books", "trades")
                           and s.fault != "gap"], (ex, sym)
            kinds = [k for k, s, _ in ev if s == sym and k in ("gap", "checksum", "resync")]
            assert not any("checksum 0" in d for _, s, d in ev if s == sym)  # every update had one to verify
            want = faulted.get((ex, sym))
            if want is None:
                assert kinds == [] and r.feed.stat("gaps", sid) == 0, (ex, sym, kinds)
            else:  # the failure, the resubscribe, the fresh snapshot
                assert kinds == [want, "resync", "resync"], (ex, sym, ev)
                assert r.feed.stat("resyncs", sid) == 1
            assert book_matches(sim, r, ex, sym), (ex, sym)
    # swaps: a derivative_ticker row per funding/mark/open-interest frame, liquidations as sent
    r = rigs["okex-swap"]
    tick = r.records("derivative_ticker")
    for sym in SYMS["okex-swap"]:
        sid = r.spec.symbol_id(sym)
        frames = [s for s in sim.sent("okex-swap", symbol=sym) if s.channel in DERIV]
        rows = tick[tick["symbol"] == sid]
        assert len(rows) == sum(len(json.loads(s.data)["data"]) for s in frames) > 5
        marks = [float(json.loads(s.data)["data"][0]["markPx"]) for s in frames if s.channel == "mark-price"]
        assert marks[-1] == rows[-1]["mark_price"] or frames[-1].channel != "mark-price"
        assert {float(x) for x in rows["mark_price"] if x == x} <= set(marks)
        funding = [json.loads(s.data)["data"][0] for s in frames if s.channel == "funding-rate"]
        assert funding and float(funding[-1]["nextFundingRate"]) in set(rows["predicted_funding_rate"].tolist())
        assert int(funding[-1]["fundingTime"]) * 10**6 in set(rows["funding_timestamp"].tolist())
        # last price from tickers, index from index-tickers
        last = [json.loads(s.data)["data"][0] for s in frames if s.channel == "tickers"][-1]
        idx = [json.loads(s.data)["data"][0] for s in frames if s.channel == "index-tickers"][-1]
        assert float(last["last"]) in set(rows["last_price"].tolist())
        assert float(idx["idxPx"]) in set(rows["index_price"].tolist())
    # book_ticker: one row per tickers frame, its best bid/ask
    for ex, syms in SYMS.items():
        bt = rigs[ex].records("book_ticker")
        for sym in syms:
            rows = bt[bt["symbol"] == rigs[ex].spec.symbol_id(sym)]
            sent = [json.loads(s.data)["data"][0] for s in sim.sent(ex, "tickers", sym)]
            assert len(sent) > 20
            assert [(float(r["bid_price"]), float(r["bid_amount"]), float(r["ask_price"]), float(r["ask_amount"]))
                    for r in rows] == [(float(t["bidPx"]), float(t["bidSz"]), float(t["askPx"]), float(t["askSz"]))
                                       for t in sent], (ex, sym)
    liqs = r.records("liquidations")
    sent_liqs = [d for s in sim.sent("okex-swap", "liquidation-orders") for x in json.loads(s.data)["data"]
                 for d in x["details"]]
    assert [(float(x["price"]), float(x["amount"])) for x in liqs] == [(float(d["bkPx"]), float(d["sz"])) for d in sent_liqs]


@pytest.mark.slow
def test_okx_quiet_connection_pings_and_stays_up(rig):
    """OKX drops a connection silent for 30 s: with no market events the connector sends the text
    ``ping`` once silent for 4 x ping_interval (scaled down here), the simulator answers ``pong``,
    and that keeps the stall watchdog quiet (no stall, no disconnect, no resubscribe)."""
    ex = {"okex": ["BTC-USDT"]}
    _sim, rigs = uvloop.run(capture(rig, None, seconds=2.5, rate=0, exchanges=ex, channels={"okex": ["book_change"]},
                                   options={"ping_interval": 0.1, "stall_timeout": 1.5}))
    r = rigs["okex"]
    pongs = [x for x in r.raw() if x[4] == b"pong"]
    assert len(pongs) >= 3 and {x[1:3] for x in pongs} == {("", "_")}
    kinds = [k for k, _, d in r.events() if d != "shutdown"]
    assert not {"stall", "disconnect", "gap", "resync"} & set(kinds), kinds
    assert r.feed.stat("messages", r.spec.symbol_id("BTC-USDT")) == 1  # the snapshot, nothing else was due


@pytest.mark.slow
def test_okx_trades_all_on_the_business_path_one_row_per_fill(rig):
    """``trade_stream = "trades-all"``: a second connection on /ws/v5/business, one push and one row per
    fill (what Tardis records), while the books stay on the public path."""
    ex = {"okex-swap": SYMS["okex-swap"]}
    sim, rigs = uvloop.run(capture(rig, None, seconds=1.2, rate=120, exchanges=ex,
                                   channels={"okex-swap": ["trades", "book_change"]},
                                   extra={"okex-swap": {"trade_stream": "trades-all"}}))
    r = rigs["okex-swap"]
    # the simulator serves trades-all only on /ws/v5/business (as OKX): a connection of its own
    assert {s.conn for s in sim.sent("okex-swap", "trades-all")}.isdisjoint({s.conn for s in sim.sent("okex-swap", "books")})
    for sym in SYMS["okex-swap"]:
        got = [(t["id"].decode(), float(t["price"]), float(t["amount"]), int(t["side"])) for t in trade_rows(r, sym)]
        want = sent_trades(sim, "okex-swap", sym, "trades-all")
        assert len(got) >= 20 and got == want, sym
        assert [x[4] for x in r.raw() if x[2] == sym and x[1] == "trades-all" and x[4]] == [
            s.data for s in sim.sent("okex-swap", "trades-all", sym)]
        assert book_matches(sim, r, "okex-swap", sym)


@pytest.mark.slow
def test_okx_resyncs_beyond_the_hourly_subscribe_budget_rebuild_the_connection(rig, monkeypatch):
    """OKX allows 480 subscribe/unsubscribe requests per connection per hour: a resync that would go
    over the budget (4 here: the first subscribe message, then one resubscribe pair) rebuilds the
    connection instead, and the books come back equal to the simulator's."""
    from ticktape.exchanges.okx import Okx

    monkeypatch.setattr(Okx, "SUBSCRIBE_BUDGET", 4)
    F = faults.Fault
    script = [(0.3, F("gap", "okex", symbol="ETH-USDT")), (0.9, F("gap", "okex", symbol="SOL-USDT"))]
    ex = {"okex": SYMS["okex"]}
    sim, rigs = uvloop.run(capture(rig, script, seconds=2.2, rate=120, exchanges=ex,
                                   channels={"okex": ["trades", "book_change"]}))
    r = rigs["okex"]
    ev = r.events()
    kinds = [k for k, _, _ in ev]
    assert [s for k, s, _ in ev if k == "gap"] == ["ETH-USDT", "SOL-USDT"], ev
    assert any(k == "info" and "subscribe requests on this connection" in d for k, _, d in ev), ev
    assert kinds.count("connect") == 2 and r.feed.stat("reconnects") == 1, ev  # the budget, not the venue, cut it
    assert len({s.conn for s in sim.sent("okex", "books")}) == 2
    for sym in SYMS["okex"]:
        assert book_matches(sim, r, "okex", sym), sym
