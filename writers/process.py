"""The writer process: the supervisor's ``multiprocessing`` (spawn) target.

Cycles every ``archive.flush_interval`` seconds, or at once while any ring is
more than half full. Between cycles it sleeps as long as it safely can: until
the first ring could, filling from its present level at a producer's peak rate
(``PEAK_*`` records, frames or payload bytes per second), pass three quarters
full (``WATCH_FILL``). An empty ring is thus looked at every ~0.2 s with the
default rings, a ring nearing half full as often as before (every ~65 ms), and
one past half full at once. While every feed it serves is quiet and armed to wake
it (``ipc.wake``), it sleeps until the flush tick instead: an idle writer wakes
twice a second. When ``stop`` is set (after the producers have stopped)
it drains everything left, finalizes every open journal and returns (exit 0).
SIGINT is ignored (a terminal Ctrl-C reaches the whole process group; the
supervisor decides); SIGTERM asks for the same graceful stop as ``stop``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from multiprocessing.synchronize import Event as MpEvent
from types import FrameType

from ticktape.archive.lock import hold_writers_lock
from ticktape.engine.config import ArchiveConfig
from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.stats import WF, WriterStats
from ticktape.ipc.wake import WakeListener
from ticktape.writers.storage import StorageGuard, is_storage_error
from ticktape.writers.writer import Writer

log = logging.getLogger("ticktape.writer")

#: ring fill that triggers a cycle before the flush interval is up
URGENT_FILL = 0.5
#: a producer's burst ceiling per ring, well above what one ingest process pushes
#: (~2 M book rows/s from 42-level diffs, ~300 k raw frames/s, ~50 MB/s of payload)
PEAK_RECORDS_PER_S = 4e6
PEAK_RAW_FRAMES_PER_S = 1e6
PEAK_RAW_BYTES_PER_S = 2e8
PEAK_EVENTS_PER_S = 1e5
_POLL_MIN = 0.01
#: the fill a ring may reach, at the peak rate, before the writer looks again (the
#: old fixed period, half the time to reach ``URGENT_FILL``, gave the same bound)
WATCH_FILL = 0.75


def stop_requested(stop: MpEvent | threading.Event) -> bool:
    """Read a multiprocessing Event without taking its lock.

    ``Event.is_set``/``wait`` take the Event's condition lock; a writer killed
    with -9 inside them leaves that lock (or the condition's sleeper count)
    held forever, and the restarted writer or the supervisor's ``set`` hangs.
    The flag semaphore's value can be read lock-free on Linux.
    """
    flag = getattr(stop, "_flag", None)
    if flag is not None and hasattr(flag, "get_value"):
        try:
            return bool(flag.get_value() > 0)
        except NotImplementedError:  # pragma: no cover - macOS
            pass
    return stop.is_set()


def _full_seconds(ring: RecordRing | RawRing, data_type: str) -> float:
    """Seconds in which ``ring`` goes from empty to full at a producer's peak rate
    (a raw ring: whichever of its frame index and payload arena fills first)."""
    if isinstance(ring, RawRing):
        return min(ring.index.capacity / PEAK_RAW_FRAMES_PER_S, ring.arena_bytes / PEAK_RAW_BYTES_PER_S)
    peak = PEAK_EVENTS_PER_S if data_type == "events" else PEAK_RECORDS_PER_S
    return float(ring.capacity / peak)


class FillWatch:
    """How full the writer's rings are, and how long it may sleep before it looks again."""

    def __init__(self, writer: Writer) -> None:
        self._rings = [(s.ring.fill, _full_seconds(s.ring, s.data_type)) for s in writer.sources]

    def look(self) -> tuple[float, float]:
        """(the highest fill, seconds until some ring could pass ``WATCH_FILL`` at its peak rate)."""
        top, wait = 0.0, float("inf")
        for fill, full_s in self._rings:
            f = fill()
            top = max(top, f)
            wait = min(wait, (WATCH_FILL - f) * full_s)
        return top, max(_POLL_MIN, wait)


def run_writer(writer: Writer, stop: MpEvent | threading.Event, flush_interval: float) -> None:
    """The cycle loop, separate from process set-up so it can run in-process."""
    term = threading.Event()
    watch = FillWatch(writer)
    # every ring set's armed word (``ipc.wake``): while all are armed the feeds are quiet and
    # any frame wakes us, so the sleep may last until the flush tick
    events = [s for s in writer.sources if s.data_type == "events"]
    armed = [s.ring for s in events if isinstance(s.ring, RecordRing)]
    wake = WakeListener([s.spec for s in events])

    def on_term(signum: int, frame: FrameType | None) -> None:
        term.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    last = time.monotonic()
    try:
        while not stop_requested(stop) and not term.is_set():
            now = time.monotonic()
            blocked = writer.storage.blocked  # a full/read-only disk: retry on its own interval, no busy loop
            fill, wait = watch.look()
            if (now - last >= flush_interval or (fill > URGENT_FILL and not blocked)) and (
                writer.storage.may_try()
            ):
                last = now
                writer.drain_once()
                writer.finalize_due(background=True)  # never stalls the drain
            elif not blocked and wake.ok and armed and all(r.wake_armed for r in armed):
                wake.wait(max(0.0, last + flush_interval - now))  # until the flush tick, or a frame
            else:  # never Event.wait: see stop_requested
                time.sleep(_POLL_MIN if blocked else max(0.0, min(wait, last + flush_interval - now)))
    finally:
        wake.close()
    # producers are stopped: empty the rings (on a full disk keep retrying until the
    # supervisor's drain_timeout sends SIGTERM: the records only exist in the rings)
    while True:
        if writer.drain_once():
            continue
        if writer.storage.blocked and not term.is_set():
            time.sleep(writer.storage.retry_interval)
            continue
        break
    writer.close(finalize_all=True)


def start_writer(
    specs: list[RingSetSpec],
    archive: ArchiveConfig,
    stop: MpEvent | threading.Event,
    writer_id: int,
    host: str,
    stats: WriterStats | None,
) -> Writer:
    """The writer, once its start-up writes (journals reopened and cut back, the state
    saved) work. A writer restarted while the archive is full or read-only waits here,
    blocked as a running writer would be (said once, metric, retried), instead of failing
    every restart until the supervisor gives the capture up; the rings keep the records."""
    storage = StorageGuard(archive.root, stats)
    while True:
        try:
            return Writer(specs, archive, writer_id=writer_id, host=host, stats=stats, storage=storage)
        except OSError as e:
            if not is_storage_error(e) or stop_requested(stop):
                raise
            storage.failed(e, "starting the writer")
        time.sleep(storage.retry_interval)


def writer_main(
    specs: list[RingSetSpec],
    archive: ArchiveConfig,
    stop: MpEvent,
    writer_id: int = 0,
    host: str = "",
    stats_name: str = "",
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stats = WriterStats(stats_name) if stats_name else None
    lock_fd = hold_writers_lock(archive.root)  # held until this process exits (see archive.lock)
    log.debug("writers' lock held (fd %d)", lock_fd)
    writer = start_writer(specs, archive, stop, writer_id, host, stats)
    log.info(
        "writer %d started: %s", writer_id, ", ".join(s.key for s in writer.sources) or "no rings"
    )
    if stats is not None:  # the supervisor starts the producers once this is set
        stats.values[WF["ready_ns"]] = time.time_ns()
    run_writer(writer, stop, archive.flush_interval)
    log.info("writer %d stopped: %d records, %d files", writer_id, writer.records_written, writer.files_written)
