"""The writer: drains a set of rings into journals, makes them durable, and turns
finished hours into Parquet files.

One cycle (``drain_once``): peek every ring, convert each batch to Arrow
(vectorized), split it by (symbol, UTC hour), append the pieces to their
journals, fsync the touched journals, save the writer state (ring sequences
and journal lengths), and only then commit the ring cursors. Whatever the
moment of a ``kill -9``, a restart with the same ring generation cuts the
journals back to the recorded lengths and commits each ring up to the recorded
sequence: nothing lost, nothing written twice. With a new ring generation (the
whole capture died, the rings are new) the journals are recovered as they are
(torn tail cut) and finalized before anything new is written.

Finalizing (an hour's journal -> its Parquet file, ``finalize.finalize_journal``,
streamed in bounded memory) runs on a background thread in the writer process
(``finalize_due(background=True)``), so the drain loop never stops at an hour
boundary. The journal leaves ``journals`` when it is handed over but stays in
the saved state until its file is renamed into place (``_reap``), so a crash
at any moment finalizes it again (idempotent by journal id). Rows that arrive
for a key whose finalize is still running wait for it (``_wait_inflight``), so
they go to a fresh journal that is merged later, as any late rows are.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute  # loaded at start, not by the first drain's first cast

from ticktape.archive.layout import (
    HOUR_NS,
    JOURNAL_DIR,
    JOURNAL_SUFFIX,
    PARQUET_SUFFIX,
    TMP_DIR,
    FileKey,
    check_exchange,
    check_symbol,
    hour_of_ns,
    safe_join,
    table_dirs,
)
from ticktape.engine import clock
from ticktape.engine.config import ArchiveConfig
from ticktape.ipc import ringset
from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import (
    EVENT_CODE,
    EVENT_DTYPE,
    NO_SYMBOL_NAME,
    fixed_batch_to_arrow,
    raw_batch_to_arrow,
)
from ticktape.ipc.stats import WriterStats
from ticktape.writers import state as wstate
from ticktape.writers.finalize import finalize_journal, merged_journal_ids
from ticktape.writers.fsutil import fsync_dir, makedirs_durable
from ticktape.writers.journal import Journal, cut_tail, read_journal
from ticktape.writers.split import Group, split_groups, take_rows
from ticktape.writers.state import JournalState, RingState, WriterState
from ticktape.writers.storage import StorageGuard, is_storage_error

log = logging.getLogger("ticktape.writer")

PREPARE_AHEAD_S = 30.0  # the next hour's journal directories are made this long before it starts
#: rows (frames) converted and journaled per piece of a cycle: a cycle may take a million rows
#: (``max_batch``), but converting them in pieces keeps every temporary (numpy columns, Arrow
#: arrays, the IPC message) a few MB that the allocators reuse, where million-row temporaries
#: went back to the kernel on every free and came back as fresh pages (on a VM with free page
#: reporting ~3 ms of CPU per MB): the writer's CPU per 42-level diff row halved (BENCHMARKS.md)
CHUNK_ROWS = 1 << 16
CHUNK_FRAMES = 1 << 13


class _Source:
    """One ring this writer drains."""

    def __init__(self, spec: RingSetSpec, data_type: str, ring: RecordRing | RawRing) -> None:
        self.spec = spec
        self.data_type = data_type
        self.ring = ring
        self.key = f"{spec.exchange}/{data_type}"
        self.index = ring.index if isinstance(ring, RawRing) else ring

    @property
    def generation(self) -> int:
        return self.index.generation

    @property
    def read_seq(self) -> int:
        return self.index.read_seq


def journal_key(rel: str) -> FileKey:
    """``.journal/<relpath without .parquet>.arrows`` -> FileKey."""
    prefix = JOURNAL_DIR + "/"
    if not rel.startswith(prefix) or not rel.endswith(JOURNAL_SUFFIX):
        raise ValueError(f"not a journal path: {rel!r}")
    return FileKey.from_relpath(rel[len(prefix) : -len(JOURNAL_SUFFIX)] + PARQUET_SUFFIX)


def scan_journals(root: str, exchange: str | None = None, data_type: str | None = None) -> Iterator[str]:
    """Relative paths of the journals on disk (optionally of one exchange / data type)."""
    for base in table_dirs(os.path.join(root, JOURNAL_DIR), data_type, exchange):
        for dirpath, dirs, files in os.walk(base):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(JOURNAL_SUFFIX) and not f.startswith("."):
                    yield os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")


def recover_journal(root: str, rel: str, archive: ArchiveConfig, host: str, tag: str = "w") -> int:
    """Finalize a journal left by a dead capture as it is: complete batches kept,
    a torn tail cut. Removes the journal. Returns the records it contributed."""
    key = journal_key(rel)
    path = safe_join(root, rel)
    contents = read_journal(path)
    if contents.torn:
        log.warning(
            "journal %s: torn tail of %d bytes cut (%d complete records kept)",
            path,
            contents.file_length - contents.good_length,
            contents.records,
        )
        cut_tail(path, contents.good_length)
    added = 0
    jid, records, length = contents.journal_id, contents.records, contents.good_length
    del contents  # the streaming finalize reads the file again, one batch at a time
    if records:
        res = finalize_journal(root, key, path, length, jid, records, archive, host, tag)
        if res is None:
            log.info("journal %s was already in %s", path, key.relpath())
        else:
            added = res.added
    os.unlink(path)
    return added


class Writer:
    """Library form of the writer process (also used in-process by tests and benchmarks)."""

    def __init__(
        self,
        specs: Sequence[RingSetSpec],
        archive: ArchiveConfig,
        writer_id: int = 0,
        host: str = "",
        max_batch: int = 1 << 20,
        stats: WriterStats | None = None,
        storage: StorageGuard | None = None,
    ) -> None:
        self.archive = archive
        self.root = os.path.abspath(archive.root)
        self.writer_id = writer_id
        self.host = host or socket.gethostname()
        self.max_batch = max_batch
        self._tag = f"w{writer_id}"
        self.journals: dict[str, Journal] = {}
        self._inflight: dict[str, tuple[Journal, Future[None]]] = {}
        #: finalized (file in place) but not yet out of the saved state: the save failed on a
        #: full or read-only disk; retired once writes work again (``_retire``)
        self._unretired: dict[str, Journal] = {}
        #: directories whose file rename a failed finalize did not fsync (``_keep_failed``)
        self._unsynced_dirs: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._prepared_hour = 0
        self.records_written = 0
        self.files_written = 0
        self.bad_symbols = 0
        #: a full or read-only archive: records wait in the rings, retried on a short interval
        self.storage = storage or StorageGuard(self.root, stats)
        #: details of ended storage episodes, written as ``info`` events by the next durable cycle
        self._pending_events: list[str] = []
        self._ringsets: list[dict[str, RecordRing | RawRing]] = []
        self.sources: list[_Source] = []
        for spec in specs:
            check_exchange(spec.exchange)
            for s in spec.symbols:
                check_symbol(s)
        seen: set[str] = set()
        try:
            for spec in specs:
                rings = ringset.attach(spec)
                self._ringsets.append(rings)
                for dt, ring in rings.items():
                    src = _Source(spec, dt, ring)
                    if src.key in seen:
                        raise ValueError(f"ring {src.key} given twice to writer {writer_id}")
                    seen.add(src.key)
                    self.sources.append(src)
            os.makedirs(self.root, exist_ok=True)
            self.state = self._start()
        except BaseException:
            for j in self.journals.values():
                j.close()
            for rings in self._ringsets:
                ringset.close(rings)
            raise

    # -- start-up recovery --------------------------------------------------------
    def _sweep_own_temp_files(self) -> None:
        """Temp files this writer id left in ``.tmp/`` (a crash mid-finalize): never data."""
        d = os.path.join(self.root, TMP_DIR)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(f".{self._tag}.tmp"):
                log.info("removing leftover temp file %s", os.path.join(d, name))
                os.unlink(os.path.join(d, name))

    def _start(self) -> WriterState:
        self._sweep_own_temp_files()
        old = wstate.load(self.root, self.writer_id)
        st = WriterState()
        unlink_after: list[str] = []
        for src in self.sources:
            rs = old.rings.get(src.key)
            if rs is not None and rs.generation == src.generation:
                self._resume(src, rs, old, st, unlink_after)
            else:
                self._recover_ring(src)
                st.rings[src.key] = RingState(src.generation, src.read_seq)
        wstate.save(self.root, self.writer_id, st)
        for path in unlink_after:
            os.unlink(path)
        return st

    def _resume(
        self, src: _Source, rs: RingState, old: WriterState, st: WriterState, unlink_after: list[str]
    ) -> None:
        if src.read_seq > rs.seq:
            raise RuntimeError(
                f"ring {src.key}: committed cursor {src.read_seq} is past the writer state's {rs.seq}; "
                f"state {wstate.state_path(self.root, self.writer_id)} does not belong to this ring"
            )
        known = {rel: js for rel, js in old.journals.items() if js.ring == src.key}
        for rel in scan_journals(self.root, src.spec.exchange, src.data_type):
            if rel not in known:  # never recorded: its records are still in the ring
                log.info("removing uncommitted journal %s (records will be read again from the ring)", rel)
                os.unlink(safe_join(self.root, rel))
        for rel, js in known.items():
            key = journal_key(rel)
            path = safe_join(self.root, rel)
            target = safe_join(self.root, key.relpath())
            if os.path.exists(target) and js.journal_id in merged_journal_ids(target):
                if os.path.exists(path):
                    unlink_after.append(path)
                continue
            if not os.path.exists(path):
                raise RuntimeError(f"journal {path} is in the writer state but missing: the archive was altered")
            self.journals[rel] = Journal.reopen(self.root, key, js.length, js.journal_id, js.records)
            st.journals[rel] = JournalState(js.ring, js.journal_id, js.length, js.records)
        if src.read_seq < rs.seq:  # state saved but the commit was lost: those records are journaled
            src.ring.commit(rs.seq)
        st.rings[src.key] = RingState(rs.generation, rs.seq)
        log.info("ring %s resumed at seq %d (%d open journals)", src.key, rs.seq, len(known))

    def _recover_ring(self, src: _Source) -> None:
        n = 0
        for rel in list(scan_journals(self.root, src.spec.exchange, src.data_type)):
            n += recover_journal(self.root, rel, self.archive, self.host, self._tag)
        if n:
            log.warning("ring %s is new: recovered %d records from journals of the previous run", src.key, n)

    # -- draining -------------------------------------------------------------------
    def drain_once(self) -> int:
        """One durable cycle over every ring; returns the records made durable.

        If the archive's file system refuses a write (full, read-only, ...), the cycle is
        rolled back (journals cut to their durable length, no ring cursor committed, so
        the records stay in the rings) and retried every ``storage.retry_interval`` s."""
        if not self.storage.may_try():
            return 0
        before = {rel: (j.length, j.records) for rel, j in self.journals.items()}
        touched: set[str] = set()
        try:
            n = self._cycle(touched)
        except OSError as e:
            if not is_storage_error(e):
                raise
            self._rollback(touched, before)
            self.storage.failed(e, "writing journals")
            return 0
        if not n and self.storage.blocked:  # nothing to write (a quiet feed): does the disk take a write again?
            try:
                wstate.save(self.root, self.writer_id, self.state)  # unchanged: memory matches disk
            except OSError as e:
                if not is_storage_error(e):
                    raise
                self.storage.failed(e, "saving the writer state")
                return 0
        if n or self.storage.blocked:
            detail = self.storage.recovered()
            if detail is not None:
                self._pending_events.append(detail)
                if not n:  # the probe ended the episode: its event is written now, not at the next record
                    return self.drain_once()
        return n

    def _rollback(self, touched: set[str], before: dict[str, tuple[int, int]]) -> None:
        # every open journal, not only the touched ones: the write that failed left part of a
        # message in a journal it never got to mark as touched
        for rel, j in list(self.journals.items()):
            if rel in before:
                j.rollback(*before[rel])
            else:  # created in this cycle and never recorded: the records are still in the rings
                j.close()
                try:
                    os.unlink(j.path)
                except OSError:
                    pass  # a read-only disk: a journal the state does not list is removed at restart
                del self.journals[rel]

    def _cycle(self, touched: set[str]) -> int:
        ends: list[tuple[_Source, int]] = []
        total = 0
        events = self._append_pending_events(touched)
        for src in self.sources:
            if src.index.available() == 0:
                continue
            n = self._drain_raw(src, touched) if isinstance(src.ring, RawRing) else self._drain_fixed(src, touched)
            if n:
                ends.append((src, src.read_seq + n))
                total += n
        if not ends and not events:
            return 0
        for rel in touched:
            self.journals[rel].sync()
        prev_journals = {rel: self.state.journals.get(rel) for rel in touched}
        prev_seqs = {src.key: self.state.rings[src.key].seq for src, _ in ends}
        for rel in touched:
            j = self.journals[rel]
            self.state.journals[rel] = JournalState(
                f"{j.key.exchange}/{j.key.data_type}", j.journal_id, j.length, j.records
            )
        for src, end in ends:
            self.state.rings[src.key].seq = end
        try:
            wstate.save(self.root, self.writer_id, self.state)
        except BaseException:  # the state on disk is the old one: so is the state in memory
            for rel, js in prev_journals.items():
                if js is None:
                    self.state.journals.pop(rel, None)
                else:
                    self.state.journals[rel] = js
            for key, seq in prev_seqs.items():
                self.state.rings[key].seq = seq
            raise
        for src, end in ends:
            src.ring.commit(end)
        self._pending_events.clear()
        self.records_written += total
        return total + events

    def _append_pending_events(self, touched: set[str]) -> int:
        """The writer's own ``info`` rows (a storage episode that ended), one per exchange."""
        if not self._pending_events:
            return 0
        now = clock.now_ns()
        n = 0
        for spec in {s.spec.exchange: s.spec for s in self.sources}.values():
            ev = np.zeros(len(self._pending_events), dtype=EVENT_DTYPE)
            ev["local_ts"] = now
            ev["kind"] = EVENT_CODE["info"]
            ev["detail"] = [d.encode()[: EVENT_DTYPE["detail"].itemsize] for d in self._pending_events]
            key = FileKey(spec.exchange, "events", NO_SYMBOL_NAME, hour_of_ns(now), self.archive.file_tag)
            rel = key.journal_relpath()
            j = self.journals.get(rel)
            if j is None:
                j = self.journals[rel] = Journal.create(self.root, key)
            j.append(fixed_batch_to_arrow("events", ev, spec.channels))
            touched.add(rel)
            n += len(ev)
        return n

    def _drain_fixed(self, src: _Source, touched: set[str]) -> int:
        ring = src.ring
        assert isinstance(ring, RecordRing)
        _start, views = ring.peek(self.max_batch)
        n = 0
        for whole in views:
            for i in range(0, len(whole), CHUNK_ROWS):
                view = whole[i : i + CHUNK_ROWS]
                order, groups = split_groups(view["symbol"], view["local_ts"])
                batch = view if order is None else take_rows(view, order)
                rb = fixed_batch_to_arrow(src.data_type, batch, src.spec.channels)
                self._append_groups(src, rb, groups, touched)
                n += len(view)
        return n

    def _drain_raw(self, src: _Source, touched: set[str]) -> int:
        ring = src.ring
        assert isinstance(ring, RawRing)
        _start, chunks = ring.peek(self.max_batch)
        n = 0
        for whole, arena, base in chunks:
            for i in range(0, len(whole), CHUNK_FRAMES):
                index = whole[i : i + CHUNK_FRAMES]
                start = int(index["pos"][0]) if i else base  # the slice's payloads start its arena view
                order, groups = split_groups(index["symbol"], index["local_ts"])
                # arena order, payloads back to back: the batch points into the arena (journaled before commit)
                rb = raw_batch_to_arrow(index, arena[start - base :], start, src.spec.channels, copy=False)
                if order is not None:
                    rb = rb.take(pa.array(order))
                self._append_groups(src, rb, groups, touched)
                n += len(index)
        return n

    def _append_groups(self, src: _Source, rb: pa.RecordBatch, groups: list[Group], touched: set[str]) -> None:
        symbols = src.spec.symbols
        for g in groups:
            if 0 <= g.symbol < len(symbols):
                sym = symbols[g.symbol]
            else:  # a producer bug: keep the rows, under "_", and say so
                sym = NO_SYMBOL_NAME
                self.bad_symbols += g.stop - g.start
                log.error(
                    "ring %s: %d records with unknown symbol id %d kept under symbol %s",
                    src.key,
                    g.stop - g.start,
                    g.symbol,
                    NO_SYMBOL_NAME,
                )
            key = FileKey(src.spec.exchange, src.data_type, sym, hour_of_ns(g.hour_ns), self.archive.file_tag)
            rel = key.journal_relpath()
            j = self.journals.get(rel)
            if j is None:
                if rel in self._inflight:  # late rows while its finalize runs (rare)
                    self._wait_inflight(rel)
                if rel in self._unretired:  # its new journal takes the same path: retire the old first
                    self._retire([self._unretired[rel]], defer=False)
                j = self.journals.get(rel)
            if j is None:
                j = self.journals[rel] = Journal.create(self.root, key)
            j.append(rb.slice(g.start, g.stop - g.start))
            touched.add(rel)

    # -- finalizing -------------------------------------------------------------------
    def finalize_due(self, now: float | None = None, background: bool = False) -> int:
        """Finalize the journals whose hour ended more than ``finalize_grace`` ago; returns
        the files made. ``background``: hand them to the finalize thread and return at
        once (their files count when ``_reap`` sees them done, on a later call)."""
        reaped = self._reap()
        if self.storage.blocked:  # retried once writes work again
            return reaped
        t = clock.now() if now is None else now
        if background:
            self._prepare_next_hour(int(t * 1e9))
        limit = int((t - self.archive.finalize_grace) * 1e9)
        due = [rel for rel, j in self.journals.items() if j.key.hour_ns + HOUR_NS <= limit]
        if not due:
            return reaped
        if background:
            self._submit(due)
            return reaped
        return reaped + self._finalize(due)

    def _prepare_next_hour(self, now_ns: int) -> None:
        """In the last ``PREPARE_AHEAD_S`` of an hour, create (durably) the journal
        directories of the next hour on the finalize thread, so the first cycle of the
        new hour does not fsync a directory tree per open file on the drain path."""
        nxt = (now_ns // HOUR_NS + 1) * HOUR_NS
        if nxt - now_ns > PREPARE_AHEAD_S * 1e9 or self._prepared_hour == nxt or not self.journals:
            return
        self._prepared_hour = nxt
        hour = hour_of_ns(nxt)
        dirs = sorted({
            os.path.dirname(safe_join(self.root, FileKey(k.exchange, k.data_type, k.symbol, hour, k.tag).journal_relpath()))
            for k in (j.key for j in self.journals.values())
        })

        def prepare() -> None:
            for d in dirs:
                try:
                    makedirs_durable(d)
                except OSError as e:  # the drain path creates them anyway
                    log.warning("could not prepare %s: %s", d, e)
                    return

        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"finalize-{self._tag}")
        self._pool.submit(prepare)

    def _finalize_one(self, j: Journal) -> None:
        finalize_journal(
            self.root, j.key, j.path, j.length, j.journal_id, j.records, self.archive, self.host, self._tag
        )

    def _finalize(self, rels: list[str]) -> int:
        done: list[Journal] = []
        for rel in rels:
            j = self.journals[rel]
            try:
                j.sync()
                self._finalize_one(j)
            except Exception as e:  # keep the journal (nothing lost), retry next time
                del self.journals[rel]
                self._keep_failed(rel, j, e)
                if is_storage_error(e):
                    break
                continue
            del self.journals[rel]
            done.append(j)
        return self._retire(done)

    def _keep_failed(self, rel: str, j: Journal, e: Exception) -> None:
        """A failed finalize keeps its journal, to be finalized again. But if the failure came
        after the file was renamed into place (the directory fsync), the file already lists the
        journal's id: rows appended to it now would be skipped as merged by the next finalize.
        Such a journal counts as finalized but not retired: late rows open a new journal, and
        the directory is fsynced again before the journal is retired."""
        self._finalize_failed(j, e)
        target = safe_join(self.root, j.key.relpath())
        try:
            listed = os.path.exists(target) and j.journal_id in merged_journal_ids(target)
        except (OSError, pa.ArrowException):
            listed = False
        if listed:
            self._unsynced_dirs.add(os.path.dirname(target))
            self._unretired[rel] = j
        else:
            self.journals[rel] = j

    def _finalize_failed(self, j: Journal, e: Exception) -> None:
        """A full or read-only disk is said once (``storage``); anything else with its traceback."""
        if is_storage_error(e):
            assert isinstance(e, OSError)
            self.storage.failed(e, f"finalizing {j.path}")
        else:
            log.error("could not finalize %s; journal kept", j.path, exc_info=e)

    def _submit(self, rels: list[str]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"finalize-{self._tag}")
        for rel in rels:
            j = self.journals[rel]
            try:
                j.sync()
            except OSError as e:
                if is_storage_error(e):  # said once; finalize_due waits until writes work again
                    self.storage.failed(e, f"syncing {j.path}")
                    break
                log.exception("could not sync %s before finalizing; will retry", j.path)
                continue
            del self.journals[rel]
            self._inflight[rel] = (j, self._pool.submit(self._finalize_one, j))

    def _reap(self, block: bool = False) -> int:
        """Retire the background finalizes that are done (all of them with ``block``)."""
        done: list[Journal] = [] if self.storage.blocked else list(self._unretired.values())
        for rel, (j, fut) in list(self._inflight.items()):
            if not block and not fut.done():
                continue
            del self._inflight[rel]
            try:
                fut.result()
            except Exception as e:  # keep the journal (nothing lost), retry next time
                self._keep_failed(rel, j, e)
                continue
            done.append(j)
        return self._retire(done)

    def _wait_inflight(self, rel: str) -> None:
        j, fut = self._inflight.pop(rel)
        try:
            fut.result()
        except Exception as e:
            self._keep_failed(rel, j, e)
            return
        self._retire([j], defer=False)

    def _retire(self, done: list[Journal], defer: bool = True) -> int:
        """Finalized: drop the journals from the state (saved), then close and unlink them.

        If the disk refuses the state save (full, read-only), their files are in place but the
        state still lists them: they wait in ``_unretired`` until writes work again
        (``defer``), or the error is raised (the drain path, which rolls its cycle back)."""
        if not done:
            return 0
        prev = {j.key.journal_relpath(): j for j in done}
        kept = {rel: self.state.journals.pop(rel) for rel in prev if rel in self.state.journals}
        try:
            for d in sorted(self._unsynced_dirs):  # renames a failed finalize left unsynced
                fsync_dir(d)
                self._unsynced_dirs.discard(d)
            wstate.save(self.root, self.writer_id, self.state)
        except OSError as e:
            self.state.journals.update(kept)  # the state on disk still lists them: so does memory
            if not is_storage_error(e):
                raise
            self._unretired.update(prev)
            if not defer:
                raise
            self.storage.failed(e, "saving the writer state")
            return 0
        for rel in prev:
            self._unretired.pop(rel, None)
        for j in done:
            j.close()
            try:
                os.unlink(j.path)
            except OSError as e:
                if not is_storage_error(e):
                    raise
        self.files_written += len(done)
        return len(done)

    def close(self, finalize_all: bool = True) -> None:
        """Finalize every open journal (graceful stop) or leave them for the next start."""
        try:
            self._reap(block=True)
            if finalize_all and self.journals:
                self._finalize(list(self.journals))
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            for j in (*self.journals.values(), *self._unretired.values()):
                j.close()
            for rings in self._ringsets:
                ringset.close(rings)
            self._ringsets = []

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(finalize_all=exc[0] is None)


__all__ = ["Writer", "journal_key", "recover_journal", "scan_journals"]
