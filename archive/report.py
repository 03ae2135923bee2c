"""Data-quality report of an archive: what is there, and where the holes are.

Reads only the ``events`` table and the Parquet footers of the data files (row
counts, ``local_ts_ns`` statistics), never a data column, so a month of data
is reported in seconds. Local roots and ``s3://`` prefixes alike.

Definitions (per feed = (exchange, symbol)):

* span: first to last ``local_ts`` of the feed's data files (footer statistics);
* outage: from a ``disconnect`` event of the symbol (or of the connection, symbol
  ``_``) to the exchange's next ``connect`` event (or the span's end). A
  disconnect written by a restarted ingest process after a crash carries
  ``last frame ns=<t>`` in its detail: its outage starts at ``t``, the last frame
  received before the crash;
* coverage of an hour: the share of the hour inside the span and outside every
  outage;
* book verified (feeds with a ``book_change`` table): the share of the hour in
  which the book was continuous from a verified snapshot: from a ``connect``
  (a new connection's book starts from its first snapshot, which the capture
  does not mark separately) or a ``resync`` event whose detail says the book
  was rebuilt from a snapshot (``synced at``, ``snapshot at``, ``u == 1``)
  until the next gap, drop, checksum failure, resync request or disconnect.
  Snapshot-only feeds (``l2Book``, ``depthN``) are verified whenever covered.

Faults: every disconnect (its outage), gap / drop / checksum / resync request
(time until the book was verified again), stall, subscribe error, malformed and
duplicate event, with its time and duration; rows of one moment that only
differ by stream are one fault listing its symbols.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ticktape.archive.layout import HOUR_NS, FileKey, LayoutError, scan_files

NO_SYMBOL = "_"
_LAST_FRAME = re.compile(r"last frame ns=(\d+)")
VERIFIED_PREFIXES = ("synced at", "snapshot at", "u == 1")
BREAKS_BOOK = ("gap", "drop", "checksum")
FAULT_KINDS = ("disconnect", "gap", "drop", "resync", "stall", "subscribe_error", "checksum", "malformed", "duplicate")
SNAPSHOT_TABLE = re.compile(r"^book_snapshot_\d+$")

Interval = tuple[int, int]
_THREADS = min(8, (os.cpu_count() or 2) * 2)


@dataclass
class FileInfo:
    key: FileKey
    path: str
    bytes: int
    rows: int = 0
    first_ns: int | None = None
    last_ns: int | None = None


@dataclass
class Fault:
    exchange: str
    kind: str
    start_ns: int
    end_ns: int | None  # None: not resolved inside the report's window
    symbols: list[str]
    channel: str
    detail: str
    count: int = 1

    @property
    def duration_s(self) -> float | None:
        return None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "kind": self.kind, "time": iso(self.start_ns),
                "start_ns": self.start_ns, "end_ns": self.end_ns, "duration_s": self.duration_s,
                "symbols": self.symbols, "channel": self.channel, "detail": self.detail, "events": self.count}


@dataclass
class HourRow:
    exchange: str
    symbol: str
    hour_ns: int
    coverage: float
    book_verified: float | None
    rows: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "symbol": self.symbol, "hour": iso(self.hour_ns),
                "coverage": self.coverage, "book_verified": self.book_verified, "rows": self.rows}


@dataclass
class FeedInfo:
    exchange: str
    symbol: str
    first_ns: int
    last_ns: int
    outages: list[Interval]
    verified: list[Interval] | None  # None: the feed has no book_change table


@dataclass
class Report:
    root: str
    start_ns: int | None
    end_ns: int | None
    feeds: list[FeedInfo] = field(default_factory=list)
    hours: list[HourRow] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # exchange -> event kind -> rows
    tables: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # (exchange, table) -> rows/files/bytes
    files_read: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "from": iso(self.start_ns) if self.start_ns is not None else None,
            "to": iso(self.end_ns) if self.end_ns is not None else None,
            "feeds": [{"exchange": f.exchange, "symbol": f.symbol, "first": iso(f.first_ns), "last": iso(f.last_ns),
                       "outages": [[iso(a), iso(b), (b - a) / 1e9] for a, b in f.outages],
                       "verified": None if f.verified is None else [[iso(a), iso(b)] for a, b in f.verified]}
                      for f in self.feeds],
            "hours": [h.as_dict() for h in self.hours],
            "faults": [f.as_dict() for f in self.faults],
            "counts": self.counts,
            "tables": [{"exchange": e, "table": t, **v} for (e, t), v in sorted(self.tables.items())],
        }


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- intervals ----------------------------------------------------------------------------
def merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def overlap(intervals: list[Interval], lo: int, hi: int) -> int:
    """Nanoseconds of ``[lo, hi)`` inside the (merged) intervals."""
    return sum(max(0, min(b, hi) - max(a, lo)) for a, b in intervals)


def subtract(intervals: list[Interval], holes: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in intervals:
        cur = a
        for ha, hb in holes:
            if hb <= cur or ha >= b:
                continue
            if ha > cur:
                out.append((cur, ha))
            cur = max(cur, hb)
        if cur < b:
            out.append((cur, b))
    return out


# -- reading ------------------------------------------------------------------------------
def _files(root: str, fs: Any) -> Iterator[tuple[FileKey, str, int]]:
    if fs is None:
        for key, path in scan_files(root):
            try:
                yield key, path, os.stat(path).st_size
            except FileNotFoundError:
                continue
        return
    prefix = root[5:].rstrip("/")
    for path, info in fs.find(prefix, detail=True).items():
        rel = path[len(prefix) + 1 :]
        try:
            key = FileKey.from_relpath(rel)
        except LayoutError:
            continue
        yield key, path, int(info.get("size") or 0)


def _footer(fi: FileInfo, fs: Any) -> None:
    if fs is None:
        md = pq.read_metadata(fi.path)
    else:
        with fs.open(fi.path, "rb") as f:
            md = pq.ParquetFile(f).metadata
    fi.rows = md.num_rows
    col = None
    if md.num_row_groups:
        rg = md.row_group(0)
        col = next((j for j in range(rg.num_columns) if rg.column(j).path_in_schema == "local_ts_ns"), None)
    for i in range(md.num_row_groups):
        st = md.row_group(i).column(col).statistics if col is not None else None
        if st is None or not st.has_min_max:
            continue
        lo, hi = int(st.min), int(st.max)
        fi.first_ns = lo if fi.first_ns is None else min(fi.first_ns, lo)
        fi.last_ns = hi if fi.last_ns is None else max(fi.last_ns, hi)


_EVENT_COLS = ["local_ts_ns", "kind", "channel", "conn_id", "detail"]
_EVENT_SCHEMA = pa.schema([pa.field(c, pa.int64() if c in ("local_ts_ns", "conn_id") else pa.string())
                           for c in _EVENT_COLS])


def _read_event_file(fi: FileInfo, fs: Any) -> list[dict[str, Any]]:
    if fs is None:
        t = pq.read_table(fi.path, columns=_EVENT_COLS, use_threads=False)
    else:
        with fs.open(fi.path, "rb") as f:
            t = pq.read_table(f, columns=_EVENT_COLS, use_threads=False)
    d = t.cast(_EVENT_SCHEMA).to_pydict()
    return [{"exchange": fi.key.exchange, "symbol": fi.key.symbol, "tag": fi.key.tag, "ts": int(ts), "kind": kind,
             "channel": chan or "", "conn_id": conn, "detail": detail or ""}
            for ts, kind, chan, conn, detail in zip(d["local_ts_ns"], d["kind"], d["channel"], d["conn_id"],
                                                    d["detail"], strict=True)]


def _read_events(files: list[FileInfo], fs: Any, pool: ThreadPoolExecutor) -> list[dict[str, Any]]:
    out = [e for part in pool.map(lambda fi: _read_event_file(fi, fs), files) for e in part]
    out.sort(key=lambda e: e["ts"])
    return out


# -- the report ---------------------------------------------------------------------------
def build(root: str, start_ns: int | None = None, end_ns: int | None = None,
          exchanges: list[str] | None = None, fs: Any = None) -> Report:
    """``fs``: an fsspec filesystem for ``s3://`` roots (None: local)."""
    rep = Report(root, start_ns, end_ns)
    lo_hour = None if start_ns is None else start_ns - start_ns % HOUR_NS
    data: list[FileInfo] = []
    events: list[FileInfo] = []
    for key, path, size in _files(root, fs):
        if exchanges and key.exchange not in exchanges:
            continue
        if (lo_hour is not None and key.hour_ns < lo_hour) or (end_ns is not None and key.hour_ns >= end_ns):
            continue
        fi = FileInfo(key, path, size)
        (events if key.data_type == "events" else data).append(fi)
    with ThreadPoolExecutor(_THREADS if fs is None else 4 * _THREADS) as pool:  # footers are small reads: overlap them
        list(pool.map(lambda fi: _footer(fi, fs), data))
        evs = _read_events(events, fs, pool)
    rep.files_read = len(data) + len(events)
    if start_ns is not None or end_ns is not None:
        evs = [e for e in evs if (start_ns is None or e["ts"] >= start_ns) and (end_ns is None or e["ts"] < end_ns)]

    for fi in data + events:
        t = rep.tables.setdefault((fi.key.exchange, fi.key.data_type), {"rows": 0, "files": 0, "bytes": 0})
        t["files"] += 1
        t["bytes"] += fi.bytes
        t["rows"] += fi.rows if fi.key.data_type != "events" else 0
    for e in evs:
        evt = rep.tables.get((e["exchange"], "events"))
        if evt is not None:
            evt["rows"] += 1
        c = rep.counts.setdefault(e["exchange"], {})
        c[e["kind"]] = c.get(e["kind"], 0) + 1

    by_feed: dict[tuple[str, str], list[FileInfo]] = defaultdict(list)
    for fi in data:
        if fi.key.symbol != NO_SYMBOL and fi.first_ns is not None:
            by_feed[(fi.key.exchange, fi.key.symbol)].append(fi)
    ev_by_ex: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in evs:
        ev_by_ex[e["exchange"]].append(e)

    for (ex, sym), files in sorted(by_feed.items()):
        first = min(f.first_ns for f in files if f.first_ns is not None)
        last = max(f.last_ns for f in files if f.last_ns is not None)
        if start_ns is not None:
            first = max(first, start_ns)
        if end_ns is not None:
            last = min(last, end_ns)
        # connection-level rows (symbol _) hold for the feeds of the capture that wrote them: in a
        # sharded fleet another shard's disconnect is not this feed's hole
        tags = {f.key.tag for f in files}
        ex_evs = [e for e in ev_by_ex.get(ex, []) if e["symbol"] != NO_SYMBOL or e["tag"] in tags]
        outages = _outages(ex_evs, sym, last)
        has_book = any(f.key.data_type == "book_change" for f in files)
        verified = _verified(ex_evs, sym, last) if has_book else None
        rep.feeds.append(FeedInfo(ex, sym, first, last, outages, verified))
        span = [(first, last)]
        covered = subtract(span, outages)
        good = None
        if verified is not None:  # inside the span, outside outages
            good = [(max(a, first), min(b, last)) for a, b in subtract(verified, outages) if min(b, last) > max(a, first)]
        rows_by_hour: dict[int, dict[str, int]] = defaultdict(dict)
        for f in files:
            rows_by_hour[f.key.hour_ns][f.key.data_type] = rows_by_hour[f.key.hour_ns].get(f.key.data_type, 0) + f.rows
        for h in range(first - first % HOUR_NS, last + 1, HOUR_NS):
            cov = overlap(covered, h, h + HOUR_NS) / HOUR_NS
            ver = None
            if good is not None:
                ver = overlap(good, h, h + HOUR_NS) / HOUR_NS
            elif any(SNAPSHOT_TABLE.match(f.key.data_type) for f in files):
                ver = cov
            rep.hours.append(HourRow(ex, sym, h, cov, ver, dict(sorted(rows_by_hour.get(h, {}).items()))))
    rep.faults = _faults(ev_by_ex, {(f.exchange, f.symbol): f for f in rep.feeds})
    return rep


