"""``capture import``: Tardis CSV datasets and Tardis raw NDJSON into the archive as ticktape tables.

Inputs, told apart by name and first line:

- Tardis downloadable CSV (``<exchange>_<data_type>_<YYYY-MM-DD>_<SYMBOL>.csv[.gz]``):
  rows become the table ``archive.tardis_csv.TABLE_OF`` names (trades ->
  ``trades``, incremental_book_L2 -> ``book_change``, quotes -> ``book_snapshot_1``, ...).
- Tardis Machine / tardis-dev raw NDJSON (plain or .gz), ``--exchange`` required:
  ``<ISO time> <frame>`` lines (the tardis-dev cache) or ``/replay`` output
  ``{"localTimestamp":"<ISO>","message":<frame>}``; frames become ``raw`` rows,
  byte for byte, with the channel and symbol read from the frame (the
  simulator's recording router, ``sim.replay.route``: the archive's own channel
  names); frames of no symbol go to ``_``.

Rows are built as the rings' numpy records and turned into Arrow by the
writer's converters (``ipc.schemas``), then written with the writer's own
finalize (``writers.finalize.finalize_batches``: one file per hour, zstd,
temp + fsync + rename, merged with rows already there). The journal id of
each (input file, hour) is a hash of the input's path, size and mtime, so
importing the same file again is a no-op, not a duplicate.

Lines that are not Tardis NDJSON are counted, logged and marked in the
archive as ``malformed`` events (symbol ``_``, at the time of the line before);
the empty lines ``/replay`` writes for disconnects (they carry no time) become
``disconnect`` events the same way.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, cast

import numpy as np
import pyarrow as pa

from ticktape.archive import tardis_csv as T
from ticktape.archive.layout import HOUR_NS, FileKey, LayoutError, check_exchange, check_symbol, hour_of_ns
from ticktape.archive.lock import ArchiveLock, LockHeld
from ticktape.engine.settings import ArchiveConfig
from ticktape.ipc import schemas as S
from ticktape.writers.finalize import finalize_batches

log = logging.getLogger("ticktape.import")

HOST = "import"
#: bytes of CSV text parsed at a time (a Tardis day file can be gigabytes)
CSV_BLOCK = 16 << 20


@dataclass
class Imported:
    source: str
    kind: str  # Tardis dataset name, or "ndjson"
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written
    skipped: int = 0  # rows/lines not imported as data (each marked in the archive as an event)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _source_id(path: str) -> str:
    st = os.stat(path)
    h = hashlib.sha1(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()
    return h[:16]


def write_records(
    root: str, exchange: str, table: str, symbol: str, batch: pa.RecordBatch, local_ns: np.ndarray, source_id: str,
    archive: ArchiveConfig,
) -> tuple[list[str], int]:
    """One finalize per UTC hour of ``local_ns`` (the writer's path); returns the files written and
    their new rows (an hour already imported from this source adds none)."""
    if batch.num_rows == 0:
        return [], 0
    hours = local_ns // HOUR_NS
    order = np.argsort(hours, kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        batch = batch.take(pa.array(order))
        hours = hours[order]
    cuts = np.flatnonzero(np.diff(hours)) + 1
    out = []
    added = 0
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(hours)], strict=True):
        key = FileKey(exchange, table, symbol, hour_of_ns(int(hours[lo]) * HOUR_NS))
        jid = f"import-{source_id}-{table}-{symbol}-{int(hours[lo])}".replace(",", "_")
        done = finalize_batches(root, key, [batch.slice(int(lo), int(hi - lo))], jid, archive, HOST, "import")
        if done is not None:
            out.append(done.path)
            added += done.added
    return out, added


# --- Tardis CSV -> ring records -> Arrow ----------------------------------------------------------


def _codes(col: pa.ChunkedArray, names: tuple[str, ...], default: int = 0) -> np.ndarray:
    """String column -> index into ``names`` (``default`` for anything else), vectorized."""
    import pyarrow.compute as pc

    idx = pc.index_in(col, value_set=pa.array(names, pa.string())).fill_null(default)
    return np.asarray(idx.to_numpy(), dtype=np.uint8)


def _records(dataset: str, t: pa.Table) -> tuple[str, np.ndarray, int]:
    """(table, ring-dtype records, ids cut to the id field) for one symbol's rows of a Tardis dataset."""
    table = T.TABLE_OF[dataset]
    n = t.num_rows
    rec = np.zeros(n, dtype=S.dtype_for(table))
    long = 0
    rec["local_ts"] = T.int_col(t, "local_timestamp") * 1000
    rec["exchange_ts"] = T.int_col(t, "timestamp") * 1000
    if dataset in ("trades", "liquidations"):
        ids = t.column("id").cast(pa.binary())
        import pyarrow.compute as pc

        long = int(pc.sum(pc.greater(pc.binary_length(ids), S.TRADE_ID_BYTES)).as_py() or 0)
        rec["id"] = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=f"S{S.TRADE_ID_BYTES}")
        rec["side"] = _codes(t.column("side"), S.TRADE_SIDES)
        rec["price"] = T.float_col(t, "price")
        rec["amount"] = T.float_col(t, "amount")
    elif dataset == "incremental_book_L2":
        rec["is_snapshot"] = np.asarray(t.column("is_snapshot").fill_null(False).to_numpy(zero_copy_only=False))
        bad = t.column("side").combine_chunks()
        codes = _codes(bad, S.BOOK_SIDES, default=255)
        if (codes == 255).any():
            raise T.FormatError(f"incremental_book_L2: side must be bid or ask ({int((codes == 255).sum())} rows)")
        rec["side"] = codes
        rec["price"] = T.float_col(t, "price")
        rec["amount"] = T.float_col(t, "amount")
    elif dataset in T.LEVELS or dataset == "book_ticker":
        k = T.LEVELS.get(dataset, 1)
        if dataset in ("quotes", "book_ticker"):
            names = {"bid_price": ["bid_price"], "bid_amount": ["bid_amount"], "ask_price": ["ask_price"],
                     "ask_amount": ["ask_amount"]}
        else:
            names = {f"{s}_{f}": [f"{s}s[{i}].{f}" for i in range(k)] for s in ("bid", "ask") for f in ("price", "amount")}
        for field_name, cols in names.items():
            m = np.stack([T.float_col(t, c) for c in cols], axis=1)
            rec[field_name] = m if dataset != "book_ticker" else m[:, 0]
    elif dataset == "derivative_ticker":
        ft = t.column("funding_timestamp")
        rec["funding_timestamp"] = np.asarray(ft.fill_null(0).to_numpy(), np.int64) * 1000
        for c in ("funding_rate", "predicted_funding_rate", "open_interest", "last_price", "index_price", "mark_price"):
            rec[c] = T.float_col(t, c)
    return table, rec, long


