"""All three connectors against the protocol-faithful simulator over real sockets:
records in the rings equal what the simulator sent, books equal the simulator's book."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest
import uvloop
from exchanges_book_helpers import rebuild

from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL
from ticktape.sim import faults
from ticktape.sim import server as sim_server

FAST = {"backoff_base": 0.05, "backoff_max": 0.2, "stall_timeout": 1.0, "ping_interval": 0.3, "rest_interval": 0.02}
SYMS = {"binance-futures": ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "bybit": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
        "hyperliquid": ["BTC", "ETH", "SOL"]}
CHANNELS = {"binance-futures": ["trades", "book_change", "book_snapshot"], "bybit": ["trades", "book_change"],
            "hyperliquid": ["trades", "book_snapshot"]}
DEPTH = {"binance-futures": 20, "bybit": 50, "bybit-spot": 50, "hyperliquid": 20, "bitmex": 20, "okex": 400, "okex-swap": 400}
#: per-exchange config beside symbols/channels/depth (binance depth@0ms: a frame per update, so a
#: withheld frame is a gap right away)
EXTRA = {"binance-futures": {"trade_stream": "aggTrade", "depth_speed": "0ms"}}




def sim_book(sim, ex, sym, event, depth=None):
    bids, asks = sim.book(ex, sym, event=event, depth=depth)
    return {"b": {float(p): float(q) for p, q in bids}, "a": {float(p): float(q) for p, q in asks}}


def ready(r) -> bool:
    """Every symbol's streams are live: trades flowing, books synced (binance/bybit) or a first l2Book."""
    f, syms = r.feed, r.spec.symbols[1:]
    if not all(f.stat("messages", r.spec.symbol_id(s)) > 0 for s in syms):
        return False
    if r.spec.exchange.startswith("binance"):
        return "book_change" not in r.rings or all(f.sync[r.spec.symbol_id(s)].synced_once for s in syms)
    if r.spec.exchange in ("bybit", "bybit-spot"):
        return all(st.synced for t, st in f.seq.items() if t.startswith("orderbook."))
    if r.spec.exchange == "deribit":
        return all(st.synced for st in f.seq.values())
    if r.spec.exchange == "bitmex":
        return "book_change" not in r.rings or all(f.books[r.spec.symbol_id(s)].seq.synced for s in syms)
    if r.spec.exchange in ("okex", "okex-swap"):
        return "book_change" not in r.rings or all(f.chains[r.spec.symbol_id(s)].synced for s in syms)
    return all(f.book_time[r.spec.symbol_id(s)] >= 0 for s in syms) if "book_snapshot_20" in r.rings else True


async def wait_for(cond, timeout: float, what: str, step: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(step)


async def drained(sim, exchanges) -> None:
    """A ping behind the last frame of every connection: its pong means the client read them all."""
    sim.flush()
    pinged = time.monotonic()
    conns = [c for e in exchanges for c in sim.connections(e) if not c.closed and c.transport is not None]
    for c in conns:
        c.transport.send_ping(b"drained?")
    await wait_for(lambda: all(c.closed or c.last_pong >= pinged for c in conns), 30, "the feeds to read every frame")


async def capture(rig, script, seconds=1.5, rate=150, options=None, exchanges=SYMS, channels=None, at_start=(),
                  extra=EXTRA, **sim_kw):
    """Run the feeds against the simulator. The script's times (and ``seconds``) count from the
    moment every feed is live (subscribed, books synced), not from the simulator's start: on a
    loaded machine connecting can take a second or more. At the end the simulator stops making
    market events and the feeds read what is still in flight before they stop, so "what was
    sent" is what was delivered, however late the client loop ran. ``at_start``: faults due
    before the feeds connect (REST errors of the first snapshots)."""
    async with sim_server.Simulator(list(exchanges), rate=rate, seed=11, **sim_kw) as sim:
        from ticktape.exchanges.ingest import run_feed

        for f in at_start:
            sim.fault(f)
        rigs = {}
        for ex, syms in exchanges.items():
            rigs[ex] = rig(ex, symbols=syms, channels=(channels or CHANNELS)[ex], depth=DEPTH.get(ex, 20),
                           url=sim.ws_url(ex), **extra.get(ex, {}),
                           options={**FAST, "manual_snapshots": False, **(options or {})}, capacity=1 << 18)
        stop = asyncio.Event()
        runs = [asyncio.create_task(run_feed(r.feed, stop.is_set)) for r in rigs.values()]
        loop = asyncio.get_running_loop()
        await wait_for(lambda: all(ready(r) for r in rigs.values()), 30, "every feed live")
        t0 = loop.time()
        for at, f in sorted(script or [], key=lambda e: e[0]):
            await asyncio.sleep(max(0.0, t0 + at - loop.time()))
            sim.fault(f)
        await asyncio.sleep(max(0.0, t0 + seconds - loop.time()))
        for ex in sim.rates:  # no more market events: what is sent from here on is only what was due
            sim.rates[ex] = 0.0
        # diff windows still open (Binance depth@100ms, Deribit book 100ms) close on their timer: sent before
        # the drain ping
        await wait_for(lambda: not any(v.pending() for v in sim.venues.values()), 10, "open book windows to close")
        await drained(sim, exchanges)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*runs), 15)
        await asyncio.sleep(0.05)
        return sim, rigs