def _disconnect_start(e: dict[str, Any]) -> int:
    m = _LAST_FRAME.search(e["detail"])
    return min(int(m[1]), e["ts"]) if m else int(e["ts"])


def _next_connect(evs: list[dict[str, Any]], ts: int) -> int | None:
    return next((e["ts"] for e in evs if e["kind"] == "connect" and e["ts"] > ts), None)


def _outages(evs: list[dict[str, Any]], sym: str, end: int) -> list[Interval]:
    out = []
    for e in evs:
        if e["kind"] == "disconnect" and e["symbol"] in (sym, NO_SYMBOL):
            b = _next_connect(evs, e["ts"])
            out.append((_disconnect_start(e), end if b is None else b))
    return merge(out)


def _verifies(e: dict[str, Any]) -> bool:
    return e["kind"] == "resync" and e["detail"].startswith(VERIFIED_PREFIXES)


def _starts_book(e: dict[str, Any]) -> bool:
    return e["kind"] == "connect" or _verifies(e)


def _breaks(e: dict[str, Any]) -> bool:
    return e["kind"] in BREAKS_BOOK or e["kind"] == "disconnect" or (e["kind"] == "resync" and not _verifies(e))


def _verified(evs: list[dict[str, Any]], sym: str, end: int) -> list[Interval]:
    out: list[Interval] = []
    since: int | None = None
    mine = [(_disconnect_start(e) if e["kind"] == "disconnect" else e["ts"], e) for e in evs
            if e["symbol"] == sym or (e["symbol"] == NO_SYMBOL and e["kind"] in ("disconnect", "connect"))]
    for ts, e in sorted(mine, key=lambda x: x[0]):
        if _starts_book(e):
            if since is None:
                since = ts
        elif _breaks(e) and since is not None:
            out.append((since, ts))
            since = None
    if since is not None:
        out.append((since, end))
    return merge(out)


