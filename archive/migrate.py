"""``capture migrate ARCHIVE``: convert an archive of the first layout into tables.

Old (schema version 1)::

    <root>/exchange=E/type=T/date=D/symbol=S/HH.parquet      timestamp[ns] columns, no tz
    <root>/.journal/exchange=E/type=T/date=D/symbol=S/HH.arrows

New: ``FileKey.relpath()`` (``<root>/T/exchange=E/symbol=S/date=D/hour=HH/data.parquet``),
``timestamp[us, UTC]`` + ``local_ts_ns`` (``ipc.schemas``).

Per file: read, convert, check the conversion row for row (``local_ts_ns`` is
the old ``local_ts`` exactly, the µs columns its floor, every other column
unchanged), write through the writer's own finalize (temp file under
``.tmp/``, fsync, rename, dir fsync), read the result back and compare, and
only then delete the old file. The new file's ``ticktape.journals`` metadata
records a marker per migrated source, so a run killed anywhere is resumed by
running it again: a source whose marker is already in its target is verified
and deleted, never added twice. Old journals (hours that were still open) are
merged the same way, deduplicated by their journal id. It takes the archive's
lock (``archive.lock``), so it refuses to run beside a capture on the same root.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ticktape.archive.layout import JOURNAL_DIR, TMP_DIR, FileKey, LayoutError, safe_join
from ticktape.archive.lock import ArchiveLock, LockHeld
from ticktape.engine.config import ArchiveConfig
from ticktape.ipc.schemas import LOCAL_TS_NS, arrow_schema_for, ts_from_ns
from ticktape.writers.finalize import JOURNALS_KEY, finalize_batches, sort_by_local_ts
from ticktape.writers.journal import read_journal

log = logging.getLogger("ticktape.migrate")

TAG = "migrate"
_OLD_RE = re.compile(
    r"^exchange=(?P<exchange>[^/]+)/type=(?P<type>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})"
    r"/symbol=(?P<symbol>[^/]+)/(?P<hour>\d{2})\.(?P<ext>parquet|arrows)$"
)


class MigrateError(RuntimeError):
    """A source that could not be converted or verified: it is kept, the run reports it."""


@dataclass
class MigrateReport:
    files: int = 0  # old Parquet files converted this run
    journals: int = 0  # old journals merged this run
    rows: int = 0
    already: int = 0  # sources found already migrated (an earlier, interrupted run)
    removed_temp: int = 0  # old-layout temp files (incomplete by definition) removed
    failed: list[tuple[str, str]] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self) -> str:
        text = (
            f"migrated {self.files} files and {self.journals} journals ({self.rows:,} rows) in {self.elapsed:.1f} s"
        )
        if self.already:
            text += f", {self.already} already migrated by an earlier run"
        if self.removed_temp:
            text += f", {self.removed_temp} leftover temp files removed"
        if self.failed:
            text += f", {len(self.failed)} FAILED (kept in the old layout)"
        return text


def old_key(rel: str) -> tuple[FileKey, str]:
    """Old relative path -> (its key, 'parquet' or 'arrows'); LayoutError for anything else."""
    m = _OLD_RE.match(rel.removeprefix(f"{JOURNAL_DIR}/"))
    if not m:
        raise LayoutError(f"not a path of the old layout: {rel!r}")
    try:
        hour = datetime.strptime(f"{m['date']} {m['hour']}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    except ValueError:
        raise LayoutError(f"not a path of the old layout (bad date/hour): {rel!r}") from None
    return FileKey(m["exchange"], m["type"], m["symbol"], hour), m["ext"]


def _walk_old(top: str, root: str) -> Iterator[str]:
    """Relative paths of every file under ``top``'s ``exchange=*`` directories, sorted."""
    try:
        names = sorted(n for n in os.listdir(top) if n.startswith("exchange="))
    except FileNotFoundError:
        return
    for name in names:
        for dirpath, dirnames, filenames in os.walk(os.path.join(top, name)):
            dirnames.sort()
            for f in sorted(filenames):
                yield os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")


def scan_old(root: str) -> tuple[list[str], list[str], list[str]]:
    """(old Parquet files, old journals, old temp files) as paths relative to ``root``, sorted.

    Temp files (names starting with '.') were being written when the old capture
    stopped: incomplete by definition, never data."""
    files: list[str] = []
    journals: list[str] = []
    temps: list[str] = []
    for top, out in ((root, files), (os.path.join(root, JOURNAL_DIR), journals)):
        for rel in _walk_old(top, root):
            (temps if os.path.basename(rel).startswith(".") else out).append(rel)
    return files, journals, temps


