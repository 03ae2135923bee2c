"""The Outbox fast entry points the connectors use write the same records as the
per-record pushes, and keep the full-ring policy (counted drops, drop event, resync)."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from ticktape.ipc import ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.schemas import BOOK_ASK, BOOK_BID, SIDE_BUY, SIDE_SELL

DTS = ["trades", "book_change", "book_snapshot_5", "raw"]


def _box(record_capacity: int = 64, raw_index: int = 64, arena: int = 1 << 12) -> tuple[Outbox, dict]:
    spec = ringset.make_spec("binance-futures", ["BTCUSDT", "ETHUSDT"], ("aggTrade", "depth5"), DTS,
                             record_capacity=record_capacity, raw_index_capacity=raw_index, raw_arena_bytes=arena)
    rings = ringset.create(spec)
    return Outbox(spec, rings), rings


@pytest.fixture
def pair() -> Iterator[tuple[Outbox, dict, Outbox, dict]]:
    a, ra = _box()
    b, rb = _box()
    yield a, ra, b, rb
    ringset.close(ra)
    ringset.close(rb)


def _records(ring: RecordRing) -> bytes:
    _start, views = ring.peek()
    return b"".join(v.tobytes() for v in views)


def test_fast_pushes_write_the_same_records(pair: tuple[Outbox, dict, Outbox, dict]) -> None:
    slow, rs, fast, rf = pair
    bids = [(100.0 - i, 1.0 + i) for i in range(5)]
    asks = [(101.0 + i, 2.0 + i) for i in range(5)]
    for i in range(40):  # wraps the 64-slot book ring (10 rows a frame) after the drains below
        slow.trade(i, i + 1, 1, b"%d" % i, 1.5 + i, 0.25, SIDE_BUY if i & 1 else SIDE_SELL)
        fast.trade_fast(i, i + 1, 1, b"%d" % i, 1.5 + i, 0.25, SIDE_BUY if i & 1 else SIDE_SELL)
        for p, q in bids:
            slow.book_change(i, i, 2, False, BOOK_BID, p, q)
        for p, q in asks:
            slow.book_change(i, i, 2, False, BOOK_ASK, p, q)
        assert fast.book_levels(i, i, 2, False, BOOK_BID, bids)
        assert fast.book_levels(i, i, 2, False, BOOK_ASK, asks)
        slow.book_snapshot(i, i, 1, [p for p, _ in bids] + [q for _, q in bids] + [p for p, _ in asks] + [q for _, q in asks])
        assert fast.book_snapshot_levels(i, i, 1, bids, asks)
        frame = b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i * 7 % 90))
        slow.raw(i, frame, 3, 1, 1)
        fast.raw_fast(i, memoryview(frame), 3, 1, 1)
        for dt in ("trades", "book_change", "book_snapshot_5"):
            assert _records(rs[dt]) == _records(rf[dt]), (dt, i)
        ri: RawRing = rs["raw"]
        fi: RawRing = rf["raw"]
        assert _records(ri.index) == _records(fi.index), i
        _s, chunks_s = ri.peek()
        _f, chunks_f = fi.peek()
        assert [bytes(c[1]) for c in chunks_s] == [bytes(c[1]) for c in chunks_f]
        for rings in (rs, rf):
            for ring in rings.values():
                if isinstance(ring, RawRing):
                    ring.commit(ring.index.write_seq)
                else:
                    ring.commit(ring.write_seq)
    assert sum(r.dropped for r in rf.values()) == 0


def test_snapshot_levels_by_field_names(pair: tuple[Outbox, dict, Outbox, dict]) -> None:
    slow, rs, fast, rf = pair

    class Level(msgspec.Struct):
        px: float
        sz: float

    bids = [Level(100.0 - i, 1.0 + i) for i in range(5)]
    asks = [Level(101.0 + i, 2.0 + i) for i in range(5)]
    slow.book_snapshot(7, 8, 1, [x.px for x in bids] + [x.sz for x in bids] + [x.px for x in asks] + [x.sz for x in asks])
    assert fast.book_snapshot_levels(7, 8, 1, bids, asks, ("px", "sz"))
    assert _records(rs["book_snapshot_5"]) == _records(rf["book_snapshot_5"])
    for x in bids:
        slow.book_change(7, 8, 1, True, BOOK_BID, x.px, x.sz)
    assert fast.book_levels(7, 8, 1, True, BOOK_BID, bids, ("px", "sz"))
    assert _records(rs["book_change"]) == _records(rf["book_change"])
    # other shapes are the caller's: NaN padding goes through book_snapshot
    assert not fast.book_snapshot_levels(7, 8, 1, bids[:3], asks, ("px", "sz"))
    assert not fast.book_snapshot_levels(7, 8, 1, [(1.0, 2.0)] * 6, [(1.0, 2.0)] * 5)


def test_book_levels_full_ring_counts_every_dropped_row() -> None:
    box, rings = _box(record_capacity=8)
    resyncs: list[int] = []
    box.on_book_drop = resyncs.append
    try:
        levels = [(100.0 + i, 1.0) for i in range(5)]
        assert box.book_levels(1, 1, 2, False, BOOK_BID, levels)
        assert not box.book_levels(2, 2, 2, False, BOOK_ASK, levels)  # 3 fit, 2 dropped
        ring: RecordRing = rings["book_change"]
        assert ring.write_seq == 8
        assert ring.dropped == 2
        assert box.pending_drops == 2
        assert resyncs == [2]
        _s, views = ring.peek()
        rows = views[0]
        assert list(rows["price"][5:]) == [100.0, 101.0, 102.0]
        box.flush_pending(99)
        ev = rings["events"]
        _s, evs = ev.peek()
        assert b"book_change: 2 records dropped" in bytes(evs[0][-1]["detail"])
        assert box.pending_drops == 0
        del views, rows, evs  # views of the shared memory must go before it closes
    finally:
        ringset.close(rings)


def test_raw_fast_full_arena_counts_the_drop() -> None:
    box, rings = _box(arena=256)
    try:
        raw: RawRing = rings["raw"]
        frame = b"y" * 100
        box.raw_fast(1, frame, 1, 1, 1)
        box.raw_fast(2, frame, 1, 1, 1)
        box.raw_fast(3, frame, 1, 1, 1)  # would wrap into unread bytes: dropped, counted
        assert raw.index.write_seq == 2
        assert raw.dropped == 1
        assert box.pending_drops == 1
        raw.commit(2)
        box.raw_fast(4, frame, 1, 1, 1)  # wraps to the arena start now that it is free
        _s, chunks = raw.peek()
        assert [bytes(c[1]) for c in chunks] == [frame]
        del chunks  # views of the shared memory must go before it closes
    finally:
        ringset.close(rings)