def trade_rows(r, sym):
    t = r.records("trades")
    return t[t["symbol"] == r.spec.symbol_id(sym)]


def sent_trades(sim, ex, channel, sym):
    """(id, price, amount, side) of every trade the simulator sent, in order, once per connection dedupe."""
    out, seen = [], set()
    for s in sim.sent(ex, channel, sym):
        if s.fault:
            continue
        msg = json.loads(s.data)
        if ex.startswith("binance"):
            d = msg["data"]
            items = [(str(d["a"]), float(d["p"]), float(d["q"]), SIDE_SELL if d["m"] else SIDE_BUY)]
        elif ex in ("bybit", "bybit-spot"):
            items = [(t["i"], float(t["p"]), float(t["v"]), SIDE_BUY if t["S"] == "Buy" else SIDE_SELL) for t in msg["data"]]
        else:
            items = [(str(t["tid"]), float(t["px"]), float(t["sz"]), SIDE_BUY if t["side"] == "B" else SIDE_SELL) for t in msg["data"]]
        for it in items:
            if it[0] not in seen:
                seen.add(it[0])
                out.append(it)
    return out


@pytest.mark.slow
def test_three_exchanges_records_equal_what_was_sent(rig):
    sim, rigs = uvloop.run(capture(rig, None))
    trade_ch = {"binance-futures": "aggTrade", "bybit": "publicTrade", "hyperliquid": "trades"}
    for ex, syms in SYMS.items():
        r = rigs[ex]
        assert r.feed.stat("gaps") == 0
        for sym in syms:
            sid = r.spec.symbol_id(sym)
            assert r.feed.stat("malformed", sid) == 0 and r.feed.stat("gaps", sid) == 0, (ex, sym)
            got = [(t["id"].decode(), float(t["price"]), float(t["amount"]), int(t["side"])) for t in trade_rows(r, sym)]
            sent = sent_trades(sim, ex, trade_ch[ex], sym)
            assert len(got) >= 20, (ex, sym, len(got))
            assert got == sent, (ex, sym)  # same trades, same order, nothing missing (all read before the stop)
    # books
    b = rigs["binance-futures"]
    rows = b.records("book_change")
    for sym in SYMS["binance-futures"]:
        sid = b.spec.symbol_id(sym)
        last_u = b.feed.sync[sid].last_u
        ev = next(s.event for s in sim.sent("binance-futures", "depth", sym) if s.ids[1] == last_u)
        assert rebuild(rows, sid) == sim_book(sim, "binance-futures", sym, ev), sym
    snaps = b.records("book_snapshot_20")
    for sym in SYMS["binance-futures"]:
        sid = b.spec.symbol_id(sym)
        last = snaps[snaps["symbol"] == sid][-1]
        sent = [s for s in sim.sent("binance-futures", "depth20", sym) if not s.fault]
        d = json.loads(sent[len(snaps[snaps["symbol"] == sid]) - 1].data)["data"]
        assert [float(p) for p, _ in d["b"]] == [x for x in last["bid_price"] if not math.isnan(x)]
    y = rigs["bybit"]
    rows = y.records("book_change")
    for sym in SYMS["bybit"]:
        sid = y.spec.symbol_id(sym)
        st = y.feed.seq[f"orderbook.50.{sym}"]
        ev = next(s.event for s in sim.sent("bybit", "orderbook.50", sym) if s.ids[0] == st.last_u)
        assert rebuild(rows, sid) == sim_book(sim, "bybit", sym, ev, depth=50), sym
    h = rigs["hyperliquid"]
    snaps = h.records("book_snapshot_20")
    for sym in SYMS["hyperliquid"]:
        sid = h.spec.symbol_id(sym)
        mine = snaps[snaps["symbol"] == sid]
        sent = [s for s in sim.sent("hyperliquid", "l2Book", sym) if not s.fault]
        # an l2Book equal to the previous one (same time, same bytes: an event deep in the book
        # within the same millisecond) is a duplicate, dropped and counted
        dups = h.feed.stat("duplicates", sid)
        assert len(mine) >= 10 and len(sent) - len(mine) - dups == 0  # every one read before the stop
        last = mine[-1]
        ev = sent[len(mine) + dups - 1].event
        ref = sim_book(sim, "hyperliquid", sym, ev, depth=20)
        assert dict(zip(last["bid_price"], last["bid_amount"], strict=True)) == ref["b"]
        assert dict(zip(last["ask_price"], last["ask_amount"], strict=True)) == ref["a"]


