"""A Binance symbol delisted mid-run: after a dropped connection the venue accepts the
resubscribe of its streams and sends nothing (as the real one does). ``capture run`` against
the simulator (``delist`` fault) turns that silence into a ``subscribe_error`` naming the
reason from the venue's own exchangeInfo, counted once, and never subscribes the symbol
again, while the other symbol keeps flowing."""

from __future__ import annotations

import pytest
from feeds_run_helpers import CaptureRun, metric

from ticktape.sim.faults import Fault
from ticktape.sim.thread import SimulatorThread

EX = "binance-futures"
SYMS = ["BTCUSDT", "ETHUSDT"]


def streams_of(sim: SimulatorThread) -> list[str]:
    """The stream lists of the venue's open connections (named in their URLs)."""
    return sim.call(lambda s: [c.query.get("streams", "") for c in s.connections(EX)])


@pytest.mark.slow
def test_delisted_symbol_silent_after_resubscribe_is_a_subscribe_error(tmp_path):
    with SimulatorThread({EX: SYMS}, rate=60, seed=3) as sim:
        cfg = {"symbols": SYMS, "channels": ["trades", "book_change"], "silent_after": 2.0}
        run = CaptureRun(tmp_path, sim, {EX: cfg})
        try:
            def msgs(m, s):
                return metric(m, "ticktape_feed_messages_total", exchange=EX, symbol=s)

            run.until(lambda m: all(msgs(m, s) >= 20 for s in SYMS), what="both symbols streaming")
            sim.fault(Fault("delist", EX, symbol="ETHUSDT"))
            sim.fault(Fault("drop", EX))  # the reconnect subscribes ETHUSDT again: accepted, then silence
            m = run.until(lambda m: metric(m, "ticktape_exchange_subscribe_errors_total", exchange=EX) >= 1,
                          what="the silent resubscribe found to be a delisted symbol")
            btc = msgs(m, "BTCUSDT")
            run.until(lambda m: msgs(m, "BTCUSDT") >= btc + 30, what="BTCUSDT still flowing")
            reconnects = metric(m, "ticktape_exchange_reconnects_total", exchange=EX)
            sim.fault(Fault("drop", EX))
            m = run.until(lambda m: metric(m, "ticktape_exchange_reconnects_total", exchange=EX) > reconnects
                          and msgs(m, "BTCUSDT") >= btc + 60, what="reconnected, BTCUSDT flowing again")
            urls = streams_of(sim)
            assert urls and all("btcusdt@" in u and "ethusdt" not in u for u in urls), urls
            assert run.stop() == 0, run.output()[-3000:]
        finally:
            run.kill()
    assert metric(m, "ticktape_exchange_subscribe_errors_total", exchange=EX) == 1, "counted once, no loop"
    errors = [e for e in run.events(EX, "ETHUSDT") if e["kind"] == "subscribe_error"]
    assert {str(e["channel"]) for e in errors} == {"trade", "depth"}, errors
    assert all(e["detail"].startswith("ETHUSDT not in exchangeInfo") for e in errors), errors
    assert not [e for e in run.events(EX, "BTCUSDT") if e["kind"] in ("subscribe_error", "stream_silent")
                and e["symbol"] == "BTCUSDT"]
    assert len(run.load(EX, "trades", "BTCUSDT")) > 0
    lines = [ln for ln in run.logs().splitlines() if "no longer subscribed" in ln]
    assert len(lines) == 1 and "ETHUSDT" in lines[0] and "not in exchangeInfo" in lines[0], lines


FAMILY = {"binance-futures": SYMS, "binance": SYMS, "binance-delivery": ["BTCUSD_PERP", "ETHUSD_PERP"]}


@pytest.mark.parametrize("ex", list(FAMILY))
def test_silent_streams_are_judged_by_the_venues_exchange_info(rig, ex):
    """The connector's check itself (fast): of two silent streams, the listed symbol's is only
    ``stream_silent``; the delisted one's is a ``subscribe_error``, counted once, and leaves the
    connection URL. A symbol listed but not trading is refused with its status."""
    import asyncio
    import time

    from ticktape.exchanges import silence

    btc, eth = FAMILY[ex]
    with SimulatorThread({ex: FAMILY[ex]}) as sim:
        r = rig(ex, symbols=FAMILY[ex], channels=["trades"], url=sim.ws_url(ex), silent_after=5.0)
        sim.fault(Fault("delist", ex, symbol=eth))
        feed = r.feed
        feed.links = [r.listener.link]
        feed.on_open(r.listener)
        assert feed.silence.due(time.monotonic(), feed.ch_msgs) == [], "not silent for 5 s yet"
        due = feed.silence.due(time.monotonic() + 5.0, feed.ch_msgs)
        assert sorted(due) == [(1, feed.ch_trade), (2, feed.ch_trade)]
        asyncio.run(feed._check_silent(due))
        assert feed.silence.due(time.monotonic() + 60.0, feed.ch_msgs) == [], "each reported once"
    ev = [e for e in r.events() if e[0] in ("stream_silent", "subscribe_error")]
    assert [(k, s) for k, s, _ in ev] == [("stream_silent", btc), ("subscribe_error", eth)], ev
    assert f"{btc} listed" in ev[0][2] and ev[1][2].startswith(f"{eth} not in exchangeInfo"), ev
    assert feed.stat("subscribe_errors") == 1
    assert (feed.stat("silent_streams", 1), feed.stat("silent_streams", 2)) == (1, 0)
    url = r.listener.link.plan.url
    assert f"{btc.lower()}@trade" in url and eth.lower() not in url, url
    assert all(s != 2 for _, s in r.listener.link.plan.streams)
    assert silence.verdict("ETHUSDT", {"ETHUSDT": "SETTLING"}) == "status SETTLING in exchangeInfo"
    assert silence.verdict("ETHUSDT", {"ETHUSDT": "TRADING"}) is None
