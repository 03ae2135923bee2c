"""An idle capture (connected, the feed silent) sleeps: each process wakes a few times a
second, not every 10-100 ms (issue 11: idle CPU <= 2 ms/s per process). Wake-ups are counted
(voluntary context switches of every thread), not CPU time, so a busy machine does not flake it.
The writer's long idle sleep must not cost a burst anything: its first frame wakes the writer."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest

from ticktape.bench.blaster import Blaster, frame_bytes
from ticktape.bench.feed import Capture, _durable, idle, scenarios


def test_an_idle_capture_wakes_a_few_times_a_second() -> None:
    fig = idle(2.0)
    wakes = fig["idle_wakeups_per_s_by_process"]
    # session 4: writer ~18/s (a 65 ms fill check, a 0.5 s parent poll), ingest 12/s (a 0.1 s
    # watchdog, the parent poll), supervisor 8/s (a 0.2 s log-sink timeout, ...); session 5:
    # ingest 2.5/s (a 0.4 s quiet watchdog), supervisor 3/s (the metrics server's 0.5 s poll)
    # the writer slept on its peak-rate bound (6/s) until the quiet feed armed its wake-up
    assert wakes["writer"] <= 3, fig
    assert wakes["ingest"] <= 2, fig
    assert wakes["supervisor"] <= 2, fig


def _armed(cap: Capture) -> float:
    text = urllib.request.urlopen(cap.metrics.url, timeout=5).read().decode()
    m = re.search(r'^ticktape_feed_wake_armed\{exchange="binance-futures"\} (\S+)$', text, re.M)
    return float(m[1]) if m else -1.0


@pytest.mark.slow
def test_a_burst_after_quiet_wakes_the_writer_at_once_nothing_dropped(tmp_path: Path) -> None:
    """A quiet feed arms (the writer then sleeps until its flush tick, 0.5 s); the burst's first
    frame must wake the writer at once. Rings of 128 K trades, a burst of 400 K aggTrade frames
    as fast as TCP allows: a writer that slept on would let the ring overflow (~0.3 s of room
    at this machine's ingest rate); woken, it drains in time and every trade is durable."""
    sc = scenarios()["aggtrade_raw"]
    n = 400_000
    frames = sc.build(n + 50)
    with Blaster() as bl:
        cap = Capture(sc, bl.url, tmp_path, ring_records=1 << 17)
        try:
            cap.metrics.wait(lambda m: len(m["pids"]) >= 2 and all(m["pids"].values()), 60, "capture start")
            conn = bl.wait_subscribed()
            bl.blast(conn, frame_bytes(frames[:50]))
            cap.metrics.wait(lambda m: m["messages"] >= 50 and _durable(m), 60, "priming frames durable")
            end = time.monotonic() + 60
            while _armed(cap) != 1.0:  # quiet for ~1.5 s: the feed arms
                assert time.monotonic() < end, "the quiet feed never armed the writer's wake-up"
                time.sleep(0.1)
            bl.blast(conn, frame_bytes(frames[50:]))
            m = cap.metrics.wait(lambda m: m["messages"] >= n + 50 and _durable(m), 300, "the burst durable")
            assert m["dropped"] == 0, m
            assert _armed(cap) in (0.0, 1.0)
        finally:
            cap.stop()
    trades = [v for k, v in m["read"].items() if 'table="trades"' in k]
    assert trades == [n + 50], m["read"]  # every trade sent is durable
