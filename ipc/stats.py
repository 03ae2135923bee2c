"""Per-symbol feed counters in shared memory, written by an ingest process and
read by the supervisor for /metrics (no messages, no locks: one writer each).

A block is an int64 array of shape (len(spec.symbols), len(FIELDS)); row 0
(symbol ``_``) holds connection-level counts (reconnects, disconnects, ...).
After it, in the same segment, the per-(symbol, channel) counters: an int64
array of shape (len(CHANNEL_FIELDS), len(spec.symbols), len(spec.channels)),
indexed by the ring ids the connectors already hold (no name lookups); a
symbol's messages are the sum of its channels' (channel 0, ``""``, takes what a
connector does not attribute to a channel).
"""

from __future__ import annotations

import numpy as np

from ticktape.ipc.ring import attach_shm, create_shm

FIELDS = (
    "messages",  # frames received
    "bytes",  # payload bytes received
    "gaps",  # sequence gaps detected
    "resyncs",  # book resyncs
    "malformed",  # frames that failed to decode (kept as raw)
    "duplicates",  # duplicate / out-of-order updates ignored
    "reconnects",  # connections re-established
    "disconnects",  # connections lost (incl. stalls)
    "subscribe_errors",
    "rest_errors",  # REST requests that failed (HTTP error, timeout); each also an ``info`` event
    "snapshot_retries",  # book snapshots fetched again: older than the buffered diffs (each a ``resync`` event)
    "silent_streams",  # streams silent after their subscribe, symbol still listed (each a ``stream_silent`` event)
    "last_msg_ns",  # local receive time of the last frame (ns)
)
F = {name: i for i, name in enumerate(FIELDS)}


class _StatsBlock:
    """An int64 array in a shared-memory segment: created (zeroed, owned, unlinked on close)
    by the supervisor, attached by the one process that writes it."""

    def __init__(self, name: str, shape: tuple[int, ...], create: bool, extra_words: int = 0) -> None:
        size = (int(np.prod(shape)) + extra_words) * 8
        self.shm = create_shm(name, size) if create else attach_shm(name)
        self.owner = create
        self.values = np.ndarray(shape, dtype=np.int64, buffer=self.shm.buf)
        if create:
            np.ndarray((size,), dtype=np.uint8, buffer=self.shm.buf)[:] = 0

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        self.values = None  # type: ignore[assignment]
        try:
            self.shm.close()
        except BufferError:  # pragma: no cover
            pass
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


CHANNEL_FIELDS = (
    "messages",  # frames received on the (symbol, channel) stream
    "bytes",  # their payload bytes
)


def feed_stats_bytes(n_symbols: int, n_channels: int) -> int:
    """Size of a FeedStats block (before page rounding)."""
    return n_symbols * (len(FIELDS) + len(CHANNEL_FIELDS) * n_channels) * 8


class FeedStats(_StatsBlock):
    """``values``: (symbols, FIELDS); ``channels``: (CHANNEL_FIELDS, symbols, channels)."""

    def __init__(self, name: str, n_symbols: int, n_channels: int = 0, create: bool = False) -> None:
        nc = len(CHANNEL_FIELDS) * n_symbols * n_channels
        super().__init__(name, (n_symbols, len(FIELDS)), create, nc)
        self.n_channels = n_channels
        self.channels = np.ndarray((len(CHANNEL_FIELDS), n_symbols, n_channels), dtype=np.int64,
                                   buffer=self.shm.buf, offset=n_symbols * len(FIELDS) * 8)

    def close(self) -> None:
        self.channels = None  # type: ignore[assignment]
        super().close()


WRITER_FIELDS = (
    "storage_errors",  # write cycles that failed on the archive file system (ENOSPC, EROFS, EDQUOT, EIO)
    "storage_blocked",  # 1 while the writer cannot write (records wait in the rings)
    "storage_blocked_ns",  # total time spent blocked (ns), the current episode included once it ends
    "storage_errno",  # errno of the last storage failure
    "ready_ns",  # wall time the writer was set up and began draining (0 = still starting)
)
WF = {name: i for i, name in enumerate(WRITER_FIELDS)}


class WriterStats(_StatsBlock):
    """One writer's storage health, written by that writer and read for /metrics."""

    def __init__(self, name: str, create: bool = False) -> None:
        super().__init__(name, (len(WRITER_FIELDS),), create)
