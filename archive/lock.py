"""One writer per archive root: an exclusive ``flock`` on ``<root>/.capture.lock``.

A capture (and ``capture recover``) holds the lock for its whole life, so a
second capture on the same root cannot "recover" the first one's live
journals. The holder's pid is written in the file so the refusal can name it.
The kernel drops a ``flock`` when its holder dies, so a lock left by
``kill -9`` never blocks the next start (the stale pid in the file is simply
overwritten). The descriptor is not inherited by child processes (PEP 446).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

LOCK_NAME = ".capture.lock"


class LockHeld(RuntimeError):
    """The root is locked by another live process."""

    def __init__(self, root: str, holder: str) -> None:
        self.root = root
        self.holder = holder
        super().__init__(f"archive root {root} is in use by {holder}; one capture per archive root")


def lock_path(root: str) -> str:
    return os.path.join(root, LOCK_NAME)


class ArchiveLock:
    """``with ArchiveLock(root, "capture run"):`` or ``acquire()``/``release()``."""

    def __init__(self, root: str, what: str) -> None:
        self.root = os.path.abspath(root)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> ArchiveLock:
        """Take the lock or raise ``LockHeld`` naming the holder; ``OSError`` if the root is unusable."""
        fd = os.open(lock_path(self.root), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            os.close(fd)
            raise LockHeld(self.root, holder) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            info = f"pid {os.getpid()} ({self.what}, since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)  # no pid of a process that is gone
            except OSError:
                pass
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> ArchiveLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if line.startswith("pid ") else "another process (pid not recorded yet)"


WRITERS_LOCK_NAME = ".writers.lock"


def hold_writers_lock(root: str) -> int:
    """A writer process holds this shared lock for its whole life (the fd is returned and
    kept open): a capture whose supervisor died can leave writers draining for a while,
    and the next capture must not recover journals they still write (``wait_writers_gone``)."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(os.path.abspath(root), WRITERS_LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:  # a writer restarted while the root is read-only: a flock needs no write access
        if e.errno != errno.EROFS:
            raise
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return fd


def wait_writers_gone(root: str, timeout: float) -> bool:
    """Under the root's lock, before any writer of ours starts: wait until no writer of an
    earlier capture holds the writers' lock. False if some still did after ``timeout`` s."""
    fd = os.open(os.path.join(os.path.abspath(root), WRITERS_LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        end = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= end:
                    return False
                time.sleep(0.05)
    finally:
        os.close(fd)  # drops the lock again: our own writers take it shared
