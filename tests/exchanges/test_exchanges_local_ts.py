"""``local_ts`` is the arrival time of each frame, from the very first one: nothing
set up lazily (the REST client, decoders) may block the ingest loop once frames flow."""

from __future__ import annotations

import pytest
from feeds_run_helpers import CaptureRun, metric, ts_ns

from ticktape.sim.thread import SimulatorThread

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


@pytest.mark.slow
def test_first_frames_are_stamped_on_arrival(tmp_path):
    with SimulatorThread({"binance-futures": None}, rate=200, seed=3) as sim:
        run = CaptureRun(tmp_path, sim, {"binance-futures": {"symbols": SYMBOLS, "channels": ["trades", "book_change"]}})
        try:
            run.until(lambda m: metric(m, "ticktape_feed_messages_total", exchange="binance-futures") >= 1500,
                      what="1500 frames")
            assert run.stop() == 0, run.output()[-3000:]
        finally:
            run.kill()
        sent = {}
        for s in sim.sent("binance-futures", "trade"):
            sent.setdefault((s.symbol, s.ids[0]), s.ts_ns)
    delays = []
    for sym in SYMBOLS:
        t = run.load("binance-futures", "trades", sym)
        ids = t["id"].to_pylist()
        local = ts_ns(t["local_ts"])
        assert len(ids) >= 100, sym
        delays += [(lt - sent[(sym, int(i))]) / 1e6 for i, lt in zip(ids[:150], local[:150], strict=True)]
    delays.sort()
    p95 = delays[int(len(delays) * 0.95)]
    print(f"first frames: median {delays[len(delays) // 2]:.1f} ms, p95 {p95:.1f} ms, max {delays[-1]:.1f} ms")
    assert delays[0] >= 0, "stamped before the simulator sent it?"
    # A loop blocked at start (a lazy import: 0.2-0.3 s, 1.7 s on a busy machine) stamps a run of
    # the first frames late, so it moves p95. One late frame is the OS scheduler on a loaded
    # machine, not the loop: the max bound only catches a loop blocked for a whole second.
    assert p95 < 50 and delays[-1] < 1000, f"p95 {p95:.1f} ms, max {delays[-1]:.1f} ms after the send"
