"""Raw exchange frames in shared memory: a fixed-size index ring plus a byte arena.

Each frame's index record (``RAW_INDEX_DTYPE``: receive time, channel, symbol,
connection id, absolute arena position and length) goes through an ordinary
``RecordRing``; the payload bytes go into a separate arena at an absolute,
monotonic byte position. A payload never straddles the arena's wrap point (the
producer skips to the start instead), so the consumer can hand a batch of
payloads to Arrow as one buffer plus offsets computed with numpy.

The arena's ``read_pos`` is advanced together with the index ring's
``read_seq`` on commit, so both are released only once the batch is durable.
"""

from __future__ import annotations

from multiprocessing import shared_memory

import numpy as np

from ticktape.ipc.ring import HEADER_BYTES, MAGIC, RecordRing, attach_shm, create_shm
from ticktape.ipc.schemas import RAW_INDEX_DTYPE, RAW_INDEX_STRUCT

_A_MAGIC, _A_WRITE, _A_READ, _A_CAP = 0, 8, 16, 24  # uint64 word indices
_ALIGN = 1  # payloads packed back to back: a batch's bytes are one contiguous slice


class RawRing:
    def __init__(self, index: RecordRing, arena: shared_memory.SharedMemory, owner: bool = False) -> None:
        self.index = index
        self.arena_shm = arena
        self.owner = owner
        buf = arena.buf
        assert buf is not None
        self._words = buf[:HEADER_BYTES].cast("Q")
        if self._words[_A_MAGIC] != MAGIC:
            raise ValueError(f"shared memory {arena.name!r} is not a ticktape arena")
        self.arena_bytes = int(self._words[_A_CAP])
        self._data = buf[HEADER_BYTES : HEADER_BYTES + self.arena_bytes]
        self._wpos = int(self._words[_A_WRITE])
        self._rpos_cache = int(self._words[_A_READ])

    @classmethod
    def create(cls, name: str, index_capacity: int, arena_bytes: int) -> RawRing:
        arena_bytes = (arena_bytes + _ALIGN - 1) // _ALIGN * _ALIGN
        index = RecordRing.create(name + "-i", RAW_INDEX_DTYPE, index_capacity)
        shm = create_shm(name + "-a", HEADER_BYTES + arena_bytes)
        assert shm.buf is not None
        words = shm.buf[:HEADER_BYTES].cast("Q")
        for i in range(HEADER_BYTES // 8):
            words[i] = 0
        words[_A_CAP] = arena_bytes
        words[_A_MAGIC] = MAGIC
        words.release()
        return cls(index, shm, owner=True)

    @classmethod
    def attach(cls, name: str) -> RawRing:
        return cls(RecordRing.attach(name + "-i", RAW_INDEX_DTYPE), attach_shm(name + "-a"))

    @property
    def name(self) -> str:
        return self.index.name[:-2]

    def close(self) -> None:
        self.index.close()
        self._words.release()
        self._data.release()
        try:
            self.arena_shm.close()
        except BufferError:  # pragma: no cover
            pass
        if self.owner:
            try:
                self.arena_shm.unlink()
            except FileNotFoundError:
                pass

    # -- counters -------------------------------------------------------------
    @property
    def dropped(self) -> int:
        return self.index.dropped

    def fill(self) -> float:
        used = int(self._words[_A_WRITE]) - int(self._words[_A_READ])
        return max(self.index.fill(), used / self.arena_bytes)

    # -- producer -------------------------------------------------------------
    def room(self, nbytes: int) -> bool:
        """Whether a frame of ``nbytes`` would fit now (for producers that may wait)."""
        cap = self.arena_bytes
        pos = self._wpos
        off = pos % cap
        if off + nbytes > cap:
            pos += cap - off
        end = pos + (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
        if end - self._rpos_cache > cap:
            self._rpos_cache = int(self._words[_A_READ])
            if end - self._rpos_cache > cap:
                return False
        return self.index.free() > 0

    def push(
        self, local_ts: int, payload: bytes | bytearray | memoryview, conn_id: int, symbol: int, channel: int
    ) -> bool:
        """Copy one frame in; False (and counted as a drop) if either part is full."""
        n = len(payload)
        cap = self.arena_bytes
        pos = self._wpos
        off = pos % cap
        if off + n > cap:  # never straddle the wrap: skip to the arena start
            pos += cap - off
            off = 0
        end = pos + (n + _ALIGN - 1) // _ALIGN * _ALIGN
        if end - self._rpos_cache > cap:
            self._rpos_cache = int(self._words[_A_READ])
            if end - self._rpos_cache > cap:
                self.index.count_drop()
                return False
        idx = self.index
        if idx._wseq - idx._read_cache >= idx.capacity and idx.free() <= 0:
            idx.count_drop()
            return False
        self._data[off : off + n] = payload
        if not idx.push_packed(RAW_INDEX_STRUCT, local_ts, pos, n, conn_id, symbol, channel):
            return False  # pragma: no cover - free() checked above
        self._wpos = end
        self._words[_A_WRITE] = end
        return True

    # -- consumer -------------------------------------------------------------
    def available(self) -> int:
        return self.index.available()

    def peek(self, max_records: int | None = None) -> tuple[int, list[tuple[np.ndarray, memoryview, int]]]:
        """(start_seq, chunks); each chunk is (index_view, arena_bytes, base_pos)
        with every payload of ``index_view`` inside ``arena_bytes``, which starts
        at absolute position ``base_pos``."""
        start, views = self.index.peek(max_records)
        cap = self.arena_bytes
        chunks: list[tuple[np.ndarray, memoryview, int]] = []
        for view in views:
            if not len(view):
                continue
            lap = view["pos"] // cap
            cuts = np.flatnonzero(np.diff(lap)) + 1
            for part in np.split(view, cuts):
                base = int(part["pos"][0])
                last_end = int(part["pos"][-1]) + int(part["length"][-1])
                off = base % cap
                chunks.append((part, self._data[off : off + (last_end - base)], base))
        return start, chunks

    def commit(self, seq: int) -> None:
        """Release index records ``< seq`` and the arena bytes they used."""
        idx = self.index
        if seq > idx.read_seq:
            last = idx.records[(seq - 1) % idx.capacity]
            end = int(last["pos"]) + (int(last["length"]) + _ALIGN - 1) // _ALIGN * _ALIGN
            self._words[_A_READ] = max(end, int(self._words[_A_READ]))
        idx.commit(seq)
