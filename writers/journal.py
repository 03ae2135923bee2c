"""Append-only journal of one open file: an Arrow IPC *stream* on disk.

The first append writes the schema (carrying the journal's random id in its
metadata), the dictionaries and the first batch; later appends write only
record-batch messages, so a writer that restarts can cut the file back to a
recorded length and go on appending. Dictionaries are the constant enum
tables of ``ipc.schemas``, so one dictionary message per stream is valid.

After a crash the stream is readable up to the last complete batch
(``read_journal``): a torn tail is reported and can be cut.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import pyarrow as pa

from ticktape.archive.layout import FileKey
from ticktape.writers.fsutil import fsync_dir, makedirs_durable

JOURNAL_ID_KEY = b"ticktape.journal_id"


def _write_all(fd: int, data: pa.Buffer | bytes) -> int:
    view = memoryview(data)
    total = len(view)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    return total


class Journal:
    """An open journal file owned by one writer."""

    def __init__(self, key: FileKey, path: str, fd: int, length: int, journal_id: str, records: int, new: bool):
        self.key = key
        self.path = path
        self.fd = fd
        self.length = length
        self.journal_id = journal_id
        self.records = records
        self._new_file = new
        self._dirty = False
        #: bytes past ``length`` may be on disk (a failed write whose rollback could not truncate)
        self._cut_pending = False

    @classmethod
    def create(cls, root: str, key: FileKey) -> Journal:
        path = os.path.join(root, key.journal_relpath())
        makedirs_durable(os.path.dirname(path))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        return cls(key, path, fd, 0, secrets.token_hex(8), 0, new=True)

    @classmethod
    def reopen(cls, root: str, key: FileKey, length: int, journal_id: str, records: int) -> Journal:
        """Open an existing journal for appending, cut back to ``length`` (its durable size)."""
        path = os.path.join(root, key.journal_relpath())
        fd = os.open(path, os.O_WRONLY)
        try:
            size = os.fstat(fd).st_size
            if size < length:
                raise RuntimeError(f"journal {path} has {size} bytes, state says {length}: it was damaged")
            if size > length:
                os.ftruncate(fd, length)
                os.fsync(fd)
            os.lseek(fd, length, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return cls(key, path, fd, length, journal_id, records, new=False)

    def rollback(self, length: int, records: int) -> None:
        """Forget appends after ``length`` (a cycle that failed on a full or read-only disk):
        the next append writes there again; the bytes beyond are cut as soon as the disk lets us."""
        self.length, self.records, self._dirty = length, records, False
        try:
            os.ftruncate(self.fd, length)
            self._cut_pending = False
        except OSError:
            self._cut_pending = True
        os.lseek(self.fd, length, os.SEEK_SET)

    def append(self, batch: pa.RecordBatch) -> None:
        if self._cut_pending:
            os.ftruncate(self.fd, self.length)
            self._cut_pending = False
        if self.length == 0:
            schema = batch.schema.with_metadata({JOURNAL_ID_KEY: self.journal_id.encode()})
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, schema) as w:
                w.write_batch(batch)
            data = sink.getvalue()
            # drop the end-of-stream marker the context manager wrote: we keep appending
            data = data.slice(0, len(data) - 8)
        else:
            data = batch.serialize()
        self.length += _write_all(self.fd, data)
        self.records += batch.num_rows
        self._dirty = True

    def sync(self) -> None:
        if self._dirty:
            os.fsync(self.fd)
            self._dirty = False
        if self._new_file:
            fsync_dir(os.path.dirname(self.path))
            self._new_file = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass
class JournalContents:
    schema: pa.Schema | None
    batches: list[pa.RecordBatch]
    #: bytes up to the end of the last complete batch (0 if not even a schema)
    good_length: int
    file_length: int
    journal_id: str
    records: int

    @property
    def torn(self) -> bool:
        return self.good_length < self.file_length


def read_journal(path: str, limit: int | None = None) -> JournalContents:
    """Every complete batch of a journal (memory-mapped, zero copy), stopping at
    a torn tail or at ``limit`` bytes."""
    size = os.path.getsize(path)
    end = size if limit is None else min(size, limit)
    batches: list[pa.RecordBatch] = []
    if end == 0:
        return JournalContents(None, [], 0, size, "", 0)
    src = pa.memory_map(path, "r")
    try:
        reader = pa.ipc.open_stream(src)
    except (pa.ArrowInvalid, OSError):
        return JournalContents(None, [], 0, size, "", 0)
    schema = reader.schema
    good = src.tell()
    while good < end:
        try:
            batch = reader.read_next_batch()
        except StopIteration:  # an end-of-stream marker
            break
        except (pa.ArrowInvalid, OSError):  # torn tail
            break
        pos = src.tell()
        if pos > end:
            break
        batches.append(batch)
        good = pos
    jid = (schema.metadata or {}).get(JOURNAL_ID_KEY, b"").decode()
    return JournalContents(
        schema.remove_metadata(), batches, good, size, jid, sum(b.num_rows for b in batches)
    )


def cut_tail(path: str, length: int) -> None:
    """Truncate a journal to ``length`` bytes (its last complete batch) durably."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, length)
        os.fsync(fd)
    finally:
        os.close(fd)
