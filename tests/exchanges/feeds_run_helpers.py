"""``capture run`` as a real process against the simulator running in this test's
process (its own thread), so a test can script faults, read what the simulator
sent and compare it with the archive, read back through the public loaders."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from ticktape.archive import loaders
from ticktape.sim.thread import SimulatorThread

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(m: Metrics, name: str, **match: str) -> float:
    """Sum of ``name`` over every label set that includes ``match``."""
    return sum(v for (n, labels), v in m.items() if n == name and all((k, x) in labels for k, x in match.items()))


def ts_ns(col: pa.ChunkedArray | pa.Array) -> list[int]:
    """A timestamp column as int ns, whatever its unit (ns today, µs + tz after the tables change)."""
    t = col.type
    return [int(x) for x in col.cast(pa.timestamp("ns", tz=getattr(t, "tz", None))).cast(pa.int64()).to_pylist()]


class CaptureRun:
    """One ``capture run`` process with a config written for the simulator ``sim``."""

    def __init__(self, tmp: Path, sim: SimulatorThread, exchanges: dict[str, dict[str, Any]],
                 options: dict[str, Any] | None = None, extra_toml: str = "", records: int = 1 << 16,
                 raw: bool = False, args: tuple[str, ...] = (), root: Path | None = None) -> None:
        self.tmp = tmp
        self.root = root or tmp / "archive"
        self.port = free_port()
        self.started = datetime.now(UTC)
        self.config = tmp / f"capture-{time.monotonic_ns()}.toml"
        simulated = sim.call(lambda s: set(s.venues))
        sections = []
        for name, ex in exchanges.items():
            url = sim.ws_url(name if name in simulated else None)  # Binance spot / COIN-M: under a prefix
            keys = "\n".join(f"{k} = {json.dumps(v)}" for k, v in ex.items())
            sections.append(f'[exchanges.{name}]\nurl = "{url}"\n{keys}\n')
        self.config.write_text(
            f"""
writers = 1
[archive]
root = "{self.root}"
flush_interval = 0.2
raw = {"true" if raw else "false"}
finalize_grace = 1.0
[log]
dir = "{tmp / 'logs'}"
[metrics]
port = {self.port}
[ring]
records = {records}
raw_records = {records}
raw_bytes = {16 << 20}
[supervisor]
restart_delay = 0.2
{extra_toml}
"""
            + "\n".join(sections)
        )
        env = dict(os.environ)
        env["TICKTAPE_INGEST_OPTIONS"] = json.dumps(
            {"backoff_base": 0.05, "backoff_max": 0.5, "rest_interval": 0.02, **(options or {})}
        )
        self.out_path = tmp / f"capture-{time.monotonic_ns()}.out"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ticktape.engine.cli", "run", str(self.config), *args],
            cwd=tmp, stdout=self._out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )

    def metrics(self) -> Metrics:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: Metrics = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and (m := _SAMPLE.match(line)):
                out[(m["name"], tuple(sorted(_LABEL.findall(m["labels"] or ""))))] = float(m["value"])
        return out

    def until(self, cond: Callable[[Metrics], bool], timeout: float = 90.0, what: str = "") -> Metrics:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"capture exited ({self.proc.returncode}) waiting for {what}: {self.output()[-3000:]}")
            try:
                m = self.metrics()
                if cond(m):
                    return m
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; output tail: {self.output()[-3000:]}")

    def stop(self, timeout: float = 120.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._out.close()

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.out_path.read_text(errors="replace")

    def logs(self) -> str:
        path = self.tmp / "logs" / "capture.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- the archive, through the public loaders ---------------------------------------------
    def load(self, exchange: str, data_type: str, symbols: str | list[str]) -> pa.Table:
        start = self.started - timedelta(hours=1)
        end = datetime.now(UTC) + timedelta(hours=1)
        return loaders.load(str(self.root), exchange, data_type, symbols, start, end)

    def events(self, exchange: str, symbol: str) -> list[dict[str, Any]]:
        """The symbol's events rows, then the connection-level ones (symbol ``_``)."""
        out = []
        for sym in (symbol, "_"):
            out += [{**r, "symbol": sym} for r in self.load(exchange, "events", sym).to_pylist()]
        return out


Book = dict[str, dict[float, float]]


def book_groups(rows: list[dict[str, Any]]) -> list[tuple[int, Book]]:
    """Replay book_change rows as a user does: a run of is_snapshot rows sharing (local_ts,
    exchange_ts) replaces the book, every other row changes one level. The book after each
    group of rows sharing a local time: (index of its last row, book)."""
    book: Book = {"bid": {}, "ask": {}}
    key = None
    out: list[tuple[int, Book]] = []
    for i, r in enumerate(rows):
        k = (r["local_ts"], r["exchange_ts"])
        if r["is_snapshot"]:
            if k != key:
                book = {"bid": {}, "ask": {}}
                key = k
        else:
            key = None
        side = book[str(r["side"])]
        if r["amount"] == 0:
            side.pop(r["price"], None)
        else:
            side[r["price"]] = r["amount"]
        if i + 1 == len(rows) or rows[i + 1]["local_ts"] != r["local_ts"]:
            out.append((i, {s: dict(v) for s, v in book.items()}))
    return out


def archived_book(run: CaptureRun, exchange: str, symbol: str) -> Book:
    """The book as a user rebuilds it from the archive (``book_groups``), after its last row."""
    groups = book_groups(run.load(exchange, "book_change", symbol).to_pylist())
    return groups[-1][1] if groups else {"bid": {}, "ask": {}}


def capture_recording(tmp: Path, exchange: str, recording: Path, cfg: dict[str, Any], frames: int) -> CaptureRun:
    """``capture run`` of ``exchange`` (config ``cfg``, raw on) fed by the simulator replaying
    ``recording`` as fast as it can; stopped once the replay is over and the capture counted
    ``frames`` data frames (symbol ``_`` not counted)."""
    with SimulatorThread({exchange: None}, replay=recording, replay_speed=0) as sim:
        run = CaptureRun(tmp, sim, {exchange: cfg}, raw=True)
        try:
            run.until(lambda m: sim.call(lambda s: s.replayer.done.is_set()), what="the replay played")
            run.until(lambda m: sum(v for (n, lb), v in m.items() if n == "ticktape_feed_messages_total"
                                    and ("exchange", exchange) in lb and ("symbol", "_") not in lb) >= frames,
                      what=f"{frames} frames counted")
            assert run.stop() == 0, run.output()[-3000:]
        finally:
            run.kill()
    return run