def marker(old_rel: str) -> str:
    """The id a migrated source leaves in its target's ``ticktape.journals``."""
    return "m" + hashlib.sha256(old_rel.encode()).hexdigest()[:20]


# --- conversion ---------------------------------------------------------------------------


def _ns(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An old timestamp[ns] (or int64) column as int64 ns; nulls as 0 (the ring's "none")."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("ns")).cast(pa.int64())
    return np.asarray(pc.fill_null(col, 0).to_numpy(zero_copy_only=False), dtype=np.int64)


def convert(data_type: str, old: pa.Table) -> pa.Table:
    """An old-schema table of ``data_type`` in the current disk schema (no metadata)."""
    schema = arrow_schema_for(data_type)
    if LOCAL_TS_NS in old.schema.names:  # already current (never written by the old layout, but harmless)
        return old.select(schema.names).cast(schema).replace_schema_metadata(None)
    local = _ns(old.column("local_ts"))
    cols: list[pa.Array] = []
    for f in schema:
        if f.name == LOCAL_TS_NS:
            cols.append(pa.array(local, pa.int64()))
        elif f.name == "local_ts":
            cols.append(ts_from_ns(local))
        elif pa.types.is_timestamp(f.type):
            cols.append(ts_from_ns(_ns(old.column(f.name)), zero_is_null=True))
        else:
            col = old.column(f.name)
            cols.append((col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col).cast(f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def check_conversion(data_type: str, old: pa.Table, new: pa.Table) -> None:
    """Row for row: the new table holds exactly the old rows (MigrateError otherwise)."""
    if new.num_rows != old.num_rows:
        raise MigrateError(f"{old.num_rows} rows in, {new.num_rows} out")
    if LOCAL_TS_NS in old.schema.names:
        return
    local = _ns(old.column("local_ts"))
    if not np.array_equal(_ns(new.column(LOCAL_TS_NS)), local):
        raise MigrateError("local_ts_ns differs from the old local_ts")
    for f in arrow_schema_for(data_type):
        if f.name == LOCAL_TS_NS:
            continue
        got = new.column(f.name)
        if pa.types.is_timestamp(f.type):
            want = _ns(old.column(f.name))
            us = np.asarray(pc.fill_null(got.cast(pa.int64()), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
            nulls = np.asarray(got.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
            if f.name == "local_ts":
                ok = not nulls.any() and np.array_equal(us, want // 1000)
            else:  # 0 ("none") became null
                ok = np.array_equal(nulls, want == 0) and np.array_equal(us, np.where(want == 0, 0, want // 1000))
            if not ok:
                raise MigrateError(f"column {f.name} is not the old one at µs")
        elif not got.equals(old.column(f.name).cast(f.type)):
            raise MigrateError(f"column {f.name} differs")


# --- one source ---------------------------------------------------------------------------


def _host(md: dict[bytes, bytes] | None) -> str:
    return (md or {}).get(b"ticktape.host", b"migrate").decode() or "migrate"


def _verify_target(path: str, expected: pa.Table | None, new_rows: pa.Table) -> None:
    """The target read back: equal to what was written (``expected``), or, when the
    target was written by an earlier run, holding every migrated row."""
    got = pq.ParquetFile(path).read().replace_schema_metadata(None)
    if expected is not None:
        if not got.equals(expected):
            raise MigrateError(f"{path}: read back differs from what was written")
        return
    if got.num_rows == new_rows.num_rows:
        if not got.equals(new_rows):
            raise MigrateError(f"{path}: differs from its source")
        return
    have, want = np.sort(_ns(got.column(LOCAL_TS_NS))), np.sort(_ns(new_rows.column(LOCAL_TS_NS)))
    idx = np.searchsorted(have, want)
    if len(want) > len(have) or not np.array_equal(have[np.minimum(idx, len(have) - 1)], want):
        raise MigrateError(f"{path}: rows of its source are missing")


def _write(root: str, key: FileKey, table: pa.Table, ids: list[str], archive: ArchiveConfig, host: str) -> pa.Table | None:
    """Merge ``table`` into the key's file under the id ``ids[-1]`` (earlier ids carried along).
    Returns the table the file now holds, or None if ``ids[-1]`` was already in it."""
    target = safe_join(root, key.relpath())
    existing = pq.ParquetFile(target).read().replace_schema_metadata(None) if os.path.exists(target) else None
    res = finalize_batches(root, key, table.to_batches(), ids[-1], archive, host, TAG, extra_ids=ids[:-1])
    if res is None:
        return None
    parts = ([existing] if existing is not None else []) + [table]
    return sort_by_local_ts(pa.concat_tables(parts) if len(parts) > 1 else table)


def migrate_file(root: str, rel: str, archive: ArchiveConfig, report: MigrateReport,
                 after_write: Callable[[str], None] | None = None) -> None:
    key, ext = old_key(rel)
    path = safe_join(root, rel)
    target = safe_join(root, key.relpath())
    if ext == "parquet":
        pf = pq.ParquetFile(path)
        md = pf.schema_arrow.metadata
        old = pf.read()
        ids = [x for x in (md or {}).get(JOURNALS_KEY, b"").decode().split(",") if x]
        ids.append(marker(rel))
        host = _host(md)
    else:
        contents = read_journal(path)
        if contents.torn:
            log.warning("journal %s: torn tail of %d bytes not migrated (%d complete records kept)",
                        path, contents.file_length - contents.good_length, contents.records)
        if not contents.batches:
            os.unlink(path)
            return
        old = pa.Table.from_batches(contents.batches)
        ids = [contents.journal_id or marker(rel)]
        host = "migrate"
    new = convert(key.data_type, old)
    check_conversion(key.data_type, old, new)
    written = _write(root, key, new, ids, archive, host)
    if written is None:  # an earlier run (or, for a journal, the old file itself) already holds it
        report.already += 1
        _verify_target(target, None, new)
    else:
        if after_write is not None:
            after_write(rel)
        _verify_target(target, written, new)
        report.rows += new.num_rows
        if ext == "parquet":
            report.files += 1
        else:
            report.journals += 1
    os.unlink(path)


def _remove_empty_dirs(root: str) -> None:
    for top in (root, os.path.join(root, JOURNAL_DIR)):
        try:
            names = [n for n in os.listdir(top) if n.startswith("exchange=")]
        except FileNotFoundError:
            continue
        for name in names:
            for dirpath, _dirs, _files in os.walk(os.path.join(top, name), topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass


def migrate_archive(
    root: str,
    archive: ArchiveConfig | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    after_write: Callable[[str], None] | None = None,
) -> MigrateReport:
    """Convert every old-layout file and journal under ``root``; see the module doc."""
    t0 = time.perf_counter()
    root = os.path.abspath(root)
    archive = archive or ArchiveConfig(root=root)
    report = MigrateReport()
    _sweep_own_temp(root)
    files, journals, temps = scan_old(root)
    for rel in temps:
        os.unlink(os.path.join(root, rel))
        log.info("removed old temp file %s", rel)
        report.removed_temp += 1
    sources = files + journals  # files first: a journal already merged into its file is recognized by id
    for i, rel in enumerate(sources, 1):
        try:
            migrate_file(root, rel, archive, report, after_write)
        except (MigrateError, LayoutError, OSError, pa.ArrowException) as e:
            report.failed.append((rel, str(e)))
            log.error("migrate %s: %s (kept)", rel, e)
            if progress:
                progress(f"[{i}/{len(sources)}] FAILED {rel}: {e}")
            continue
        if progress:
            progress(f"[{i}/{len(sources)}] {rel}")
    _remove_empty_dirs(root)
    report.elapsed = time.perf_counter() - t0
    return report


def _sweep_own_temp(root: str) -> None:
    d = os.path.join(root, TMP_DIR)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for n in names:
        if n.endswith(f".{TAG}.tmp"):
            os.unlink(os.path.join(d, n))


def iter_lines(report: MigrateReport) -> Iterator[str]:
    for rel, reason in report.failed:
        yield f"capture migrate: {rel}: {reason}"


# --- CLI ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="ARCHIVE", help="archive directory in the old layout (exchange=/type=/...)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-file progress lines")


def main(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        print(f"capture migrate: {args.root} is not a directory", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, flush=True)

    lock = ArchiveLock(root, "capture migrate")
    try:
        lock.acquire()
    except LockHeld as e:
        print(f"capture migrate: archive root {root} is in use by {e.holder}; stop it first", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"capture migrate: cannot lock {root} ({e.strerror or e})", file=sys.stderr)
        return 2
    try:
        report = migrate_archive(root, progress=None if args.quiet else say)
    finally:
        lock.release()
    for line in iter_lines(report):
        print(line, file=sys.stderr)
    print(report.summary(), flush=True)
    return 1 if report.failed else 0
