"""Redundant capture: two ``capture run`` processes record the same simulator feeds; one
is cut by a scripted disconnect and a kill -9 of its ingest process, the other by a
disconnect while the first is still down. ``capture merge`` builds one archive from both:
no trade twice, every trade either had, the book equal to the simulator's through both
holes, and one disconnect marker exactly where both were down."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from feeds_run_helpers import CaptureRun, Metrics, book_groups, metric

from ticktape.sim.faults import Fault
from ticktape.sim.thread import SimulatorThread

EX = "binance-futures"
SYM = "BTCUSDT"
CFG = {EX: {"symbols": [SYM], "channels": ["trades", "book_change"], "depth_speed": "0ms"}}


def feed(m: Metrics, name: str) -> float:
    return metric(m, f"ticktape_feed_{name}_total", exchange=EX, symbol=SYM)


def streaming(run: CaptureRun, more: int = 80, what: str = "") -> Metrics:
    """Wait until ``run`` has ``more`` frames beyond now with its book synced (resyncs settle)."""
    seen = feed(run.until(lambda _m: True, what="/metrics"), "messages")
    return run.until(lambda m: feed(m, "messages") >= seen + more, timeout=120, what=what)


def drop_conns(sim: SimulatorThread, conns: set[int]) -> None:
    for c in sorted(conns & set(sim.connections(EX))):
        sim.fault(Fault("drop", EX, conn=c))


def new_conns(sim: SimulatorThread, before: set[int], run: CaptureRun) -> set[int]:
    """The connections ``run`` opened since ``before`` (waits for them)."""
    run.until(lambda _m: bool(set(sim.connections(EX)) - before), what="a new connection")
    return set(sim.connections(EX)) - before


def down_windows(raw: pa.Table) -> list[tuple[int, int]]:
    """(last frame before, first frame after) around each empty raw row (a source's disconnect marker)."""
    rows = sorted(raw.select(["local_ts_ns", "payload"]).to_pylist(), key=lambda r: r["local_ts_ns"])
    out = []
    for i, r in enumerate(rows):
        if r["payload"] == b"":
            before = [x["local_ts_ns"] for x in rows[:i] if x["payload"]]
            after = [x["local_ts_ns"] for x in rows[i + 1:] if x["payload"]]
            if before and after:
                out.append((before[-1], after[0]))
    return sorted(set(out))  # one marker row per stream of the connection


@pytest.mark.slow
def test_merge_two_captures_fills_each_hole_from_the_other(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with SimulatorThread({EX: None}, rate=150, seed=41) as sim:
        a = CaptureRun(tmp_path / "a", sim, CFG, raw=True)
        b: CaptureRun | None = None
        try:
            a_conns = new_conns(sim, set(), a)
            b = CaptureRun(tmp_path / "b", sim, CFG, raw=True)
            b_conns = new_conns(sim, a_conns, b)
            streaming(a, what="A streaming")
            streaming(b, what="B streaming")
            # hole 1: A's connection drops; B is live throughout
            before = set(sim.connections(EX))
            drop_conns(sim, a_conns)
            a_conns = new_conns(sim, before, a)
            a.until(lambda m: feed(m, "resyncs") >= 1, timeout=120, what="A resynced after its disconnect")
            streaming(a, what="A streaming after its disconnect")
            # hole 2: kill -9 of A's ingest process, and while A is down B's connection drops
            m = a.metrics()
            restarts = metric(m, "ticktape_child_restarts_total", role="ingest")
            os.kill(int(metric(m, "ticktape_child_pid", role="ingest")), 9)
            before = set(sim.connections(EX))
            drop_conns(sim, b_conns)
            new_conns(sim, before, b)
            b.until(lambda m: feed(m, "resyncs") >= 1, timeout=120, what="B resynced after its disconnect")
            a.until(lambda m: metric(m, "ticktape_child_restarts_total", role="ingest") > restarts, timeout=120,
                    what="A's ingest restarted")
            streaming(a, what="A streaming after the restart")
            streaming(b, what="B streaming after its disconnect")
            for run in (a, b):  # both stop at once
                run.proc.send_signal(signal.SIGTERM)
            for run in (a, b):
                assert run.proc.wait(120) == 0, run.output()[-3000:]
        finally:
            a.kill()
            if b is not None:
                b.kill()
        sent = sim.sent(EX, "depth", SYM)
        trades_sent = sim.sent(EX, "trade", SYM)

        if os.environ.get("TICKTAPE_MERGE_KEEP"):
            import shutil
            shutil.copytree(tmp_path, os.environ["TICKTAPE_MERGE_KEEP"], dirs_exist_ok=True)
            Path(os.environ["TICKTAPE_MERGE_KEEP"], "sent.json").write_text(json.dumps(
                {"depth": [[s.ts_ns, list(s.ids), s.event, s.fault] for s in sent],
                 "trade": [[s.ts_ns, list(s.ids), s.fault] for s in trades_sent]}))

        out = tmp_path / "merged"
        cmd = [sys.executable, "-m", "ticktape.engine.cli", "merge", str(a.root), str(b.root), "--out", str(out),
               "--format", "json"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        report = json.loads(res.stdout)
        a_trades = a.load(EX, "trades", SYM).column("id").to_pylist()
        b_trades = b.load(EX, "trades", SYM).column("id").to_pylist()
        merged = CaptureRun.__new__(CaptureRun)
        merged.root, merged.started = out, a.started
        m_trades = merged.load(EX, "trades", SYM).column("id").to_pylist()
        assert len(m_trades) == len(set(m_trades)), "a trade id twice"
        assert set(m_trades) == set(a_trades) | set(b_trades)
        assert len(set(m_trades)) > len(set(a_trades)) and len(set(m_trades)) > len(set(b_trades))

        # one disconnect marker, exactly where both were down
        wa, wb = down_windows(a.load(EX, "raw", SYM)), down_windows(b.load(EX, "raw", SYM))
        both = [(max(x[0], y[0]), min(x[1], y[1])) for x in wa for y in wb if max(x[0], y[0]) < min(x[1], y[1])]
        assert len(both) == 1, (wa, wb)
        marks = [e for e in merged.events(EX, SYM) if e["kind"] == "disconnect" and e["detail"] != "shutdown"]
        times = sorted({e["local_ts_ns"] for e in marks})  # one row per stream of the connection
        assert len(times) == 1 and {e["channel"] for e in marks} >= {"depth", "trade"}, marks
        assert both[0][0] < times[0] < both[0][1]
        m_raw = merged.load(EX, "raw", SYM)
        assert [r for r in down_windows(m_raw)] and len(down_windows(m_raw)) <= 2  # the hole (+ its trade stream)

        # the book equals the simulator's after the updates, through both holes
        rows = merged.load(EX, "book_change", SYM).to_pylist()
        frames = {}  # (E in µs, levels) of each diff frame the simulator sent -> its market event
        for s in sent:
            if not s.fault:
                d = json.loads(s.data)["data"]
                lv = tuple(("bid", float(p), float(q)) for p, q in d["b"]) + tuple(("ask", float(p), float(q)) for p, q in d["a"])
                frames[(d["E"] * 1000, lv)] = s.event
        groups = book_groups(rows)
        points = []  # (group end row, market event) where the group is exactly one simulator frame
        first = 0
        for end_row, book in groups:
            g = rows[first:end_row + 1]
            first = end_row + 1
            if g[0]["is_snapshot"]:
                continue
            ets = int(pa.scalar(g[0]["exchange_ts"]).cast(pa.int64()).as_py())
            ev = frames.get((ets, tuple((str(r["side"]), r["price"], r["amount"]) for r in g)))
            if ev is not None:
                points.append((end_row, ev, book))
        assert len(points) > 0.8 * len(groups), (len(points), len(groups))
        edges = {w for win in (*wa, *wb) for w in win}
        pick = points[:: max(1, len(points) // 60)] + points[-1:]
        for edge in edges:  # the updates right around each source's holes
            near = min(points, key=lambda p: abs(rows[p[0]]["local_ts_ns"] - edge))
            pick.append(near)
        for _row, ev, book in pick:
            bids, asks = sim.book(EX, SYM, event=ev)
            assert book == {"bid": {float(p): float(q) for p, q in bids}, "ask": {float(p): float(q) for p, q in asks}}
        # A's disconnect was filled from B; A's kill and B's disconnect met in the one hole left
        tot = report["totals"]
        assert (tot["windows"], tot["windows_filled"], tot["windows_left"]) == (3, 1, 1), tot
        assert report["tables"]["trades"]["duplicates"] == len(a_trades) + len(b_trades) - len(m_trades)
        assert [h["local_ts_ns"] for h in report["holes"]] == times
