"""What a user pays per frame: a full ``capture run`` fed by a local blaster, CPU summed over all capture processes.

For each scenario a ``capture run`` subprocess (supervisor, one ingest, one
writer, multiprocessing's resource tracker) connects to ``bench.blaster``,
which first sends a few priming frames (and, for Binance's diff book, serves
the REST snapshot the connector bridges from) and, once they are durable,
writes the pre-encoded frames as fast as TCP allows. The figure is the CPU
time (every thread's ``/proc/<pid>/task/<tid>/schedstat``) of every process of the capture tree from just
before the blast until every frame is counted by the feed and every ring is
committed by the writer (the rows are durable in fsynced journals), divided
by the frames blasted. Hour files are finalized after that, at shutdown, and
not counted. ``idle_cpu_ms_per_s``: the same tree connected to a feed that
sent a few frames and then went silent, for ``--idle-windows`` consecutive windows of ``--idle-seconds``
(the median window); ``idle_cpu_ms_per_s_by_process`` splits it,
and ``idle_wakeups_per_s_by_process`` counts the times each process's threads went to sleep and
woke (voluntary context switches: timers and polls, the idle cost that does not depend on the
machine's speed).

The REST snapshot is served at the blaster's stream position (``lastUpdateId`` = the ``u``
of the last diff written), so a resync re-bridges as on the venue. A run that dropped
records at a full ring or saw a gap measured resync work, not the steady path: its
``ring_dropped``/``gaps`` stay in the detail, the scenario's ``runs_with_drops`` counts
it and a warning line goes to stderr.

Progress is read from ``/metrics`` every ``POLL`` seconds during the blast
(that rendering is counted too: a few µs per poll, not per frame).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ticktape.bench.blaster import Blaster, frame_bytes, frame_ends

POLL = 0.1
T0 = 1_767_225_600_000  # ms, 2026-01-01T00:00Z
SCENARIOS = ("aggtrade_raw", "aggtrade_noraw", "diff42_raw", "diff42_noraw", "diff17_raw", "diff17_noraw",
             "bybit50_raw", "hl_l2book_raw")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma separated subset")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every scenario's frame count")
    parser.add_argument("--runs", type=int, default=1, help="runs per scenario (median reported)")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle window (0 skips the idle figure)")
    parser.add_argument("--idle-windows", type=int, default=3,
                        help="consecutive idle windows (the median window per process is reported)")
    parser.add_argument("--ring-records", type=int, default=0,
                        help="[ring] records of the capture (0: each scenario's own, sized for its blast rate)")
    parser.add_argument("--compare", metavar="CHECKOUT", default=None,
                        help="also run every scenario with the capture from another checkout (its directory on "
                             "PYTHONPATH), interleaved run by run: on a busy machine the ratios are what count")


# --- frames -----------------------------------------------------------------------
def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _lv(n: int, base: float, step: float, i: int) -> list[list[str]]:
    return [[f"{base + step * k:.1f}", f"{0.001 * ((i + k) % 997 + 1):.3f}"] for k in range(n)]


def agg_frames(n: int) -> list[bytes]:
    return [_dumps({"stream": "btcusdt@aggTrade", "data": {
        "e": "aggTrade", "E": T0 + i, "a": 10_000_000 + i, "s": "BTCUSDT", "p": f"{60000 + (i % 500) * 0.1:.1f}",
        "q": f"{0.001 * (i % 900 + 1):.3f}", "f": 5 * i, "l": 5 * i + 2, "T": T0 + i, "m": bool(i & 1)}})
        for i in range(n)]


START_U = 8_000_000
#: ``[ring] records`` for the Binance diff scenarios, as a user would size it for this rate: the
#: blast pushes 42-level diffs at ~100-130 k frames/s (4-5.5 M book rows/s, above the writer's
#: assumed 4 M/s peak); the writer starts a cycle once a ring is half full and commits it only
#: when the cycle is durable, so a ring must hold that half plus one cycle of a cold writer. The
#: default 1 M-record ring (0.2 s of this blast) filled in every 42-level run before the first
#: big cycle committed (~0.6 s from the blast's start on the shared 2 cores, the blaster and the
#: ingest busy; it dropped 1 M mod 42 = 38 rows: nothing freed since the blast began)
BOOK_RING = 1 << 22


def diff_frames(n: int, bids: int, asks: int) -> list[bytes]:
    """A continuous U/u/pu chain bridging from a snapshot with lastUpdateId = START_U."""
    out = []
    for i in range(n):
        u = START_U + 1 + 3 * i
        out.append(_dumps({"stream": "btcusdt@depth@100ms", "data": {
            "e": "depthUpdate", "E": T0 + i, "T": T0 + i, "s": "BTCUSDT", "U": u - 2, "u": u, "pu": u - 3,
            "b": _lv(bids, 60000.0 - (i % 7) * 0.1, -0.1, i), "a": _lv(asks, 60000.1 + (i % 5) * 0.1, 0.1, i)}}))
    return out


def diff_ids(n: int) -> list[int]:
    """The ``u`` of each of ``diff_frames(n, ...)``: the blaster's stream position."""
    return [START_U + 1 + 3 * i for i in range(n)]


