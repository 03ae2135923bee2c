"""The writer process: the supervisor's ``multiprocessing`` (spawn) target.

Cycles every ``archive.flush_interval`` seconds, or at once while any ring is
more than half full. When ``stop`` is set (after the producers have stopped)
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

from ticktape.engine.config import ArchiveConfig
from ticktape.ipc.ringset import RingSetSpec
from ticktape.writers.writer import Writer

log = logging.getLogger("ticktape.writer")

#: ring fill that triggers a cycle before the flush interval is up
URGENT_FILL = 0.5
_POLL = 0.01


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


def run_writer(writer: Writer, stop: MpEvent | threading.Event, flush_interval: float) -> None:
    """The cycle loop, separate from process set-up so it can run in-process."""
    term = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        term.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    last = time.monotonic()
    while not stop_requested(stop) and not term.is_set():
        now = time.monotonic()
        if now - last >= flush_interval or writer.max_fill() > URGENT_FILL:
            last = now
            writer.drain_once()
            writer.finalize_due()
        else:
            time.sleep(min(_POLL, flush_interval))  # never Event.wait: see stop_requested
    while writer.drain_once():  # producers are stopped: empty the rings
        pass
    writer.close(finalize_all=True)


def writer_main(
    specs: list[RingSetSpec], archive: ArchiveConfig, stop: MpEvent, writer_id: int = 0, host: str = ""
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    writer = Writer(specs, archive, writer_id=writer_id, host=host)
    log.info(
        "writer %d started: %s", writer_id, ", ".join(s.key for s in writer.sources) or "no rings"
    )
    run_writer(writer, stop, archive.flush_interval)
    log.info("writer %d stopped: %d records, %d files", writer_id, writer.records_written, writer.files_written)
