"""bitmex against the simulator over real sockets: records equal what was sent, a withheld
orderBookL2 insert is found by the next message about its level (BitMEX has no sequence
numbers) and the book is right after the resync; the real 2021 recording replayed by the
simulator arrives byte for byte with its trades and books."""

from __future__ import annotations

import asyncio
import json
import time

import uvloop
from exchanges_book_helpers import rebuild
from recorded_frames import SAMPLES
from test_exchanges_bitmex_samples import SYMBOLS as REC_SYMBOLS
from test_exchanges_bitmex_samples import recorded_trades, reference_books
from test_exchanges_sim import FAST, capture, sim_book, trade_rows, wait_for

from ticktape.ipc.schemas import EVENT_KINDS, SIDE_BUY, SIDE_SELL
from ticktape.sim import faults
from ticktape.sim import server as sim_server
from ticktape.sim.replay import read_recording, route

SYMS = {"bitmex": ["XBTUSD", "ETHUSD", "SOLUSD"]}
ALL = {"bitmex": ["trades", "book_change", "book_ticker", "derivative_ticker", "liquidations"]}
REC = SAMPLES / "bitmex/cryptofeed_v2_BITMEX.ws.1.0"


def delivered(sim, raw, table, sym):
    """The frames of ``table``/``sym`` the capture kept in raw, checked against what the simulator sent on
    each connection, in order: all of it, except on a dropped connection, where the frames queued when
    the socket was cut never left (a few at most), and ``instrument``, which the simulator's pump sends
    on a timer even once the market stopped, may have one more after the capture read its last frame.
    Withheld and broken frames are left out (a frame cut before its symbol is kept in raw under ``_``)."""
    sent: dict[int, list[bytes]] = {}
    for s in sim.sent("bitmex", table, sym):
        if s.fault not in ("gap", "stall", "malformed"):
            sent.setdefault(s.conn, []).append(s.data)
    got: dict[int, list[bytes]] = {}
    for x in raw:
        if x[1] == table and x[2] == sym and x[4]:  # b"": the disconnect markers
            got.setdefault(x[3], []).append(x[4])
    mine, theirs = list(got.values()), list(sent.values())
    assert len(mine) == len(theirs), (table, sym, len(mine), len(theirs))
    for i, (g, s) in enumerate(zip(mine, theirs, strict=True)):
        late = 20 if i < len(mine) - 1 else 1 if table == "instrument" else 0
        assert g == s[: len(g)] and len(s) - len(g) <= late, (table, sym, i, len(g), len(s))
    return [f for g in mine for f in g]


def test_three_symbols_every_table_and_a_missed_insert(rig):
    F = faults.Fault
    script = [(0.3, F("gap", "bitmex", channel="orderBookL2", symbol="ETHUSD")),
              (0.6, F("duplicate", "bitmex", channel="orderBookL2", symbol="SOLUSD", count=3)),
              (0.9, F("malformed", "bitmex", channel="orderBookL2", symbol="XBTUSD")),
              (1.2, F("drop", "bitmex"))]
    sim, rigs = uvloop.run(capture(rig, script, seconds=2.8, rate=150, exchanges=SYMS, channels=ALL))
    r = rigs["bitmex"]
    withheld = [s for s in sim.sent("bitmex", "orderBookL2", "ETHUSD") if s.fault == "gap"]
    assert len(withheld) == 1 and withheld[0].ids[:2] == ("insert", True)
    ev = [(int(e["local_ts"]), EVENT_KINDS[int(e["kind"])], r.spec.symbols[int(e["symbol"])], e["detail"].decode())
          for e in r.records("events")]
    gaps = [e for e in ev if e[1] == "gap" and e[2] == "ETHUSD"]
    assert gaps and gaps[0][0] >= withheld[0].ts_ns, ev  # found after the loss, by the level's next message
    lost_id = withheld[0].ids[2]
    assert f"level id {lost_id} " in gaps[0][3], (gaps[0], lost_id)
    assert any(e[1] == "resync" and e[2] == "ETHUSD" and e[3].startswith("snapshot at partial") for e in ev), ev
    xbt = r.spec.symbol_id("XBTUSD")
    # the cut frame may end before its symbol: then every book of the connection resyncs
    assert r.feed.stat("gaps", xbt) == 0 and sum(r.feed.stat("malformed", i) for i in range(4)) == 1
    assert any(e[1] == "resync" and e[2] == "XBTUSD" and e[3].startswith("malformed book frame") for e in ev), ev
    # the drop: a disconnect, a new connection, every table resubscribed (a new partial each)
    drop = next(e for e in ev if e[1] == "disconnect")
    assert drop[3] == "connection lost" and any(e[1] == "connect" and e[0] > drop[0] for e in ev), ev
    rows = r.records("book_change")
    raw = r.raw()
    (bad,) = [s.data for s in sim.sent("bitmex") if s.fault == "malformed"]
    assert [x[1] for x in raw if x[4] == bad] == ["orderBookL2"]  # kept, once, under its table
    raw = [x for x in raw if x[4] != bad]
    for sym in SYMS["bitmex"]:
        sid = r.spec.symbol_id(sym)
        # books equal the simulator's whole book (the market stopped, every frame read)
        assert rebuild(rows, sid) == sim_book(sim, "bitmex", sym, None), sym
        # raw: every frame delivered, byte for byte, in order, under its table's name
        frames = {t: delivered(sim, raw, t, sym) for t in ("orderBookL2", "trade", "quote", "instrument", "liquidation")}
        # trades one for one
        sent = [(t["trdMatchID"], t["price"], t["size"], SIDE_BUY if t["side"] == "Buy" else SIDE_SELL)
                for f in frames["trade"] if b'"action":"insert"' in f for t in json.loads(f)["data"]]
        got = [(t["id"].decode(), t["price"], t["amount"], int(t["side"])) for t in trade_rows(r, sym)]
        assert len(got) >= 20 and got == sent, sym
        # quotes, instrument rows and liquidations: one row per item sent
        q = r.records("book_ticker")
        quotes = [x for f in frames["quote"] if b'"action":"insert"' in f for x in json.loads(f)["data"]]
        mine = q[q["symbol"] == sid]
        assert [(x["bid_price"], x["ask_price"]) for x in mine] == [(x["bidPrice"], x["askPrice"]) for x in quotes]
        d = r.records("derivative_ticker")
        assert len(d[d["symbol"] == sid]) == len(frames["instrument"]) >= 3
        liq = r.records("liquidations")
        assert len(liq[liq["symbol"] == sid]) == sum(b'"action":"insert"' in f for f in frames["liquidation"])
    # SOLUSD got 3 frames twice: a repeated insert (known id) or delete (unknown id) is a gap and a
    # resync, a repeated update changes nothing; either way its book above is the simulator's
    assert [s.fault for s in sim.sent("bitmex", "orderBookL2", "SOLUSD")].count("duplicate") == 3


