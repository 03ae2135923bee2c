"""The supervisor's end of the children's logs: one datagram per finished line on
an abstract Unix socket (no file, nothing to clean up, no lock a killed child
could hold), handed to ``logging_setup.forward`` so only the supervisor writes
the rotating log file and the console. Lines ``WRITE <path> records: N ...``
are remembered: they are what the run wrote (for the exit summary)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
from collections.abc import Callable

_WRITE = re.compile(r"^WRITE (?P<path>.+) records: (?P<n>\d+) size: ")


class LogSink:
    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.address = f"\0ticktape-log-{os.getpid()}-{os.urandom(4).hex()}"
        self.on_line = on_line
        self.written: dict[str, int] = {}  # finalized file -> rows (the last WRITE of it wins)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        self.sock.bind(self.address)  # blocking: the thread wakes for a line or stop()'s empty datagram
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="log-sink", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _handle(self, data: bytes) -> None:
        line = data.decode("utf-8", "replace")
        if '"message": "WRITE ' in line:
            try:
                m = _WRITE.match(str(json.loads(line).get("message", "")))
            except ValueError:
                m = None
            if m:
                self.written[m["path"]] = int(m["n"])
        self.on_line(line)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(1 << 17)
            except OSError:
                return
            if data:  # an empty datagram is stop()'s wake-up
                self._handle(data)

    def stop(self) -> None:
        """Handle what is still queued, then close (idempotent)."""
        if self.sock.fileno() < 0:
            return
        self._stop.set()
        if self._thread.is_alive():
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as wake, contextlib.suppress(OSError):
                wake.settimeout(1.0)  # a full queue: the thread is reading it
                wake.sendto(b"", self.address)
        self._thread.join(5)
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(1 << 17)
            except OSError:
                break
            self._handle(data)
        self.sock.close()
