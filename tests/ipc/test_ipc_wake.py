"""The wake-on-data channel between an ingest process and its writer (``ipc.wake``): a datagram
ends the writer's sleep at once, a sleep with none lasts its timeout, and neither side ever
fails the capture (no writer listening, a second writer on the same ring set)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ticktape.ipc import ringset
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.wake import WakeListener, Waker


@pytest.fixture
def spec() -> Iterator[RingSetSpec]:
    spec = ringset.make_spec("binance-futures", ["BTCUSDT"], ["aggTrade"], ["trades", "events"], record_capacity=64)
    rings = ringset.create(spec)
    yield spec
    ringset.close(rings)


def test_a_wake_ends_the_sleep_at_once_and_a_quiet_sleep_lasts_its_timeout(spec: RingSetSpec) -> None:
    listener = WakeListener([spec])
    waker = Waker(spec)
    try:
        assert listener.ok
        t = time.monotonic()
        assert listener.wait(0.3) is False  # nothing sent: the whole timeout
        assert time.monotonic() - t >= 0.25
        waker.wake()
        waker.wake()  # several wakes before the writer looks: one wake-up, all drained
        t = time.monotonic()
        assert listener.wait(30.0) is True
        assert time.monotonic() - t < 10.0  # at once (generous: a loaded machine)
        assert listener.wait(0.0) is False  # drained
    finally:
        waker.close()
        listener.close()


def test_no_writer_listening_and_a_second_writer_never_fail(spec: RingSetSpec) -> None:
    Waker(spec).wake()  # no writer bound (restarting): ignored
    first = WakeListener([spec])
    second = WakeListener([spec])  # the address is taken: this one keeps its peak-rate bound
    try:
        assert first.ok and not second.ok
    finally:
        first.close()
        second.close()
    again = WakeListener([spec])  # a restarted writer binds it again
    try:
        assert again.ok
    finally:
        again.close()


def test_the_armed_word_lives_in_the_events_ring_header_shared_by_both_sides(spec: RingSetSpec) -> None:
    producer = ringset.attach(spec)
    consumer = ringset.attach(spec)
    try:
        assert producer["events"].wake_armed is False  # a new ring set starts disarmed
        producer["events"].wake_armed = True
        assert consumer["events"].wake_armed is True
        assert consumer["events"].write_seq == 0 and consumer["events"].read_seq == 0  # its own word
        producer["events"].wake_armed = False
        assert consumer["events"].wake_armed is False
    finally:
        ringset.close(producer)
        ringset.close(consumer)
