"""Prometheus metrics read straight from shared memory at scrape time.

Nothing is sent to the supervisor: a prometheus_client custom ``Collector``
reads each exchange's ``FeedStats`` block, the ring headers and the children
table when a scrape arrives. prometheus_client writes the exposition (text
0.0.4, or OpenMetrics when the scraper's Accept header asks for it), so names,
escaping and ``_total`` suffixes follow the format's rules.

Families (``ticktape_`` prefix):

* ``feed_<counter>_total{exchange,symbol}``: per subscribed symbol (messages,
  bytes, gaps, resyncs, malformed, duplicates, ...), and
  ``feed_last_message_age_seconds`` / ``feed_ready``;
* ``feed_channel_messages_total`` / ``feed_channel_bytes_total{exchange,symbol,channel}``: per
  subscribed stream (the exchange's own channel names; a symbol's channels sum to its
  ``feed_messages_total``; channel ``_`` only appears for frames a connector did not attribute);
* ``exchange_<counter>_total{exchange}``: the connection-level row (symbol
  ``_``): reconnects, disconnects, subscribe errors, and ``control_messages`` /
  ``control_bytes`` (acks, pongs), with ``exchange_last_message_age_seconds``
  over all of the exchange's frames;
* ``ring_*{exchange,table}``: fill ratio, records written / committed / dropped,
  capacity, and ``writer_lag_seconds`` (age of the oldest record not yet durable);
* ``child_*{role,name}``, ``disk_free_bytes{path}``, ``up``, ``ready``, ``uptime_seconds``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.stats import FIELDS, WF, F, FeedStats, WriterStats

#: FeedStats fields that only the connection-level row (symbol ``_``) carries
CONNECTION_LEVEL = frozenset({"reconnects", "disconnects", "subscribe_errors"})
_HELP = {
    "messages": "frames received",
    "bytes": "payload bytes received",
    "gaps": "sequence gaps detected",
    "resyncs": "book resyncs",
    "malformed": "frames that failed to decode (kept in raw)",
    "duplicates": "duplicate or out-of-order updates ignored",
    "reconnects": "connections re-established",
    "disconnects": "connections lost (including stalls)",
    "subscribe_errors": "subscriptions refused by the exchange",
    "rest_errors": "REST requests that failed (book snapshots, open interest polls)",
    "snapshot_retries": "book snapshots fetched again because they did not bridge into the buffered diffs",
    "silent_streams": "streams that sent nothing for silent_after s after their subscribe, the symbol still listed",
}
_COUNTERS = [f for f in FIELDS if f != "last_msg_ns"]
_EXCHANGE_NAME = {"messages": "control_messages", "bytes": "control_bytes"}


@dataclass
class FeedView:
    spec: RingSetSpec
    stats: FeedStats
    rings: dict[str, RecordRing | RawRing]
    ready: dict[str, bool] = field(default_factory=dict)  # symbol -> frame received since ingest start


@dataclass
class ChildView:
    role: str
    name: str
    pid: int
    up: bool
    restarts: int


@dataclass
class Snapshot:
    """What one scrape sees (built by the supervisor, read by the collector)."""

    feeds: list[FeedView]
    children: list[ChildView]
    started: float  # time.monotonic() at supervisor start
    ready: bool = False
    disk_paths: list[str] = field(default_factory=list)
    #: (writer name, its storage-health block)
    writers: list[tuple[str, WriterStats]] = field(default_factory=list)


def ring_lag_seconds(ring: RecordRing | RawRing, now_ns: int) -> float:
    """Seconds since the oldest record the writer has not yet made durable arrived (0 when none)."""
    idx = ring.index if isinstance(ring, RawRing) else ring
    rs, ws = idx.read_seq, idx.write_seq
    if ws <= rs or idx.records is None:
        return 0.0
    ts = int(idx.records[rs % idx.capacity]["local_ts"])
    return max(0.0, (now_ns - ts) / 1e9) if ts > 0 else 0.0


class ShmCollector(Collector):
    """Reads shared memory on every ``collect()`` (one scrape)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        now_ns = time.time_ns()
        yield _gauge("ticktape_up", "1 while the supervisor runs", [], [((), 1)])
        yield _gauge("ticktape_ready", "1 once every feed is subscribed and every writer drains", [],
                     [((), int(snap.ready))])
        yield _gauge("ticktape_uptime_seconds", "seconds since the supervisor started", [],
                     [((), round(time.monotonic() - snap.started, 3))])
        yield from _feed_metrics(snap.feeds, now_ns)
        yield from _ring_metrics(snap.feeds, now_ns)
        yield from _child_metrics(snap.children)
        yield from _writer_metrics(snap.writers)
        disks = []
        for p in snap.disk_paths:
            try:
                st = os.statvfs(p)
            except OSError:
                continue
            disks.append(((p,), st.f_bavail * st.f_frsize))
        yield _gauge("ticktape_disk_free_bytes", "bytes free for the capture on the file system of path",
                     ["path"], disks)


