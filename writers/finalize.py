"""Journal -> finalized zstd Parquet file, atomically and idempotently.

The file is written to a temp file under ``<root>/.tmp/`` (outside every table,
same filesystem), fsynced, renamed over the target and the directory fsynced. Its key-value metadata lists the ids of
every journal merged into it (``ticktape.journals``), so finalizing a journal
whose id is already listed (a crash between the rename and the journal's
removal) is a no-op instead of a duplicate. Late records for an hour already
finalized are merged: existing rows + journal rows, stably sorted by local_ts_ns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ticktape.archive.layout import FileKey, file_metadata, safe_join
from ticktape.engine.config import ArchiveConfig
from ticktape.ipc.schemas import arrow_schema_for, local_ns
from ticktape.writers.fsutil import fsync_dir, makedirs_durable

log = logging.getLogger("ticktape.writer")

JOURNALS_KEY = b"ticktape.journals"


@dataclass
class Finalized:
    path: str
    records: int  # rows in the file now
    added: int  # rows this journal contributed
    size: int


def merged_journal_ids(path: str) -> list[str]:
    md = pq.read_schema(path).metadata or {}
    text = md.get(JOURNALS_KEY, b"").decode()
    return [x for x in text.split(",") if x]


def sort_by_local_ts(table: pa.Table) -> pa.Table:
    """Stable sort by arrival time (local_ts_ns); a no-op (no copy) when already ordered, the usual case."""
    if table.num_rows < 2:
        return table
    ts = local_ns(table)
    if bool(np.all(ts[1:] >= ts[:-1])):
        return table
    return table.take(pa.array(np.argsort(ts, kind="stable")))


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if pa.types.is_dictionary(f.type)]


def finalize_batches(
    root: str,
    key: FileKey,
    batches: list[pa.RecordBatch],
    journal_id: str,
    archive: ArchiveConfig,
    host: str,
    writer_tag: str = "w",
    extra_ids: Sequence[str] = (),
) -> Finalized | None:
    """Write (or merge) ``batches`` into the key's Parquet file. None if the
    journal was already merged (its id is in the file's metadata). ``extra_ids``
    are recorded as merged too (ids a migrated file carries over)."""
    schema = arrow_schema_for(key.data_type)
    target = safe_join(root, key.relpath())
    tables: list[pa.Table] = []
    ids: list[str] = []
    if os.path.exists(target):
        ids = merged_journal_ids(target)
        if journal_id and journal_id in ids:
            return None
        tables.append(pq.ParquetFile(target).read().cast(schema))
    added = sum(b.num_rows for b in batches)
    if batches:
        for b in batches:
            if not b.schema.equals(schema, check_metadata=False):
                raise RuntimeError(f"journal for {key.relpath()} has schema {b.schema}, expected {schema}")
        tables.append(pa.Table.from_batches(batches, schema=schema))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    table = sort_by_local_ts(table)
    ids += [x for x in extra_ids if x and x not in ids]
    if journal_id:
        ids.append(journal_id)
    meta = file_metadata(key, host, {"journals": ",".join(ids), "records": str(table.num_rows)})
    table = table.replace_schema_metadata(meta)

    d = os.path.dirname(target)
    makedirs_durable(d)
    tmp = safe_join(root, key.tmp_relpath(writer_tag))
    makedirs_durable(os.path.dirname(tmp))
    with pq.ParquetWriter(
        tmp,
        table.schema,
        compression="zstd",
        compression_level=archive.zstd_level,
        use_dictionary=_dictionary_columns(schema),
    ) as w:
        w.write_table(table, row_group_size=archive.row_group_size)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    fsync_dir(d)
    size = os.path.getsize(target)
    log.info("WRITE %s records: %d size: %d KB", target, table.num_rows, (size + 1023) // 1024)
    return Finalized(target, table.num_rows, added, size)
