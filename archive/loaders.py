"""Load a range of the archive into memory: pyarrow Table, pandas or Polars.

Opens only the files the catalog computes for the range and, through
pyarrow.dataset's predicate pushdown on ``local_ts_ns`` row-group statistics,
reads only the row groups that overlap it. Missing hours are skipped and
logged (a capture gap is not an error); an empty range gives an empty table
with the data type's schema.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ticktape.archive.catalog import (
    TimeLike,
    _as_list,
    keys_for_range,
    path_for,
    resolve_data_type,
    time_range,
)
from ticktape.archive.layout import FileKey, data_file_tag, safe_join, scan_files
from ticktape.ipc.schemas import LOCAL_TS_NS, arrow_schema_for, local_ns

log = logging.getLogger("ticktape.archive")

SYMBOL_TYPE = pa.dictionary(pa.int16(), pa.string())
Format = Literal["arrow", "pandas", "polars"]


def _filesystem(root: str, s3_options: Any = None) -> tuple[Any, str]:
    """(pyarrow filesystem, root as that filesystem names it)."""
    if root.startswith("s3://"):
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        from ticktape.archive.s3_client import S3Options, make_fs

        fs = make_fs(s3_options or S3Options())
        return PyFileSystem(FSSpecHandler(fs)), root[5:].rstrip("/")
    from pyarrow.fs import LocalFileSystem

    return LocalFileSystem(), os.path.abspath(root)


def hour_files(fs: Any, base: str, key: FileKey) -> list[str]:
    """Every data file of ``key``'s hour (each capture's tag: shards, sources), untagged first."""
    from pyarrow.fs import FileSelector, FileType

    d = safe_join(base, key.dir_relpath())
    infos = fs.get_file_info(FileSelector(d, allow_not_found=True))
    found = [(t, i.path) for i in infos if i.type == FileType.File and (t := data_file_tag(i.base_name)) is not None]
    return [p for _, p in sorted(found)]


def files_for_range(
    root: str,
    exchange: str,
    data_types: str | Sequence[str],
    symbols: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    depth: int | None = None,
    s3_options: Any = None,
) -> list[str]:
    """The data files a range has under ``root`` (local or ``s3://``): ``paths_for_range`` as the
    archive holds it, every capture's tagged file of an hour included (one listing per hour directory)."""
    fs, base = _filesystem(root, s3_options)
    keys = keys_for_range(exchange, data_types, symbols, start, end, depth)
    prefix = "s3://" if root.startswith("s3://") else ""
    return [prefix + p for k in keys for p in hour_files(fs, base, k)]


def load(
    root: str,
    exchange: str,
    data_type: str,
    symbols: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    depth: int | None = None,
    columns: Sequence[str] | None = None,
    format: Format = "arrow",
    s3_options: Any = None,
) -> Any:
    """Rows with ``start <= local_ts_ns < end``, sorted by arrival time (stable: file order kept on ties).

    ``start``/``end`` take ``YYYY-MM-DD:HH`` (an end hour is included) or ISO
    times (an ISO end is exclusive). Several symbols (list or ``"A,B"``) add a
    dictionary-string ``symbol`` column. ``root`` may be ``s3://bucket/prefix``.
    """
    dt = resolve_data_type(data_type, depth)
    syms = _as_list(symbols)
    multi = len(syms) > 1
    s, e = time_range(start, end)
    schema = arrow_schema_for(dt)
    out_schema = schema.append(pa.field("symbol", SYMBOL_TYPE)) if multi else schema
    want = list(columns) if columns is not None else out_schema.names
    unknown = [c for c in want if c not in out_schema.names]
    if unknown:
        raise ValueError(f"unknown column(s) {unknown} for {dt}; columns are {out_schema.names}")
    read_cols = [c for c in schema.names if c in want or c == LOCAL_TS_NS]

    fs, base = _filesystem(root, s3_options)
    keys = keys_for_range(exchange, dt, syms, s, e)
    lo = pa.scalar(_ns_of(s), pa.int64())
    hi = pa.scalar(_ns_of(e), pa.int64())
    expr = (ds.field(LOCAL_TS_NS) >= lo) & (ds.field(LOCAL_TS_NS) < hi)
    parts: list[pa.Table] = []
    for i, sym in enumerate(syms):
        wanted = [k for k in keys if k.symbol == sym]
        found: list[str] = []
        missing: list[str] = []
        for k in wanted:
            files = hour_files(fs, base, k)
            found += files
            if not files:
                missing.append(path_for(base, k))
        if missing:
            log.info(
                "load: %d of %d files missing for %s %s %s (first: %s)",
                len(missing),
                len(wanted),
                exchange,
                dt,
                sym,
                missing[0],
            )
        if not found:
            continue
        t = ds.dataset(found, schema=schema, format="parquet", filesystem=fs).to_table(
            columns=read_cols, filter=expr
        )
        if multi:
            codes = pa.array(np.full(t.num_rows, i, dtype=np.int16))
            t = t.append_column("symbol", pa.DictionaryArray.from_arrays(codes, pa.array(syms, pa.string())))
        parts.append(t)
    full = pa.schema(
        [out_schema.field(c) for c in read_cols] + ([out_schema.field("symbol")] if multi else [])
    )
    table = pa.concat_tables(parts) if parts else full.empty_table()
    table = _sorted(table)
    table = table.select(want)
    return convert(table, format)


def _ns_of(t: datetime) -> int:
    return (int(t.timestamp()) * 1_000_000 + t.microsecond) * 1000


def _sorted(table: pa.Table) -> pa.Table:
    if table.num_rows < 2:
        return table
    ts = local_ns(table)
    if bool(np.all(ts[1:] >= ts[:-1])):
        return table
    return table.take(pc.sort_indices(table, sort_keys=[(LOCAL_TS_NS, "ascending")]))


def convert(table: pa.Table, format: Format) -> Any:
    if format == "arrow":
        return table
    if format == "pandas":
        return as_pandas(table)
    if format == "polars":
        return as_polars(table)
    raise ValueError(f"unknown format {format!r} (arrow, pandas, polars)")


def as_pandas(table: pa.Table) -> Any:
    return table.to_pandas()


def as_polars(table: pa.Table) -> Any:
    import polars as pl

    return pl.from_arrow(table)


# --- inventory ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """One (exchange, data type, symbol) of the archive and the hours it covers."""

    exchange: str
    data_type: str
    symbol: str
    first_hour: datetime
    last_hour: datetime
    files: int
    bytes: int


def list_archive(root: str) -> list[Series]:
    """Inventory of a local archive, from directory names only (no file is opened)."""
    acc: dict[tuple[str, str, str], list[Any]] = {}
    for k, path in scan_files(root):
        try:
            size = os.stat(path, follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
        a = acc.setdefault((k.exchange, k.data_type, k.symbol), [k.hour, k.hour, 0, 0])
        a[0] = min(a[0], k.hour)
        a[1] = max(a[1], k.hour)
        a[2] += 1
        a[3] += size
    return [Series(ex, dt, sym, a[0], a[1], a[2], a[3]) for (ex, dt, sym), a in sorted(acc.items())]


def inventory(root: str) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``list_archive`` as nested JSON-ready dicts: exchange -> data type -> symbol -> {first, last, files, bytes}."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for s in list_archive(root):
        out.setdefault(s.exchange, {}).setdefault(s.data_type, {})[s.symbol] = {
            "first_hour": s.first_hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z"),
            "last_hour": s.last_hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z"),
            "files": s.files,
            "bytes": s.bytes,
        }
    return out