def binance_snapshot() -> Callable[[int], bytes]:
    """REST depth bodies at a stream position: ``lastUpdateId`` is the ``u`` of the last diff
    sent, so the diffs from there on bridge (futures: the one with ``U <= id <= u``; spot: the
    next), and a resync mid-blast re-bridges as on the venue."""
    tail = _dumps({"E": T0, "T": T0, "bids": _lv(1000, 60000.0, -0.1, 0), "asks": _lv(1000, 60000.1, 0.1, 0)})
    return lambda last_id: b'{"lastUpdateId":%d,%s' % (last_id, tail[1:])


def bybit_frames(n: int) -> list[bytes]:
    snap = _dumps({"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": T0, "data": {
        "s": "BTCUSDT", "b": _lv(50, 60000.0, -0.1, 0), "a": _lv(50, 60000.1, 0.1, 0), "u": 1, "seq": 1}, "cts": T0})
    return [snap] + [_dumps({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": T0 + i, "data": {
        "s": "BTCUSDT", "b": _lv(5, 60000.0 - (i % 9) * 0.1, -0.1, i), "a": _lv(5, 60000.1 + (i % 9) * 0.1, 0.1, i),
        "u": 2 + i, "seq": 10 * i}, "cts": T0 + i}) for i in range(n - 1)]


def hl_frames(n: int) -> list[bytes]:
    def lv(base: float, step: float, i: int) -> list[dict[str, Any]]:
        return [{"px": f"{base + step * k:.1f}", "sz": f"{0.01 * ((i + k) % 97 + 1):.2f}", "n": k % 5 + 1}
                for k in range(20)]

    return [_dumps({"channel": "l2Book", "data": {"coin": "BTC", "time": T0 + i,
                                                   "levels": [lv(60000, -1, i), lv(60001, 1, i)]}})
            for i in range(n)]


@dataclass
class Scenario:
    exchange: str
    symbol: str
    channels: list[str]
    raw: bool
    frames: int
    build: Callable[[int], list[bytes]]
    depth: int = 20
    snapshot: Callable[[], Callable[[int], bytes]] | None = None
    update_ids: Callable[[int], list[int]] | None = None
    ring_records: int = 0  # [ring] records; 0: the default


def scenarios() -> dict[str, Scenario]:
    bf, hl = "binance-futures", "hyperliquid"
    return {
        "aggtrade_raw": Scenario(bf, "BTCUSDT", ["trades"], True, 300_000, agg_frames),
        "aggtrade_noraw": Scenario(bf, "BTCUSDT", ["trades"], False, 300_000, agg_frames),
        "diff42_raw": Scenario(bf, "BTCUSDT", ["book_change"], True, 60_000, lambda n: diff_frames(n, 21, 21),
                               snapshot=binance_snapshot, update_ids=diff_ids, ring_records=BOOK_RING),
        "diff42_noraw": Scenario(bf, "BTCUSDT", ["book_change"], False, 60_000, lambda n: diff_frames(n, 21, 21),
                                 snapshot=binance_snapshot, update_ids=diff_ids, ring_records=BOOK_RING),
        "diff17_raw": Scenario(bf, "BTCUSDT", ["book_change"], True, 100_000, lambda n: diff_frames(n, 9, 8),
                               snapshot=binance_snapshot, update_ids=diff_ids, ring_records=BOOK_RING),
        "diff17_noraw": Scenario(bf, "BTCUSDT", ["book_change"], False, 100_000, lambda n: diff_frames(n, 9, 8),
                                 snapshot=binance_snapshot, update_ids=diff_ids, ring_records=BOOK_RING),
        "bybit50_raw": Scenario("bybit", "BTCUSDT", ["book_change"], True, 150_000, bybit_frames, depth=50),
        "hl_l2book_raw": Scenario(hl, "BTC", ["book_snapshot"], True, 60_000, hl_frames),
    }


# --- the capture tree -------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (from /proc)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                parent[int(d)] = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return out


