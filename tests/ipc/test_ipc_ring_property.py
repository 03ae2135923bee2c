"""Property: whatever goes into a ring in one process comes out identical and in
order in another (real processes, real shared memory), across wrap-around and
batch sizes that do not divide the capacity."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ipc_procs import consumer_server

from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing, new_ring_name
from ticktape.ipc.schemas import TRADE_DTYPE, book_snapshot_dtype

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def consumer() -> Iterator[object]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=consumer_server, args=(child,), daemon=True)
    proc.start()
    yield parent
    parent.send(None)
    proc.join(10)
    if proc.is_alive():
        proc.kill()


def _push_all(ring: RecordRing, data: np.ndarray, chunks: list[int]) -> None:
    """Producer: push in the given chunk sizes, waiting (not dropping) while full."""
    i = 0
    k = 0
    deadline = time.monotonic() + 60
    while i < len(data):
        want = chunks[k % len(chunks)]
        k += 1
        while ring.free() <= 0:
            assert time.monotonic() < deadline, "consumer stalled"
            time.sleep(0.0001)
        n = min(want, ring.free(), len(data) - i)
        assert ring.push_array(data[i : i + n]) == n
        i += n


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 3000),
    capacity=st.integers(2, 300),
    batch=st.integers(1, 500),
    chunks=st.lists(st.integers(1, 400), min_size=1, max_size=5),
    snapshot=st.booleans(),
)
def test_record_ring_roundtrip_between_processes(
    consumer, seed: int, n: int, capacity: int, batch: int, chunks: list[int], snapshot: bool
) -> None:
    dtype = book_snapshot_dtype(3) if snapshot else TRADE_DTYPE
    rng = np.random.default_rng(seed)
    data = np.frombuffer(rng.bytes(n * dtype.itemsize), dtype=dtype).copy()
    ring = RecordRing.create(new_ring_name("prop"), dtype, capacity)
    try:
        consumer.send(("fixed", ring.name, dtype.descr, n, batch))
        _push_all(ring, data, chunks)
        assert consumer.poll(60), "consumer process did not answer"
        out = consumer.recv()
        assert out == data.tobytes()
        assert ring.dropped == 0
        assert ring.read_seq == ring.write_seq == n
    finally:
        ring.close()


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.one_of(st.just(0), st.integers(1, 40), st.integers(41, 512)), max_size=400),
    index_capacity=st.integers(2, 64),
    arena=st.integers(1024, 4096),
    batch=st.integers(1, 100),
)
def test_raw_ring_roundtrip_between_processes(
    consumer, seed: int, sizes: list[int], index_capacity: int, arena: int, batch: int
) -> None:
    rng = np.random.default_rng(seed)
    frames = [
        (int(1_700_000_000_000_000_000 + i), rng.bytes(sz), int(rng.integers(0, 2**32)), int(rng.integers(0, 9)), i % 3)
        for i, sz in enumerate(sizes)
    ]
    ring = RawRing.create(new_ring_name("rawprop"), index_capacity, arena)
    try:
        consumer.send(("raw", ring.name, None, len(frames), batch))
        deadline = time.monotonic() + 60
        for ts, payload, conn_id, sym, ch in frames:
            while not ring.room(len(payload)):
                assert time.monotonic() < deadline, "consumer stalled"
                time.sleep(0.0001)
            assert ring.push(ts, payload, conn_id, sym, ch)
        assert consumer.poll(60), "consumer process did not answer"
        out = consumer.recv()
        assert out == [(ts, ch, conn_id, sym, payload) for ts, payload, conn_id, sym, ch in frames]
        assert ring.dropped == 0
    finally:
        ring.close()
