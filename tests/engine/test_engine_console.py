"""What a person sees from ``capture run``: on a terminal (a real pseudo-terminal)
a live status, readable event lines and an exit summary whose counts equal the
archive's; without a terminal, JSON lines only. Both against the built-in
simulator, the README's demo path."""

from __future__ import annotations

import json
import os
import re
import select
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from demo_run import DemoCapture

from ticktape.archive.layout import FileKey

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def _about_the_stop(message: str) -> bool:
    """A warning about the capture's own stop (the demo's data may warn of other things)."""
    return any(w in message for w in ("shutdown", "stopping", "stopped", "disconnected", "draining"))


def _config(tmp_path: Path, sim_port: int) -> Path:
    text = (REPO / "configs" / "demo.toml").read_text().replace("18765", str(sim_port))
    text = text.replace("port = 9464", "port = 0")
    cfg = tmp_path / "demo.toml"
    cfg.write_text(text)
    return cfg


def _archive_counts(root: Path) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    rows: Counter[tuple[str, str]] = Counter()
    files: Counter[tuple[str, str]] = Counter()
    for p in root.rglob("*.parquet"):
        rel = p.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        k = FileKey.from_relpath(rel)
        rows[(k.exchange, k.data_type)] += pq.read_metadata(p).num_rows
        files[(k.exchange, k.data_type)] += 1
    return rows, files


def _run_in_pty(cmd: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the capture, with the pty as its terminal
        os.chdir(cwd)
        os.environ.update(COLUMNS="220", LINES="60", TERM="xterm-256color")
        os.execvp(cmd[0], cmd)
    out = bytearray()
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.5)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                out += data
    finally:
        if time.monotonic() >= end:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), _ANSI.sub("", out.decode("utf-8", "replace"))


def test_terminal_shows_live_status_events_and_a_summary_equal_to_the_archive(
    tmp_path: Path, free_port: int
) -> None:
    cfg = _config(tmp_path, free_port)
    rc, text = _run_in_pty([sys.executable, "-m", "ticktape.engine.cli", "run", str(cfg), "--duration", "5"],
                           tmp_path, timeout=150)
    assert rc == 0, text[-4000:]
    lines = text.splitlines()
    assert not [line for line in lines if line.lstrip().startswith('{"level"')], "JSON lines on the terminal"
    assert "New connection accepted" not in text  # picows' INFO chatter stays in the file
    warnings = [line for line in lines if "WARNING" in line and _about_the_stop(line)]
    assert not warnings  # a normal stop is no warning
    # live status while capturing: every feed of each exchange receiving at some refresh
    assert "capture status" in text
    for ex, n in (("binance-futures", 4), ("bybit", 3), ("hyperliquid", 3)):
        assert re.search(rf"{ex}\s*│\s*{n}/{n}\s*│", text), f"{ex} never showed {n}/{n} feeds receiving"
    # one readable line per notable event
    assert re.search(r"\d\d:\d\d:\d\d connect +binance-futures conn \d+ connected", text)
    assert re.search(r"\d\d:\d\d:\d\d resync +binance-futures/book_change/BTCUSDT synced", text)
    assert re.search(r"\d\d:\d\d:\d\d run +ready: every feed subscribed", text)
    assert re.search(r"\d\d:\d\d:\d\d file +written trades/exchange=bybit/", text)
    # the summary: rows and files per (exchange, table) equal what is on disk
    summary = text[text.index("capture summary (this run)"):]
    got_rows: dict[tuple[str, str], int] = {}
    got_files: dict[tuple[str, str], int] = {}
    for m in re.finditer(r"│ (?P<ex>[a-z-]+) +│ (?P<t>[a-z_0-9]+) +│ +(?P<rows>[\d,]+) │ +(?P<files>\d+) │", summary):
        got_rows[(m["ex"], m["t"])] = int(m["rows"].replace(",", ""))
        got_files[(m["ex"], m["t"])] = int(m["files"])
    rows, files = _archive_counts(tmp_path / "archive-demo")
    assert got_rows == dict(rows) and got_files == dict(files)
    assert rows[("bybit", "trades")] > 0 and rows[("hyperliquid", "book_snapshot_20")] > 0
    # every loss counted (none in a clean run: the shutdown is not a disconnect) and where to look
    assert re.search(r"binance-futures +│ losses / faults +│ +none", summary), summary
    assert "capture report" in summary and "capture.log" in summary
    assert re.search(r"hyperliquid +│ frames received +│ +trades [\d,]+ · l2Book [\d,]+", summary), summary
    assert re.search(r"bybit\s*│\s*3/3\s*│[^│]*│[^│]*│ [^│]*publicTrade [1-9]", text), "no per-channel rate shown"
    # the log file keeps every process's JSON lines, third-party chatter included
    log_lines = (tmp_path / "logs-demo" / "capture.log").read_text().splitlines()
    procs = {json.loads(line)["process"] for line in log_lines}
    assert {"supervisor", "writer-0", "ingest-bybit", "simulator"} <= procs


def test_without_a_terminal_stdout_is_json_lines_only(demo_capture: DemoCapture) -> None:
    # the session's demo capture: `capture run configs/demo.toml` with stdout a pipe (exit 0 checked there)
    objs = [json.loads(line) for line in demo_capture.stdout.splitlines()]  # every line is a JSON object
    assert objs and all(isinstance(o, dict) and {"level", "message", "time"} <= set(o) for o in objs)
    assert any(o["message"].startswith("WRITE ") and o["process"] == "writer-0" for o in objs)
    stopped = [o for o in objs if o["message"] == "capture stopped"]
    assert stopped and stopped[0]["summary"]["tables"]  # the summary, as JSON
    # frames received per (exchange, channel), from the per-(symbol, channel) counters, equal the raw frames
    # archived for a symbol (an empty row is a disconnect marker, not a frame)
    raw = ds.dataset(demo_capture.root / "raw", partitioning="hive").to_table(
        columns=["exchange", "symbol", "channel", "payload"])
    raw = raw.filter(pc.and_(pc.greater(pc.binary_length(raw["payload"]), 0), pc.not_equal(raw["symbol"], "_")))
    archived: dict[str, dict[str, int]] = {}
    for r in raw.group_by(["exchange", "channel"]).aggregate([([], "count_all")]).to_pylist():
        archived.setdefault(str(r["exchange"]), {})[r["channel"]] = r["count_all"]
    received = {ex: {c: n for c, n in chans.items() if n} for ex, chans in stopped[0]["summary"]["received"].items()}
    assert received == archived and set(archived) == {"binance-futures", "bybit", "hyperliquid"}, (received, archived)
    warnings = [o["message"] for o in objs if o["level"] == "WARNING" and _about_the_stop(o["message"])]
    assert not warnings  # a normal stop is no warning
