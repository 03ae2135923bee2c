"""/metrics: Prometheus text exposition (format 0.0.4) read straight from shared memory.

Nothing is sent to the supervisor: feed counters come from each exchange's
``FeedStats`` block and ring figures from the ring headers, read when a scrape
arrives. Served by a tiny asyncio HTTP handler on 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.stats import FIELDS, F, FeedStats

log = logging.getLogger("ticktape.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# FeedStats field -> (metric suffix, help)
_FEED_COUNTERS = {
    "messages": "frames received",
    "bytes": "payload bytes received",
    "gaps": "sequence gaps detected",
    "resyncs": "book resyncs",
    "malformed": "frames that failed to decode (kept in raw)",
    "duplicates": "duplicate or out-of-order updates ignored",
    "reconnects": "connections re-established",
    "disconnects": "connections lost (including stalls)",
    "subscribe_errors": "subscriptions refused by the exchange",
}
assert set(_FEED_COUNTERS) | {"last_msg_ns"} == set(FIELDS)


@dataclass
class FeedView:
    spec: RingSetSpec
    stats: FeedStats
    rings: dict[str, RecordRing | RawRing]


@dataclass
class ChildView:
    role: str
    name: str
    pid: int
    up: bool
    restarts: int


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in kv.items()) + "}"


def _num(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return repr(v) if isinstance(v, float) else str(v)


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        self.lines.extend(f"{name}{labels} {_num(v)}" for labels, v in samples)


def render(feeds: list[FeedView], children: list[ChildView], started: float, now_ns: int | None = None) -> str:
    now_ns = time.time_ns() if now_ns is None else now_ns
    out = _Out()
    out.family("ticktape_up", "gauge", "1 while the supervisor runs", [("", 1)])
    out.family("ticktape_uptime_seconds", "gauge", "seconds since the supervisor started",
               [("", round(time.monotonic() - started, 3))])

    rows: list[tuple[str, str, list[int]]] = []
    for f in feeds:
        values = f.stats.values.tolist()
        for sym_id, sym in enumerate(f.spec.symbols):
            rows.append((f.spec.exchange, sym, values[sym_id]))
    for field, help_text in _FEED_COUNTERS.items():
        i = F[field]
        out.family(f"ticktape_feed_{field}_total", "counter", f"per feed: {help_text}",
                   [(_labels(exchange=e, symbol=s), v[i]) for e, s, v in rows])
    last = F["last_msg_ns"]
    out.family(
        "ticktape_feed_last_message_age_seconds", "gauge",
        "seconds since the feed's last frame (NaN before the first)",
        [(_labels(exchange=e, symbol=s), (now_ns - v[last]) / 1e9 if v[last] else math.nan) for e, s, v in rows],
    )

    ring_rows: list[tuple[str, str, RecordRing, float]] = []
    for f in feeds:
        for dt, r in f.rings.items():
            idx = r.index if isinstance(r, RawRing) else r
            ring_rows.append((f.spec.exchange, dt, idx, r.fill()))
    lab = [(_labels(exchange=e, type=dt), idx, fill) for e, dt, idx, fill in ring_rows]
    out.family("ticktape_ring_fill_ratio", "gauge", "unread share of the ring (raw: max of index and arena)",
               [(lb, round(fill, 6)) for lb, _, fill in lab])
    out.family("ticktape_ring_write_seq", "counter", "records published by the producer",
               [(lb, idx.write_seq) for lb, idx, _ in lab])
    out.family("ticktape_ring_read_seq", "counter", "records committed (durable) by the writer",
               [(lb, idx.read_seq) for lb, idx, _ in lab])
    out.family("ticktape_ring_dropped_total", "counter", "records refused because the ring was full",
               [(lb, idx.dropped) for lb, idx, _ in lab])
    out.family("ticktape_ring_capacity", "gauge", "records the ring holds",
               [(lb, idx.capacity) for lb, idx, _ in lab])

    clab = [(_labels(role=c.role, name=c.name), c) for c in children]
    out.family("ticktape_child_restarts_total", "counter", "times the supervisor restarted this child",
               [(lb, c.restarts) for lb, c in clab])
    out.family("ticktape_child_up", "gauge", "1 while the child process is alive", [(lb, int(c.up)) for lb, c in clab])
    out.family("ticktape_child_pid", "gauge", "process id of the child", [(lb, c.pid) for lb, c in clab])
    return "\n".join(out.lines) + "\n"


class MetricsServer:
    """GET /metrics on host:port; anything else is a 404. One short response per connection."""

    def __init__(self, host: str, port: int, body: Callable[[], str]) -> None:
        self.host, self.port, self.body = host, port, body
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=16384)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
            parts = head.split(b"\r\n", 1)[0].split()
            method = parts[0] if parts else b""
            path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            if method not in (b"GET", b"HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"method not allowed\n"
            elif path == b"/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE, self.body().encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"see /metrics\n"
            hdr = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                   "Connection: close\r\n\r\n").encode()
            writer.write(hdr if method == b"HEAD" else hdr + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:
            log.exception("metrics request failed")
        finally:
            writer.close()
