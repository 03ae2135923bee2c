"""The supervisor: owns the shared memory, runs and restarts the children,
stops them in the order that loses nothing, and serves /metrics.

Start: one ``RingSetSpec`` + rings + ``FeedStats`` block per exchange (created
here, so they outlive any crashed child), then the writer processes (exchanges
spread over ``config.writers``), then one ingest process per exchange.

Running: a child that dies is restarted after a delay that doubles per
consecutive crash (reset once it has stayed up for a minute). A restarted
writer resumes from the rings' committed cursors; a restarted ingest process
attaches to the same rings.

Stop (SIGINT, SIGTERM, ``--duration``): ingest processes first (their stop
event; terminated if they overrun), then the writers' stop event so they drain
every ring and finalize their files; then the segments are unlinked. Anything a
writer could not drain is logged with its count and makes the exit code 1.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import msgspec

from ticktape.archive.lock import ArchiveLock, LockHeld, wait_writers_gone
from ticktape.engine import logging_setup, summary
from ticktape.engine.children import child_main, nudge
from ticktape.engine.config import Config, effective_raw
from ticktape.engine.connectors import SYNTHETIC, connector, connector_module
from ticktape.engine.log_sink import LogSink
from ticktape.engine.metrics import ChildView, FeedView, Snapshot, registry_for
from ticktape.engine.metrics_server import MetricsServer
from ticktape.engine.preflight import StartError, check_port_free, check_root_writable, check_shm_room
from ticktape.engine.sim_child import SIMULATED, wait_listening
from ticktape.engine.stopflag import StopFlag
from ticktape.ipc import ringset
from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import new_ring_name
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.stats import WF, F, FeedStats, WriterStats
from ticktape.writers import unclean

log = logging.getLogger("ticktape.supervisor")

#: seconds for each venue's instrument list at start
INSTRUMENTS_TIMEOUT = 5.0

WRITER_TARGET = "ticktape.writers.process:writer_main"
_STABLE_AFTER = 60.0  # seconds up before a child's crash streak is forgiven
_MAX_DRAIN_RESTARTS = 3
READY_WAIT = 60.0  # --duration starts counting at readiness, or after this long without it
_STUCK_AFTER = 5.0  # a ring over half full whose writer committed nothing for this long: not draining
_IDLE_WAKE = 1.0  # seconds the run loop sleeps when nothing happens (once ready)
_START_WAKE = 0.1  # ... and, with --duration, until ready (readiness starts the count)
_REAP_POLL = 0.01


@dataclass
class Child:
    role: str  # "writer" | "ingest"
    name: str
    target: str
    args: tuple[Any, ...]
    stop: StopFlag
    proc: BaseProcess | None = None
    restarts: int = 0
    streak: int = 0
    started_at: float = 0.0
    started_ns: int = 0  # wall clock at spawn: frames after it came from this incarnation
    restart_at: float | None = None
    drain_restarts: int = 0
    last_pid: int = 0
    exitcode: int | None = None
    #: consecutive deaths within ``supervisor.start_window`` s of starting
    start_failures: int = 0
    #: (receive end, send end) of the pipe on which the child reports why it crashed
    reasons: Any = None
    last_reason: str = ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.is_alive()


@dataclass
class Feed:
    name: str
    spec: RingSetSpec
    stats: FeedStats
    rings: dict[str, Any] = field(default_factory=dict)


_SEGMENT = re.compile(r"^tt-(\d+)-")


def sweep_stale_segments(shm_dir: str = "/dev/shm") -> int:
    """Unlink ring segments whose creating supervisor is dead (a kill -9 that
    also took its resource tracker): they hold no data anyone can still use."""
    removed = 0
    try:
        names = os.listdir(shm_dir)
    except OSError:  # no /dev/shm (not Linux): nothing to sweep
        return 0
    for name in names:
        m = _SEGMENT.match(name)
        if not m:
            continue
        try:
            os.kill(int(m[1]), 0)
            continue  # creator alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        try:
            os.unlink(os.path.join(shm_dir, name))
            removed += 1
        except OSError:
            pass
    if removed:
        log.warning("removed %d shared-memory segment(s) left by a killed capture", removed)
    return removed


class Supervisor:
    def __init__(
        self, cfg: Config, duration: float | None = None, writer_target: str = WRITER_TARGET, view: Any = None
    ) -> None:
        self.cfg = cfg
        self.view = view  # engine.console.ConsoleView on a terminal: live status via attach()/detach()
        self.sink: LogSink | None = None
        self.summary: summary.RunSummary | None = None
        self.duration = duration
        self.writer_target = writer_target
        self.host = socket.gethostname()
        self.ctx = mp.get_context("spawn")
        self.feeds: list[Feed] = []
        self.children: list[Child] = []
        self.started = time.monotonic()
        self.metrics: MetricsServer | None = None
        self._stop_requested: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None  # set by a stop request or a child's exit
        self._exited: set[int] = set()  # sentinels of children seen exiting, not yet reaped
        self._stop_reason = ""
        self.bg_sync: Any = None  # archive.s3.BackgroundSync when [s3] is configured
        self._synced_hour = 0
        self.ready_at: float | None = None  # monotonic time every feed was first subscribed
        self.stopping = False
        self._progress: dict[tuple[str, str], tuple[int, float]] = {}  # ring -> (read_seq, when it moved)
        # resolve paths once: children must agree with the supervisor whatever their cwd
        self.archive_cfg = msgspec.structs.replace(cfg.archive, root=str(Path(cfg.archive.root).resolve()))
        self.log_cfg = msgspec.structs.replace(cfg.log, dir=str(Path(cfg.log.dir).resolve()))
        self.lock = ArchiveLock(self.archive_cfg.root, "capture run")
        #: why the run failed (a child that can never start); makes the exit code non-zero
        self.failure = ""
        self.clean_ingest_stop = False
        self.writer_stats: dict[str, WriterStats] = {}

    # -- set-up -----------------------------------------------------------------
    def _make_specs(self) -> list[tuple[str, RingSetSpec]]:
        rc = self.cfg.ring
        out = []
        for name, ex in self.cfg.exchanges.items():
            try:
                conn = connector(name)
            except ValueError as e:
                raise StartError(f"{self.cfg.source}: key exchanges.{name}: {e}") from None
            raw = effective_raw(self.cfg, name)
            spec = ringset.make_spec(
                name,
                ex.symbols,
                conn.raw_channels(name, ex),
                conn.data_types(name, ex, raw),
                record_capacity=rc.records,
                raw_index_capacity=rc.raw_records,
                raw_arena_bytes=rc.raw_bytes,
            )
            out.append((name, spec))
        return out

    def _build_feeds(self) -> None:
        """Rings + stats of every exchange, their memory reserved now (see ``ipc.ring.create_shm``),
        after checking that /dev/shm has room for all of them together."""
        specs = self._make_specs()
        need = check_shm_room([s for _, s in specs], self.cfg.source)
        for name, spec in specs:
            try:
                stats = FeedStats(new_ring_name(f"{name}-stats"), len(spec.symbols), len(spec.channels), create=True)
                feed = Feed(name, spec, stats)
                self.feeds.append(feed)
                feed.rings = ringset.create(spec)
            except OSError as e:
                raise StartError(
                    f"{self.cfg.source}: key ring: cannot reserve the shared-memory rings of {name} "
                    f"({e.strerror or e}); lower ring.records / ring.raw_bytes"
                ) from None
            log.info(
                "rings created",
                extra={"exchange": name, "data_types": list(spec.rings), "symbols": list(spec.symbols[1:])},
            )
        log.info("shared memory reserved: %.1f MiB", need / (1 << 20), extra={"shm_bytes": need})

    def _build_children(self) -> None:
        sim = self.cfg.simulator
        if sim is not None:
            served = [f.name for f in self.feeds if f.name in SIMULATED]
            stop = StopFlag(self.ctx)
            self.children.append(
                Child("sim", "simulator", "ticktape.engine.sim_child:simulator_main", (served, sim, stop), stop)
            )
        n = min(self.cfg.writers, len(self.feeds))
        if n < self.cfg.writers:
            log.warning("only %d exchange(s): starting %d writer(s), not %d", len(self.feeds), n, self.cfg.writers)
        for i in range(n):
            specs = [f.spec for f in self.feeds[i::n]]
            stop = StopFlag(self.ctx)
            self.children.append(
                Child("writer", f"writer-{i}", self.writer_target,
                      (specs, self.archive_cfg, stop, i, self.host, self._writer_stats(f"writer-{i}").name), stop)
            )
        for f in self.feeds:
            stop = StopFlag(self.ctx)
            ex = self.cfg.exchanges[f.name]
            target = f"{connector_module(f.name)}:ingest_main"
            args: tuple[Any, ...] = (f.spec, ex, f.stats.name, stop, self.log_cfg)
            if f.name != SYNTHETIC:  # connectors read their own recent history (e.g. trade ids) from the archive
                args += ({"archive_root": self.archive_cfg.root},)
            self.children.append(Child("ingest", f"ingest-{f.name}", target, args, stop))

    def _spawn(self, c: Child) -> None:
        if c.reasons is None:
            c.reasons = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=child_main,
            args=(c.role, c.name, self.log_cfg, c.target, c.args, c.stop, os.getpid(), c.reasons[1],
                  self.sink.address if self.sink is not None else None),
            name=c.name,
            daemon=False,
        )
        proc.start()
        c.proc, c.started_at, c.restart_at, c.last_pid, c.exitcode = proc, time.monotonic(), None, proc.pid or 0, None
        c.started_ns = time.time_ns()
        try:  # a child's exit wakes the run loop at once (no polling)
            asyncio.get_running_loop().add_reader(proc.sentinel, self._on_child_exit, proc.sentinel)
        except (RuntimeError, NotImplementedError):
            pass
        log.info("%s started (pid %d)", c.name, c.last_pid, extra={"role": c.role, "child": c.name, "pid": c.last_pid})

    async def _wait_writers_ready(self, timeout: float = 60.0) -> None:
        """Start no producer before every writer drains: a writer still importing and
        opening its journals (seconds on a busy machine) would see fast rings overflow
        before its first cycle. A writer that died or is still not ready after
        ``timeout`` does not hold the start (its restart and metrics say why)."""
        end = time.monotonic() + timeout
        writers = [c for c in self.children if c.role == "writer"]
        stop = self._stop_requested
        while stop is None or not stop.is_set():
            waiting = [c.name for c in writers if c.alive and not self.writer_stats[c.name].values[WF["ready_ns"]]]
            if not waiting:
                return
            if time.monotonic() >= end:
                log.warning("%s not ready after %.0f s; starting the ingest processes anyway", ", ".join(waiting), timeout)
                return
            await asyncio.sleep(0.02)

    # -- the run ----------------------------------------------------------------
    def run(self) -> int:
        return asyncio.run(self._run())

    def _on_child_exit(self, sentinel: int) -> None:
        asyncio.get_running_loop().remove_reader(sentinel)
        self._exited.add(sentinel)
        if self._wake is not None:
            self._wake.set()

    def _close_proc(self, c: Child) -> None:
        """Forget a dead child's process object (its exit watch first: the fd closes)."""
        if c.proc is None:
            return
        self._exited.discard(c.proc.sentinel)
        try:
            asyncio.get_running_loop().remove_reader(c.proc.sentinel)
        except (RuntimeError, NotImplementedError, ValueError):
            pass
        c.proc.close()
        c.proc = None

    def _idle_timeout(self, deadline: float | None) -> float:
        """How long the run loop may sleep: until the next pending restart, the
        --duration deadline, or ``_IDLE_WAKE`` (S3 hour check, progress), whichever is first."""
        now = time.monotonic()
        t = _START_WAKE if self.ready_at is None and self.duration is not None else _IDLE_WAKE
        if deadline is not None:
            t = min(t, deadline - now)
        for c in self.children:
            if c.restart_at is not None:
                t = min(t, c.restart_at - now)
            elif c.proc is not None and c.proc.sentinel in self._exited:
                t = min(t, _REAP_POLL)  # its pipe closed a moment before it can be reaped
        return max(0.0, t)

    def request_stop(self, reason: str) -> None:
        if self._stop_requested is None or self._stop_requested.is_set():
            if reason.startswith("SIG"):
                log.warning("%s received while stopping; still draining", reason)
            return
        self._stop_reason = reason
        self._stop_requested.set()
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self._wake = wake = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        root = self.archive_cfg.root
        check_root_writable(root)
        try:
            self.lock.acquire()
        except LockHeld as e:
            raise StartError(f"archive.root {root}: in use by {e.holder}; one capture per archive root") from None
        except OSError as e:
            raise StartError(f"archive.root {root}: cannot lock ({e.strerror or e})") from None
        m = self.cfg.metrics
        try:
            if m.port:
                self.metrics = MetricsServer(m.host, m.port, registry_for(self.metrics_snapshot), self.not_ready)
                try:
                    self.metrics.start()
                except OSError as e:
                    raise StartError(f"metrics.port {m.host}:{m.port}: cannot listen ({e.strerror or e})") from None
            if self.cfg.simulator is not None:
                sim = self.cfg.simulator
                check_port_free(sim.host, sim.port, "simulator.port")
            sweep_stale_segments()
        except BaseException:
            self.lock.release()
            raise
        try:
            self.sink = LogSink(logging_setup.forward)  # children's lines: one writer of the log file
            self.sink.start()
        except OSError as e:  # pragma: no cover - no abstract Unix sockets: children write their own files
            log.warning("log sink unavailable (%s); children log to their own files", e)
            self.sink = None
        try:
            self._build_feeds()
            self._mark_previous_run()
            self._build_children()
            checked = writers_ready = False
            for c in self.children:  # simulator, then writers: consumers ready before producers
                if c.role != "sim" and not checked:  # the venues answer (the simulator too, once it listens)
                    await self._check_instruments()
                    checked = True
                if c.role == "ingest" and not writers_ready:
                    await self._wait_writers_ready()
                    writers_ready = True
                self._spawn(c)
                if c.role == "sim" and self.cfg.simulator is not None:
                    sim = self.cfg.simulator
                    if not await asyncio.to_thread(wait_listening, sim.host, sim.port):
                        raise StartError(f"simulator.port {sim.host}:{sim.port}: the simulator did not start listening")
            log.info(
                "capture started",
                extra={
                    "pid": os.getpid(),
                    "config": self.cfg.source,
                    "archive": self.archive_cfg.root,
                    "exchanges": [f.name for f in self.feeds],
                    "writers": sum(c.role == "writer" for c in self.children),
                    "metrics": f"http://{m.host}:{self.metrics.port}/metrics" if self.metrics else None,
                },
            )
            self._start_background_sync()
            if self.view is not None:
                self.view.attach(self.status_rows)
            deadline: float | None = None
            waiting_since = time.monotonic()
            while not self._stop_requested.is_set():
                wake.clear()
                self._maybe_notify_sync()
                self._track_progress()
                if self.ready_at is None:
                    reasons = self.not_ready()
                    if not reasons:
                        self.ready_at = time.monotonic()
                        log.info("ready: every feed subscribed (%.1f s after start)", self.ready_at - self.started,
                                 extra={"ready_after": round(self.ready_at - self.started, 3)})
                    elif self.duration is not None and deadline is None \
                            and time.monotonic() - waiting_since > READY_WAIT:
                        log.warning("not ready after %.0f s (%s); --duration counts from now",
                                    READY_WAIT, "; ".join(reasons[:5]))
                        deadline = time.monotonic() + self.duration
                if self.duration is not None and deadline is None and self.ready_at is not None:
                    deadline = self.ready_at + self.duration
                if deadline is not None and time.monotonic() >= deadline:
                    self.request_stop(f"duration {self.duration:g} s elapsed")
                    break
                self._watch()
                try:
                    await asyncio.wait_for(wake.wait(), timeout=self._idle_timeout(deadline))
                except TimeoutError:
                    pass
            self.stopping = True
            log.info("stopping: %s", self._stop_reason)
            rc = await self._shutdown()
            if self.failure:
                log.error("capture failed: %s", self.failure)
                rc = 1
            if self.bg_sync is not None:  # the hour just finalized leaves the machine too
                log.info("final S3 sync")
                await asyncio.to_thread(self.bg_sync.stop)
                self.bg_sync = None
            return rc
        finally:
            self.stopping = True
            self._kill_leftovers()
            if self.view is not None:  # before the segments go: the live status reads them
                self.view.detach()
            if self.metrics is not None:  # likewise a scrape
                self.metrics.close()
            if self.sink is not None:
                self.sink.stop()
            self._release()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            self._close_pipes()
            self.lock.release()

    def _close_pipes(self) -> None:
        for c in self.children:
            if c.reasons is not None:
                for conn in c.reasons:
                    conn.close()
                c.reasons = None

    async def _check_instruments(self, timeout: float = INSTRUMENTS_TIMEOUT) -> None:
        """Every configured symbol against its venue's own instrument list, all venues at
        once, before any writer or ingest process exists: an unknown symbol or an
        unreachable venue is one line (StartError, exit 2) instead of a silent capture."""
        from ticktape.exchanges.instruments import Unreachable

        async def one(name: str) -> None:
            check = getattr(connector(name), "check_listed", None)
            if check is None or not self.cfg.exchanges[name].check_symbols:
                return
            try:
                warning = await asyncio.to_thread(check, name, self.cfg.exchanges[name], timeout)
            except ValueError as e:
                raise StartError(f"{self.cfg.source}: key exchanges.{name}.symbols: {e}") from None
            except Unreachable as e:
                raise StartError(
                    f"exchanges.{name}: cannot fetch the instrument list to check the symbols ({e}); "
                    f"check url / rest_url and the network"
                ) from None
            if warning:
                log.warning("%s", warning)

        await asyncio.gather(*(one(f.name) for f in self.feeds))

    def _start_background_sync(self) -> None:
        if self.cfg.s3 is None:
            return
        from ticktape.archive.s3 import BackgroundSync

        self.bg_sync = BackgroundSync.from_config(self.cfg.s3, self.archive_cfg.root)
        self.bg_sync.start()
        self.bg_sync.notify()  # whatever earlier runs left behind
        self._synced_hour = int(time.time() // 3600)

    def _maybe_notify_sync(self) -> None:
        """After each hour's files are finalized (hour end + grace + margin), sync."""
        if self.bg_sync is None:
            return
        now = time.time()
        hour = int((now - self.archive_cfg.finalize_grace - 10.0) // 3600)
        if hour > self._synced_hour:
            self._synced_hour = hour
            self.bg_sync.notify()

    def _watch(self, roles: tuple[str, ...] = ("sim", "writer", "ingest")) -> None:
        """Restart dead children (after their back-off delay)."""
        now = time.monotonic()
        sup = self.cfg.supervisor
        for c in self.children:
            if c.role not in roles:
                continue
            if c.restart_at is not None:
                if now >= c.restart_at:
                    c.restarts += 1
                    self._spawn(c)
                continue
            if c.proc is None or c.proc.is_alive():
                continue
            c.exitcode = c.proc.exitcode
            up = now - c.started_at
            reason = self._reason(c)
            c.start_failures = c.start_failures + 1 if up < sup.start_window else 0
            if c.start_failures >= sup.start_failures:
                c.proc.close()
                c.proc = None
                self.failure = (
                    f"{c.name} failed {c.start_failures} times in a row within {sup.start_window:g} s of starting "
                    f"(last exit code {c.exitcode}): {reason or 'no reason reported; see the log'}"
                )
                log.error("%s; stopping the capture", self.failure, extra={"role": c.role, "child": c.name})
                self.request_stop(f"{c.name} cannot start")
                return
            c.streak = 1 if up >= _STABLE_AFTER else c.streak + 1
            delay = min(sup.restart_delay * 2 ** (c.streak - 1), sup.restart_delay_max)
            c.restart_at = now + delay
            self._close_proc(c)
            log.error(
                "%s (pid %d) exited with code %s after %.1f s; restarting in %.1f s",
                c.name, c.last_pid, c.exitcode, up, delay,
                extra={"role": c.role, "child": c.name, "pid": c.last_pid, "exitcode": c.exitcode,
                       "restarts": c.restarts + 1},
            )

    def _reason(self, c: Child) -> str:
        """The last one-line crash reason the child sent (``engine.children.child_main``)."""
        conn = c.reasons[0] if c.reasons is not None else None
        try:
            while conn is not None and conn.poll():
                c.last_reason = str(conn.recv())
        except (EOFError, OSError):
            pass
        return c.last_reason

    async def _wait(self, kids: list[Child], timeout: float, on_tick: Any = None) -> list[Child]:
        """Wait until ``kids`` have exited; return the ones still alive at the timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if on_tick is not None:
                on_tick()
            alive = [c for c in kids if c.alive or c.restart_at is not None]
            if not alive:
                return []
            await asyncio.sleep(0.05)
        return [c for c in kids if c.alive]

    async def _terminate(self, kids: list[Child], why: str) -> None:
        for c in kids:
            log.error("%s (pid %d) did not stop %s; terminating", c.name, c.last_pid, why, extra={"child": c.name})
            c.restart_at = None
            if c.proc is not None:
                c.proc.terminate()
        left = await self._wait(kids, 5.0)
        for c in left:
            if c.proc is not None:
                c.proc.kill()
        await self._wait(left, 5.0)

    async def _shutdown(self) -> int:
        sup = self.cfg.supervisor
        ingest = [c for c in self.children if c.role == "ingest"]
        writers = [c for c in self.children if c.role == "writer"]
        for c in ingest:
            c.restart_at = None  # a pending restart is cancelled
            c.stop.set()
            if c.proc is not None:
                nudge(c.proc.pid)  # a quiet feed's watchdog looks at the flag now, not at its next tick
        left = await self._wait(ingest, sup.ingest_stop_timeout)
        self.clean_ingest_stop = not left
        if left:
            await self._terminate(left, f"within {sup.ingest_stop_timeout:g} s")
        for c in self.children:
            if c.role == "sim":
                c.restart_at = None
                c.stop.set()
        log.info("ingest stopped; writers draining the rings")
        for c in writers:
            c.stop.set()
        left = await self._wait(writers, sup.drain_timeout, on_tick=self._watch_drain)
        if left:
            await self._terminate(left, f"draining within {sup.drain_timeout:g} s")
        sims = [c for c in self.children if c.role == "sim"]
        if sims and await self._wait(sims, 5.0):
            await self._terminate(sims, "within 5 s")
        undrained = self._undrained()
        for (exchange, dt), n in undrained.items():
            log.error(
                "%d %s records of %s were never written (writer did not drain the ring)", n, dt, exchange,
                extra={"exchange": exchange, "data_type": dt, "records": n},
            )
        for c in writers:
            if c.proc is not None and not c.proc.is_alive():
                c.exitcode = c.proc.exitcode
        bad_exit = [c.name for c in writers if c.exitcode not in (0, None)]
        if bad_exit:
            log.error("writer(s) exited with an error at shutdown: %s", ", ".join(bad_exit))
        dropped = self._dropped()
        for (exchange, dt), n in dropped.items():
            log.error(
                "%d %s records of %s were dropped at a full ring (data lost; marked by drop events)", n, dt, exchange,
                extra={"exchange": exchange, "data_type": dt, "records": n},
            )
        rc = 1 if undrained or bad_exit or dropped else 0
        if not (undrained or bad_exit) and self.clean_ingest_stop and not left:
            unclean.remove_marker(self.archive_cfg.root)  # every stream ended with its own shutdown marker
        if self.sink is not None:  # every child has exited: take in their last lines (WRITE ...)
            self.sink.stop()
        self.summary = self._summarize(sum(undrained.values()))
        for why in self.summary.no_data_reasons():
            log.error(why)
        for ex, syms in sorted(self.summary.quiet.items()):
            log.warning("%s: no data frame for %s during the run (a quiet market, or see its events)",
                        ex, ", ".join(syms), extra={"exchange": ex, "symbols": syms})
        if self.summary.no_data:
            rc = rc or summary.NO_DATA_EXIT
        log.info("capture stopped", extra={"exit_code": rc, "summary": self.summary.as_dict()})
        return rc

    def _mark_previous_run(self) -> None:
        """Under the lock, before any writer starts: if the previous capture on this root did
        not stop cleanly, mark its hole (``writers.unclean``); then leave this run's marker."""
        root = self.archive_cfg.root
        wait = self.cfg.supervisor.drain_timeout
        if not wait_writers_gone(root, 0.0):  # a dead supervisor's writers may still be draining
            log.warning("writers of an earlier capture are still finishing on %s; waiting up to %g s", root, wait)
            if not wait_writers_gone(root, wait):
                raise StartError(f"archive.root {root}: writers of an earlier capture are still running after "
                                 f"{wait:g} s (supervisor.drain_timeout); stop them first")
        prev = unclean.read_marker(root)
        if prev is not None:
            try:
                unclean.mark_unclean_stop(root, prev, self.archive_cfg, self.host)
            except Exception:  # never block a start on it; the log says what is unmarked
                log.exception("could not mark the previous capture's unclean stop")
        marker = unclean.RunMarker(
            pid=os.getpid(),
            host=self.host,
            started_ns=time.time_ns(),
            exchanges={
                f.name: unclean.ExchangeStreams(list(f.spec.symbols[1:]), list(f.spec.channels[1:]), "raw" in f.spec.rings)
                for f in self.feeds
            },
        )
        try:
            unclean.write_marker(root, marker)
        except OSError as e:
            raise StartError(f"archive.root {root}: cannot write the run marker ({e.strerror or e})") from None

    def _summarize(self, undrained: int) -> summary.RunSummary:
        written = self.sink.written if self.sink is not None else {}
        out = summary.RunSummary(self.archive_cfg.root, str(Path(self.log_cfg.dir) / self.log_cfg.file),
                                 summary.files_by_table(self.archive_cfg.root, written), undrained=undrained)
        for f in self.feeds:
            tot = f.stats.values.sum(axis=0).tolist()
            counts = {k: int(tot[F[k]]) for k in summary.LOSS_FIELDS if k in F}
            counts["dropped"] = sum(int((r.index if hasattr(r, "index") else r).dropped) for r in f.rings.values())
            out.losses[f.name] = {k: counts.get(k, 0) for k in summary.LOSS_FIELDS}
            out.received[f.name] = self.channel_messages(f)
            frames = self.data_frames(f)
            if not any(frames.values()):
                out.no_data.append(f.name)
            elif quiet := [s for s, n in frames.items() if not n]:
                out.quiet[f.name] = quiet
        return out

    @staticmethod
    def data_frames(f: Feed) -> dict[str, int]:
        """symbol -> data frames of its streams over the run (not the control frames counted
        under symbol ``_``, nor frames a connector makes from REST answers)."""
        ch = f.stats.channels
        syms = f.spec.symbols[1:]
        if not ch.size:  # no per-channel counters: every frame of the symbol
            return {s: int(n) for s, n in zip(syms, f.stats.values[1:, F["messages"]].tolist(), strict=True)}
        data = [i for i, name in enumerate(f.spec.channels) if name and name not in summary.GENERATED]
        per = ch[0, 1:][:, data].sum(axis=1).tolist() if data else [0] * len(syms)
        return {s: int(n) for s, n in zip(syms, per, strict=True)}

    @staticmethod
    def channel_messages(f: Feed) -> dict[str, int]:
        """channel -> frames received for any symbol (channel ``_``: not attributed, shown only if any)."""
        per = f.stats.channels[0, 1:].sum(axis=0).tolist() if f.stats.channels.size else []
        return {(name or "_"): int(n) for name, n in zip(f.spec.channels, per, strict=True) if name or n}

    def status_rows(self) -> list[dict[str, Any]]:
        """Per exchange, for the live console: symbols receiving, messages, fullest ring."""
        ready = self.feed_ready()
        rows = []
        for f in self.feeds:
            syms = ready.get(f.name, {})
            rows.append({
                "exchange": f.name, "feeds": len(syms), "ready": sum(syms.values()),
                "messages": int(f.stats.values[:, F["messages"]].sum()),
                "ring_fill": max((r.fill() for r in f.rings.values()), default=0.0),
                "channels": self.channel_messages(f),
            })
        return rows

    def _watch_drain(self) -> None:
        """During the drain, a writer that crashes is restarted (its stop event is
        already set: it recovers, drains and finalizes), a few times at most."""
        for c in self.children:
            if c.role != "writer":
                continue
            if c.restart_at is not None:  # it crashed just before the stop: start it now
                c.restarts += 1
                self._spawn(c)
                continue
            if c.proc is None or c.proc.is_alive():
                continue
            c.exitcode = c.proc.exitcode
            if c.exitcode != 0 and c.drain_restarts < _MAX_DRAIN_RESTARTS and self._undrained():
                c.drain_restarts += 1
                log.error("%s exited with code %s while draining; restarting it", c.name, c.exitcode)
                c.restarts += 1
                self._close_proc(c)
                self._spawn(c)

    def _dropped(self) -> dict[tuple[str, str], int]:
        """Records producers could not push because a ring was full (lost: the exit code says so)."""
        out: dict[tuple[str, str], int] = {}
        for f in self.feeds:
            for dt, r in f.rings.items():
                n = (r.index if isinstance(r, RawRing) else r).dropped
                if n:
                    out[(f.name, dt)] = int(n)
        return out

    def _undrained(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for f in self.feeds:
            for dt, r in f.rings.items():
                n = r.available()
                if n:
                    out[(f.name, dt)] = n
        return out

    # -- tear-down ---------------------------------------------------------------
    def _kill_leftovers(self) -> None:
        for c in self.children:
            if c.alive and c.proc is not None:
                log.error("%s still running at exit; killing it", c.name)
                c.proc.kill()
                c.proc.join(5)

    def _writer_stats(self, name: str) -> WriterStats:
        """Shared-memory storage health of one writer (read by /metrics)."""
        try:
            ws = WriterStats(new_ring_name(f"{name}-stats"), create=True)
        except OSError as e:
            raise StartError(f"/dev/shm: cannot create the writer stats block ({e.strerror or e})") from None
        self.writer_stats[name] = ws
        return ws

    def _release(self) -> None:
        for f in self.feeds:
            ringset.close(f.rings)
            f.stats.close()
        self.feeds.clear()
        for ws in self.writer_stats.values():
            ws.close()
        self.writer_stats.clear()

    # -- readiness and metrics ------------------------------------------------------
    def _track_progress(self) -> None:
        now = time.monotonic()
        for f in self.feeds:
            for dt, r in f.rings.items():
                idx = r.index if hasattr(r, "index") else r
                seq = idx.read_seq
                old = self._progress.get((f.name, dt))
                if old is None or old[0] != seq:
                    self._progress[(f.name, dt)] = (seq, now)

    def feed_ready(self) -> dict[str, dict[str, bool]]:
        """exchange -> symbol -> a frame arrived on the current ingest process."""
        kids = {c.name: c for c in self.children if c.role == "ingest"}
        out: dict[str, dict[str, bool]] = {}
        for f in self.feeds:
            c = kids.get(f"ingest-{f.name}")
            since = c.started_ns if c is not None and c.alive else None
            last = f.stats.values[:, F["last_msg_ns"]].tolist()
            out[f.name] = {
                sym: since is not None and last[i] >= since for i, sym in enumerate(f.spec.symbols) if i
            }
        return out

    def not_ready(self) -> list[str]:
        """Why the capture is not ready (``[]`` = ready): a feed with no frame on its
        current connection, a child that is down, a writer that stopped draining."""
        if self.stopping:
            return ["stopping"]
        if not self.feeds or not self.children:
            return ["starting"]
        reasons = [f"{c.name} is not running" for c in self.children if not c.alive]
        for ex, syms in self.feed_ready().items():
            reasons.extend(f"{ex}/{s}: no frame yet" for s, ok in syms.items() if not ok)
        now = time.monotonic()
        for f in self.feeds:
            for dt, r in f.rings.items():
                seq_at = self._progress.get((f.name, dt))
                if r.fill() > 0.5 and seq_at is not None and now - seq_at[1] > _STUCK_AFTER:
                    reasons.append(f"{f.name}/{dt}: ring {r.fill():.0%} full and not drained for {now - seq_at[1]:.0f} s")
        return reasons

    def metrics_snapshot(self) -> Snapshot:
        ready = self.feed_ready() if self.feeds else {}
        feeds = [FeedView(f.spec, f.stats, f.rings, ready.get(f.name, {})) for f in self.feeds if f.rings]
        kids = [ChildView(c.role, c.name, c.last_pid, c.alive, c.restarts) for c in self.children]
        disks = [self.archive_cfg.root] + ([self.log_cfg.dir] if self.log_cfg.dir != self.archive_cfg.root else [])
        writers = [(name, ws) for name, ws in self.writer_stats.items() if ws.values is not None]
        return Snapshot(feeds, kids, self.started, ready=not self.not_ready(), disk_paths=disks, writers=writers)
