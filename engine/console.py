"""``capture run`` on a terminal: what a person reads instead of JSON lines.

* one readable line per notable event (connect, disconnect, gap, resync, file
  written, warnings and errors of any process), printed above
* a live status table (per exchange: feeds receiving, messages/s, messages/s
  per channel, ring fill, last gap/disconnect), refreshed twice a second from
  shared memory, and
* at exit, the run's summary table (``engine.summary``).

The JSON lines still go to the log file. This is a ``logging.Handler`` fed by
the supervisor's own records and by the children's lines from the log sink.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

#: (pattern on the message, label, style) for ticktape INFO lines worth a console line
_NOTABLE = [
    (re.compile(r"^WRITE "), "file", "green"),
    (re.compile(r" conn \d+ connected"), "connect", "cyan"),
    (re.compile(r" disconnected \("), "disconnect", "yellow"),
    (re.compile(r" gap: "), "gap", "red"),
    (re.compile(r"resync|synced \(|snapshot older|snapshot request failed|snapshot HTTP"), "resync", "magenta"),
    (re.compile(r"^(capture started|ready: |stopping: |ingest stopped|capture stopped|final S3 sync|shard \d+/\d+: )"), "run", "bold"),
    (re.compile(r" (started|exited) .*pid"), "child", "dim"),
]
_EVENT_OF_EXCHANGE = re.compile(r"^(?P<ex>[a-z0-9-]+)[ /].*?(?P<what>disconnected \([^)]*\)|gap|stalled)")

StatusRow = dict[str, Any]


class ConsoleView(logging.Handler):
    def __init__(self, console: Console | None = None) -> None:
        super().__init__(logging.INFO)
        self.console = console or Console(highlight=False, soft_wrap=True)
        self._rows: Callable[[], list[StatusRow]] | None = None
        self._last_rows: list[StatusRow] = []
        self._live: Live | None = None
        self._lock = threading.Lock()
        self._prev: dict[str, tuple[float, int]] = {}  # exchange or exchange/channel -> (time, messages)
        self._rate: dict[str, float] = {}
        self.last_event: dict[str, str] = {}  # exchange -> "12:00:01 disconnected (stall)"

    # -- event lines ------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.line(record)
            if text is not None:
                self.console.print(text)
        except Exception:
            self.handleError(record)

    def line(self, record: logging.LogRecord) -> Text | None:
        msg = record.getMessage() if getattr(record, "_line", None) is None else str(record.msg)
        obj = getattr(record, "_obj", None) or {}
        proc = str(obj.get("process", "")) or "supervisor"
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        m = _EVENT_OF_EXCHANGE.search(msg)
        if m:
            self.last_event[m["ex"]] = f"{ts} {m['what']}"
        if record.levelno >= logging.WARNING:
            style = "red" if record.levelno >= logging.ERROR else "yellow"
            return Text.assemble((ts + " ", "dim"), (f"{record.levelname:<7} ", style), (f"{proc}: ", "dim"), msg)
        if not record.name.startswith("ticktape"):
            return None
        for pat, label, style in _NOTABLE:
            if pat.search(msg):
                if label == "file":
                    msg = _short_write(msg)
                return Text.assemble((ts + " ", "dim"), (f"{label:<10} ", style), msg)
        return None

    # -- live status ------------------------------------------------------------------
    def attach(self, rows: Callable[[], list[StatusRow]]) -> None:
        """Start the live status, reading ``rows()`` at each refresh."""
        self._rows = rows
        self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=2, transient=False)
        self._live.start()

    def detach(self) -> None:
        """Stop the live status (before the shared memory it reads goes away)."""
        with self._lock:
            live, self._live = self._live, None
            self._rows = None  # the last refresh shows the rows read before
        if live is not None:
            live.stop()

    def _render(self) -> Any:
        with self._lock:
            if self._rows is not None:
                self._last_rows = self._rows()
            rows = self._last_rows
        t = Table(title="capture status", title_justify="left", expand=False)
        for col in ("exchange", "feeds receiving", "messages/s", "messages", "by channel (msg/s)", "ring fill",
                    "last gap / disconnect"):
            t.add_column(col, justify="right" if col in ("messages/s", "messages", "ring fill") else "left")
        now = time.monotonic()
        for r in rows:
            ex, n = r["exchange"], int(r["messages"])
            chans = r.get("channels", {})
            by_chan = " ".join(f"{c} {self._rate_of(f'{ex}/{c}', int(m), now):,.0f}" for c, m in chans.items())
            fill = float(r["ring_fill"])
            t.add_row(ex, f"{r['ready']}/{r['feeds']}", f"{self._rate_of(ex, n, now):,.0f}", f"{n:,}", by_chan or "-",
                      Text(f"{fill:.0%}", style="red" if fill > 0.5 else ""), self.last_event.get(ex, "-"))
        return Group(t)

    def _rate_of(self, key: str, n: int, now: float) -> float:
        """Messages per second of a counter, over the last second or more."""
        prev = self._prev.get(key)
        if prev is None or now - prev[0] >= 1.0:
            if prev is not None:
                self._rate[key] = (n - prev[1]) / (now - prev[0])
            self._prev[key] = (now, n)
        return self._rate.get(key, 0.0)

    def print(self, renderable: Any) -> None:
        self.console.print(renderable)


def _short_write(msg: str) -> str:
    """``WRITE /root/trades/exchange=x/.../data.parquet records: N size: K KB`` -> the path from the table on."""
    i = msg.find("/exchange=")
    j = msg.rfind("/", 0, i) if i > 0 else -1
    return "written " + (msg[j + 1 :] if j >= 0 else msg[6:])
