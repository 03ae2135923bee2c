"""``capture export``: a range of the archive as Tardis downloadable-CSV dataset files.

One gzip CSV per (dataset, UTC day of ``local_timestamp``, symbol), Tardis's
file names, columns and units (``archive.tardis_csv``). Where each dataset
comes from:

- ``trades``, ``incremental_book_L2``, ``book_ticker``, ``derivative_ticker``,
  ``liquidations``: the table of the same rows (``trades``, ``book_change``, ...).
- ``book_snapshot_25`` / ``book_snapshot_5`` / ``quotes`` (Tardis: the top 25 / 5
  / 1 levels after every message that changed them): a stored table of that
  depth if the archive has one (e.g. imported from Tardis; ``quotes`` is stored
  as ``book_snapshot_1``), else rebuilt from ``book_change`` message by message
  (``replay.book.Book``, the book the replay server keeps), else cut from a
  stored ``book_snapshot_N`` (its first levels, a row when they changed; a
  source shallower than the dataset leaves the deeper levels empty).

Timestamps become integer microseconds (Tardis's unit): sub-µs digits of
``local_ts`` are not in the export. An ``exchange_ts`` of 0 (the message had
none) is written as 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import numpy as np
import pyarrow as pa

from ticktape.archive import tardis_csv as T
from ticktape.archive.catalog import TimeLike, time_range
from ticktape.archive.layout import LayoutError, check_exchange
from ticktape.archive.loaders import list_archive, load
from ticktape.ipc.schemas import LOCAL_TS_NS, NO_SYMBOL_NAME, local_ns

log = logging.getLogger("ticktape.export")

DAY_US = 86_400_000_000
#: datasets exported by default (every one the archive can feed; absent tables are skipped)
DEFAULT_DATASETS = T.DATASETS


@dataclass(frozen=True)
class Exported:
    path: str
    dataset: str
    symbol: str
    day: str
    rows: int
    source: str  # the ticktape table (or "book_change (rebuilt)") it came from


def ts_us(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A timestamp column (any unit) as int64 microseconds; nulls become 0."""
    unit = col.type.unit if pa.types.is_timestamp(col.type) else "us"
    v = np.asarray(col.cast(pa.int64()).fill_null(0).to_numpy(), dtype=np.int64)
    if unit == "ns":
        return v // 1000
    if unit == "ms":
        return v * 1000
    if unit == "s":
        return v * 1_000_000
    return v


def _f64(a: np.ndarray) -> pa.Array:
    """Doubles with NaN written as an empty field."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    return pa.array(a, pa.float64(), mask=np.isnan(a))


def _frame(exchange: str, symbol: str, ts: np.ndarray, local: np.ndarray, cols: list[pa.Array]) -> list[pa.Array]:
    n = len(local)
    return [
        pa.array(np.full(n, exchange, dtype=object), pa.string()) if n else pa.array([], pa.string()),
        pa.array(np.full(n, symbol, dtype=object), pa.string()) if n else pa.array([], pa.string()),
        pa.array(ts, pa.int64()),
        pa.array(local, pa.int64()),
        *cols,
    ]


def _as_string(col: pa.ChunkedArray) -> pa.Array:
    col = col.combine_chunks()
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    return col.fill_null("")


# --- snapshot-shaped datasets ------------------------------------------------------------


def _levels_table(dataset: str, bp: np.ndarray, ba: np.ndarray, ap: np.ndarray, aa: np.ndarray) -> list[pa.Array]:
    """(n, K) level matrices (NaN = no level) -> the dataset's level columns in Tardis order."""
    if dataset in ("quotes", "book_ticker"):
        return [_f64(aa[:, 0]), _f64(ap[:, 0]), _f64(bp[:, 0]), _f64(ba[:, 0])]
    out: list[pa.Array] = []
    for i in range(T.LEVELS[dataset]):
        out += [_f64(ap[:, i]), _f64(aa[:, i]), _f64(bp[:, i]), _f64(ba[:, i])]
    return out


def _fit(m: np.ndarray, k: int) -> np.ndarray:
    """First ``k`` levels of an (n, N) matrix, NaN-padded when N < k."""
    if m.shape[1] >= k:
        return m[:, :k]
    return np.concatenate([m, np.full((m.shape[0], k - m.shape[1]), np.nan)], axis=1)


def _matrix(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks()
    n, size = len(arr), arr.type.list_size
    return np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float64).reshape(n, size)