def is_subsequence(sub, seq):
    it = iter(seq)
    return all(x in it for x in sub)


@pytest.mark.slow
def test_fault_script_events_at_the_right_places_and_books_right_after(rig):
    F = faults.Fault
    script = [
        # from 1.0 s: the connections are surely up (rings are reserved at creation, which takes a while
        # on a busy machine; a gap due before the first frame leaves nothing missing to detect)
        (1.0, F("gap", "binance-futures", symbol="BTCUSDT")),
        (1.0, F("gap", "bybit", symbol="ETHUSDT")),
        (1.2, F("malformed", "binance-futures", channel="depth", symbol="SOLUSDT")),
        (1.2, F("malformed", "hyperliquid", channel="trades", symbol="ETH")),
        (1.4, F("drop", "bybit")),
        (1.6, F("stall", "hyperliquid", seconds=2.0)),
    ]
    sim, rigs = uvloop.run(capture(rig, script, seconds=4.0, rate=120))
    log = {(ex, kind): ts for ts, ex, kind, _, _ in sim.fault_log}
    assert {k for _, k in log} >= {"gap", "malformed", "drop", "stall"}, sim.fault_log

    def events(ex):
        r = rigs[ex]
        ev = r.records("events")
        from ticktape.ipc.schemas import EVENT_KINDS
        return [(int(e["local_ts"]), EVENT_KINDS[int(e["kind"])], r.spec.symbols[int(e["symbol"])], e["detail"].decode()) for e in ev]

    def first(ex, kind, sym=None, after=0):
        return next((e for e in events(ex) if e[1] == kind and (sym is None or e[2] == sym) and e[0] >= after), None)

    # binance: the withheld diff is a gap on BTCUSDT right after the fault, then a resync; the malformed SOLUSDT diff too
    g = first("binance-futures", "gap", "BTCUSDT")
    assert g is not None and 0 <= g[0] - log[("binance-futures", "gap")] < 0.5e9
    assert first("binance-futures", "resync", "BTCUSDT", after=g[0]) is not None
    m = first("binance-futures", "malformed", "SOLUSDT")
    assert m is not None and 0 <= m[0] - log[("binance-futures", "malformed")] < 0.5e9
    # bybit: gap on ETHUSDT then a fresh snapshot (resubscribe); the drop is a disconnect then a connect
    g = first("bybit", "gap", "ETHUSDT")
    assert g is not None and 0 <= g[0] - log[("bybit", "gap")] < 0.5e9
    assert first("bybit", "resync", "ETHUSDT", after=g[0]) is not None
    d = first("bybit", "disconnect")
    assert d is not None and d[3] == "connection lost" and 0 <= d[0] - log[("bybit", "drop")] < 0.5e9
    assert first("bybit", "connect", after=d[0]) is not None
    # hyperliquid: malformed counted; the stall is detected after the stall timeout, then a disconnect
    assert first("hyperliquid", "malformed") is not None
    s = first("hyperliquid", "stall")
    assert s is not None and 0.8e9 <= s[0] - log[("hyperliquid", "stall")] < 2.0e9
    d = first("hyperliquid", "disconnect", after=s[0])
    assert d is not None and d[3] == "stall"
    # the empty raw row marks each disconnect for exchange-native replay
    for ex in ("bybit", "hyperliquid"):
        assert any(x[4] == b"" and x[0] < rigs[ex].raw()[-1][0] for x in rigs[ex].raw())

    # books are right after every resync (compared with the simulator's own book)
    b = rigs["binance-futures"]
    rows = b.records("book_change")
    for sym in SYMS["binance-futures"]:
        sid = b.spec.symbol_id(sym)
        ev = next(s.event for s in sim.sent("binance-futures", "depth", sym) if s.ids[1] == b.feed.sync[sid].last_u)
        assert rebuild(rows, sid) == sim_book(sim, "binance-futures", sym, ev), sym
    y = rigs["bybit"]
    rows = y.records("book_change")
    for sym in SYMS["bybit"]:
        sid = y.spec.symbol_id(sym)
        u = y.feed.seq[f"orderbook.50.{sym}"].last_u
        ev = next(s.event for s in sim.sent("bybit", "orderbook.50", sym) if s.ids[0] == u and not s.fault)
        assert rebuild(rows, sid) == sim_book(sim, "bybit", sym, ev, depth=50), sym

    # trades: no duplicates, in the order sent, nothing lost where no connection fault happened
    trade_ch = {"binance-futures": "aggTrade", "bybit": "publicTrade", "hyperliquid": "trades"}
    for ex, syms in SYMS.items():
        for sym in syms:
            got = [t["id"].decode() for t in trade_rows(rigs[ex], sym)]
            sent = [x[0] for x in sent_trades(sim, ex, trade_ch[ex], sym)]
            assert len(got) == len(set(got)) and is_subsequence(got, sent), (ex, sym)
            if ex == "binance-futures":
                assert got == sent[: len(got)]


