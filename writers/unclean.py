"""The hole left by a capture that did not stop cleanly, marked in the archive.

A capture writes a run marker (``<root>/.state/run.json``: its exchanges, their
symbols and raw channels, when it started) when it starts and removes it once
its writers have drained and finalized. A marker found at the next start (under
the archive lock) means that run ended without its own ``shutdown`` markers
(kill -9 of the whole group, a crash, power loss): for every stream of every
exchange it had, a ``disconnect`` event and an empty raw row are written at the
last durable time of that exchange (the newest ``local_ts_ns`` in its journals,
else when its writer state was last saved, else the run's start), so every
replay shows the hole instead of a quiet market.

The rows are merged straight into the hour's Parquet files under a journal id
derived from the dead run, so doing it twice (a crash during this step) is a
no-op, and the previous run's own journals are still recovered by the writers.
"""

from __future__ import annotations

import logging
import os

import msgspec
import numpy as np

from ticktape.archive.layout import STATE_DIR, FileKey, hour_of_ns
from ticktape.engine.settings import ArchiveConfig
from ticktape.ipc.schemas import (
    EVENT_CODE,
    EVENT_DTYPE,
    NO_SYMBOL_NAME,
    RAW_INDEX_DTYPE,
    fixed_batch_to_arrow,
    raw_batch_to_arrow,
)
from ticktape.writers.finalize import finalize_batches
from ticktape.writers.fsutil import atomic_write, makedirs_durable
from ticktape.writers.journal import read_journal
from ticktape.writers.writer import scan_journals

log = logging.getLogger("ticktape.writer")

MARKER_NAME = "run.json"
DETAIL = "capture ended without a clean stop (killed, crashed or lost power): nothing recorded until the next start"


class ExchangeStreams(msgspec.Struct):
    #: symbol names (without ``_``) and native raw channel names of the run
    symbols: list[str]
    channels: list[str]
    raw: bool = True


class RunMarker(msgspec.Struct):
    pid: int
    host: str
    started_ns: int
    exchanges: dict[str, ExchangeStreams]


def marker_path(root: str) -> str:
    return os.path.join(root, STATE_DIR, MARKER_NAME)


def write_marker(root: str, marker: RunMarker) -> None:
    makedirs_durable(os.path.join(root, STATE_DIR))
    atomic_write(marker_path(root), msgspec.json.encode(marker))


def remove_marker(root: str) -> None:
    try:
        os.unlink(marker_path(root))
    except FileNotFoundError:
        pass


def read_marker(root: str) -> RunMarker | None:
    try:
        with open(marker_path(root), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(data, type=RunMarker)
    except msgspec.DecodeError as e:  # written atomically: outside damage; nothing to mark from
        log.error("run marker %s is unreadable (%s); the previous run's hole cannot be marked", marker_path(root), e)
        return None


def last_durable_ns(root: str, exchange: str) -> int | None:
    """Newest arrival time any journal of ``exchange`` holds (torn tails ignored)."""
    newest: int | None = None
    for rel in scan_journals(root, exchange):
        try:
            contents = read_journal(os.path.join(root, rel))
        except OSError:
            continue
        for b in contents.batches[-4:]:  # appended in arrival order, give or take a cycle
            col = b.column(b.schema.get_field_index("local_ts_ns"))
            if len(col):
                v = int(np.max(col.to_numpy(zero_copy_only=False)))
                newest = v if newest is None else max(newest, v)
    return newest


def _state_mtime_ns(root: str) -> int | None:
    d = os.path.join(root, STATE_DIR)
    try:
        names = [n for n in os.listdir(d) if n.startswith("writer-") and n.endswith(".json")]
    except FileNotFoundError:
        return None
    times = [os.stat(os.path.join(d, n)).st_mtime_ns for n in names]
    return max(times) if times else None


def mark_unclean_stop(root: str, prev: RunMarker, archive: ArchiveConfig, host: str) -> int:
    """Write the disconnect markers of a run that did not stop cleanly; returns the events rows written."""
    jid = f"unclean-{prev.host}-{prev.pid}-{prev.started_ns}"
    state_ns = _state_mtime_ns(root)
    written = 0
    for exchange, ex in prev.exchanges.items():
        ts = last_durable_ns(root, exchange) or state_ns or prev.started_ns
        ts = max(ts, prev.started_ns)
        symbols = (NO_SYMBOL_NAME, *ex.symbols)
        channels = ("", *ex.channels)
        streams = [(c, s) for s in range(1, len(symbols)) for c in range(1, len(channels))] or [(0, 0)]
        for sym_id in sorted({s for _, s in streams}):
            mine = [(c, s) for c, s in streams if s == sym_id]
            ev = np.zeros(len(mine), dtype=EVENT_DTYPE)
            ev["local_ts"] = ts
            ev["kind"] = EVENT_CODE["disconnect"]
            ev["symbol"] = sym_id
            ev["channel"] = [c for c, _ in mine]
            ev["detail"] = DETAIL.encode()
            key = FileKey(exchange, "events", symbols[sym_id], hour_of_ns(ts), archive.file_tag)
            res = finalize_batches(root, key, [fixed_batch_to_arrow("events", ev, channels)], jid, archive, host, "unclean")
            written += len(mine) if res is not None else 0
            if ex.raw:
                idx = np.zeros(len(mine), dtype=RAW_INDEX_DTYPE)
                idx["local_ts"] = ts
                idx["symbol"] = sym_id
                idx["channel"] = [c for c, _ in mine]
                rb = raw_batch_to_arrow(idx, b"", 0, channels)
                finalize_batches(root, FileKey(exchange, "raw", symbols[sym_id], hour_of_ns(ts), archive.file_tag), [rb], jid, archive,
                                 host, "unclean")
        log.warning(
            "%s: the previous capture (pid %d) did not stop cleanly; disconnect markers written at its last "
            "durable time", exchange, prev.pid, extra={"exchange": exchange, "local_ts_ns": ts},
        )
    return written