def _per_thread(pid: int, read: Callable[[Path], int]) -> int:
    """``read`` of each thread's ``/proc/PID/task/TID`` directory, summed (0 for a process gone; a
    thread gone meanwhile counts 0)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    total = 0
    for t in tasks:
        try:
            total += read(Path(f"/proc/{pid}/task/{t}"))
        except (OSError, IndexError, ValueError):
            continue
    return total


def _cpu(pid: int) -> float:
    """CPU seconds of a process, nanosecond-exact: the sum of its threads' ``schedstat``
    (``stat``'s utime+stime count 10 ms ticks, too coarse for idle figures)."""
    return _per_thread(pid, lambda d: int((d / "schedstat").read_text().split()[0])) / 1e9


def _wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid`` (each is one sleep and wake-up)."""
    def read(d: Path) -> int:
        m = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", (d / "status").read_text(), re.M)
        return int(m[1]) if m else 0

    return _per_thread(pid, read)


def _name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return "resource_tracker" if b"resource_tracker" in cmd else ("child" if b"multiprocessing" in cmd else "supervisor")


class Metrics:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def read(self) -> dict[str, Any]:
        text = urllib.request.urlopen(self.url, timeout=5).read().decode()

        def fam(name: str) -> list[tuple[str, float]]:
            return [(m[1], float(m[2])) for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M)]

        return {
            "messages": sum(v for _, v in fam("ticktape_feed_messages_total")),
            "write": {k: v for k, v in fam("ticktape_ring_written_records_total")},
            "read": {k: v for k, v in fam("ticktape_ring_committed_records_total")},
            "dropped": sum(v for _, v in fam("ticktape_ring_dropped_records_total")),
            "dropped_by_ring": {k: v for k, v in fam("ticktape_ring_dropped_records_total") if v},
            "gaps": sum(v for _, v in fam("ticktape_feed_gaps_total")),
            "pids": {m[1]: int(float(m[2])) for m in re.finditer(
                r'^ticktape_child_pid\{[^}]*name="([^"]+)"[^}]*\} (\S+)$', text, re.M)},
        }

    def wait(self, cond: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        end = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < end:
            try:
                last = self.read()
                if cond(last):
                    return last
            except OSError:
                pass
            time.sleep(POLL)
        raise TimeoutError(f"{what} (last metrics: {json.dumps({k: v for k, v in last.items() if k != 'pids'})})")


def _durable(m: dict[str, Any]) -> bool:
    return bool(m["write"]) and all(m["read"].get(k) == v for k, v in m["write"].items())


class Capture:
    """``capture run`` on a one-exchange, one-symbol config pointed at the blaster."""

    def __init__(self, sc: Scenario, url: str, workdir: Path, pythonpath: str | None = None,
                 ring_records: int = 0) -> None:
        self.metrics_port = _free_port()
        cfg = workdir / "capture.toml"
        cfg.write_text(
            f'[archive]\nroot = "{workdir / "archive"}"\nraw = {str(sc.raw).lower()}\nfinalize_grace = 1.0\n'
            + f'[log]\ndir = "{workdir / "logs"}"\nlevel = "WARNING"\n[metrics]\nport = {self.metrics_port}\n'
            f'[exchanges.{sc.exchange}]\nsymbols = ["{sc.symbol}"]\nchannels = {json.dumps(sc.channels)}\n'
            f'depth = {sc.depth}\nurl = "{url}"\ncheck_symbols = false\n'  # the blaster lists no instruments
            + ('trade_stream = "aggTrade"\n' if "trades" in sc.channels else "")
            + (f"[ring]\nrecords = {ring_records or sc.ring_records}\n" if ring_records or sc.ring_records else "")
        )
        env = dict(os.environ)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.proc = subprocess.Popen([sys.executable, "-m", "ticktape.engine.cli", "run", str(cfg)], cwd=workdir,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        self.metrics = Metrics(self.metrics_port)

    def pids(self) -> list[int]:
        return _tree(self.proc.pid)

    def cpu(self, pids: list[int]) -> dict[int, float]:
        return {p: _cpu(p) for p in pids}

    def stop(self) -> int:
        """SIGTERM, wait; the exit code (1 = records were dropped at a full ring: reported, not fatal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        if self.proc.returncode not in (0, 1):
            raise RuntimeError(f"capture exited {self.proc.returncode}: {err.decode()[-800:]}")
        return int(self.proc.returncode)


def _by_role(cap: Capture, pids: list[int], c0: dict[int, float], c1: dict[int, float],
             names: dict[int, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in pids:
        role = names.get(p) or _name(p)
        out[role] = out.get(role, 0.0) + c1[p] - c0[p]
    return out


def run_scenario(name: str, sc: Scenario, scale: float, pythonpath: str | None = None,
                 ring_records: int = 0) -> dict[str, Any]:
    n_total = max(1000, int(sc.frames * scale))
    prime = 50
    frames = sc.build(n_total + prime)
    pre, body = frame_bytes(frames[:prime]), frame_bytes(frames[prime:])
    ids = sc.update_ids(len(frames)) if sc.update_ids else None
    pre_ids = (frame_ends(frames[:prime]), ids[:prime]) if ids else None
    body_ids = (frame_ends(frames[prime:]), ids[prime:]) if ids else None
    n = len(frames) - prime
    payload_bytes = sum(map(len, frames[prime:]))
    del frames
    snapshot = sc.snapshot() if sc.snapshot else b""
    with tempfile.TemporaryDirectory(prefix="tt-bench-feed-") as tmp, Blaster(snapshot, START_U) as bl:
        cap = Capture(sc, bl.url, Path(tmp), pythonpath, ring_records)
        try:
            m = cap.metrics.wait(lambda m: len(m["pids"]) >= 2 and all(m["pids"].values()), 60, "capture start")
            names = {pid: n.split("-")[0] for n, pid in m["pids"].items()}
            names[cap.proc.pid] = "supervisor"
            conn = bl.wait_subscribed()
            bl.blast(conn, pre, ids=pre_ids)
            m = cap.metrics.wait(lambda m: m["messages"] >= prime and _durable(m) and sum(m["write"].values()) > 0,
                                 60, "priming frames durable")
            if sc.snapshot is not None and not bl.snapshot_requests:
                raise RuntimeError("the connector never asked for the REST snapshot")
            m0 = m["messages"]
            pids = cap.pids()
            c0, t0 = cap.cpu(pids), time.monotonic()
            bl.blast(conn, body, ids=body_ids)
            t_sent = time.monotonic()
            m = cap.metrics.wait(lambda m: m["messages"] >= m0 + n and _durable(m), 600, "blasted frames durable")
            c1, t1 = cap.cpu(pids), time.monotonic()
        finally:
            rc = cap.stop()
    roles = _by_role(cap, pids, c0, c1, names)
    total = sum(roles.values())
    return {
        "cpu_us_per_frame": total / n * 1e6,
        "frames": n,
        "frame_bytes": payload_bytes // n,
        "by_process_us_per_frame": {k: round(v / n * 1e6, 3) for k, v in sorted(roles.items())},
        "wall_s": round(t1 - t0, 3),
        "send_s": round(t_sent - t0, 3),
        "frames_per_s_wall": round(n / (t1 - t0)),
        "records_durable": int(sum(m["read"].values())),
        "ring_dropped": int(m["dropped"]),
        "ring_dropped_by_ring": {k: int(v) for k, v in m["dropped_by_ring"].items()},
        "gaps": int(m["gaps"]),
        "snapshot_requests": bl.snapshot_requests,
        "exit_code": rc,
    }


def idle(seconds: float, pythonpath: str | None = None, windows: int = 1) -> dict[str, Any]:
    """``windows`` consecutive windows of ``seconds`` on one idle capture: the figures are each
    process's median window (a quiet VM's cost per wake-up swings from window to window; the
    wake-up counts do not), ``idle_windows`` has every window."""
    sc = scenarios()["aggtrade_raw"]
    cpu_w: list[dict[str, float]] = []
    wake_w: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="tt-bench-feed-idle-") as tmp, Blaster() as bl:
        cap = Capture(sc, bl.url, Path(tmp), pythonpath)
        try:
            m = cap.metrics.wait(lambda m: len(m["pids"]) >= 2 and all(m["pids"].values()), 60, "capture start")
            names = {pid: n.split("-")[0] for n, pid in m["pids"].items()}
            names[cap.proc.pid] = "supervisor"
            conn = bl.wait_subscribed()
            bl.blast(conn, frame_bytes(sc.build(50)))  # a live feed that then goes quiet
            cap.metrics.wait(lambda m: m["messages"] >= 50 and _durable(m), 60, "priming frames durable")
            time.sleep(1.0)  # start-up work done
            pids = cap.pids()
            w0, c0, t0 = {p: float(_wakeups(p)) for p in pids}, cap.cpu(pids), time.monotonic()
            for _ in range(max(1, windows)):
                time.sleep(seconds)  # a fixed window: the figure is a rate, no metrics polled meanwhile
                c1, t1, w1 = cap.cpu(pids), time.monotonic(), {p: float(_wakeups(p)) for p in pids}
                dt = t1 - t0
                cpu_w.append({k: v / dt * 1e3 for k, v in _by_role(cap, pids, c0, c1, names).items()})
                wake_w.append({k: v / dt for k, v in _by_role(cap, pids, w0, w1, names).items()})
                w0, c0, t0 = w1, c1, t1
        finally:
            cap.stop()

    def med(ws: list[dict[str, float]], nd: int) -> dict[str, float]:
        return {k: round(statistics.median(w[k] for w in ws), nd) for k in sorted(ws[0])}

    return {"idle_cpu_ms_per_s": statistics.median(sum(w.values()) for w in cpu_w),
            "idle_cpu_ms_per_s_by_process": med(cpu_w, 3),
            "idle_wakeups_per_s_by_process": med(wake_w, 1),
            "idle_windows": [{"cpu_ms_per_s": {k: round(v, 3) for k, v in sorted(c.items())},
                              "wakeups_per_s": {k: round(v, 1) for k, v in sorted(w.items())}}
                             for c, w in zip(cpu_w, wake_w, strict=True)]}


def _flag_drops(name: str, runs: list[dict[str, Any]], side: str, counts: dict[str, int]) -> None:
    """A run that dropped records at a full ring (or saw a gap) measured a resync, not the
    steady path: counted under ``runs_with_drops`` and said on stderr, never averaged silently."""
    bad = [r for r in runs if r["ring_dropped"] or r["gaps"]]
    counts[side.replace(" ", "_") + name] = len(bad)
    if bad:
        print(f"warning: {side}{name}: {len(bad)} of {len(runs)} runs dropped records at a full ring or saw a gap "
              f"(ring_dropped {[r['ring_dropped'] for r in runs]}, gaps {[r['gaps'] for r in runs]}): "
              "those runs include resync work", file=sys.stderr)


def run(args: argparse.Namespace) -> dict[str, Any]:
    table = scenarios()
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in wanted if s not in table]
    if bad:
        print(f"error: --scenarios: unknown {', '.join(bad)} (one of {', '.join(table)})", file=sys.stderr)
        raise SystemExit(2)
    per: dict[str, float] = {}
    other: dict[str, float] = {}
    detail: dict[str, Any] = {}
    with_drops: dict[str, int] = {}
    for name in wanted:
        runs, alt = [], []
        for _ in range(max(1, args.runs)):
            runs.append(run_scenario(name, table[name], args.scale, None, args.ring_records))
            if args.compare:
                alt.append(run_scenario(name, table[name], args.scale, args.compare, args.ring_records))
        per[name] = round(statistics.median(r["cpu_us_per_frame"] for r in runs), 3)
        ordered = sorted(runs, key=lambda r: r["cpu_us_per_frame"])
        detail[name] = dict(ordered[len(ordered) // 2])  # the median run
        detail[name]["all_runs_us"] = [round(r["cpu_us_per_frame"], 3) for r in runs]
        detail[name]["ring_dropped_per_run"] = [r["ring_dropped"] for r in runs]
        detail[name]["gaps_per_run"] = [r["gaps"] for r in runs]
        _flag_drops(name, runs, "", with_drops)
        if alt:
            other[name] = round(statistics.median(r["cpu_us_per_frame"] for r in alt), 3)
            detail[name]["compare_all_runs_us"] = [round(r["cpu_us_per_frame"], 3) for r in alt]
            detail[name]["compare_by_process_us_per_frame"] = alt[len(alt) // 2]["by_process_us_per_frame"]
            detail[name]["compare_ring_dropped_per_run"] = [r["ring_dropped"] for r in alt]
            _flag_drops(name, alt, "compare ", with_drops)
    out: dict[str, Any] = {"cpu_us_per_frame": per, "runs_with_drops": with_drops}
    if args.compare:
        out["compare_checkout"] = args.compare
        out["compare_cpu_us_per_frame"] = other
        out["compare_ratio"] = {k: round(other[k] / per[k], 2) for k in per if per[k]}
    if args.idle_seconds > 0:
        out.update(idle(args.idle_seconds, windows=args.idle_windows))
        if args.compare:
            alt_idle = idle(args.idle_seconds, args.compare, args.idle_windows)
            out["compare_idle_cpu_ms_per_s"] = alt_idle["idle_cpu_ms_per_s"]
            out["compare_idle_cpu_ms_per_s_by_process"] = alt_idle["idle_cpu_ms_per_s_by_process"]
            out["compare_idle_wakeups_per_s_by_process"] = alt_idle["idle_wakeups_per_s_by_process"]
    out["detail"] = detail
    return out
