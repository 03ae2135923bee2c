"""Read one (exchange, data type, symbol) series of the archive for a time range, in batches.

Paths are computed from the layout (no listing), hour by hour; a missing
hour is a capture gap, not an error; an unreadable file is (the stream stops). Batches are bounded (``BATCH_ROWS``) so
memory stays flat whatever the range, and clipped to ``[start, end)``. Files
are sorted by arrival time as the writer finalizes them; a file that is not
(a clock step during capture) is sorted once, stably, so the merge downstream
can rely on order.

Batches come out in the replay's internal form: ``local_ts`` is the exact
arrival time (the file's ``local_ts_ns``) as ``timestamp[ns]`` and comes first,
``exchange_ts`` is ``timestamp[ns]`` with 0 for "none" (null on disk).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ticktape.archive.layout import HOUR_NS, FileKey, hour_of_ns, safe_join
from ticktape.ipc.schemas import LOCAL_TS_NS
from ticktape.replay import storage

log = logging.getLogger("ticktape.replay")

BATCH_ROWS = 32_768


class ReplayDataError(RuntimeError):
    """An archive file that cannot be read: the stream stops rather than leave a silent hole."""


def hour_groups(root: str, exchange: str, data_type: str, symbol: str, start_ns: int, end_ns: int) -> list[list[str]]:
    """Per hour of the range that has data, its files: one, or one per capture that wrote the hour
    (shards of a fleet, tagged ``data-<tag>.parquet``)."""
    out: list[list[str]] = []
    h = (start_ns // HOUR_NS) * HOUR_NS
    while h < end_ns:
        key = FileKey(exchange, data_type, symbol, hour_of_ns(h))
        files = storage.hour_files(safe_join(root, key.dir_relpath()))
        if files:
            out.append(files)
        h += HOUR_NS
    return out


def hour_paths(root: str, exchange: str, data_type: str, symbol: str, start_ns: int, end_ns: int) -> list[str]:
    return [p for group in hour_groups(root, exchange, data_type, symbol, start_ns, end_ns) for p in group]


_NS = pa.timestamp("ns")


def _disk_columns(columns: Sequence[str] | None) -> list[str] | None:
    """Columns to read from a file for the requested internal ones."""
    if columns is None:
        return None
    out = [LOCAL_TS_NS]
    out += [c for c in columns if c not in ("local_ts", LOCAL_TS_NS)]
    return out


def internal_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Disk batch -> internal form (local_ts = local_ts_ns as ns first, exchange_ts ns with 0 = none)."""
    names: list[str] = ["local_ts"]
    arrays: list[pa.Array] = [batch.column(LOCAL_TS_NS).view(_NS)]
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if name in ("local_ts", LOCAL_TS_NS):
            continue
        if name == "exchange_ts":
            us = pc.fill_null(col.view(pa.int64()) if col.type != pa.int64() else col, 0)
            col = pc.multiply(us, 1000).view(_NS)
        names.append(name)
        arrays.append(col)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def ts_ns(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    col = batch.column(0)  # every schema starts with local_ts
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return np.asarray(col.view(pa.int64()) if col.type != pa.int64() else col).astype(np.int64, copy=False)


def read_range(
    root: str,
    exchange: str,
    data_type: str,
    symbol: str,
    start_ns: int,
    end_ns: int,
    columns: Sequence[str] | None = None,
    batch_rows: int | None = None,
    read_dictionary: list[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Batches of rows with start_ns <= local_ts < end_ns, in local_ts order.

    Columns named in ``read_dictionary`` come back dictionary-encoded (cheap filters on few distinct values).
    """
    batch_rows = batch_rows or BATCH_ROWS
    for group in hour_groups(root, exchange, data_type, symbol, start_ns, end_ns):
        if len(group) == 1:
            yield from _file_batches(_open(group[0], read_dictionary), _disk_columns(columns), start_ns, end_ns,
                                     batch_rows, group[0])
        else:
            yield from _merged_hour(group, _disk_columns(columns), start_ns, end_ns, batch_rows, read_dictionary)


def _open(path: str, read_dictionary: list[str] | None) -> pq.ParquetFile:
    try:
        return storage.open_parquet(path, read_dictionary)
    except (OSError, pa.ArrowInvalid) as e:
        # never skip data silently: the response is cut short and the client sees an error
        log.error("replay: unreadable file %s: %s", path, e)
        raise ReplayDataError(f"unreadable archive file {path}: {e}") from e


def _merged_hour(
    paths: list[str], cols: list[str] | None, start_ns: int, end_ns: int, batch_rows: int,
    read_dictionary: list[str] | None,
) -> Iterator[pa.RecordBatch]:
    """One hour written by several captures (the tagged files of a sharded fleet): their rows in
    local_ts order, ties in file order (the hour's rows of one series, read into memory together)."""
    batches = [b for p in paths for b in _file_batches(_open(p, read_dictionary), cols, start_ns, end_ns, batch_rows, p)]
    if not batches:
        return
    t = pa.Table.from_batches(batches).unify_dictionaries()  # each file has its own dictionaries
    ts = ts_ns(t)
    order = np.argsort(ts, kind="stable")
    if not bool(np.all(order[1:] > order[:-1])):
        t = t.take(pa.array(order))
    yield from t.combine_chunks().to_batches(max_chunksize=batch_rows)


def _file_batches(
    pf: pq.ParquetFile, cols: list[str] | None, start_ns: int, end_ns: int, batch_rows: int, path: str
) -> Iterator[pa.RecordBatch]:
    # skip row groups wholly outside the range using their statistics
    groups = []
    md = pf.metadata
    ts_idx = md.schema.names.index(LOCAL_TS_NS)
    for g in range(md.num_row_groups):
        st = md.row_group(g).column(ts_idx).statistics
        if st is not None and st.has_min_max:
            # the physical int64 values (ns): exact, and needs no pandas to convert
            lo, hi = int(st.min_raw), int(st.max_raw)
            if hi < start_ns or lo >= end_ns:
                continue
        groups.append(g)
    if not groups:
        return
    last = -(2**63)
    for disk in pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=cols):
        batch = internal_batch(disk)
        ts = ts_ns(batch)
        if len(ts) == 0:
            continue
        if ts[0] < last or bool(np.any(ts[1:] < ts[:-1])):
            log.warning("replay: %s is not sorted by local_ts: sorting it in memory", path)
            yield from _sorted_file(pf, cols, start_ns, end_ns, batch_rows)
            return
        last = int(ts[-1])
        lo = int(np.searchsorted(ts, start_ns, "left")) if ts[0] < start_ns else 0
        hi = int(np.searchsorted(ts, end_ns, "left")) if ts[-1] >= end_ns else len(ts)
        if hi > lo:
            yield batch.slice(lo, hi - lo) if (lo, hi) != (0, len(ts)) else batch
        if ts[-1] >= end_ns:
            return


def _sorted_file(
    pf: pq.ParquetFile, cols: list[str] | None, start_ns: int, end_ns: int, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    t = pf.read(columns=cols)
    t = pa.Table.from_batches([internal_batch(b) for b in t.to_batches()]) if t.num_rows else t
    if t.num_rows == 0:
        return
    ts = ts_ns(t)
    keep = np.flatnonzero((ts >= start_ns) & (ts < end_ns))
    order = keep[np.argsort(ts[keep], kind="stable")]
    t = t.take(pa.array(order))
    yield from t.to_batches(max_chunksize=batch_rows)