@pytest.mark.slow
def test_binance_planned_reconnects_before_the_servers_age_limit_without_gaps(rig):
    ex = {"binance-futures": ["BTCUSDT", "ETHUSDT"]}
    sim, rigs = uvloop.run(capture(rig, None, seconds=2.6, rate=150, exchanges=ex, max_conn_age=1.0,
                                   options={"max_lifetime": 0.5, "overlap": 0.15}))
    r = rigs["binance-futures"]
    ev = r.events()
    assert sum(1 for k, _, d in ev if k == "info" and "planned reconnect" in d) >= 4  # 2 links x >= 2 rollovers
    assert {d for k, _, d in ev if k == "disconnect"} == {"shutdown"}  # the server never had to cut us
    assert r.feed.stat("gaps") == 0 and not [e for e in ev if e[0] == "gap"]
    rows = r.records("book_change")
    for sym in ex["binance-futures"]:
        sid = r.spec.symbol_id(sym)
        got = [t["id"].decode() for t in trade_rows(r, sym)]
        sent = [x[0] for x in sent_trades(sim, "binance-futures", "aggTrade", sym)]
        assert got == sent[: len(got)] and len(sent) - len(got) <= 3, sym
        ev_no = next(s.event for s in sim.sent("binance-futures", "depth", sym) if s.ids[1] == r.feed.sync[sid].last_u)
        assert rebuild(rows, sid) == sim_book(sim, "binance-futures", sym, ev_no), sym
        # each diff applied once: book rows after the first snapshot match the diffs sent (deduped by u)
        assert r.feed.stat("duplicates", sid) > 0  # the overlaps really delivered frames twice


