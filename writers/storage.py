"""What a writer does when the archive's file system refuses writes (full, read-only,
over quota, I/O error): keep the records in the rings (no cursor is committed),
say it once, count it, and retry on a short fixed interval (not the child
restart back-off) so writing resumes within about a second of space returning.
Records the producers could not push meanwhile are counted and marked by them
(``drop`` events); the writer adds one ``info`` event per exchange once writes
work again, naming the error and how long it lasted."""

from __future__ import annotations

import errno
import logging
import time

from ticktape.ipc.stats import WF, WriterStats

log = logging.getLogger("ticktape.writer")

#: errors of the file system under the archive, after which writing again later may work
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})
#: seconds between attempts while blocked
RETRY_INTERVAL = 0.5


def is_storage_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in STORAGE_ERRNOS


class StorageGuard:
    def __init__(self, root: str, stats: WriterStats | None = None, retry_interval: float = RETRY_INTERVAL) -> None:
        self.root = root
        self.stats = stats
        self.retry_interval = retry_interval
        self.error: OSError | None = None
        self.since_ns = 0
        self._next_try = 0.0
        self.failures = 0

    @property
    def blocked(self) -> bool:
        return self.error is not None

    def may_try(self) -> bool:
        """False while blocked and the retry interval has not passed (cheap; called every loop)."""
        return self.error is None or time.monotonic() >= self._next_try

    def failed(self, e: OSError, what: str) -> None:
        self.failures += 1
        self._next_try = time.monotonic() + self.retry_interval
        if self.stats is not None:
            v = self.stats.values
            v[WF["storage_errors"]] += 1
            v[WF["storage_errno"]] = e.errno or 0
            v[WF["storage_blocked"]] = 1
        if self.error is None:
            self.error = e
            self.since_ns = time.time_ns()
            log.error(
                "archive %s: %s failed (%s); records stay in the rings, retrying every %.1f s",
                self.root, what, e.strerror or e, self.retry_interval,
                extra={"errno": e.errno, "archive": self.root},
            )

    def recovered(self) -> str | None:
        """Called after a cycle that wrote: the event detail if an episode just ended, else None."""
        if self.error is None:
            return None
        e, took_ns = self.error, time.time_ns() - self.since_ns
        self.error = None
        if self.stats is not None:
            v = self.stats.values
            v[WF["storage_blocked"]] = 0
            v[WF["storage_blocked_ns"]] += took_ns
        name = errno.errorcode.get(e.errno or 0, "error")
        detail = f"archive writes failed ({name}: {e.strerror}) for {took_ns / 1e9:.1f} s; resumed"
        log.warning("archive %s: writes work again after %.1f s (%d failed attempts)", self.root, took_ns / 1e9,
                    self.failures, extra={"archive": self.root, "blocked_s": round(took_ns / 1e9, 3)})
        self.failures = 0
        return detail
