"""Single-producer single-consumer ring of fixed-size records in shared memory.

Layout: a 512-byte header of uint64 counters, each on its own cache line, then
``capacity`` records of ``dtype.itemsize`` bytes. Sequence numbers are absolute
and monotonic (record ``seq`` lives in slot ``seq % capacity``):

* ``write_seq``  - producer-owned; records ``< write_seq`` are published.
* ``read_seq``   - consumer-owned; records ``< read_seq`` are durable and may
  be overwritten. A restarted consumer resumes here: nothing lost, nothing
  duplicated, as long as the consumer commits only after its batch is durable.
* ``dropped``    - producer-owned count of records refused because the ring was
  full (the producer never blocks; see ``ipc.outbox`` for the policy).

No locks: each counter has exactly one writer. Aligned 8-byte stores are
atomic on x86-64 and stores are not reordered with other stores (TSO), so
publishing ``write_seq`` after the record bytes is enough for the consumer to
see complete records. The supervisor creates and owns the segment, so it
outlives a crashed producer or consumer.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import secrets
import struct
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np

MAGIC = 0x5449434B54415045  # "TICKTAPE"
HEADER_BYTES = 512
# word index (uint64) of each field; write/read/dropped are 64 bytes apart
_W = {"magic": 0, "write": 8, "read": 16, "dropped": 24, "gen": 32, "cap": 40, "item": 48, "bytes_w": 56}
_WRITE, _READ, _DROPPED = _W["write"], _W["read"], _W["dropped"]  # hot-path constants
#: the producer's "armed: my next frame wakes you" word (``ipc.wake``), in the magic's cache
#: line (written once at creation, so no consumer cursor shares its line)
_WAKE_ARMED = 1


#: segments created by this process: attaching to them here must keep the
#: creator's resource-tracker registration (tests and benchmarks do both)
_CREATED: set[str] = set()


def attach_shm(name: str) -> shared_memory.SharedMemory:
    """Attach to an existing segment without letting this process's resource
    tracker unlink it at exit (Python < 3.13 registers attachments too)."""
    shm = shared_memory.SharedMemory(name=name, create=False)
    if shm._name in _CREATED or multiprocessing.parent_process() is not None:  # type: ignore[attr-defined]
        # the creator's own registration, or a multiprocessing child sharing the
        # creator's resource tracker: unregistering would drop the creator's entry
        return shm
    try:
        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - tracker implementation detail
        pass
    return shm


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def shm_reserved_bytes(size: int) -> int:
    """What a segment of ``size`` bytes takes from /dev/shm once reserved (whole pages)."""
    return (size + _PAGE - 1) // _PAGE * _PAGE


def create_shm(name: str, size: int) -> shared_memory.SharedMemory:
    """Create a segment and reserve its memory now (``posix_fallocate``).

    A fresh segment is sparse: tmpfs allocates a page at its first write, and
    answers a write it has no room for with SIGBUS. Reserving every page at
    creation turns "/dev/shm filled up by someone else an hour later" from a
    child killed by SIGBUS into an ``OSError`` (ENOSPC) before anything starts.
    """
    try:  # a segment left by a killed run: it is ours to replace
        old = shared_memory.SharedMemory(name=name, create=False)
        old.close()
        old.unlink()
    except FileNotFoundError:
        pass
    shm = shared_memory.SharedMemory(name=name, create=True, size=size)
    fd = getattr(shm, "_fd", -1)
    if fd >= 0 and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, shm_reserved_bytes(size))
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                shm.close()
                shm.unlink()
                raise
            _touch(shm)  # no fallocate on this filesystem: write one byte per page instead
    _CREATED.add(shm._name)  # type: ignore[attr-defined]
    return shm


def _touch(shm: shared_memory.SharedMemory) -> None:
    buf = shm.buf
    assert buf is not None
    view = np.ndarray((len(buf),), dtype=np.uint8, buffer=buf)
    view[::_PAGE] = 0
    del view


def new_ring_name(label: str) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in label)[:40]
    return f"tt-{os.getpid()}-{secrets.token_hex(3)}-{safe}"


class RecordRing:
    """One ring; the same class serves producer and consumer (never both in one process)."""

    def __init__(self, shm: shared_memory.SharedMemory, dtype: np.dtype, owner: bool = False) -> None:
        self.shm = shm
        self.dtype = np.dtype(dtype)
        self.owner = owner
        buf = shm.buf
        assert buf is not None
        self._hdr = np.ndarray((HEADER_BYTES // 8,), dtype=np.uint64, buffer=buf)
        self._words = buf[:HEADER_BYTES].cast("Q")  # fast scalar access
        if int(self._hdr[_W["magic"]]) != MAGIC:
            raise ValueError(f"shared memory {shm.name!r} is not a ticktape ring")
        if int(self._hdr[_W["item"]]) != self.dtype.itemsize:
            raise ValueError(
                f"ring {shm.name!r} holds {int(self._hdr[_W['item']])}-byte records, not {self.dtype.itemsize}"
            )
        self.capacity = int(self._hdr[_W["cap"]])
        self.itemsize = self.dtype.itemsize
        self.records = np.ndarray((self.capacity,), dtype=self.dtype, buffer=buf, offset=HEADER_BYTES)
        # struct.pack_into target: the mmap itself packs ~2x faster than a memoryview of it
        self._mv = getattr(shm, "_mmap", None) or buf
        # producer-side cache of read_seq (refreshed only when the ring looks full)
        self._read_cache = int(self._words[_W["read"]])
        self._wseq = int(self._words[_W["write"]])

    # -- lifecycle ------------------------------------------------------------
    @classmethod
    def create(cls, name: str, dtype: np.dtype, capacity: int) -> RecordRing:
        dtype = np.dtype(dtype)
        if capacity < 2:
            raise ValueError("ring capacity must be >= 2")
        shm = create_shm(name, HEADER_BYTES + capacity * dtype.itemsize)
        assert shm.buf is not None
        hdr = np.ndarray((HEADER_BYTES // 8,), dtype=np.uint64, buffer=shm.buf)
        hdr[:] = 0
        hdr[_W["cap"]] = capacity
        hdr[_W["item"]] = dtype.itemsize
        hdr[_W["gen"]] = int.from_bytes(secrets.token_bytes(7), "little")
        hdr[_W["magic"]] = MAGIC
        del hdr
        return cls(shm, dtype, owner=True)

    @classmethod
    def attach(cls, name: str, dtype: np.dtype) -> RecordRing:
        return cls(attach_shm(name), dtype)

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        # drop our views before closing the mapping
        self.records = None  # type: ignore[assignment]
        self._hdr = None  # type: ignore[assignment]
        self._words.release()
        self._mv = None  # type: ignore[assignment]
        try:
            self.shm.close()
        except BufferError:  # a caller still holds a view; the OS unmaps at exit
            pass
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass

    # -- counters -------------------------------------------------------------
    @property
    def generation(self) -> int:
        return int(self._words[_W["gen"]])

    @property
    def write_seq(self) -> int:
        return int(self._words[_W["write"]])

    @property
    def read_seq(self) -> int:
        return int(self._words[_W["read"]])

    @property
    def dropped(self) -> int:
        return int(self._words[_W["dropped"]])

    @property
    def wake_armed(self) -> bool:
        """Set by the producer while its next frame will wake the consumer (``ipc.wake``)."""
        return bool(self._words[_WAKE_ARMED])

    @wake_armed.setter
    def wake_armed(self, on: bool) -> None:
        self._words[_WAKE_ARMED] = 1 if on else 0

    def fill(self) -> float:
        return (self.write_seq - self.read_seq) / self.capacity

    # -- producer -------------------------------------------------------------
    def free(self) -> int:
        free = self.capacity - (self._wseq - self._read_cache)
        if free <= 0:
            self._read_cache = int(self._words[_W["read"]])
            free = self.capacity - (self._wseq - self._read_cache)
        return free

    def push_packed(self, packer: struct.Struct, *fields: Any) -> bool:
        """Pack one record straight into its slot; False (and counted) if full."""
        seq = self._wseq
        if seq - self._read_cache >= self.capacity:
            self._read_cache = self._words[_READ]
            if seq - self._read_cache >= self.capacity:
                self._words[_DROPPED] += 1
                return False
        packer.pack_into(self._mv, HEADER_BYTES + (seq % self.capacity) * self.itemsize, *fields)
        seq += 1
        self._wseq = seq
        self._words[_WRITE] = seq
        return True

    def push_array(self, arr: np.ndarray) -> int:
        """Push a batch of records (all or as many as fit); returns how many went in.

        Records that do not fit are counted as dropped.
        """
        n = len(arr)
        free = self.free()
        k = min(n, max(free, 0))
        if k:
            seq = self._wseq
            start = seq % self.capacity
            first = min(k, self.capacity - start)
            self.records[start : start + first] = arr[:first]
            if k > first:
                self.records[: k - first] = arr[first:k]
            self._wseq = seq + k
            self._words[_W["write"]] = seq + k
        if k < n:
            self._words[_W["dropped"]] += n - k
        return k

    def count_drop(self, n: int = 1) -> None:
        self._words[_W["dropped"]] += n

    # -- consumer -------------------------------------------------------------
    def available(self) -> int:
        return self.write_seq - self.read_seq

    def peek(self, max_records: int | None = None) -> tuple[int, list[np.ndarray]]:
        """Views of the published, uncommitted records from ``read_seq``.

        Returns (start_seq, [view] or [tail_view, head_view] when the range
        wraps). The views alias shared memory: copy or convert before commit.
        """
        start = self.read_seq
        end = self.write_seq
        if max_records is not None:
            end = min(end, start + max_records)
        return start, self.views(start, end)

    def views(self, start: int, end: int) -> list[np.ndarray]:
        if end <= start:
            return []
        a = start % self.capacity
        n = end - start
        if a + n <= self.capacity:
            return [self.records[a : a + n]]
        return [self.records[a:], self.records[: a + n - self.capacity]]

    def commit(self, seq: int) -> None:
        """Release records ``< seq`` to the producer. Call only once they are durable."""
        cur = self.read_seq
        if seq < cur or seq > self.write_seq:
            raise ValueError(f"commit {seq} outside [{cur}, {self.write_seq}]")
        self._words[_W["read"]] = seq
