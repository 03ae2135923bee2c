"""What every child process (writer, ingest) does before its real work.

The supervisor spawns ``child_main`` (``spawn`` start method) with the dotted
name of the real target, so the child imports its own code and reports import
errors in its own log. Before the target runs the child:

* ignores SIGINT: Ctrl-C reaches the whole process group, but the stop order
  (ingest first, then writers drain) is the supervisor's to decide;
* stops tracking shared memory in the resource tracker it shares with the
  supervisor (the supervisor owns and unlinks every segment; a child's
  attach/detach would otherwise unregister the supervisor's own entries);
* configures JSON-lines logging;
* watches its parent: if the supervisor dies, the child sets its own stop event,
  so an ingest process stops and a writer drains what it can and finalizes (a
  thread blocked on the parent's pidfd: no periodic wake-up).

At a stop the supervisor sets an ingest's stop flag and then ``nudge``s it
(``STOP_NUDGE``), so a quiet feed's once-a-second watchdog stops at once.
"""

from __future__ import annotations

import importlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import resource_tracker
from typing import Any

from ticktape.engine import logging_setup
from ticktape.engine.config import LogConfig

log = logging.getLogger("ticktape.supervisor")

#: sent by the supervisor to an ingest process right after setting its stop flag, so a quiet
#: feed's watchdog (a tick a second) looks at the flag at once. SIGURG's default action is to
#: ignore it (nothing here uses out-of-band TCP data, its other sender): a nudge reaching a child
#: before its handler is installed or after it is removed does nothing, never kills it.
STOP_NUDGE = signal.SIGURG


def nudge(pid: int | None) -> None:
    """Wake ``pid``'s watchdog (see ``STOP_NUDGE``); a process already gone is no error."""
    if pid:
        try:
            os.kill(pid, STOP_NUDGE)
        except (ProcessLookupError, PermissionError):
            pass


def resolve(target: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function."""
    module, _, func = target.partition(":")
    fn = getattr(importlib.import_module(module), func)
    if not callable(fn):
        raise TypeError(f"{target} is not callable")
    return fn  # type: ignore[no-any-return]


def _untrack_shared_memory() -> None:
    reg, unreg = resource_tracker.register, resource_tracker.unregister

    def register(name: str, rtype: str) -> None:
        if rtype != "shared_memory":
            reg(name, rtype)

    def unregister(name: str, rtype: str) -> None:
        if rtype != "shared_memory":
            unreg(name, rtype)

    resource_tracker.register = register  # type: ignore[assignment]
    resource_tracker.unregister = unregister  # type: ignore[assignment]


def _parent_gone(parent_pid: int) -> None:
    """Return once ``parent_pid`` is no longer this process's parent.

    Blocks on a pidfd of the parent (no wake-up until it exits; a 0.5 s ``getppid``
    poll woke an idle child twice a second); the poll is the fallback where pidfds
    are missing."""
    try:
        fd = os.pidfd_open(parent_pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            if os.getppid() == parent_pid:  # the pidfd is our parent, not a reused pid
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                poller.poll()
        finally:
            os.close(fd)
    while os.getppid() == parent_pid:
        time.sleep(0.5)


def _watch_parent(parent_pid: int, stop: Any, name: str) -> None:
    def watch() -> None:
        _parent_gone(parent_pid)
        if not stop.is_set():
            log.error("%s: supervisor (pid %d) is gone; stopping", name, parent_pid)
            stop.set()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _report(report: Any, name: str, e: BaseException) -> None:
    """One line for the supervisor: why this child died (it fails the run if it never starts)."""
    if report is None:
        return
    text = f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__
    try:
        report.send(text[:500])
    except Exception:  # the supervisor is gone or the pipe is closed: the log has it
        pass


def child_main(
    role: str,
    name: str,
    log_cfg: LogConfig,
    target: str,
    args: tuple[Any, ...],
    stop: Any,
    parent_pid: int,
    report: Any = None,
    log_sink: str | None = None,
) -> None:
    """``log_sink``: the supervisor's log-sink address (lines go there, not to the file)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _untrack_shared_memory()
    logging_setup.setup(log_cfg, process_name=name, sink=log_sink)
    _watch_parent(parent_pid, stop, name)
    try:
        fn = resolve(target)
        fn(*args)
    except SystemExit:
        raise
    except BaseException as e:
        log.exception("%s (%s) crashed", name, role, extra={"role": role, "child": name})
        _report(report, name, e)
        logging.shutdown()
        sys.exit(1)
    logging.shutdown()
