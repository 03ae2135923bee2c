"""Full ring policy: the producer never blocks, never drops silently."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
from ipc_procs import fill_producer

from ticktape.ipc import ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.schemas import EVENT_KINDS, TRADE_DTYPE


def test_push_array_into_full_ring_from_another_process_counts_drops() -> None:
    ring = RecordRing.create("tt-test-full-fixed", TRADE_DTYPE, 1000)
    try:
        ctx = mp.get_context("spawn")
        with ctx.Pool(1) as pool:
            pushed = pool.apply(fill_producer, (ring.name, TRADE_DTYPE.descr, 1500))
        assert pushed == 1000
        assert ring.write_seq == 1000
        assert ring.dropped == 500  # visible to every process through the header
    finally:
        ring.close()


def test_outbox_full_ring_policy() -> None:
    spec = ringset.make_spec(
        "binance-futures", ["BTCUSDT", "ETHUSDT"], ["aggTrade", "depth"], ["trades", "book_change", "raw"],
        record_capacity=64, raw_index_capacity=16, raw_arena_bytes=1 << 20,
    )
    rings = ringset.create(spec)
    resync: list[int] = []
    try:
        ob = Outbox(spec, rings, on_book_drop=resync.append)
        t0 = time.perf_counter()
        for i in range(200):
            ob.trade(i, i, 1, b"%d" % i, 1.0, 1.0, 1)
            ob.book_change(i, i, 2, False, 0, 1.0, 1.0)
        for i in range(20):
            ob.raw(i, b"{}", 0, 1, 1)
        elapsed = time.perf_counter() - t0
        assert elapsed < 5.0  # never blocked waiting for a consumer (none runs): 420 pushes take milliseconds
        trades, book, raw, events = rings["trades"], rings["book_change"], rings["raw"], rings["events"]
        assert trades.write_seq == 64 and trades.dropped == 136
        assert book.write_seq == 64 and book.dropped == 136
        assert raw.dropped == 4
        assert resync and set(resync) == {2}  # the book connector is told to resync ETHUSDT
        assert ob.pending_drops == 136 + 136 + 4

        ob.flush_pending(now_ns=123)
        assert ob.pending_drops == 0
        _start, views = events.peek()
        ev = np.concatenate(views)
        kinds = [EVENT_KINDS[k] for k in ev["kind"]]
        assert kinds == ["drop", "drop", "drop"]
        details = sorted(d.decode() for d in ev["detail"])
        assert details == [
            "book_change: 136 records dropped (ring full)",
            "raw: 4 records dropped (ring full)",
            "trades: 136 records dropped (ring full)",
        ]
        assert sorted(ev["symbol"].tolist()) == [1, 1, 2]
        del views, ev
    finally:
        ringset.close(rings)
