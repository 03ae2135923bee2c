"""``capture merge``: plan the partitions, merge each (``archive.merge``), write the files.

Work is cut by partition: every (exchange, table, symbol, hour) file is one unit,
except a symbol's book: its ``book_change`` hours are merged in hour order in one
unit (each hour starts from the last rows the previous merged hour ended with),
together with the symbol's ``events`` and ``raw`` hours, whose disconnect markers
the book's holes decide. Units run in local processes (``concurrent.futures``) or
on a Dask cluster. Output files are a pure function of the inputs (no wall time,
fixed metadata), so a rerun writes identical files.

Redundant captures keep to one convention: each capture has its own root (or
S3 prefix, e.g. ``s3://bucket/ticks/source=host-a``) with the usual layout; the
source's name is its ``source=`` path component, else the root's last component.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ticktape.archive import merge as M
from ticktape.archive.layout import HOUR_NS, FileKey, data_file_tag, file_metadata, safe_join, scan_files
from ticktape.ipc.schemas import EVENTS_SCHEMA, LOCAL_TS_NS, NO_SYMBOL_NAME, arrow_schema_for

#: the host name written into merged files' metadata (a fixed value: reruns are byte-identical)
MERGE_HOST = "capture-merge"
#: seconds of a neighbouring hour whose trade ids decide which hour a boundary trade belongs to
EDGE_S = 120


@dataclass(frozen=True)
class Source:
    name: str
    root: str  # a local archive root


def source_names(roots: list[str]) -> list[str]:
    """``source=NAME`` from the path, else its last component; made unique with -2, -3..."""
    out: list[str] = []
    for r in roots:
        parts = [p for p in r.rstrip("/").split("/") if p]
        tagged = [p.split("=", 1)[1] for p in parts if p.startswith("source=")]
        name = tagged[-1] if tagged else (parts[-1] if parts else "root")
        base, n = name, 2
        while name in out:
            name, n = f"{base}-{n}", n + 1
        out.append(name)
    return out


@dataclass(frozen=True)
class Selection:
    exchange: str | None = None
    symbols: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None

    def wants(self, k: FileKey) -> bool:
        if self.exchange is not None and k.exchange != self.exchange:
            return False
        if self.symbols and k.symbol not in self.symbols and k.symbol != NO_SYMBOL_NAME:
            return False
        if self.start is not None and k.hour + timedelta(hours=1) <= self.start:
            return False
        return self.end is None or k.hour < self.end


@dataclass(frozen=True)
class Unit:
    """One piece of work: a symbol's book hours (``table`` = "book"), or one file."""

    exchange: str
    table: str
    symbol: str
    hours: tuple[datetime, ...]


@dataclass
class UnitResult:
    tables: dict[str, M.Stats] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    holes: list[dict[str, object]] = field(default_factory=list)  # markers kept, per book symbol


def holds_any(src: Source, sel: Selection) -> bool:
    """Whether the source has a data file within the selection (none: a wrong path or prefix)."""
    return any(sel.wants(k) for k, _ in scan_files(src.root, exchange=sel.exchange))


def plan(sources: list[Source], sel: Selection) -> list[Unit]:
    """The units of work: every partition any source holds within the selection."""
    have: set[tuple[str, str, str, datetime]] = set()  # (exchange, table, symbol, hour): any file tag
    for s in sources:
        have.update((k.exchange, k.data_type, k.symbol, k.hour)
                    for k, _ in scan_files(s.root, exchange=sel.exchange) if sel.wants(k))
    books = {(e, sym) for e, t, sym, _ in have if t == "book_change"}
    units: list[Unit] = []
    by_book: dict[tuple[str, str], set[datetime]] = {}
    for e, t, sym, h in sorted(have):
        if (e, sym) in books and t in ("book_change", "events", "raw"):
            by_book.setdefault((e, sym), set()).add(h)
        else:
            units.append(Unit(e, t, sym, (h,)))
    units += [Unit(e, "book", s, tuple(sorted(h))) for (e, s), h in sorted(by_book.items())]
    return units


# --- reading and writing ---------------------------------------------------------------------


