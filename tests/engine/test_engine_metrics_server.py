"""The metrics endpoint's serving thread sleeps until a scrape comes (an idle capture's
supervisor must not wake for it: socketserver's default poll woke it twice a second), and
``close`` still ends it at once and frees the port."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry

from ticktape.engine.metrics_server import MetricsServer


def _wakeups(native_id: int) -> int:
    text = Path(f"/proc/self/task/{native_id}/status").read_text()
    m = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", text, re.M)
    assert m
    return int(m[1])


def test_metrics_thread_sleeps_between_scrapes_and_close_ends_it_at_once() -> None:
    srv = MetricsServer("127.0.0.1", 0, CollectorRegistry(), lambda: [])
    srv.start()
    thread = srv._thread
    assert thread is not None and thread.native_id is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=5) as r:
            assert r.read() == b"ok\n"
        w0 = _wakeups(thread.native_id)
        time.sleep(2.0)  # a window to count wake-ups in, not a wait for a condition
        woke = _wakeups(thread.native_id) - w0
        assert woke <= 1, f"the metrics thread woke {woke} times in 2 s with no scrape"
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=5) as r:
            assert r.read() == b"ok\n"  # a scrape still wakes it
    finally:
        t = time.monotonic()
        port = srv.port
        srv.close()
        took = time.monotonic() - t
    assert not thread.is_alive()
    assert took < 5.0, took  # a blocked serving loop does not hold the stop
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    assert not any(t.name == "metrics-http-stop" and t.is_alive() for t in threading.enumerate())
