"""The ingest process: uvloop, rings attached, one ``Feed`` with its links,
a watchdog (stop flag, stalls, heartbeats, pending drop events), clean close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.synchronize import Event
from typing import TYPE_CHECKING, Any

from ticktape.engine.children import STOP_NUDGE
from ticktape.exchanges.connection import Link
from ticktape.ipc.wake import Waker

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig, LogConfig
    from ticktape.exchanges.feed import Feed
    from ticktape.ipc.ringset import RingSetSpec

log = logging.getLogger("ticktape.exchanges")

WATCHDOG_PERIOD = 0.1
#: the longest watchdog period while no frame arrives (doubling from WATCHDOG_PERIOD after
#: each quiet tick, back to it at the first tick that sees frames): an idle feed's process
#: wakes about once a second instead of 10 times. Also at most a quarter of the stall timeout
#: and half the ping interval, so silence and heartbeats keep their timing. A stop does not
#: wait for the tick: the supervisor sends ``STOP_NUDGE`` after setting the stop flag.
WATCHDOG_QUIET = 1.0


def quiet_period(timing: Any) -> float:
    """The watchdog's longest period for ``timing`` (a ``Timing``)."""
    cap = min(WATCHDOG_QUIET, timing.stall_timeout / 4)
    if timing.ping_interval > 0:
        cap = min(cap, timing.ping_interval / 2)
    return max(WATCHDOG_PERIOD, cap)


async def run_feed(feed: Feed, should_stop: Callable[[], bool]) -> None:
    """Run ``feed`` until ``should_stop()`` is true, then close its connections."""
    await feed.start()
    loop = asyncio.get_running_loop()
    feed.out.wake_armed = False  # a killed predecessor may have left it armed
    if feed.waker is None:
        feed.waker = Waker(feed.spec)
    nudged = asyncio.Event()
    try:
        loop.add_signal_handler(STOP_NUDGE, nudged.set)
    except (RuntimeError, ValueError):  # not the main thread (in-process tests): ticks only
        pass
    feed.links = [Link(feed, plan, feed.timing) for plan in feed.get_plans()]
    tasks = [loop.create_task(link.run()) for link in feed.links]
    longest = quiet_period(feed.timing)
    period = WATCHDOG_PERIOD
    try:
        while not should_stop():
            if period <= WATCHDOG_PERIOD:
                await asyncio.sleep(period)
            else:  # a quiet feed's long tick: a stop nudge ends it
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(nudged.wait(), period)
                nudged.clear()  # a stray signal ends one tick early, nothing more
            now = time.monotonic()
            busy = False
            for link in feed.links:
                busy = link.check(now, feed.ping) or busy
            period = WATCHDOG_PERIOD if busy else min(period * 2, longest)
            if not busy and period >= longest:
                feed.arm_wake()  # quiet for a while: the next frame wakes the writer (ipc.wake)
            feed.tick(now)
            feed.flush_duplicates(time.time_ns())
            feed.flush_stats()
            feed.out.flush_pending()
            for t in tasks:  # a link task must never end on its own; surface bugs
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
    finally:
        feed.wake_writer()  # the writer back on its own clock for the final drain
        if feed.waker is not None:
            feed.waker.close()
        with contextlib.suppress(RuntimeError, ValueError):
            loop.remove_signal_handler(STOP_NUDGE)
        # before the shutdown markers: the last events row of a clean stop is its disconnect
        feed.flush_duplicates(time.time_ns(), force=True)
        for link in feed.links:
            await link.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5.0)
        for t in tasks:
            t.cancel()
        await feed.stop()
        feed.flush_stats()
        feed.out.flush_pending()


def _setup_logging(log_cfg: LogConfig | None, exchange: str) -> None:
    try:  # the engine's JSON-lines logging
        from ticktape.engine import logging_setup

        logging_setup.setup(log_cfg, process_name=f"ingest-{exchange}")
        return
    except Exception as e:  # pragma: no cover - a log file we cannot open must not stop capture
        logging.basicConfig(level="INFO")
        log.warning("JSON logging unavailable (%s); using plain logging", e)


OPTIONS_ENV = "TICKTAPE_INGEST_OPTIONS"


def env_options() -> dict[str, Any]:
    """Timing overrides for tests and demos (JSON object in $TICKTAPE_INGEST_OPTIONS,
    e.g. ``{"stall_timeout": 2, "backoff_base": 0.05}``); inherited by spawned children."""
    text = os.environ.get(OPTIONS_ENV)
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except ValueError as e:
        raise ValueError(f"${OPTIONS_ENV} is not JSON: {e}") from None
    if not isinstance(opts, dict):
        raise ValueError(f"${OPTIONS_ENV} must be a JSON object")
    return opts


def ingest_main(
    feed_cls: type[Feed],
    spec: RingSetSpec,
    cfg: ExchangeConfig,
    stats_name: str,
    stop: Event,
    log_cfg: LogConfig | None,
    options: dict[str, Any] | None = None,
) -> None:
    """Process target: attach rings and stats, run the feed until ``stop`` is set."""
    import uvloop

    from ticktape.ipc import ringset
    from ticktape.ipc.outbox import Outbox
    from ticktape.ipc.stats import FeedStats

    _setup_logging(log_cfg, spec.exchange)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops us through ``stop``
    opts = env_options()
    opts.update(options or {})
    stall = getattr(cfg, "stall_timeout", None)
    if stall is not None and "stall_timeout" not in opts:
        opts["stall_timeout"] = float(stall)
    rings = ringset.attach(spec)
    stats = FeedStats(stats_name, len(spec.symbols), len(spec.channels))
    feed: Feed | None = None
    try:
        outbox = Outbox(spec, rings)
        feed = feed_cls(spec, cfg, outbox, stats, opts)
        feed.mark_restart()
        uvloop.run(run_feed(feed, stop.is_set))
    finally:
        if feed is not None:
            for view in (feed.c, feed.cc):
                if isinstance(view, memoryview):
                    view.release()
        stats.close()
        ringset.close(rings)
        log.info("%s ingest stopped", spec.exchange)