def read(src: Source, key: FileKey, columns: list[str] | None = None) -> pa.Table | None:
    """A source's rows of a partition (its own columns only, no partition columns): the
    union of the hour directory's data files, in arrival order; None if it has none."""
    hour_dir = os.path.dirname(safe_join(src.root, key.relpath()))
    try:
        names = sorted(n for n in os.listdir(hour_dir) if data_file_tag(n) is not None)  # shards tag theirs
    except FileNotFoundError:
        return None
    if not names:
        return None
    schema = arrow_schema_for(key.data_type)
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    parts = [pq.ParquetFile(os.path.join(hour_dir, n)).read(columns=columns).replace_schema_metadata(None)
             for n in names]
    t = pa.concat_tables([p.select(schema.names).cast(schema) for p in parts])
    if len(parts) > 1:
        t = t.take(pa.array(np.argsort(t.column(LOCAL_TS_NS).to_numpy(), kind="stable")))
    return t


def write(out: str, key: FileKey, table: pa.Table, names: list[str]) -> str | None:
    """The merged file of ``key``: written to a temp file and renamed into place (None if empty)."""
    target = safe_join(out, key.relpath())
    if table.num_rows == 0:
        return None
    schema = arrow_schema_for(key.data_type)
    table = table.select(schema.names).cast(schema)
    meta = file_metadata(key, MERGE_HOST, {"merged_from": ",".join(names), "records": str(table.num_rows)})
    tmp = safe_join(out, key.tmp_relpath(f"merge-{secrets.token_hex(4)}"))
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    dict_cols = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    delta = {f.name: "DELTA_BINARY_PACKED" for f in schema if pa.types.is_timestamp(f.type) or f.name == LOCAL_TS_NS}
    pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd", compression_level=3,
                   use_dictionary=dict_cols, column_encoding=delta, row_group_size=256_000)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


# --- one unit ----------------------------------------------------------------------------------


def _kind_text(t: pa.Table) -> pa.ChunkedArray:
    k = t.column("kind")
    return k.cast(pa.string()) if pa.types.is_dictionary(k.type) else k


def _rows_at(t: pa.Table | None, ts: int, kinds: Iterable[str] | None = None) -> pa.Table | None:
    if t is None or not t.num_rows:
        return None
    mask = pc.equal(t.column(LOCAL_TS_NS), ts)
    if kinds is not None:
        mask = pc.and_(mask, pc.is_in(_kind_text(t), pa.array(list(kinds))))
    out = t.filter(mask)
    return out if out.num_rows else None


def _plain_events(tables: list[pa.Table | None]) -> list[pa.Table | None]:
    """Events rows a merge copies as they are: not about one capture's connection or book."""
    return [None if t is None else t.filter(pc.invert(pc.is_in(_kind_text(t), pa.array(M.WINDOW_KINDS))))
            for t in tables]


def _concat(parts: list[pa.Table | None], data_type: str) -> pa.Table:
    schema = arrow_schema_for(data_type)
    got = [p.select(schema.names).cast(schema) for p in parts if p is not None and p.num_rows]
    if not got:
        return schema.empty_table()
    t = pa.concat_tables(got)
    order = np.argsort(t.column(LOCAL_TS_NS).to_numpy(), kind="stable")
    return t.take(pa.array(order))


