"""A Binance diff book cannot be lost silently: a late REST snapshot behind a 20k+
diff backlog, snapshots that do not bridge, and a resync after a full ring are each
an events row with the lost range, a counter in /metrics, and a resync retried
until the book is whole again: the book rebuilt from the archive equals the
simulator's own book at the last diff archived."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest
from feeds_run_helpers import CaptureRun, Metrics, metric
from feeds_run_helpers import archived_book as archived_book_of

from ticktape.sim.faults import Fault
from ticktape.sim.thread import SimulatorThread

EX = "binance-futures"
SYM = "BTCUSDT"
CFG = {EX: {"symbols": [SYM], "channels": ["book_change"], "depth_speed": "0ms"}}  # a diff per book event


#: per venue: its config, the simulator's book channel, and the depth its book is compared at
VENUES = {
    EX: (CFG[EX], "depth", None),
    "bybit": ({"symbols": [SYM], "channels": ["book_change"], "depth": 50}, "orderbook.50", 50),
}


def feed(m: Metrics, name: str, ex: str = EX) -> float:
    return metric(m, f"ticktape_feed_{name}_total", exchange=ex, symbol=SYM)


def archived_book(run: CaptureRun, ex: str = EX) -> dict[str, dict[float, float]]:
    return archived_book_of(run, ex, SYM)


def assert_book_whole(run: CaptureRun, sim: SimulatorThread, ex: str = EX) -> None:
    _, channel, depth = VENUES[ex]
    raw = run.load(ex, "raw", SYM).to_pylist()
    last = json.loads([r["payload"] for r in raw if str(r["channel"]) == channel and r["payload"]][-1])
    u = last["data"]["u"]
    bids, asks = sim.book(ex, SYM, event=sim.event_at(ex, channel, SYM, update_id=u), depth=depth)
    want = {"bid": {float(p): float(q) for p, q in bids}, "ask": {float(p): float(q) for p, q in asks}}
    got = archived_book(run, ex)
    assert got == want, f"book at u={u}: {len(got['bid'])}/{len(got['ask'])} levels vs {len(want['bid'])}/{len(want['ask'])}"


def kinds(run: CaptureRun, ex: str = EX) -> list[dict[str, Any]]:
    return [e for e in run.events(ex, SYM) if e["kind"] in ("gap", "resync", "drop")]


@pytest.mark.slow
def test_late_snapshot_behind_a_20k_diff_backlog_is_a_gap_then_a_whole_book(tmp_path):
    # the first snapshot is answered once 25,000 more diffs were sent: > 20,000 diffs wait for it
    with SimulatorThread({EX: None}, rate=4000, trade_share=0.0, seed=21) as sim:
        sim.fault(Fault("rest_delay", EX, seconds=1.0, frames=25_000))
        run = CaptureRun(tmp_path, sim, CFG, raw=True, records=1 << 17, options={"rest_timeout": 300})
        try:
            m = run.until(lambda m: feed(m, "gaps") >= 1 and feed(m, "snapshot_retries") >= 1, timeout=120,
                          what="the overflow gap and the refetch")
            seen = feed(m, "messages")
            run.until(lambda m: feed(m, "messages") >= seen + 2000, what="diffs applied after the sync")
            assert run.stop() == 0, run.output()[-3000:]
        finally:
            run.kill()
        ev = kinds(run)
        gap = next(e for e in ev if e["kind"] == "gap")
        assert "diff buffer full (20000) awaiting the snapshot" in gap["detail"], ev
        n = int(gap["detail"].split(": ")[1].split()[0])
        assert n >= 1000, gap  # the diffs the buffer could not hold, with their U..u range
        assert "U " in gap["detail"] and "..u " in gap["detail"]
        assert any(e["kind"] == "resync" and "older than the buffered diffs" in e["detail"] for e in ev), ev
        # one warning per overflow (the late snapshot's wait, then the refetch's), not one per diff
        assert run.logs().count("dropping the oldest diffs") <= 3
        assert_book_whole(run, sim)


@pytest.mark.slow
def test_snapshots_that_do_not_bridge_are_retried_with_backoff_until_the_book_is_whole(tmp_path):
    with SimulatorThread({EX: None}, rate=300, trade_share=0.0, seed=22) as sim:
        run = CaptureRun(tmp_path, sim, CFG, raw=True)
        try:
            run.until(lambda m: feed(m, "messages") >= 300, what="the book streaming")
            sim.fault(Fault("rest_stale", EX, count=3))  # the next three snapshots are 1000 diffs old
            sim.fault(Fault("gap", EX, channel="depth"))  # a withheld diff: gap, resync
            m = run.until(lambda m: feed(m, "resyncs") >= 1, timeout=120, what="the resync completed")
            assert feed(m, "snapshot_retries") == 3 and feed(m, "gaps") == 1
            seen = feed(m, "messages")
            run.until(lambda m: feed(m, "messages") >= seen + 200, what="diffs applied after the resync")
            assert run.stop() == 0, run.output()[-3000:]
        finally:
            run.kill()
        ev = kinds(run)
        stale = [e for e in ev if e["kind"] == "resync" and "older than the buffered diffs" in e["detail"]]
        assert len(stale) == 3, ev
        assert [e["detail"].endswith(f"(attempt {i})") for i, e in zip((2, 3, 4), stale, strict=True)]
        assert any(e["kind"] == "resync" and e["detail"].startswith("synced at u=") for e in ev), ev
        assert_book_whole(run, sim)


@pytest.mark.slow
@pytest.mark.parametrize("ex", list(VENUES))
def test_resync_after_a_full_ring_completes(tmp_path, ex):
    with SimulatorThread({ex: None}, rate=1500, trade_share=0.0, seed=23) as sim:
        run = CaptureRun(tmp_path, sim, {ex: VENUES[ex][0]}, raw=True, records=4096)
        try:
            m = run.until(lambda m: feed(m, "messages", ex) >= 500, what="the book streaming")
            writer = int(metric(m, "ticktape_child_pid", role="writer"))
            os.kill(writer, signal.SIGSTOP)  # the writer stalls: the book ring fills up
            try:
                run.until(lambda m: metric(m, "ticktape_ring_dropped_records_total", exchange=ex, table="book_change") > 0
                          and feed(m, "gaps", ex) >= 1, what="book records dropped")
            finally:
                os.kill(writer, signal.SIGCONT)
            m = run.until(lambda m: feed(m, "resyncs", ex) >= 1, timeout=120, what="the resync completed")
            seen = feed(m, "messages", ex)
            run.until(lambda m: feed(m, "messages", ex) >= seen + 500, what="updates applied after the resync")
            assert run.stop() == 1, run.output()[-3000:]  # records were dropped: the exit code says so
        finally:
            run.kill()
        ev = kinds(run, ex)
        assert any(e["kind"] == "drop" for e in ev), ev
        gap = next(e for e in ev if e["kind"] == "gap")
        assert gap["detail"].startswith("book records dropped (ring full) after u "), ev
        assert any(e["kind"] == "resync" and e["detail"].startswith(("synced at u=", "snapshot at u=")) for e in ev), ev
        assert_book_whole(run, sim, ex)