class _HourBuffer:
    """Rows of one (exchange, table, symbol), held until their hour is complete, then written
    through finalize. Inputs are ordered by local time, so an hour is complete once a later one
    shows up; rows out of that order are still written (as another part of their hour, with its
    own journal id), never dropped."""

    def __init__(self, root: str, exchange: str, table: str, symbol: str, sid: str, cfg: ArchiveConfig) -> None:
        self.root, self.exchange, self.table, self.symbol = root, exchange, table, symbol
        self.sid, self.cfg = sid, cfg
        self.batches: list[pa.RecordBatch] = []
        self.local: list[np.ndarray] = []
        self.parts: dict[int, int] = {}  # hour -> parts written
        self.files: list[str] = []
        self.added = 0
        self.cut_ids = 0  # trade/liquidation ids longer than the record's id field

    def add(self, batch: pa.RecordBatch, local_ns: np.ndarray) -> None:
        if not len(local_ns):
            return
        self.batches.append(batch)
        self.local.append(np.asarray(local_ns, np.int64))
        self.flush(before=int(local_ns.max()) // HOUR_NS)

    def flush(self, before: int | None = None) -> None:
        if not self.batches:
            return
        local = np.concatenate(self.local) if len(self.local) > 1 else self.local[0]
        hours = local // HOUR_NS
        done = np.ones(len(hours), np.bool_) if before is None else hours < before
        if not done.any():
            return
        table = pa.Table.from_batches(self.batches)
        if done.all():
            self.batches, self.local = [], []
        else:
            keep = np.flatnonzero(~done)
            self.batches = table.take(pa.array(keep)).combine_chunks().to_batches()
            self.local = [local[keep]]
            idx = np.flatnonzero(done)
            table, local, hours = table.take(pa.array(idx)), local[idx], hours[idx]
        order = np.argsort(hours, kind="stable")
        if not np.array_equal(order, np.arange(len(order))):
            table, local, hours = table.take(pa.array(order)), local[order], hours[order]
        cuts = np.flatnonzero(np.diff(hours)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(hours)], strict=True):
            h = int(hours[lo])
            part = self.parts.get(h, 0)
            self.parts[h] = part + 1
            chunk = table.slice(int(lo), int(hi - lo)).combine_chunks().to_batches()
            batch = chunk[0] if len(chunk) == 1 else pa.Table.from_batches(chunk).combine_chunks().to_batches()[0]
            files, added = write_records(self.root, self.exchange, self.table, self.symbol, batch,
                                         local[int(lo) : int(hi)], f"{self.sid}-{part}", self.cfg)
            self.files += files
            self.added += added