def _gauge(name: str, help_text: str, labels: list[str], rows: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
    m = GaugeMetricFamily(name, help_text, labels=labels)
    for lv, v in rows:
        m.add_metric(list(lv), v)
    return m


def _counter(name: str, help_text: str, labels: list[str], rows: Iterable[tuple[tuple[str, ...], float]]) -> Metric:
    m = CounterMetricFamily(name, help_text, labels=labels)
    for lv, v in rows:
        m.add_metric(list(lv), v)
    return m


def _feed_metrics(feeds: list[FeedView], now_ns: int) -> Iterator[Metric]:
    sym_rows: list[tuple[tuple[str, str], list[int], bool]] = []
    ex_rows: list[tuple[tuple[str], list[int]]] = []
    for f in feeds:
        values = f.stats.values.tolist()
        ex_rows.append(((f.spec.exchange,), values[0]))
        for sid, sym in enumerate(f.spec.symbols):
            if sid:
                sym_rows.append(((f.spec.exchange, sym), values[sid], f.ready.get(sym, False)))
    last = F["last_msg_ns"]

    def age(v: list[int]) -> float:
        return (now_ns - v[last]) / 1e9 if v[last] else math.nan

    for fld in _COUNTERS:
        text = _HELP.get(fld, fld.replace("_", " "))
        if fld not in CONNECTION_LEVEL:
            yield _counter(f"ticktape_feed_{fld}", f"per subscribed symbol: {text}",
                           ["exchange", "symbol"], [(lv, v[F[fld]]) for lv, v, _ in sym_rows])
        name = _EXCHANGE_NAME.get(fld, fld)
        scope = "frames of no symbol (acks, pongs, errors)" if fld in _EXCHANGE_NAME else text
        yield _counter(f"ticktape_exchange_{name}", f"connection level (no symbol): {scope}",
                       ["exchange"], [(lv, v[F[fld]]) for lv, v in ex_rows])
    yield from _channel_metrics(feeds)
    yield _gauge("ticktape_feed_last_message_age_seconds", "seconds since the symbol's last frame (NaN before the first)",
                 ["exchange", "symbol"], [(lv, age(v)) for lv, v, _ in sym_rows])
    yield _gauge("ticktape_exchange_last_message_age_seconds",
                 "seconds since any frame of the exchange (NaN before the first)",
                 ["exchange"], [(lv, age(v)) for lv, v in ex_rows])
    yield _gauge("ticktape_feed_ready", "1 once the symbol's frames arrive on the current ingest process",
                 ["exchange", "symbol"], [(lv, int(r)) for lv, _, r in sym_rows])


def _channel_metrics(feeds: list[FeedView]) -> Iterator[Metric]:
    """(exchange, symbol, channel) counters from each FeedStats block's channel part (symbol rows only:
    frames of no symbol are the exchange's control counters)."""
    rows: list[tuple[tuple[str, str, str], int, int]] = []
    for f in feeds:
        ch = f.stats.channels.copy()
        if ch.size == 0:
            continue
        names = f.spec.channels
        for sid, sym in enumerate(f.spec.symbols):
            if not sid:
                continue
            msgs, nbytes = ch[0, sid].tolist(), ch[1, sid].tolist()
            for cid, chan in enumerate(names):
                if cid or msgs[0]:  # channel 0 ("" = not attributed) only when something landed there
                    rows.append(((f.spec.exchange, sym, chan or "_"), msgs[cid], nbytes[cid]))
    labels = ["exchange", "symbol", "channel"]
    yield _counter("ticktape_feed_channel_messages", "frames received per subscribed stream (symbol x channel)",
                   labels, [(lv, m) for lv, m, _ in rows])
    yield _counter("ticktape_feed_channel_bytes", "payload bytes received per subscribed stream (symbol x channel)",
                   labels, [(lv, b) for lv, _, b in rows])


def _ring_metrics(feeds: list[FeedView], now_ns: int) -> Iterator[Metric]:
    rows: list[tuple[tuple[str, str], RecordRing, RecordRing | RawRing]] = []
    for f in feeds:
        for dt, r in f.rings.items():
            rows.append(((f.spec.exchange, dt), r.index if isinstance(r, RawRing) else r, r))
    labels = ["exchange", "table"]
    yield _gauge("ticktape_ring_fill_ratio", "unread share of the ring (raw: max of index and arena)", labels,
                 [(lv, round(r.fill(), 6)) for lv, _, r in rows])
    yield _counter("ticktape_ring_written_records", "records published into the ring by the producer", labels,
                   [(lv, i.write_seq) for lv, i, _ in rows])
    yield _counter("ticktape_ring_committed_records", "records the writer made durable (journal fsynced)", labels,
                   [(lv, i.read_seq) for lv, i, _ in rows])
    yield _counter("ticktape_ring_dropped_records", "records refused because the ring was full", labels,
                   [(lv, i.dropped) for lv, i, _ in rows])
    yield _gauge("ticktape_ring_capacity_records", "records the ring holds", labels,
                 [(lv, i.capacity) for lv, i, _ in rows])
    yield _gauge("ticktape_writer_lag_seconds", "age of the oldest record in the ring not yet durable (0 = caught up)",
                 labels, [(lv, round(ring_lag_seconds(r, now_ns), 6)) for lv, _, r in rows])
    yield _gauge("ticktape_feed_wake_armed", "1 while the feed is quiet and its next frame wakes the writer "
                 "(meanwhile the writer sleeps until its flush tick)", ["exchange"],
                 [((f.spec.exchange,), int(ev.wake_armed)) for f in feeds
                  if isinstance(ev := f.rings.get("events"), RecordRing)])


def _child_metrics(children: list[ChildView]) -> Iterator[Metric]:
    labels = ["role", "name"]
    yield _counter("ticktape_child_restarts", "times the supervisor restarted this child", labels,
                   [((c.role, c.name), c.restarts) for c in children])
    yield _gauge("ticktape_child_up", "1 while the child process is alive", labels,
                 [((c.role, c.name), int(c.up)) for c in children])
    yield _gauge("ticktape_child_pid", "process id of the child", labels,
                 [((c.role, c.name), c.pid) for c in children])


def _writer_metrics(writers: list[tuple[str, WriterStats]]) -> Iterator[Metric]:
    rows = [((name,), ws.values.copy()) for name, ws in writers]
    yield _counter("ticktape_writer_storage_errors", "write attempts the archive file system refused (full, read-only, ...)",
                   ["writer"], [(lv, int(v[WF["storage_errors"]])) for lv, v in rows])
    yield _gauge("ticktape_writer_storage_blocked", "1 while the writer cannot write: records wait in the rings",
                 ["writer"], [(lv, int(v[WF["storage_blocked"]])) for lv, v in rows])
    yield _counter("ticktape_writer_storage_blocked_seconds", "time spent unable to write (finished episodes)",
                   ["writer"], [(lv, v[WF["storage_blocked_ns"]] / 1e9) for lv, v in rows])


def registry_for(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ShmCollector(snapshot))
    return reg
