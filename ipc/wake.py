"""Wake-on-data between an ingest process and its writer, for an idle capture.

A writer cannot sleep long between looks at its rings: a burst can fill a ring from empty
in ~0.25 s at a producer's peak rate, so it wakes ~6 times a second even when the feed is
silent. Once an ingest's feed has been quiet for a while, it *arms*: every one of its
connections will, on its next data frame, first clear the ring set's armed word (in the
events ring's header, ``RecordRing.wake_armed``) and send one datagram to the writer, then
handle the frame. While every ring set it serves is armed, the writer sleeps on its wake
sockets until its next flush tick instead (2 wake-ups a second); a frame ends that sleep at
once, and the writer goes back to its peak-rate bound. The busy path pays nothing: a
connection's frame handler is swapped only while armed.

The address of a ring set's wake socket is derived from its events ring's shared-memory name
(unique per capture), in Linux's abstract socket namespace: nothing on disk, nothing to pass
between processes. A datagram carries no data; a lost or refused one costs a longer sleep,
never a record (the writer's sleep still ends at its flush tick).
"""

from __future__ import annotations

import contextlib
import select
import socket

from ticktape.ipc.ringset import RingSetSpec


def address(spec: RingSetSpec) -> str:
    """The abstract-namespace address of ``spec``'s wake socket."""
    return "\0ticktape-wake-" + spec.rings["events"]


class Waker:
    """The ingest side: one datagram to the writer's socket, never blocking, never raising."""

    def __init__(self, spec: RingSetSpec) -> None:
        self.addr = address(spec)
        self._sock: socket.socket | None = None

    def wake(self) -> None:
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            self._sock.sendto(b"w", self.addr)
        except OSError:  # no writer listening (restarting) or its queue is full: it is awake anyway
            pass

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class WakeListener:
    """The writer side: a socket per ring set it serves. ``ok`` is False when one could not be
    bound (then the writer keeps its peak-rate bound)."""

    def __init__(self, specs: list[RingSetSpec]) -> None:
        self._socks: list[socket.socket] = []
        self.ok = True
        for spec in specs:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                s.bind(address(spec))
            except OSError:
                s.close()
                self.ok = False
                continue
            s.setblocking(False)
            self._socks.append(s)

    def wait(self, timeout: float) -> bool:
        """Sleep until a datagram comes or ``timeout`` s pass; True if woken. Drains every socket."""
        if timeout > 0:
            try:
                ready, _, _ = select.select(self._socks, [], [], timeout)
            except InterruptedError:  # a signal (SIGTERM): the loop looks at its flags
                ready = []
        else:
            ready = self._socks
        woke = False
        for s in ready:
            with contextlib.suppress(OSError):
                while True:
                    s.recv(16)
                    woke = True
        return woke

    def close(self) -> None:
        for s in self._socks:
            s.close()
        self._socks = []