def import_csv(root: str, path: str, archive: ArchiveConfig | None = None) -> Imported:
    """One Tardis CSV dataset file into the archive (every symbol in it), an hour at a time."""
    import pyarrow.compute as pc

    meta = T.parse_filename(os.path.basename(path))
    if meta is None:
        raise T.FormatError(f"{path}: not a Tardis dataset file name (<exchange>_<data_type>_<YYYY-MM-DD>_<SYMBOL>.csv.gz)")
    cfg = archive or ArchiveConfig()
    res = Imported(path, meta.dataset)
    sid = _source_id(path)
    table = T.TABLE_OF[meta.dataset]
    buffers: dict[tuple[str, str], _HourBuffer] = {}
    for batch in T.read_batches(path, meta.dataset, CSV_BLOCK):
        t = pa.Table.from_batches([batch])
        exs = pc.unique(t.column("exchange")).to_pylist()
        for ex in exs:
            tx = t if len(exs) == 1 else t.filter(pc.equal(t.column("exchange"), ex))
            syms = pc.unique(tx.column("symbol")).to_pylist()
            for sym in syms:
                buf = buffers.get((ex, sym))
                if buf is None:
                    check_exchange(ex)
                    check_symbol(sym)
                    buf = buffers[(ex, sym)] = _HourBuffer(root, ex, table, sym, sid, cfg)
                ts = tx if len(syms) == 1 else tx.filter(pc.equal(tx.column("symbol"), sym))
                _, rec, cut = _records(meta.dataset, ts)
                buf.cut_ids += cut
                buf.add(S.fixed_batch_to_arrow(table, rec), rec["local_ts"])
    for buf in buffers.values():
        buf.flush()
        if buf.cut_ids:
            note = f"{buf.symbol}: {buf.cut_ids} ids longer than {S.TRADE_ID_BYTES} bytes were cut to {S.TRADE_ID_BYTES}"
            res.notes.append(note)
            log.warning("%s %s", path, note)
        res.files += buf.files
        res.rows[table] = res.rows.get(table, 0) + buf.added
    return res


# --- raw NDJSON ---------------------------------------------------------------------------------

_REPLAY_PRE = b'{"localTimestamp":"'
_REPLAY_MID = b'","message":'


