"""Helpers for engine tests that drive a real ``capture run`` process with the
synthetic exchange, the way an operator would (config file, /metrics, signals)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = tuple(sorted(_LABEL.findall(m["labels"] or "")))
        out[(m["name"], labels)] = float(m["value"])
    return out


def write_config(
    path: Path,
    *,
    root: Path,
    logs: Path,
    port: int,
    url: str,
    symbols: tuple[str, ...] = ("AAA", "BBB", "CCC"),
    channels: tuple[str, ...] = ("trades", "book_change", "book_snapshot"),
    depth: int = 5,
    flush_interval: float = 0.2,
    records: int = 1 << 17,
    drain_timeout: float = 60.0,
) -> Path:
    path.write_text(
        f"""
writers = 1
[archive]
root = "{root}"
flush_interval = {flush_interval}
raw = true
[log]
dir = "{logs}"
[metrics]
port = {port}
[ring]
records = {records}
raw_records = {records}
raw_bytes = {32 << 20}
[supervisor]
restart_delay = 0.2
drain_timeout = {drain_timeout}
[exchanges.synthetic]
symbols = {json.dumps(list(symbols))}
channels = {json.dumps(list(channels))}
depth = {depth}
url = "{url}"
"""
    )
    return path


class Capture:
    """A ``capture run`` subprocess plus what a test needs to drive it."""

    def __init__(self, cmd: list[str], config: Path, port: int, cwd: Path, extra: list[str] | None = None) -> None:
        self.port = port
        self.out_path = cwd / f"capture-{time.monotonic_ns()}.out"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [*cmd, "run", str(config), *(extra or [])],
            cwd=cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as under a service manager
        )

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            assert r.status == 200
            return str(r.read().decode())

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_metrics(self.metrics_text())

    def until(self, cond: Callable[[dict[Any, float]], bool], timeout: float = 60.0, what: str = "") -> dict:
        end = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"capture exited ({self.proc.returncode}) waiting for {what}: {self.output()}")
            try:
                m = self.metrics()
                if cond(m):
                    return m
            except OSError as e:  # not listening yet
                last = e
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what} ({last}); output tail: {self.output()[-3000:]}")

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.out_path.read_text(errors="replace")

    def wait(self, timeout: float = 90.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def child_pid(m: dict, name: str) -> int:
    role = name.split("-")[0]
    return int(m[("ticktape_child_pid", (("name", name), ("role", role)))])


def child_restarts(m: dict, name: str) -> int:
    role = name.split("-")[0]
    return int(m[("ticktape_child_restarts_total", (("name", name), ("role", role)))])


def total(m: dict, name: str, **match: str) -> float:
    return sum(v for (n, labels), v in m.items() if n == name and all((k, v2) in labels for k, v2 in match.items()))


def kill9(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_type(root: Path, data_type: str) -> pa.Table:
    """All finalized Parquet rows of one data type, with the Hive keys as columns."""
    base = root / data_type / "exchange=synthetic"
    dataset = ds.dataset(base, format="parquet", partitioning="hive")
    return dataset.to_table()