def _event(kind: str, ts: int, channel: str, detail: str) -> pa.Table:
    """An events row the merge writes: ``info`` where the book continued from another source,
    ``connect`` where it resumed after a hole (the report's outage ends there)."""
    return pa.table({
        "local_ts": pa.array([ts // 1000], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "exchange_ts": pa.array([None], pa.timestamp("us", tz="UTC")),
        "kind": pa.array([kind]).dictionary_encode().cast(EVENTS_SCHEMA.field("kind").type),
        "channel": pa.array([channel]), "conn_id": pa.array([0], pa.uint32()),
        "detail": pa.array([detail]), LOCAL_TS_NS: pa.array([ts], pa.int64()),
    })


def _book_unit(sources: list[Source], unit: Unit, out: str) -> UnitResult:
    names = [s.name for s in sources]
    res = UnitResult(tables={"book_change": M.Stats(), "events": M.Stats(), "raw": M.Stats()})
    tail: np.ndarray | None = None
    prev: dict[int, pa.Table] = {}
    prev_hour: datetime | None = None
    for hour in unit.hours:
        key = FileKey(unit.exchange, "book_change", unit.symbol, hour)
        ekey = FileKey(unit.exchange, "events", unit.symbol, hour)
        rkey = FileKey(unit.exchange, "raw", unit.symbol, hour)
        books = [read(s, key) for s in sources]
        if all(t is None or pc.all(t.column("is_snapshot")).as_py() is not False for t in books):
            # every update a full snapshot (Hyperliquid l2Book): frames stand alone, so the book is
            # the union of the sources' frames and a hole is where no source had any (as without a book)
            for data_type in ("book_change", "events", "raw"):
                res.tables[data_type].add(_write_file(sources, Unit(unit.exchange, data_type, unit.symbol, (hour,)),
                                                      out, res))
            tail, prev, prev_hour = None, {}, hour
            continue
        ev = [read(s, ekey) for s in sources]
        raw = [read(s, rkey) for s in sources]
        contiguous = prev_hour is not None and hour - prev_hour == timedelta(hours=1)
        book_srcs = []
        for i, s in enumerate(sources):
            t = books[i] or arrow_schema_for("book_change").empty_table()
            ctx = prev.get(i) if contiguous else None
            if ctx is not None and ctx.num_rows:
                ctx = ctx.slice(max(0, ctx.num_rows - 4096))
                t = pa.concat_tables([ctx.select(t.schema.names).cast(t.schema), t])
            n_ctx = ctx.num_rows if ctx is not None else 0
            book_srcs.append(M.BookSource(s.name, t, ev[i] if ev[i] is not None else EVENTS_SCHEMA.empty_table(),
                                          context=n_ctx))
            prev[i] = t.slice(n_ctx)
        hour_ns = int(hour.timestamp()) * 1_000_000_000
        bm = M.merge_book(book_srcs, tail if contiguous else None, hour_ns)
        res.tables["book_change"].add(bm.stats)
        if (p := write(out, key, bm.table, names)) is not None:
            res.files.append(p)
        tail = None if bm.ended_in_hole or not bm.table.num_rows else _table_tail(bm.table)
        prev_hour = hour
        # events: plain rows of every source, the breaks no source covered, the resyncs after them
        channel = _book_channel(ev)
        parts: list[pa.Table | None] = []
        plain, est = M.merge_content(_plain_events(ev), names, "events")
        parts.append(plain)
        markers_raw: list[pa.Table | None] = []
        for i, ts in bm.markers:
            parts.append(_rows_at(ev[i], ts, M.BREAK_KINDS))
            markers_raw.append(_empty_raw_at(raw[i], ts))
            res.holes.append({"exchange": unit.exchange, "symbol": unit.symbol, "source": names[i],
                              "local_ts_ns": ts, "shutdown": _is_shutdown(ev[i], ts)})
        for i, ts in bm.resumes:
            parts.append(_event("connect", ts, channel, f"merge: book resumed from source {names[i]}"))
            parts.append(_rows_at(ev[i], ts, ("resync",)))
        for i, j, ts in bm.fills:
            parts.append(_event("info", ts, channel, f"merge: book continued from source {names[j]} after {names[i]}"))
        events = _concat(parts, "events")
        res.tables["events"].add(est)
        if (p := write(out, ekey, events, names)) is not None:
            res.files.append(p)
        merged_raw, rst = M.merge_raw(unit.exchange, raw, names, _concat(markers_raw, "raw"), _edges(sources, rkey))
        res.tables["raw"].add(rst)
        if (p := write(out, rkey, merged_raw, names)) is not None:
            res.files.append(p)
    # a capture's end (its shutdown markers) is no hole: not counted as left
    res.tables["book_change"].left -= sum(1 for h in res.holes if h["shutdown"])
    return res


def _table_tail(t: pa.Table) -> np.ndarray:
    snap = t.column("is_snapshot").to_numpy(zero_copy_only=False).astype(bool)
    h = M.row_hash(t)
    rows = np.flatnonzero(~snap)
    if not len(rows) or rows[-1] != len(snap) - 1:
        return np.zeros(0, np.uint64)
    rows = rows[-M.TAIL_ROWS:]
    rows = rows[np.flatnonzero(np.r_[True, np.diff(rows) == 1])[-1]:]
    return h[rows]


def _book_channel(ev: list[pa.Table | None]) -> str:
    for t in ev:
        if t is not None and t.num_rows:
            r = t.filter(pc.equal(_kind_text(t), "resync"))
            if r.num_rows:
                return str(r.column("channel")[0].as_py() or "")
    return ""


def _is_shutdown(ev: pa.Table | None, ts: int) -> bool:
    rows = _rows_at(ev, ts, M.BREAK_KINDS)
    return rows is not None and all(d == "shutdown" for d in rows.column("detail").to_pylist())


def _empty_raw_at(raw: pa.Table | None, ts: int) -> pa.Table | None:
    rows = _rows_at(raw, ts)
    if rows is None:
        return None
    out = rows.filter(pc.equal(pc.binary_length(rows.column("payload")), 0))
    return out if out.num_rows else None


def _down_at(raw: pa.Table | None, t: np.ndarray) -> np.ndarray:
    """For each time: was this source down then (no frame of the symbol around it, or inside a
    window its own disconnect marker opened)?"""
    if raw is None or not raw.num_rows:
        return np.ones(len(t), bool)
    ts = raw.column(LOCAL_TS_NS).to_numpy()
    empty = pc.equal(pc.binary_length(raw.column("payload")), 0).to_numpy(zero_copy_only=False)
    live, marks = np.sort(ts[~empty]), np.sort(ts[empty])
    p = np.searchsorted(live, t, "right")
    edge = (p == 0) | (p == len(live))
    prev = live[np.clip(p - 1, 0, max(len(live) - 1, 0))] if len(live) else np.zeros(len(t), np.int64)
    nxt = live[np.clip(p, 0, max(len(live) - 1, 0))] if len(live) else np.zeros(len(t), np.int64)
    inside = np.searchsorted(marks, nxt, "left") > np.searchsorted(marks, prev, "right")
    return edge | inside


def _where_others_down(rows: list[pa.Table | None], raws: list[pa.Table | None]) -> list[pa.Table | None]:
    """Of each source's ``rows``, those at a time when every other source was down (by its raw
    frames); one entry per source."""
    out: list[pa.Table | None] = []
    for i, t in enumerate(rows):
        if t is None or not t.num_rows:
            out.append(t)
            continue
        at = t.column(LOCAL_TS_NS).to_numpy()
        down = np.ones(len(at), bool)
        for j, r in enumerate(raws):
            if j != i:
                down &= _down_at(r, at)
        out.append(t.filter(pa.array(down)))
    return out


def _symbol_file(sources: list[Source], unit: Unit,
                 holes: list[dict[str, object]] | None = None) -> tuple[pa.Table, M.Stats]:
    """One file of a table other than a book symbol's: see archive.merge (``holes``: the
    disconnects kept are appended)."""
    names = [s.name for s in sources]
    key = FileKey(unit.exchange, unit.table, unit.symbol, unit.hours[0])
    tables = [read(s, key) for s in sources]
    if unit.table in ("trades", "liquidations") and unit.symbol != NO_SYMBOL_NAME:
        if unit.table == "trades":
            return M.merge_trades(tables, names, _edges(sources, key))
        return M.merge_content(tables, names, unit.table)
    if unit.table == "events":
        plain, st = M.merge_content(_plain_events(tables), names, "events")
        kept: list[pa.Table | None] = [plain]
        if unit.symbol != NO_SYMBOL_NAME:  # a break is kept where every other source was down too
            rkey = FileKey(unit.exchange, "raw", unit.symbol, unit.hours[0])
            brk = [None if t is None else t.filter(pc.is_in(_kind_text(t), pa.array(M.BREAK_KINDS))) for t in tables]
            raws = [read(s, rkey) for s in sources]
            kept += _where_others_down(brk, raws)
            for i, (seen, kept_i) in enumerate(zip(brk, kept[1:], strict=True)):
                if seen is None or kept_i is None:
                    continue
                own = [np.unique(x.filter(pc.not_equal(x.column("detail"), "shutdown")).column(LOCAL_TS_NS).to_numpy())
                       for x in (seen, kept_i)]
                st.windows += len(own[0])  # this source's own outages; filled unless kept
                st.filled += len(own[0]) - len(own[1])
                if holes is not None:
                    holes += [{"exchange": unit.exchange, "symbol": unit.symbol, "source": names[i],
                               "local_ts_ns": int(t), "shutdown": False} for t in own[1]]
            lost = _concat(kept[1:], "events")
            lost = lost.filter(pc.not_equal(lost.column("detail"), "shutdown"))
            at = np.unique(lost.column(LOCAL_TS_NS).to_numpy())
            st.left += len(at)
            live = [r.filter(pc.greater(pc.binary_length(r.column("payload")), 0)).column(LOCAL_TS_NS).to_numpy()
                    for r in raws if r is not None]
            frames = np.sort(np.concatenate(live)) if live else np.zeros(0, np.int64)
            for t in at:  # the first frame any source had after the hole: a connect ends the outage there
                i = int(np.searchsorted(frames, t, "right"))
                if i < len(frames):
                    kept.append(_event("connect", int(frames[i]), "", "merge: a source is live again"))
        return _concat(kept, "events"), st
    if unit.table == "raw":
        markers: list[pa.Table | None] = []
        if unit.symbol != NO_SYMBOL_NAME:
            empty = [None if t is None else t.filter(pc.equal(pc.binary_length(t.column("payload")), 0))
                     for t in tables]
            markers = _where_others_down(empty, tables)
        return M.merge_raw(unit.exchange, tables, names, _concat(markers, "raw"), _edges(sources, key))
    return M.merge_content(tables, names, unit.table)


def _edges(sources: list[Source], key: FileKey) -> pa.Table | None:
    """The identities (trades: ``id``; raw: ``channel``, ``_id``) and source index of the rows the
    sources hold within EDGE_S of this hour in the neighbouring hours (see ``merge.owned``)."""
    parts = []
    hour_ns = key.hour_ns
    cols = ["id"] if key.data_type == "trades" else ["channel", "payload"]
    for i, s in enumerate(sources):
        for delta, lo, hi in ((-1, hour_ns - EDGE_S * 10**9, hour_ns),
                              (1, hour_ns + HOUR_NS, hour_ns + HOUR_NS + EDGE_S * 10**9)):
            t = read(s, FileKey(key.exchange, key.data_type, key.symbol, key.hour + timedelta(hours=delta)),
                     [*cols, LOCAL_TS_NS])
            if t is None:
                continue
            ts = t.column(LOCAL_TS_NS)
            t = t.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))
            if key.data_type == "raw":
                t = M.raw_identity(key.exchange, t).select(["channel", "_id"])
            else:
                t = t.select(cols)
            parts.append(t.append_column("src", pa.array(np.full(t.num_rows, i, np.int64))))
    return pa.concat_tables(parts) if parts else None