def test_recording_replayed_by_the_simulator(rig):
    frames, _ = read_recording(REC)
    data = [f for _, f in frames if route(f) is not None]
    assert len(data) > 2000

    async def main():
        from ticktape.exchanges.ingest import run_feed

        async with sim_server.Simulator(["bitmex"], replay=REC) as sim:
            r = rig("bitmex", symbols=REC_SYMBOLS, channels=["trades", "book_change", "book_ticker"], url=sim.ws_url(),
                    options={**FAST, "manual_snapshots": False}, capacity=1 << 18)
            stop = asyncio.Event()
            run = asyncio.create_task(run_feed(r.feed, stop.is_set))
            await wait_for(lambda: sim.replayer.done.is_set(), 60, "the recording to be played")
            sim.flush()
            pinged = time.monotonic()
            conns = [c for c in sim.connections("bitmex") if not c.closed and c.transport is not None]
            for c in conns:
                c.transport.send_ping(b"drained?")
            await wait_for(lambda: all(c.closed or c.last_pong >= pinged for c in conns), 30, "every frame read")
            stop.set()
            await asyncio.wait_for(run, 15)
            return r

    r = uvloop.run(main())
    raw = [x for x in r.raw() if x[1] and x[4]]  # data frames (b"": the stop's markers)
    assert [x[4] for x in raw] == data  # byte for byte, in the recorded order
    assert r.feed.stat("gaps") == 0 and r.feed.stat("malformed") == 0
    rows = r.records("book_change")
    ref = reference_books(data)
    trades = r.records("trades")
    for sym in REC_SYMBOLS:
        sid = r.spec.symbol_id(sym)
        assert rebuild(rows, sid) == ref[sym], sym
        got = [(t["id"].decode(), t["price"], t["amount"]) for t in trades[trades["symbol"] == sid]]
        assert got == recorded_trades(data, sym), sym


def test_ping_only_when_idle(rig):
    """BitMEX's heartbeat rule: ``ping`` after 5 ping periods without a frame (0.5 s here), ``pong`` back."""

    async def main(rate: float):
        from ticktape.exchanges.ingest import run_feed

        async with sim_server.Simulator({"bitmex": ["XBTUSD"]}, rate=rate, seed=2) as sim:
            r = rig("bitmex", symbols=["XBTUSD"], channels=["trades"], url=sim.ws_url(),
                    options={**FAST, "ping_interval": 0.1, "stall_timeout": 3.0, "manual_snapshots": False})
            stop = asyncio.Event()
            run = asyncio.create_task(run_feed(r.feed, stop.is_set))
            venue = sim.venue("bitmex")
            await wait_for(lambda: r.feed.stat("messages") > 0, 30, "the welcome frame")
            t0 = time.monotonic()
            await wait_for(lambda: venue.pings >= 3 if rate == 0 else time.monotonic() - t0 > 1.5, 30, "pings")
            stop.set()
            await asyncio.wait_for(run, 15)
            return r, venue.pings

    idle, pings = uvloop.run(main(0.0))
    assert pings >= 3 and sum(x[4] == b"pong" for x in idle.raw()) >= 3  # answered, kept in raw
    assert not [e for e in idle.events() if e[0] in ("stall", "disconnect") and e[2] != "shutdown"]
    busy, pings = uvloop.run(main(400.0))
    assert pings == 0 and len(trade_rows(busy, "XBTUSD")) > 50