def _lines(path: str) -> Iterable[bytes]:
    f = cast(IO[bytes], gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb"))  # noqa: SIM115
    with f:
        yield from f


def _parse_line(line: bytes) -> tuple[bytes, bytes] | None:
    """(ISO time, frame bytes) of a cache or /replay line; None if it is neither."""
    line = line.rstrip(b"\r\n")
    if line.startswith(_REPLAY_PRE):
        i = line.find(_REPLAY_MID, len(_REPLAY_PRE))
        if i < 0 or not line.endswith(b"}"):
            return None
        return line[len(_REPLAY_PRE) : i], line[i + len(_REPLAY_MID) : -1]
    sp = line.find(b" ")
    if sp < 20 or not line[:4].isdigit():
        return None
    return line[:sp], line[sp + 1 :]


def _iso_ns(texts: list[bytes]) -> np.ndarray:
    """ISO UTC times (``...Z``, up to 9 fraction digits) -> int64 ns, one C conversion."""
    arr = np.array([x.rstrip(b"Z").decode() for x in texts], dtype="datetime64[ns]")
    return arr.astype(np.int64)


#: lines parsed, routed and handed to the hour buffers at a time (bounded memory for big files)
NDJSON_CHUNK = 100_000


def import_ndjson(root: str, path: str, exchange: str, archive: ArchiveConfig | None = None) -> Imported:
    """Raw NDJSON (tardis-dev cache lines or /replay output) into ``raw`` rows of ``exchange``.

    Routing a frame to its (channel, symbol) decodes it: that is the one per-frame Python
    step (``sim.replay.route``, msgspec); times and rows are converted a chunk at a time."""
    from ticktape.sim.replay import family, route

    check_exchange(exchange)
    cfg = archive or ArchiveConfig()
    res = Imported(path, "ndjson")
    sid = _source_id(path)
    buffers: dict[str, _HourBuffer] = {}
    marks: list[tuple[int, str, str]] = []  # (time, kind, detail)
    last_ts = 0
    times: list[bytes] = []
    frames: list[bytes] = []
    pending: list[tuple[int, str, str]] = []  # (index of the line before in this chunk, kind, detail)

    def process() -> None:
        nonlocal last_ts
        try:
            ts = _iso_ns(times)
        except ValueError as e:
            raise T.FormatError(f"{path}: a timestamp is not ISO 8601 ({e})") from None
        for i, kind, detail in pending:
            marks.append((int(ts[i]) if i >= 0 else last_ts, kind, detail))
        by_sym: dict[str, tuple[list[int], list[str], list[bytes]]] = {}
        for i, fr in enumerate(frames):
            r = route(fr)
            sym, ch = (S.NO_SYMBOL_NAME, "") if r is None or family(r[0]) != family(exchange) else (r[3], r[2])
            rows = by_sym.get(sym)
            if rows is None:
                rows = by_sym[sym] = ([], [], [])
            rows[0].append(i)
            rows[1].append(ch)
            rows[2].append(fr)
        for sym, (ix, chans, payloads) in by_sym.items():
            buf = buffers.get(sym)
            if buf is None:
                check_symbol(sym)
                buf = buffers[sym] = _HourBuffer(root, exchange, "raw", sym, sid, cfg)
            names = tuple(dict.fromkeys(["", *chans]))
            code = {c: k for k, c in enumerate(names)}
            n = len(ix)
            idx = np.zeros(n, dtype=S.RAW_INDEX_DTYPE)
            idx["local_ts"] = ts[np.asarray(ix, np.int64)]
            lengths = np.fromiter((len(x) for x in payloads), np.int64, n)
            idx["length"] = lengths
            idx["pos"] = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            idx["channel"] = np.fromiter((code[c] for c in chans), np.uint16, n)
            buf.add(S.raw_batch_to_arrow(idx, b"".join(payloads), 0, names), idx["local_ts"])
        if len(ts):
            last_ts = int(ts[-1])
        times.clear()
        frames.clear()
        pending.clear()

    try:
        for no, line in enumerate(_lines(path), 1):
            if not line.strip():
                pending.append((len(times) - 1, "disconnect", f"import: /replay disconnect marker (line {no})"))
                continue
            p = _parse_line(line)
            if p is None:
                pending.append((len(times) - 1, "malformed", f"import: line {no} is not a Tardis NDJSON line"))
                continue
            times.append(p[0])
            frames.append(p[1])
            if len(times) >= NDJSON_CHUNK:
                process()
    except (OSError, EOFError) as e:
        raise T.FormatError(f"{path}: cannot read ({e})") from None
    process()
    for _sym, buf in sorted(buffers.items()):
        buf.flush()
        res.files += buf.files
        res.rows["raw"] = res.rows.get("raw", 0) + buf.added
    if marks:
        res.skipped = len(marks)
        for k in sorted({k for _, k, _ in marks}):
            cnt = sum(1 for _, kk, _ in marks if kk == k)
            msg = (f"{cnt} empty lines (/replay disconnect markers, no time of their own)" if k == "disconnect"
                   else f"{cnt} lines that are not Tardis NDJSON")
            res.notes.append(f"{msg}: marked as {k} events (symbol _)")
            log.warning("%s: %s", path, msg)
        ev = np.zeros(len(marks), dtype=S.EVENT_DTYPE)
        ev["local_ts"] = [t for t, _, _ in marks]
        ev["kind"] = [S.EVENT_CODE[k] for _, k, _ in marks]
        ev["detail"] = [d.encode()[: S.EVENT_DETAIL_BYTES] for _, _, d in marks]
        evbuf = _HourBuffer(root, exchange, "events", S.NO_SYMBOL_NAME, sid, cfg)
        evbuf.add(S.fixed_batch_to_arrow("events", ev), ev["local_ts"])
        evbuf.flush()
        res.files += evbuf.files
        res.rows["events"] = evbuf.added
    return res


def import_path(root: str, path: str, exchange: str | None = None, archive: ArchiveConfig | None = None) -> Imported:
    """A Tardis CSV dataset by its name, anything else as raw NDJSON (needs ``exchange``)."""
    if T.parse_filename(os.path.basename(path)) is not None:
        return import_csv(root, path, archive)
    if exchange is None:
        raise T.FormatError(f"{path}: raw NDJSON needs --exchange (its lines do not name the exchange)")
    return import_ndjson(root, path, exchange, archive)


# --- CLI -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", help="archive root directory (created if missing)")
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="Tardis CSV datasets (<exchange>_<data_type>_<YYYY-MM-DD>_<SYMBOL>.csv.gz) "
                             "and/or raw NDJSON (tardis-dev cache lines or /replay output, plain or .gz)")
    parser.add_argument("--exchange", default=None,
                        help="exchange id of the raw NDJSON files (CSV rows name their own)")
    parser.epilog = ("Importing a file twice changes nothing (each (file, hour) is recorded in the Parquet "
                     "metadata). It takes the archive's lock: it refuses (exit 2) while a capture runs on the same root.")


