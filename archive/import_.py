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


def _records(dataset: str, t: pa.Table) -> tuple[str, np.ndarray, list[str]]:
    """(table, ring-dtype records, notes) for one symbol's rows of a Tardis dataset."""
    table = T.TABLE_OF[dataset]
    n = t.num_rows
    rec = np.zeros(n, dtype=S.dtype_for(table))
    notes: list[str] = []
    rec["local_ts"] = T.int_col(t, "local_timestamp") * 1000
    rec["exchange_ts"] = T.int_col(t, "timestamp") * 1000
    if dataset in ("trades", "liquidations"):
        ids = t.column("id").cast(pa.binary())
        import pyarrow.compute as pc

        long = int(pc.sum(pc.greater(pc.binary_length(ids), S.TRADE_ID_BYTES)).as_py() or 0)
        if long:
            notes.append(f"{long} ids longer than {S.TRADE_ID_BYTES} bytes were cut to {S.TRADE_ID_BYTES}")
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
    return table, rec, notes


def import_csv(root: str, path: str, archive: ArchiveConfig | None = None) -> Imported:
    """One Tardis CSV dataset file into the archive (every symbol in it)."""
    import pyarrow.compute as pc

    meta = T.parse_filename(os.path.basename(path))
    if meta is None:
        raise T.FormatError(f"{path}: not a Tardis dataset file name (<exchange>_<data_type>_<YYYY-MM-DD>_<SYMBOL>.csv.gz)")
    cfg = archive or ArchiveConfig()
    t = T.read(path, meta.dataset)
    res = Imported(path, meta.dataset)
    sid = _source_id(path)
    for ex in pc.unique(t.column("exchange")).to_pylist():
        check_exchange(ex)
        tx = t.filter(pc.equal(t.column("exchange"), ex))
        for sym in pc.unique(tx.column("symbol")).to_pylist():
            check_symbol(sym)
            ts = tx.filter(pc.equal(tx.column("symbol"), sym))
            table, rec, notes = _records(meta.dataset, ts)
            res.notes += [f"{sym}: {x}" for x in notes]
            for x in notes:
                log.warning("%s %s: %s", path, sym, x)
            batch = S.fixed_batch_to_arrow(table, rec)
            files, added = write_records(root, ex, table, sym, batch, rec["local_ts"], sid, cfg)
            res.files += files
            res.rows[table] = res.rows.get(table, 0) + added
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


class _Series:
    """Raw rows of one symbol: times, channel ids, payload slices of one buffer."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.chan: list[int] = []
        self.payload: list[bytes] = []
        self.channels: dict[str, int] = {"": 0}


def import_ndjson(root: str, path: str, exchange: str, archive: ArchiveConfig | None = None) -> Imported:
    """Raw NDJSON (tardis-dev cache lines or /replay output) into ``raw`` rows of ``exchange``."""
    from ticktape.sim.replay import route

    check_exchange(exchange)
    cfg = archive or ArchiveConfig()
    res = Imported(path, "ndjson")
    times: list[bytes] = []
    frames: list[bytes] = []
    marks: list[tuple[int, str, str]] = []  # (index of the line before, kind, detail)
    try:
        for no, line in enumerate(_lines(path), 1):
            if not line.strip():
                marks.append((len(times) - 1, "disconnect", f"import: /replay disconnect marker (line {no})"))
                continue
            p = _parse_line(line)
            if p is None:
                marks.append((len(times) - 1, "malformed", f"import: line {no} is not a Tardis NDJSON line"))
                continue
            times.append(p[0])
            frames.append(p[1])
    except (OSError, EOFError) as e:
        raise T.FormatError(f"{path}: cannot read ({e})") from None
    try:
        ts = _iso_ns(times)
    except ValueError as e:
        raise T.FormatError(f"{path}: a timestamp is not ISO 8601 ({e})") from None
    series: dict[str, _Series] = {}
    for i, fr in enumerate(frames):
        r = route(fr)
        if r is None or r[0] != exchange:
            sym, ch = S.NO_SYMBOL_NAME, ""
        else:
            sym, ch = r[3], r[2]
        s = series.get(sym)
        if s is None:
            s = series[sym] = _Series()
        cid = s.channels.get(ch)
        if cid is None:
            cid = s.channels[ch] = len(s.channels)
        s.ts.append(int(ts[i]))
        s.chan.append(cid)
        s.payload.append(fr)
    sid = _source_id(path)
    for sym, s in sorted(series.items()):
        check_symbol(sym)
        n = len(s.ts)
        idx = np.zeros(n, dtype=S.RAW_INDEX_DTYPE)
        idx["local_ts"] = np.asarray(s.ts, np.int64)
        lengths = np.fromiter((len(p) for p in s.payload), np.int64, n)
        idx["length"] = lengths
        idx["pos"] = np.concatenate(([0], np.cumsum(lengths)[:-1])) if n else np.zeros(0, np.int64)
        idx["channel"] = np.asarray(s.chan, np.uint16)
        names = tuple(sorted(s.channels, key=s.channels.__getitem__))
        batch = S.raw_batch_to_arrow(idx, b"".join(s.payload), 0, names)
        files, added = write_records(root, exchange, "raw", sym, batch, idx["local_ts"], sid, cfg)
        res.files += files
        res.rows["raw"] = res.rows.get("raw", 0) + added
    if marks:
        res.skipped = len(marks)
        kinds = {k for _, k, _ in marks}
        for k in sorted(kinds):
            cnt = sum(1 for _, kk, _ in marks if kk == k)
            msg = (f"{cnt} empty lines (/replay disconnect markers, no time of their own)" if k == "disconnect"
                   else f"{cnt} lines that are not Tardis NDJSON")
            res.notes.append(f"{msg}: marked as {k} events (symbol _)")
            log.warning("%s: %s", path, msg)
        ev = np.zeros(len(marks), dtype=S.EVENT_DTYPE)
        ev["local_ts"] = [int(ts[i]) if i >= 0 and len(ts) else 0 for i, _, _ in marks]
        ev["kind"] = [S.EVENT_CODE[k] for _, k, _ in marks]
        ev["detail"] = [d.encode()[: S.EVENT_DETAIL_BYTES] for _, _, d in marks]
        batch = S.fixed_batch_to_arrow("events", ev)
        files, added = write_records(root, exchange, "events", S.NO_SYMBOL_NAME, batch, ev["local_ts"], sid, cfg)
        res.files += files
        res.rows["events"] = added
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