@pytest.mark.slow
def test_duplicates_reorder_subscribe_and_rest_errors(rig):
    F = faults.Fault
    script = [
        (0.5, F("duplicate", "bybit", channel="orderbook.50", symbol="BTCUSDT", count=2)),
        (0.6, F("duplicate", "hyperliquid", channel="trades", symbol="BTC", count=2)),
    ]
    sim, rigs = uvloop.run(capture(rig, script, seconds=2.0, rate=150,
                                   at_start=[F("rest_error", "binance-futures", count=2)]))
    b, y, h = rigs["binance-futures"], rigs["bybit"], rigs["hyperliquid"]
    # REST 503s are retried: every binance book synced
    assert all(b.feed.sync[b.spec.symbol_id(s)].synced_once for s in SYMS["binance-futures"])
    assert any(k == "info" and "snapshot HTTP 503" in d for k, _, d in b.events())
    # bybit duplicate book frames: counted, an event, book unchanged by them
    assert y.feed.stat("duplicates", y.spec.symbol_id("BTCUSDT")) >= 2
    assert "duplicate" in [k for k, s, _ in y.events() if s == "BTCUSDT"]
    rows = y.records("book_change")
    sid = y.spec.symbol_id("BTCUSDT")
    u = y.feed.seq["orderbook.50.BTCUSDT"].last_u
    ev_no = next(s.event for s in sim.sent("bybit", "orderbook.50", "BTCUSDT") if s.ids[0] == u)
    assert rebuild(rows, sid) == sim_book(sim, "bybit", "BTCUSDT", ev_no, depth=50)
    # hyperliquid duplicate trade frames: each tid once
    got = [t["id"].decode() for t in trade_rows(h, "BTC")]
    assert len(got) == len(set(got)) and h.feed.stat("duplicates", h.spec.symbol_id("BTC")) >= 1


@pytest.mark.slow
def test_unknown_symbols_are_subscribe_errors(rig):
    async def main():
        from ticktape.exchanges.ingest import run_feed

        async with sim_server.Simulator({"bybit": ["BTCUSDT"], "hyperliquid": ["BTC"]}, rate=50, seed=3) as sim:
            y = rig("bybit", symbols=["BTCUSDT", "NOPEUSDT"], channels=["trades"], url=sim.ws_url(), options=FAST)
            h = rig("hyperliquid", symbols=["BTC", "NOPE"], channels=["trades"], url=sim.ws_url(), options=FAST)
            stop = asyncio.Event()
            runs = [asyncio.create_task(run_feed(r.feed, stop.is_set)) for r in (y, h)]
            await wait_for(lambda: all(r.feed.stat("subscribe_errors", 2) >= 1 and r.feed.stat("messages", 1) > 0
                                       for r in (y, h)), 30, "a subscribe error and the good symbol's frames")
            stop.set()
            await asyncio.gather(*runs)
            return y, h

    y, h = uvloop.run(main())
    for r in (y, h):
        errs = [e for e in r.events() if e[0] == "subscribe_error"]
        assert errs and all(e[1] == r.spec.symbols[2] for e in errs), r.events()  # charged to the bad symbol
        assert r.feed.stat("subscribe_errors", 2) >= 1
        assert len(trade_rows(r, r.spec.symbols[1])) > 0  # the good symbol still streams


@pytest.mark.slow
def test_reordered_diff_is_a_gap_then_a_correct_resync(rig):
    ex = {"binance-futures": ["ETHUSDT"]}
    script = [(1.0, faults.Fault("reorder", "binance-futures", channel="depth", symbol="ETHUSDT"))]
    sim, rigs = uvloop.run(capture(rig, script, seconds=2.0, exchanges=ex, channels={"binance-futures": ["book_change"]}))
    b = rigs["binance-futures"]
    assert [k for k, s, _ in b.events() if k in ("gap", "resync")][:2] == ["gap", "resync"]
    rows = b.records("book_change")
    sid = b.spec.symbol_id("ETHUSDT")
    assert b.feed.sync[sid].synced_once and b.feed.stat("resyncs", sid) == 1
    ev_no = next(s.event for s in sim.sent("binance-futures", "depth", "ETHUSDT") if s.ids[1] == b.feed.sync[sid].last_u)
    assert rebuild(rows, sid) == sim_book(sim, "binance-futures", "ETHUSDT", ev_no)