def _write_file(sources: list[Source], unit: Unit, out: str, res: UnitResult) -> M.Stats:
    """Merge and write one file's unit; its stats (the file's path goes to ``res``)."""
    table, st = _symbol_file(sources, unit, res.holes)
    if (p := write(out, FileKey(unit.exchange, unit.table, unit.symbol, unit.hours[0]), table,
                   [s.name for s in sources])) is not None:
        res.files.append(p)
    return st


def run_unit(unit: Unit, sources: list[Source], out: str) -> UnitResult:
    """Merge one unit and write its files (runs in a worker process or on a Dask worker)."""
    if unit.table == "book":
        return _book_unit(sources, unit, out)
    res = UnitResult()
    res.tables[unit.table] = _write_file(sources, unit, out, res)
    return res


def run_all(sources: list[Source], units: list[Unit], out: str, workers: int = 1,
            submit: Callable[[list[Unit]], list[UnitResult]] | None = None) -> list[UnitResult]:
    """Every unit, in ``workers`` local processes (1: in this process), or through ``submit``
    (a Dask client's map/gather)."""
    if submit is not None:
        return submit(units)
    if workers <= 1 or len(units) <= 1:
        return [run_unit(u, sources, out) for u in units]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_unit, units, [sources] * len(units), [out] * len(units)))
