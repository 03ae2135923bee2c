"""S3 backup of the archive: the library API behind ``capture s3`` and the engine's background sync.

    from ticktape.archive.s3 import sync_archive, restore_range, BackgroundSync

    report = sync_archive("./archive", "s3://bucket/ticks", endpoint_url="https://s3.us-west-004.backblazeb2.com")
    report = restore_range("s3://bucket/ticks", "./archive", exchange="binance-futures",
                           symbols="BTCUSDT", start="2025-01-05:22", end="2025-01-06:02",
                           data_types="trades,book_snapshot_20")   # default: every table

    bg = BackgroundSync.from_config(cfg.s3, cfg.archive.root)   # engine.config.S3Config
    bg.start()
    ...  bg.notify()   # after each hourly finalize (cheap, never blocks)
    bg.stop()          # on shutdown: runs one last sync, then returns

See ``s3_client`` (credentials, endpoint, errors), ``s3_sync`` and ``s3_restore``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from ticktape.archive.catalog import TimeLike, keys_for_range
from ticktape.archive.layout import FileKey
from ticktape.archive.s3_client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_READ_TIMEOUT,
    S3Error,
    S3Options,
    load_env,
    parse_url,
    redact,
)
from ticktape.archive.s3_restore import RestoreReport, remote_tables, restore_all, restore_keys, tagged_keys
from ticktape.archive.s3_sync import SyncReport, sync_archive

__all__ = [
    "BackgroundSync",
    "RestoreReport",
    "S3Error",
    "S3Options",
    "SyncReport",
    "load_env",
    "parse_url",
    "range_keys",
    "restore_all",
    "restore_keys",
    "restore_range",
    "sync_archive",
]

log = logging.getLogger("ticktape.s3")


def restore_range(
    url: str,
    root: str,
    *,
    exchange: str,
    symbols: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    data_types: str | Sequence[str] | None = None,
    depth: int | None = None,
    opts: S3Options | None = None,
    concurrency: int = 8,
    overwrite: bool = False,
    progress: bool = False,
) -> RestoreReport:
    """Fetch the files of a range (paths computed from the layout; one listing per table, symbol and day
    finds the tagged files of a sharded fleet).

    ``data_types`` None = every table the bucket holds (one delimiter listing of
    the prefix's top level names them), as the seed's restore does."""
    keys = range_keys(url, exchange, symbols, start, end, data_types, depth, opts)
    return restore_keys(
        url, root, keys, opts, concurrency=concurrency, overwrite=overwrite, progress=progress
    )


def range_keys(
    url: str,
    exchange: str,
    symbols: str | Sequence[str],
    start: TimeLike,
    end: TimeLike,
    data_types: str | Sequence[str] | None = None,
    depth: int | None = None,
    opts: S3Options | None = None,
) -> list[FileKey]:
    """The files of a range as the bucket holds them (every capture's tagged file of each hour; an hour
    with none keeps its untagged key, reported missing); without ``data_types``, of every table."""
    if data_types is None or (isinstance(data_types, str) and not data_types.strip()):
        tables = asyncio.run(remote_tables(url, opts))
        if not tables:
            return []
        data_types = tables
    return asyncio.run(tagged_keys(url, keys_for_range(exchange, data_types, symbols, start, end, depth), opts))


class BackgroundSync:
    """A daemon thread that mirrors the archive to S3 whenever ``notify()`` is called.

    Notifications coalesce: many finalizes during one sync cause one more sync,
    not many. A failed sync is logged (one line, no secrets) and retried after
    ``retry_interval`` seconds or at the next notify, whichever comes first.
    Nothing here can block or crash the caller.
    """

    def __init__(
        self,
        root: str,
        url: str,
        *,
        endpoint_url: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        concurrency: int = 8,
        retry_interval: float = 60.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ):
        parse_url(url)  # fail at start-up, not an hour later
        self.root = root
        self.url = url
        self.kwargs: dict[str, Any] = dict(
            endpoint_url=endpoint_url, profile=profile, region=region, concurrency=concurrency,
            connect_timeout=connect_timeout, read_timeout=read_timeout, max_attempts=max_attempts,
        )
        self.retry_interval = retry_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._final = True
        self._thread: threading.Thread | None = None
        self.last_report: SyncReport | None = None
        self.last_error: str | None = None
        self.runs = 0

    @classmethod
    def from_config(cls, s3cfg: Any, root: str) -> BackgroundSync:
        """From ``engine.config.S3Config`` (url, endpoint_url, profile, region, concurrency, timeouts)."""
        return cls(
            root,
            s3cfg.url,
            endpoint_url=s3cfg.endpoint_url,
            profile=s3cfg.profile,
            region=s3cfg.region,
            concurrency=s3cfg.concurrency,
            connect_timeout=getattr(s3cfg, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
            read_timeout=getattr(s3cfg, "read_timeout", DEFAULT_READ_TIMEOUT),
            max_attempts=getattr(s3cfg, "max_attempts", DEFAULT_MAX_ATTEMPTS),
        )

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="s3-sync", daemon=True)
            self._thread.start()

    def notify(self) -> None:
        """A file was finalized: sync soon."""
        self._wake.set()

    def stop(self, timeout: float | None = 300.0, final_sync: bool = True) -> None:
        """Stop the thread; with ``final_sync`` it first uploads what is left (e.g. the hour just finalized)."""
        if self._thread is None:
            return
        self._final = final_sync
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        retry = False
        while True:
            self._wake.wait(self.retry_interval if retry else None)
            self._wake.clear()
            if self._stopping.is_set() and not self._final:
                return
            retry = not self._run_once()
            if self._stopping.is_set():
                return

    def _run_once(self) -> bool:
        self.runs += 1
        try:
            report = sync_archive(self.root, self.url, **self.kwargs)
        except Exception as e:  # one line, never a traceback with secrets in it
            self.last_error = redact(str(e)) if isinstance(e, S3Error) else redact(f"{type(e).__name__}: {e}")
            log.error("background sync to %s failed: %s", redact(self.url), self.last_error)
            return False
        self.last_report = report
        self.last_error = report.error
        return report.ok