def _changed(rows: np.ndarray) -> np.ndarray:
    """Indices of rows that differ from the row before them (NaN equals NaN); the first always."""
    if len(rows) == 0:
        return np.zeros(0, np.int64)
    same = np.zeros(len(rows), np.bool_)
    a, b = rows[1:], rows[:-1]
    same[1:] = ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1)
    return np.flatnonzero(~same)


class _SnapshotCut:
    """Rows of stored snapshot tables cut to ``k`` levels, kept where those levels changed
    (fed hour by hour; the last row seen is carried over)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.prev: np.ndarray | None = None

    def feed(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        k = self.k
        mats = [_fit(_matrix(table.column(c)), k) for c in ("bid_price", "bid_amount", "ask_price", "ask_amount")]
        rows = np.concatenate(mats, axis=1)
        if self.prev is not None and len(rows):
            keep = _changed(np.concatenate([self.prev[None, :], rows]))  # row 0: the previous hour's last
            keep = keep[keep > 0] - 1
        else:
            keep = _changed(rows)
        if len(rows):
            self.prev = rows[-1].copy()
        empty = np.isnan(mats[0][keep, 0]) & np.isnan(mats[2][keep, 0])
        keep = keep[~empty]
        return ts_us(table.column("exchange_ts"))[keep], ts_us(table.column("local_ts"))[keep], [m[keep] for m in mats]


class _BookRebuild:
    """Top ``k`` after every book_change message that changed it (Tardis's book_snapshot_K / quotes),
    fed hour by hour with the book carried over.

    A message = consecutive rows with the same local and exchange time; a run of
    ``is_snapshot`` rows after other rows replaces the book. Nothing is emitted
    before the first snapshot (the book is not known yet). The per-message work is
    ``replay.book.Book`` (bulk dict updates, sorted price lists).
    """

    def __init__(self, k: int) -> None:
        from ticktape.replay.book import Book

        self.k = k
        self.book = Book()
        self.known = False
        self.last: tuple[list[float], ...] | None = None
        self.prev_snap = False

    def feed(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        k = self.k
        n = table.num_rows
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), [np.zeros((0, k))] * 4
        # messages are told apart at full precision (the exact arrival time where the table keeps it)
        local = (local_ns(table) if LOCAL_TS_NS in table.column_names
                 else np.asarray(table.column("local_ts").cast(pa.int64()).to_numpy(), dtype=np.int64))
        ets = np.asarray(table.column("exchange_ts").cast(pa.int64()).fill_null(0).to_numpy(), dtype=np.int64)
        snap = np.asarray(table.column("is_snapshot").to_numpy(zero_copy_only=False), dtype=np.bool_)
        side = _as_string(table.column("side"))
        is_ask = np.asarray(pa.compute.equal(side, "ask").to_numpy(zero_copy_only=False), dtype=np.bool_)
        price = np.asarray(table.column("price").to_numpy(), dtype=np.float64)
        amount = np.asarray(table.column("amount").to_numpy(), dtype=np.float64)
        reset = snap & np.concatenate(([not self.prev_snap], ~snap[:-1]))
        self.prev_snap = bool(snap[-1])
        start = np.concatenate(([True], (local[1:] != local[:-1]) | (ets[1:] != ets[:-1]))) | reset
        bounds = np.append(np.flatnonzero(start), n).tolist()
        resets = reset.tolist()
        book = self.book
        book.load(is_ask, price, amount)
        idx: list[int] = []
        out: list[tuple[list[float], list[float], list[float], list[float]]] = []
        last = self.last
        for j in range(len(bounds) - 1):
            lo, hi = bounds[j], bounds[j + 1]
            if resets[lo]:
                book.clear()
                self.known = True
            book.apply(lo, hi)
            if not self.known:
                continue
            lv = book.levels(k)
            if lv != last and (lv[0] or lv[2]):
                out.append(lv)
                idx.append(hi - 1)
            last = lv
        self.last = last
        m = len(out)
        mats = [np.full((m, k), np.nan) for _ in range(4)]
        for r, lv in enumerate(out):
            for c in range(4):
                vals = lv[c]
                mats[c][r, : len(vals)] = vals
        ix = np.asarray(idx, np.int64)
        return ts_us(table.column("exchange_ts"))[ix], ts_us(table.column("local_ts"))[ix], mats


# --- per dataset -------------------------------------------------------------------------


class SeriesLike(Protocol):
    """One (exchange, table, symbol) of an archive and its first and last hour (``loaders.Series``, or the
    replay server's inventory rows)."""

    @property
    def exchange(self) -> str: ...
    @property
    def data_type(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def first_hour(self) -> datetime: ...
    @property
    def last_hour(self) -> datetime: ...


class Archive:
    """What the archive holds for one exchange (from directory names, no file opened; or from ``series``
    already listed, e.g. by the replay server's inventory)."""

    def __init__(self, root: str, exchange: str, series: Iterable[SeriesLike] | None = None) -> None:
        self.root = root
        self.exchange = exchange
        self.have: dict[str, set[str]] = {}
        self.span: dict[tuple[str, str], tuple[datetime, datetime]] = {}
        for s in list_archive(root) if series is None else series:
            if s.exchange == exchange and s.symbol != NO_SYMBOL_NAME:
                self.have.setdefault(s.symbol, set()).add(s.data_type)
                self.span[(s.symbol, s.data_type)] = (s.first_hour, s.last_hour + timedelta(hours=1))

    def hours(self, table: str, symbol: str, start: datetime, end: datetime) -> Iterator[pa.Table]:
        """The range hour by hour (memory stays one hour), cut to the hours the series has."""
        lo, hi = self.span[(symbol, table)]
        lo, hi = max(start, lo), min(end, hi)
        h = lo.replace(minute=0, second=0, microsecond=0)
        while h < hi:
            nxt = h + timedelta(hours=1)
            yield load(self.root, self.exchange, table, symbol, max(lo, h), min(hi, nxt))
            h = nxt

    def snapshot_tables(self, symbol: str) -> list[str]:
        """Stored book_snapshot_N tables, deepest first."""
        snaps = [t for t in self.have.get(symbol, ()) if t.startswith("book_snapshot_")]
        return sorted(snaps, key=lambda t: -int(t.rsplit("_", 1)[1]))


def _simple(dataset: str, t: pa.Table) -> tuple[np.ndarray, np.ndarray, list[pa.Array]]:
    """(timestamp µs, local_timestamp µs, the dataset's other columns) of a table of the same rows."""
    if dataset in ("trades", "liquidations"):
        cols = [_as_string(t.column("id")), _as_string(t.column("side")), t.column("price").combine_chunks(),
                t.column("amount").combine_chunks()]
    elif dataset == "incremental_book_L2":
        cols = [t.column("is_snapshot").combine_chunks(), _as_string(t.column("side")),
                t.column("price").combine_chunks(), t.column("amount").combine_chunks()]
    elif dataset == "book_ticker":
        mats = [np.asarray(t.column(c).fill_null(np.nan).to_numpy(), np.float64)[:, None]
                for c in ("bid_price", "bid_amount", "ask_price", "ask_amount")]
        cols = _levels_table(dataset, *mats)
    else:  # derivative_ticker
        ft = t.column("funding_timestamp")
        cols = [
            pa.array(ts_us(ft), pa.int64(), mask=np.asarray(ft.is_null().to_numpy(zero_copy_only=False), np.bool_)),
            *(t.column(c).combine_chunks() for c in ("funding_rate", "predicted_funding_rate", "open_interest",
                                                     "last_price", "index_price", "mark_price")),
        ]
    return ts_us(t.column("exchange_ts")), ts_us(t.column("local_ts")), cols


#: dataset -> the table of the same rows
_SAME_ROWS = {"trades": "trades", "liquidations": "liquidations", "incremental_book_L2": "book_change",
              "book_ticker": "book_ticker", "derivative_ticker": "derivative_ticker"}


def chunks(arc: Archive, dataset: str, symbol: str, start: datetime, end: datetime
           ) -> tuple[str, Iterator[pa.Table]] | None:
    """(the table it comes from, the dataset's rows hour by hour) for one symbol; None if the archive
    has nothing to make it from."""
    have = arc.have.get(symbol, set())
    ex = arc.exchange
    names = list(T.columns(dataset))

    def frame(ts: np.ndarray, local: np.ndarray, cols: list[pa.Array]) -> pa.Table:
        return pa.Table.from_arrays(_frame(ex, symbol, ts, local, cols), names=names)

    table = _SAME_ROWS.get(dataset)
    if table is not None:
        if table not in have:
            return None
        return table, (frame(*_simple(dataset, t)) for t in arc.hours(table, symbol, start, end))
    k = T.LEVELS[dataset]
    own = T.TABLE_OF[dataset]
    feeder: _SnapshotCut | _BookRebuild
    if own in have:
        source, feeder = own, _SnapshotCut(k)
    elif "book_change" in have:
        source, feeder = "book_change", _BookRebuild(k)
    elif arc.snapshot_tables(symbol):
        source, feeder = arc.snapshot_tables(symbol)[0], _SnapshotCut(k)
    else:
        return None

    def gen() -> Iterator[pa.Table]:
        for t in arc.hours(source, symbol, start, end):
            ets, loc, mats = feeder.feed(t)
            yield frame(ets, loc, _levels_table(dataset, *mats))

    return (f"{source} (rebuilt)" if source == "book_change" else source), gen()


def export(
    root: str,
    out_dir: str,
    exchange: str,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    symbols: Sequence[str] | None = None,
    datasets: Sequence[str] = DEFAULT_DATASETS,
    on_file: Callable[[Exported], None] | None = None,
) -> list[Exported]:
    """Write the datasets of ``exchange`` (every symbol, or ``symbols``) for ``start <= local_ts < end``
    (no bound: from the first / to the last hour the archive has for the exchange). Reads and
    writes an hour at a time."""
    check_exchange(exchange)
    bad = [d for d in datasets if d not in T.DATASETS]
    if bad:
        raise ValueError(f"unknown Tardis dataset {bad[0]!r} (one of {', '.join(T.DATASETS)})")
    arc = Archive(root, exchange)
    if not arc.span:
        raise ValueError(f"archive {root} has nothing for exchange {exchange!r}")
    s, e = time_range(
        start if start is not None else min(lo for lo, _ in arc.span.values()),
        end if end is not None else max(hi for _, hi in arc.span.values()),
    )
    syms = sorted(arc.have) if symbols is None else list(symbols)
    os.makedirs(out_dir, exist_ok=True)
    done: list[Exported] = []

    def finish(w: T.DatasetWriter, path: str, dataset: str, sym: str, day: date, source: str) -> None:
        w.close()
        item = Exported(path, dataset, sym, f"{day:%Y-%m-%d}", w.rows, source)
        log.info("EXPORT %s rows: %d from %s", path, w.rows, source)
        done.append(item)
        if on_file is not None:
            on_file(item)

    for sym in syms:
        for dataset in datasets:
            made = chunks(arc, dataset, sym, s, e)
            if made is None:
                continue
            source, parts = made
            cur: tuple[T.DatasetWriter, str, date] | None = None
            for table in parts:
                if table.num_rows == 0:
                    continue
                days = np.asarray(table.column("local_timestamp").to_numpy(), np.int64) // DAY_US
                cuts = np.flatnonzero(np.diff(days)) + 1
                for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(days)], strict=True):
                    day = datetime.fromtimestamp(int(days[lo]) * 86_400, UTC).date()
                    if cur is None or cur[2] != day:
                        if cur is not None:
                            finish(cur[0], cur[1], dataset, sym, cur[2], source)
                        path = os.path.join(out_dir, T.filename(exchange, dataset, day, sym))
                        cur = (T.DatasetWriter(path, dataset), path, day)
                    cur[0].write(table.slice(int(lo), int(hi - lo)))
            if cur is not None:
                finish(cur[0], cur[1], dataset, sym, cur[2], source)
    return done


# --- CLI -------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", help="archive root directory")
    parser.add_argument("out", help="directory for the .csv.gz files (created if missing)")
    parser.add_argument("--exchange", required=True, help="exchange id, e.g. binance-futures")
    parser.add_argument("--from", dest="start", default=None, metavar="TIME",
                        help="range start: YYYY-MM-DD, YYYY-MM-DD:HH or ISO time (UTC); default: the archive's first hour")
    parser.add_argument("--to", dest="end", default=None, metavar="TIME",
                        help="range end: YYYY-MM-DD:HH includes that hour; an ISO time is exclusive; default: the last hour")
    parser.add_argument("--symbols", default=None, help="comma-separated symbols (default: every symbol archived)")
    parser.add_argument("--data-types", default=",".join(DEFAULT_DATASETS),
                        help=f"comma-separated Tardis datasets (default: all: {', '.join(DEFAULT_DATASETS)})")
    parser.epilog = (
        "Files are named <exchange>_<data_type>_<YYYY-MM-DD>_<SYMBOL>.csv.gz, one per UTC day of local_timestamp, "
        "with Tardis's columns and µs timestamps. Datasets the archive has no table for are skipped."
    )


def main(args: argparse.Namespace) -> int:
    if not os.path.isdir(args.archive):
        print(f"error: archive {args.archive}: not a directory", file=sys.stderr)
        return 2
    symbols = [x.strip() for x in args.symbols.split(",") if x.strip()] if args.symbols else None
    datasets = [x.strip() for x in args.data_types.split(",") if x.strip()]

    def show(x: Exported) -> None:
        print(f"{x.path}  rows: {x.rows}  from: {x.source}")

    try:
        done = export(args.archive, args.out, args.exchange, args.start, args.end, symbols, datasets, show)
    except (ValueError, LayoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {len(done)} files, {sum(x.rows for x in done)} rows")
    return 0