def main(args: argparse.Namespace) -> int:
    for f in args.files:
        if not os.path.isfile(f):
            print(f"error: {f}: no such file", file=sys.stderr)
            return 2
    if args.exchange is not None:
        try:
            check_exchange(args.exchange)
        except LayoutError as e:
            print(f"error: --exchange: {e}", file=sys.stderr)
            return 2
    os.makedirs(args.archive, exist_ok=True)
    lock = ArchiveLock(args.archive, "capture import")
    try:
        lock.acquire()  # the files it merges into must not be finalized by a capture at the same time
    except LockHeld as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return _import_all(args)
    finally:
        lock.release()


def _import_all(args: argparse.Namespace) -> int:
    total: dict[str, int] = {}
    for f in args.files:
        try:
            res = import_path(args.archive, f, args.exchange)
        except (T.FormatError, LayoutError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        rows = ", ".join(f"{k}: {v}" for k, v in sorted(res.rows.items()) if v) or "no new rows (already imported)"
        print(f"{f}  ({res.kind})  {rows}  files: {len(res.files)}")
        for note in res.notes:
            print(f"  note: {note}")
        for k, v in res.rows.items():
            total[k] = total.get(k, 0) + v
    print("imported " + (", ".join(f"{k}: {v} rows" for k, v in sorted(total.items()) if v) or "nothing new"))
    return 0
