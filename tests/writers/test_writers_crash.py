"""kill -9 of the writer (several times, at random points) while a producer keeps
pushing: after a graceful stop the files hold exactly the produced records."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time

import numpy as np
import pytest
from writers_procs import journals_left, produce, raw_payload, read_type

from ticktape.engine.config import ArchiveConfig
from ticktape.ipc import ringset
from ticktape.writers.process import writer_main
from ticktape.writers.writer import Writer

pytestmark = pytest.mark.slow

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def _spec() -> ringset.RingSetSpec:
    return ringset.make_spec(
        "binance-futures", SYMBOLS, ["aggTrade"], ["trades", "raw"],
        record_capacity=1 << 14, raw_index_capacity=1 << 12, raw_arena_bytes=1 << 20,
    )


def _check_exact(root: str, total: int) -> None:
    trades = read_type(root, "trades")
    ids = np.array(trades.column("id").to_pylist(), dtype=np.int64)
    assert len(ids) == total, f"{len(ids)} records on disk, {total} produced"
    assert np.array_equal(np.sort(ids), np.arange(total))  # none lost, none duplicated
    for sym in SYMBOLS:  # in order within each file / symbol
        mine = trades.filter(trades.column("symbol").to_numpy(zero_copy_only=False) == sym)
        s_ids = np.array(mine.column("id").to_pylist(), dtype=np.int64)
        assert np.all(np.diff(s_ids) > 0)
        assert np.array_equal(mine.column("price").to_numpy(), s_ids.astype(float))
    raw = read_type(root, "raw")
    got = sorted(raw.column("payload").to_pylist(), key=lambda p: (len(p), p))
    want = sorted((raw_payload(s) for s in range(0, total, 4)), key=lambda p: (len(p), p))
    assert got == want
    assert journals_left(root) == []


def test_writer_kill9_loses_and_duplicates_nothing(tmp_path) -> None:
    ctx = mp.get_context("spawn")
    spec = _spec()
    rings = ringset.create(spec)
    root = str(tmp_path / "archive")
    archive = ArchiveConfig(root=root, flush_interval=0.05)
    total = 150_000
    rnd = random.Random(7)
    try:
        stop = ctx.Event()
        producer = ctx.Process(target=produce, args=(spec, total, time.time_ns()))
        producer.start()

        def start_writer() -> mp.process.BaseProcess:
            p = ctx.Process(target=writer_main, args=([spec], archive, stop, 0, "test-host"))
            p.start()
            return p

        writer = start_writer()
        kills = 0
        while kills < 8 and producer.is_alive():
            if kills % 4 == 3:  # now and then during start-up recovery
                time.sleep(rnd.uniform(0.0, 0.5))
            else:  # mostly mid-stream, once the writer is committing again
                seen = rings["trades"].read_seq
                deadline = time.monotonic() + 30
                while rings["trades"].read_seq == seen and time.monotonic() < deadline:
                    time.sleep(0.002)
                time.sleep(rnd.uniform(0.0, 0.12))
            os.kill(writer.pid, signal.SIGKILL)
            writer.join()
            kills += 1
            writer = start_writer()
        producer.join(120)
        assert producer.exitcode == 0
        stop.set()
        writer.join(120)
        assert writer.exitcode == 0
        assert kills >= 3
        for r in rings.values():
            assert r.dropped == 0
        assert rings["trades"].read_seq == rings["trades"].write_seq == total
        _check_exact(root, total)
    finally:
        ringset.close(rings)


def test_whole_capture_kill9_recovers_journals(tmp_path) -> None:
    """Writer and producer killed, rings gone (new generation): journals become
    Parquet; everything the rings had committed is there, nothing twice."""
    ctx = mp.get_context("spawn")
    spec = _spec()
    rings = ringset.create(spec)
    root = str(tmp_path / "archive")
    archive = ArchiveConfig(root=root, flush_interval=0.05)
    stop = ctx.Event()
    producer = ctx.Process(target=produce, args=(spec, 10_000_000, time.time_ns()))
    writer = ctx.Process(target=writer_main, args=([spec], archive, stop, 0, "test-host"))
    producer.start()
    writer.start()
    try:
        deadline = time.monotonic() + 60
        while rings["trades"].read_seq < 20_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(writer.pid, signal.SIGKILL)
        os.kill(producer.pid, signal.SIGKILL)
        writer.join()
        producer.join()
        committed = rings["trades"].read_seq
        written = rings["trades"].write_seq
        assert committed >= 20_000
        assert journals_left(root)
    finally:
        ringset.close(rings)  # the supervisor is gone: so are the rings

    spec2 = _spec()  # a new capture: new rings, new generation
    rings2 = ringset.create(spec2)
    try:
        Writer([spec2], archive, host="test-host").close()
    finally:
        ringset.close(rings2)
    assert journals_left(root) == []
    trades = read_type(root, "trades")
    ids = np.sort(np.array(trades.column("id").to_pylist(), dtype=np.int64))
    assert committed <= len(ids) <= written  # at most the unflushed batch is missing
    assert np.array_equal(ids, np.arange(len(ids)))  # a prefix: no hole, no duplicate
