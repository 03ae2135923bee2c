"""The synthetic exchange in a real spawned ingest process, read back from real
rings: deterministic content, and a kill -9 + restart that neither repeats nor
skips a record. Also /metrics over those rings."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ticktape.engine import synthetic
from ticktape.engine.children import child_main
from ticktape.engine.config import ExchangeConfig, LogConfig
from ticktape.engine.metrics import ChildView, FeedView, Snapshot, registry_for
from ticktape.engine.metrics_server import MetricsServer
from ticktape.engine.stopflag import StopFlag
from ticktape.ipc import ringset
from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing, new_ring_name
from ticktape.ipc.schemas import EVENT_KINDS
from ticktape.ipc.stats import F, FeedStats

COUNT = 6000
DEPTH = 4


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple]:
    ex = ExchangeConfig(
        symbols=["AAA", "BBB", "CCC"],
        channels=["trades", "book_change", "book_snapshot"],
        depth=DEPTH,
        # 4000/s: the kill lands mid-stream even when a busy machine wakes this test 1 s late
        url=f"synthetic://?rate=4000&count={COUNT}&seed=7&snap_every=3",
    )
    synthetic.validate("synthetic", ex)
    spec = ringset.make_spec(
        "synthetic",
        ex.symbols,
        synthetic.raw_channels("synthetic", ex),
        synthetic.data_types("synthetic", ex, True),
        record_capacity=8192,
        raw_index_capacity=8192,
        raw_arena_bytes=1 << 20,
    )
    rings = ringset.create(spec)
    stats = FeedStats(new_ring_name("synthetic-stats"), len(spec.symbols), len(spec.channels), create=True)
    log_cfg = LogConfig(dir=str(tmp_path / "logs"))
    yield ex, spec, rings, stats, log_cfg
    ringset.close(rings)
    stats.close()


def _spawn(ex: ExchangeConfig, spec: ringset.RingSetSpec, stats: FeedStats, log_cfg: LogConfig):  # type: ignore[no-untyped-def]
    ctx = mp.get_context("spawn")
    stop = StopFlag(ctx)  # an mp.Event would stay locked after the kill -9
    args = (spec, ex, stats.name, stop, log_cfg)
    p = ctx.Process(
        target=child_main,
        args=("ingest", "ingest-synthetic", log_cfg, "ticktape.engine.synthetic:ingest_main", args, stop, os.getpid()),
    )
    p.start()
    return p, stop


def _records(ring: RecordRing) -> np.ndarray:
    start, views = ring.peek()
    assert start == 0
    return np.concatenate(views) if views else ring.records[:0]


def test_kill9_and_restart_neither_repeats_nor_skips(rig: tuple) -> None:
    ex, spec, rings, stats, log_cfg = rig
    p, stop = _spawn(ex, spec, stats, log_cfg)
    trades: RecordRing = rings["trades"]
    end = time.monotonic() + 60
    while trades.write_seq < COUNT // 4:  # mid-stream
        assert time.monotonic() < end and p.is_alive()
        time.sleep(0.01)
    os.kill(p.pid or 0, signal.SIGKILL)
    p.join(10)
    at_kill = trades.write_seq
    assert 0 < at_kill < COUNT, "the producer must be killed mid-stream"
    snap_every = synthetic.parse_url(ex.url).snap_every
    # the killed process may have been between data types of one batch: the
    # restart resumes each type at its own count, and starts the batch at the lowest
    resume_at = min(
        rings["book_change"].write_seq,
        trades.write_seq,
        rings["raw"].index.write_seq,
        rings[f"book_snapshot_{DEPTH}"].write_seq * snap_every,
    )

    p, stop = _spawn(ex, spec, stats, log_cfg)  # same rings, same stats block
    snaps_ring = rings[f"book_snapshot_{DEPTH}"]
    while (trades.write_seq < COUNT or rings["book_change"].write_seq < COUNT or rings["raw"].index.write_seq < COUNT
           or snaps_ring.write_seq < -(-COUNT // snap_every)):  # the whole stream, every type (no fixed sleep)
        assert time.monotonic() < end and p.is_alive()
        time.sleep(0.01)
    stop.set()
    p.join(20)
    assert p.exitcode == 0

    params = synthetic.parse_url(ex.url)
    k = np.arange(COUNT)
    exp = synthetic.trade_values(params, 3, k)
    got = _records(trades)
    assert len(got) == COUNT and trades.dropped == 0
    assert got["id"].astype(np.int64).tolist() == exp["id"].tolist()
    assert np.array_equal(got["symbol"], exp["symbol"])
    assert np.array_equal(got["price"], exp["price"]) and np.array_equal(got["amount"], exp["amount"])
    assert np.array_equal(got["side"], exp["side"])

    book = _records(rings["book_change"])
    eb = synthetic.book_values(params, 3, k)
    assert len(book) == COUNT
    for col in ("symbol", "side", "price", "amount"):
        assert np.array_equal(book[col], eb[col]), col

    snaps = _records(rings[f"book_snapshot_{DEPTH}"])
    n_snap = -(-COUNT // params.snap_every)
    es = synthetic.snapshot_levels(params, 3, np.arange(n_snap), DEPTH)
    assert len(snaps) == n_snap
    for col in ("symbol", "bid_price", "bid_amount", "ask_price", "ask_amount"):
        assert np.array_equal(snaps[col], es[col]), col

    raw: RawRing = rings["raw"]
    _, chunks = raw.peek()
    payloads = [
        bytes(buf[int(r["pos"]) - base : int(r["pos"]) - base + int(r["length"])])
        for idx, buf, base in chunks
        for r in idx
    ]
    expected = [
        synthetic.raw_payload(spec.symbols[s], i, pr, a)
        for s, i, pr, a in zip(exp["symbol"].tolist(), exp["id"].tolist(), exp["price"].tolist(),
                               exp["amount"].tolist(), strict=True)
    ]
    assert payloads == expected

    events = _records(rings["events"])
    kinds = [EVENT_KINDS[k] for k in events["kind"]]
    assert kinds == ["connect", "connect"]  # one per process start
    assert events["detail"][1].decode() == f"synthetic start at trade {resume_at}"

    v = stats.values
    assert int(v[1:, F["messages"]].sum()) == COUNT  # stats block survives the restart
    assert int(v[0, F["reconnects"]]) == 1


def test_metrics_endpoint_reads_rings_and_stats(rig: tuple) -> None:
    _ex, spec, rings, stats, _log_cfg = rig
    recs = np.zeros(10, dtype=rings["trades"].dtype)
    recs["local_ts"] = time.time_ns() - 3_000_000_000
    rings["trades"].push_array(recs)
    rings["trades"].commit(4)  # 6 records not yet durable, 3 s old
    stats.values[1, F["messages"]] = 42
    stats.values[1, F["last_msg_ns"]] = time.time_ns() - 2_000_000_000
    stats.values[0, F["messages"]] = 3  # acks / pongs: connection level
    stats.values[0, F["last_msg_ns"]] = time.time_ns()
    snap = Snapshot([FeedView(spec, stats, rings)], [ChildView("writer", "writer-0", 123, True, 2)], time.monotonic())
    srv = MetricsServer("127.0.0.1", 0, registry_for(lambda: snap), lambda: ["synthetic/AAA: no frame yet"])
    srv.start()
    try:
        def get(path: str) -> tuple[str, int]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}{path}", timeout=5) as r:
                    return r.read().decode(), r.status
            except urllib.error.HTTPError as e:
                return e.read().decode(), e.code
        text, status = get("/metrics")
        assert status == 200
        assert get("/nope")[1] == 404
        assert get("/healthz") == ("ok\n", 200)
        assert get("/readyz") == ("not ready: synthetic/AAA: no frame yet\n", 503)
    finally:
        srv.close()
    assert 'ticktape_feed_messages_total{exchange="synthetic",symbol="AAA"} 42.0' in text
    assert 'symbol="_"' not in text  # the connection-level row has its own families
    assert 'ticktape_exchange_control_messages_total{exchange="synthetic"} 3.0' in text
    assert 'ticktape_ring_written_records_total{exchange="synthetic",table="trades"} 10.0' in text
    assert 'ticktape_ring_committed_records_total{exchange="synthetic",table="trades"} 4.0' in text
    assert 'ticktape_ring_fill_ratio{exchange="synthetic",table="trades"} ' in text
    assert 'ticktape_child_restarts_total{name="writer-0",role="writer"} 2.0' in text
    lag = next(line for line in text.splitlines() if line.startswith('ticktape_writer_lag_seconds{exchange="synthetic",table="trades"}'))
    assert 2.9 < float(lag.split()[-1]) < 30