def _faults(ev_by_ex: dict[str, list[dict[str, Any]]], feeds: dict[tuple[str, str], FeedInfo]) -> list[Fault]:
    out: list[Fault] = []
    for ex, evs in sorted(ev_by_ex.items()):
        groups: dict[tuple[str, int, str], Fault] = {}
        for e in evs:
            kind = e["kind"]
            if kind not in FAULT_KINDS or (kind == "resync" and _verifies(e)):
                continue
            if kind == "disconnect" and e["detail"] == "shutdown":
                continue  # the capture's own stop: marked in the archive, not a fault
            start = _disconnect_start(e) if kind == "disconnect" else e["ts"]
            key = (kind, start, e["detail"])
            f = groups.get(key)
            if f is None:
                f = groups[key] = Fault(ex, kind, start, start, [], e["channel"], e["detail"], 0)
                if kind in ("disconnect", "stall"):
                    f.end_ns = _next_connect(evs, e["ts"])
                elif kind in BREAKS_BOOK or kind == "resync":
                    f.end_ns = next((x["ts"] for x in evs if x["ts"] > e["ts"] and _starts_book(x)
                                     and x["symbol"] in (e["symbol"], NO_SYMBOL)), None)
            f.count += 1
            if e["symbol"] != NO_SYMBOL and e["symbol"] not in f.symbols:
                f.symbols.append(e["symbol"])
        out.extend(groups.values())
    out.sort(key=lambda f: (f.start_ns, f.exchange, f.kind))
    return out
