"""End to end: simulator -> ingest -> rings -> writer -> finalized Parquet, 2 cores shared.

The simulator runs in this process (its own thread), ``capture run`` in a
subprocess (supervisor, one ingest process, one writer). For each rate the
simulator streams binance-futures aggTrade + depth diffs for ``--seconds``,
then stops first; once the capture's frame counter stops moving (every frame
delivered) the capture gets SIGTERM and finalizes. Loss = data frames the
simulator sent (read after it stopped) minus raw data rows in the archive; ring drops and gap events are read back too. CPU
shares come from /proc for the ingest and writer processes over the window.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

import pyarrow.compute as pc
import pyarrow.dataset as ds

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DYDXUSDT"]
_TICKS = os.sysconf("SC_CLK_TCK")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", default="1000,5000,20000",
                        help="market events/s per symbol to try, comma separated (4 symbols)")
    parser.add_argument("--seconds", type=float, default=6.0, help="streaming window per rate")
    parser.add_argument("--keep", action="store_true", help="keep the archives (printed paths)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _child_pids(metrics_port: int) -> dict[str, int]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
    return {m[1]: int(float(m[2])) for m in re.finditer(r'ticktape_child_pid\{[^}]*name="([^"]+)"[^}]*\} (\S+)', text)}


def _wait_pids(metrics_port: int, timeout: float = 20.0) -> dict[str, int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            pids = _child_pids(metrics_port)
            if len(pids) >= 2 and all(pids.values()):
                return pids
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("capture did not start (no child pids on /metrics)")


def _settle(metrics_port: int, quiet: float = 0.5, timeout: float = 30.0) -> None:
    """Wait until the capture has received everything the stopped simulator sent: its
    frame counter stops moving for ``quiet`` seconds."""
    last, since, end = -1.0, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read().decode()
            n = sum(float(m[1]) for m in re.finditer(r"^ticktape_feed_messages_total\{[^}]*\} (\S+)$", text, re.M))
        except OSError:
            n = last
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)


def _archived(root: Path) -> dict[str, int]:
    out = {"raw_data_rows": 0, "trades": 0, "book_change": 0, "gap_events": 0, "drop_events": 0}
    raw_dir = root / "raw" / "exchange=binance-futures"
    if raw_dir.exists():
        t = ds.dataset(raw_dir, format="parquet", partitioning="hive").to_table(columns=["channel", "payload"])
        data = pc.and_(pc.invert(pc.is_in(t["channel"], value_set=_pa_strings(["", "depthSnapshot"]))),
                       pc.greater(pc.binary_length(t["payload"]), 0))
        out["raw_data_rows"] = int(pc.sum(data).as_py() or 0)
    for dt in ("trades", "book_change"):
        d = root / dt / "exchange=binance-futures"
        if d.exists():
            out[dt] = ds.dataset(d, format="parquet", partitioning="hive").count_rows()
    ev = root / "events" / "exchange=binance-futures"
    if ev.exists():
        kinds = ds.dataset(ev, format="parquet", partitioning="hive").to_table(columns=["kind"])["kind"]
        kinds = kinds.cast("string")
        out["gap_events"] = int(pc.sum(pc.equal(kinds, "gap")).as_py() or 0)
        out["drop_events"] = int(pc.sum(pc.equal(kinds, "drop")).as_py() or 0)
    return out


def _pa_strings(values: list[str]) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.string())


def run_one(rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    from ticktape.sim.thread import SimulatorThread

    metrics_port = _free_port()
    sim = SimulatorThread({"binance-futures": SYMBOLS}, rate=rate, seed=11, trade_share=0.5, record=False)
    sim.start()
    try:
        cfg = workdir / "capture.toml"
        cfg.write_text(f"""
[archive]
root = "{workdir / 'archive'}"
finalize_grace = 1.0
[log]
dir = "{workdir / 'logs'}"
level = "WARNING"
[metrics]
port = {metrics_port}
[exchanges.binance-futures]
symbols = {SYMBOLS!r}
channels = ["trades", "book_change"]
url = "{sim.ws_url('binance-futures')}"
""".replace("'", '"'))
        proc = subprocess.Popen([sys.executable, "-m", "ticktape.engine.cli", "run", str(cfg)], cwd=workdir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            pids = _wait_pids(metrics_port)
            ingest = next(p for n, p in pids.items() if n.startswith("ingest"))
            writer = next(p for n, p in pids.items() if n.startswith("writer"))
            time.sleep(1.0)  # connect, subscribe, first snapshot
            f0 = sim.call(lambda s: s.stats()["frames"]["binance-futures"])
            c0, w0, t0 = _cpu_seconds(ingest), _cpu_seconds(writer), time.monotonic()
            time.sleep(seconds)
            f1 = sim.call(lambda s: s.stats()["frames"]["binance-futures"])
            c1, w1, t1 = _cpu_seconds(ingest), _cpu_seconds(writer), time.monotonic()
        finally:
            sim.stop()  # the exchange goes quiet first: every frame sent is delivered
            _settle(metrics_port)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"capture exited {proc.returncode}: {err.decode()[-500:]}")
    finally:
        sim.stop()
    # read after the stop: frames sent between the window's end and the stop are in the
    # archive too (reading before it reported "lost -4000")
    assert sim.sim is not None
    stats = sim.sim.stats()
    sent = int(stats["frames"]["binance-futures"])
    got = _archived(workdir / "archive")
    window = t1 - t0
    return {
        "rate_per_symbol": rate,
        "frames_per_s": (f1 - f0) / window,
        "frames_sent": sent,
        "frames_archived": got["raw_data_rows"],
        "lost": sent - got["raw_data_rows"],
        "records_trades": got["trades"],
        "records_book_change": got["book_change"],
        "gap_events": got["gap_events"],
        "drop_events": got["drop_events"],
        "sim_behind": int(stats["behind"]),
        "ingest_cpu_share": (c1 - c0) / window,
        "writer_cpu_share": (w1 - w0) / window,
    }


def _bad(msg: str) -> NoReturn:
    print(f"capture bench capture: {msg}", file=sys.stderr)
    raise SystemExit(2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        _bad(f"--rates {args.rates!r}: comma-separated numbers > 0")
    if not rates or not all(0 < r < 1e7 for r in rates):
        _bad(f"--rates {args.rates!r}: comma-separated numbers > 0")
    if not 0 < args.seconds <= 3600:
        _bad(f"--seconds {args.seconds:g}: must be > 0 and <= 3600")
    figures: dict[str, Any] = {}
    best = 0.0
    for rate in rates:
        with tempfile.TemporaryDirectory(prefix="tt-bench-capture-") as tmp:
            r = run_one(rate, args.seconds, Path(tmp))
            if args.keep:
                keep = Path(tempfile.mkdtemp(prefix="tt-bench-capture-keep-"))
                os.rename(Path(tmp) / "archive", keep / "archive")
                r["archive"] = str(keep / "archive")
        key = f"r{int(rate)}"
        for k, v in r.items():
            if k != "rate_per_symbol":
                figures[f"{key}_{k}"] = v
        if r["lost"] == 0 and r["gap_events"] == 0 and r["drop_events"] == 0:
            best = max(best, r["frames_per_s"])
    figures["max_zero_loss_frames_per_s"] = best
    return figures
