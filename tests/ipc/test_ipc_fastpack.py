"""The compiled level packers write exactly what the Python packers write: same slots,
same bytes, the same wrap at the ring's end, the same full-ring drops; a bad level
raises before anything is written. The level-text parser (``book_level_text``) gives
the values msgspec gives, on every recorded Binance diff and Bybit book frame and on
number spellings it leaves to msgspec. CI runs both (the build has a compiler)."""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import numpy as np
import pytest
from recorded_frames import binance_frames, bybit_frames

from ticktape.ipc import fastpack, ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.ring import HEADER_BYTES

compiled = pytest.mark.skipif(fastpack.pack_levels is None, reason="the C packer was not built here")
compiled_text = pytest.mark.skipif(fastpack.pack_level_text is None, reason="the C level parser was not built here")


def _push(compiled_packer: bool, batches: list[list[tuple[float, float]]], read_at: int | None = None) -> tuple:
    spec = ringset.make_spec("binance-futures", ["BTCUSDT", "ETHUSDT"], ["depth"], ["book_change"],
                             record_capacity=64, raw_index_capacity=16, raw_arena_bytes=1 << 16)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings, compiled=compiled_packer)
        ring = rings["book_change"]
        fits = []
        for i, lv in enumerate(batches):
            if read_at is not None and i == read_at:
                ring.commit(ring.write_seq)  # the writer consumed everything so far: the next batches wrap
            fits.append(ob.book_levels(1_000 + i, 2_000 + i, 1 + i % 2, i % 3 == 0, 1 + i % 2, lv))
        return bytes(ring._mv[HEADER_BYTES:]), ring.write_seq, ring.dropped, fits, ob.pending_drops
    finally:
        ringset.close(rings)


def _levels(n: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    return [(float(p), float(a)) for p, a in zip(rng.uniform(1, 1e5, n), rng.uniform(0, 10, n), strict=True)]


@compiled
def test_compiled_and_python_packers_write_the_same_bytes_through_a_wrap_and_a_full_ring() -> None:
    batches = [_levels(n, s) for s, n in enumerate([21, 21, 5, 0, 17, 30, 42, 1])]
    for read_at in (None, 3):  # None: the ring fills and drops; 3: it wraps after a read
        a = _push(True, batches, read_at)
        b = _push(False, batches, read_at)
        assert a == b
    assert a[1] > 64  # the second run wrapped
    full = _push(True, batches)
    assert full[2] > 0 and False in full[3]  # the full ring dropped and said so


@compiled
def test_compiled_packer_rejects_a_bad_level_before_writing() -> None:
    spec = ringset.make_spec("binance-futures", ["BTCUSDT"], ["depth"], ["book_change"], record_capacity=64,
                             raw_index_capacity=16, raw_arena_bytes=1 << 16)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings)
        before = bytes(rings["book_change"]._mv)
        with pytest.raises((TypeError, ValueError)):
            ob.book_levels(1, 2, 1, False, 1, [(1.0, 2.0), (3.0,)])
        with pytest.raises(TypeError):
            ob.book_levels(1, 2, 1, False, 1, [(1.0, 2.0), ("x", 1.0)])
        assert bytes(rings["book_change"]._mv) == before and rings["book_change"].write_seq == 0
    finally:
        ringset.close(rings)


def test_pure_python_switch_turns_the_compiled_packer_off() -> None:
    code = ("from ticktape.ipc import fastpack; print(fastpack.pack_levels is None and fastpack.pack_level_text is None"
            " and fastpack.TradeFrameWriter is None and fastpack.RawFrameWriter is None"
            " and fastpack.gather_values is None and fastpack.gather_framed is None)")
    env = {**os.environ, "TICKTAPE_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


class _Levels(msgspec.Struct):
    b: msgspec.Raw
    a: msgspec.Raw


class _Frame(msgspec.Struct):
    data: _Levels


def _recorded_level_texts() -> list[tuple[bytes, bytes]]:
    """(bids, asks) texts of every recorded Binance USD-M diff and Bybit orderbook frame."""
    dec = msgspec.json.Decoder(_Frame)
    frames = [f for f in binance_frames() if f.channel == "depth"]
    frames += [f for f in bybit_frames() if f.channel.startswith("orderbook")]
    out = []
    for f in frames:
        d = dec.decode(f.payload).data
        out.append((bytes(d.b), bytes(d.a)))
    return out


def _push_text(compiled_packer: bool, texts: list[tuple[bytes, bytes]], capacity: int, read_every: int) -> tuple:
    spec = ringset.make_spec("binance-futures", ["BTCUSDT", "ETHUSDT"], ["depth"], ["book_change"],
                             record_capacity=capacity, raw_index_capacity=16, raw_arena_bytes=1 << 16)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings, compiled=compiled_packer)
        ring = rings["book_change"]
        fits, states = [], []
        for i, (b, a) in enumerate(texts):
            if read_every and i % read_every == 0:
                ring.commit(ring.write_seq)
            fits.append(ob.book_level_text(1_000 + i, 2_000 + i, i % 2, i % 5 == 0, b, a))
            if i % 97 == 0:
                states.append(bytes(ring._mv[HEADER_BYTES:]))
        return bytes(ring._mv[HEADER_BYTES:]), states, ring.write_seq, ring.dropped, fits, ob.pending_drops
    finally:
        ringset.close(rings)


@compiled_text
def test_level_text_compiled_and_msgspec_paths_write_the_same_bytes_on_recorded_frames() -> None:
    texts = _recorded_level_texts()
    assert len(texts) > 1000 and sum(b.count(b"[") + a.count(b"[") for b, a in texts) > 5_000
    # the C parser takes every recorded frame itself (no fallback to msgspec)
    buf = bytearray(HEADER_BYTES + 64 * 40)
    assert all(fastpack.pack_level_text(buf, HEADER_BYTES, 40, 64, 0, 0, 0, 0, 0, False, 0, b, 1, a) >= 0
               for b, a in texts)
    # read_every 3: the ring wraps, never full; 0: it fills, and every later frame drops
    for capacity, read_every in ((1024, 3), (4096, 0)):
        c = _push_text(True, texts, capacity, read_every)
        p = _push_text(False, texts, capacity, read_every)
        assert c == p
    assert c[3] > 0 and False in c[4] and c[5] > 0  # the full ring dropped and said so
    # and the same records the list packer writes from msgspec's decoded levels
    spec = ringset.make_spec("binance-futures", ["BTCUSDT"], ["depth"], ["book_change"], record_capacity=1 << 12,
                             raw_index_capacity=16, raw_arena_bytes=1 << 16)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings)
        ring = rings["book_change"]
        for b, a in texts[:50]:
            ob.book_level_text(5, 6, 0, False, b, a)
        by_text = bytes(ring._mv)
        ring.commit(ring.write_seq)
        ringset.close(rings)
        rings = ringset.create(spec)
        ob = Outbox(spec, rings)
        ring = rings["book_change"]
        for b, a in texts[:50]:
            ob.book_levels(5, 6, 0, False, 0, fastpack.decode_levels(b))
            ob.book_levels(5, 6, 0, False, 1, fastpack.decode_levels(a))
        assert bytes(ring._mv[HEADER_BYTES:]) == by_text[HEADER_BYTES:]
    finally:
        ringset.close(rings)


def _spellings() -> list[str]:
    rng = np.random.default_rng(7)
    out = ["0", "0.0", "-0", "-0.0", "1", "-1", "0.1", "60000.1", "0.00000001", "1e5", "1E-5", "-2.5e+3", "1e22",
           "1e23", "1e-22", "1e-23", "9007199254740992", "9007199254740993", "12345678901234567890",
           "1234567890123456789", "0.30000000000000004", "123456.789012345678901", "nan", "inf"]
    for _ in range(3000):
        digits = "".join(rng.choice(list("0123456789"), size=int(rng.integers(1, 18))))
        cut = int(rng.integers(0, len(digits) + 1))
        num = (digits[:cut].lstrip("0") or "0") + ("." + digits[cut:] if cut < len(digits) else "")
        if rng.random() < 0.2:
            num += f"e{int(rng.integers(-30, 30))}"
        out.append(("-" if rng.random() < 0.3 else "") + num)
    return out


@compiled_text
def test_level_text_parser_gives_msgspecs_values_for_every_spelling() -> None:
    """Quoted and bare numbers: the C parser's values, or its refusal (then msgspec decodes), equal msgspec's."""
    nums = _spellings()
    texts = []
    for i in range(0, len(nums), 7):
        group = nums[i : i + 7]
        b = "[" + ",".join(f'["{x}","{y}"]' for x, y in zip(group, group[1:] + group[:1], strict=True)) + "]"
        a = "[ " + " , ".join(f"[ {x} , \"{x}\" ]" for x in group if x not in ("nan", "inf")) + " ]"
        texts.append((b.encode(), a.encode()))
    assert _push_text(True, texts, 1 << 15, 0) == _push_text(False, texts, 1 << 15, 0)
    buf = bytearray(HEADER_BYTES + 16 * 40)
    assert fastpack.pack_level_text(buf, HEADER_BYTES, 40, 16, 0, 16, 0, 0, 0, False, 0, b'[["60000.1","0.5"]]',
                                    1, b"[]") == 1
    # most spellings are parsed in C (the rest: nan, inf, a negative zero, > 19 digits, exponents past 22)
    taken = sum(fastpack.pack_level_text(buf, HEADER_BYTES, 40, 16, 0, 0, 0, 0, 0, False, 0,
                                         f'[["{x}","1"]]'.encode(), 1, b"[]") >= 0 for x in nums)
    assert taken > 0.8 * len(nums)


@pytest.mark.parametrize("compiled_packer", [True, False], ids=["compiled", "pure_python"])
@pytest.mark.parametrize("bad", [b'[["1.0","2"],["3"]]', b'[["x","1"]]', b'[["1","2","3"]]', b'[["1","2"]',
                                 b'[["1","2"],]', b"null", b"{}", b'"[]"', b'[["1","2"]]x', b'[[1,"1.5.2"]]', b'[["1e400","1"]]'])
def test_a_malformed_level_text_raises_before_anything_is_written(compiled_packer: bool, bad: bytes) -> None:
    if compiled_packer and fastpack.pack_level_text is None:
        pytest.skip("the C level parser was not built here")
    spec = ringset.make_spec("binance-futures", ["BTCUSDT"], ["depth"], ["book_change"], record_capacity=64,
                             raw_index_capacity=16, raw_arena_bytes=1 << 16)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings, compiled=compiled_packer)
        before = bytes(rings["book_change"]._mv)
        for b, a in ((b'[["1","2"]]', bad), (bad, b'[["1","2"]]')):
            with pytest.raises(fastpack.LevelTextError):
                ob.book_level_text(1, 2, 0, False, b, a)
        assert bytes(rings["book_change"]._mv) == before and rings["book_change"].write_seq == 0
        assert ob.pending_drops == 0
    finally:
        ringset.close(rings)


# --- the trade-frame writer (aggTrade path: a trade row and its raw frame per call) ---------
trade_writer = pytest.mark.skipif(fastpack.TradeFrameWriter is None, reason="the C trade writer was not built here")


def _trade_frames(compiled_writer: bool, raw: bool, read_at: tuple[int, ...] = ()) -> tuple:
    """40 trade frames of growing size through ``trade_frame_pusher`` into small rings (16 trades,
    12 index slots, a 1 KiB arena): they fill, drop, wrap and (after ``read_at`` reads) go on."""
    dts = ["trades", "raw"] if raw else ["trades"]
    spec = ringset.make_spec("binance-futures", ["BTCUSDT", "ETHUSDT"], ["aggTrade"], dts, record_capacity=16,
                             raw_index_capacity=12, raw_arena_bytes=1024)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings, compiled=compiled_writer)
        push = ob.trade_frame_pusher()
        for i in range(40):
            if i in read_at:
                for ring in rings.values():
                    ring.commit(ring.index.write_seq if hasattr(ring, "index") else ring.write_seq)
            frame = b'{"stream":"btcusdt@aggTrade","data":{"a":%d,"pad":"%s"}}' % (i, b"x" * (i * 13 % 70))
            tid = 10**17 + i if i % 5 else -i  # 18 digits, and a negative id: written as b"%d" would
            push(1_000 + i, 2_000 + i, 1 + i % 2, tid, 100.5 + i, 0.25 * i, 1 + i % 2, memoryview(frame), 7, 1)
        tr = rings["trades"]
        out = [bytes(tr._mv[HEADER_BYTES:]), tr.write_seq, tr._wseq, tr.dropped]
        if raw:
            rr = rings["raw"]
            out += [bytes(rr.index._mv[HEADER_BYTES:]), rr.index.write_seq, rr.index._wseq, rr.dropped,
                    bytes(rr._data), rr._wpos, int(rr._words[8])]
        return (*out, sorted(ob._lost.items()))
    finally:
        ringset.close(rings)


@trade_writer
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "no-raw"])
def test_compiled_and_python_trade_writers_write_the_same_bytes_through_full_rings_and_wraps(raw: bool) -> None:
    for read_at in ((), (14, 20, 27, 33)):  # (): everything after the first 16 trades / 12 frames drops
        a = _trade_frames(True, raw, read_at)
        b = _trade_frames(False, raw, read_at)
        assert a == b
        if not read_at:
            assert a[3] == 40 - 16 and a[-1]  # the full ring dropped, counted, pending a drop event
    assert a[1] == 40 and a[3] == 0  # the run with reads wrapped the 16-slot ring without a drop


@trade_writer
def test_trade_writer_rows_decode_to_what_was_pushed() -> None:
    spec = ringset.make_spec("binance-futures", ["BTCUSDT"], ["aggTrade"], ["trades", "raw"], record_capacity=16,
                             raw_index_capacity=16, raw_arena_bytes=1 << 12)
    rings = ringset.create(spec)
    try:
        push = Outbox(spec, rings).trade_frame_pusher()
        push(11, 22, 1, 1234567, 60000.5, 0.125, 2, b"frame-bytes", 3, 1)
        t = rings["trades"].records[0].copy()
        assert (int(t["local_ts"]), int(t["exchange_ts"]), float(t["price"]), float(t["amount"]), int(t["symbol"]),
                int(t["side"]), bytes(t["id"])) == (11, 22, 60000.5, 0.125, 1, 2, b"1234567")
        _s, [(index, arena, base)] = rings["raw"].peek()
        i0 = index[0].copy()
        payload = bytes(arena[int(i0["pos"]) - base :][: int(i0["length"])])
        del index, arena  # views of the rings: gone before they close
        assert (int(i0["local_ts"]), int(i0["conn_id"]), int(i0["channel"])) == (11, 3, 1)
        assert payload == b"frame-bytes"
        with pytest.raises(ValueError):  # out of range: nothing written
            push(12, 23, 70_000, 1, 1.0, 1.0, 1, b"x", 3, 1)
        with pytest.raises(TypeError):
            push(12, 23, 1, "1", 1.0, 1.0, 1, b"x", 3, 1)
        assert rings["trades"].write_seq == 1 and rings["raw"].index.write_seq == 1
    finally:
        ringset.close(rings)


# --- the raw-frame writer (every non-trade frame's raw copy: ``Outbox.raw_fast``) -------------
raw_writer = pytest.mark.skipif(fastpack.RawFrameWriter is None, reason="the C raw writer was not built here")


def _raw_frames(compiled_writer: bool, read_at: tuple[int, ...]) -> tuple:
    """40 frames of growing size through ``raw_fast`` into a small raw ring (12 index slots, a
    1 KiB arena): it fills, drops, wraps and (after ``read_at`` reads) goes on."""
    spec = ringset.make_spec("binance-futures", ["BTCUSDT", "ETHUSDT"], ["depth"], ["book_change", "raw"],
                             record_capacity=16, raw_index_capacity=12, raw_arena_bytes=1024)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings, compiled=compiled_writer)
        rr = rings["raw"]
        for i in range(40):
            if i in read_at:
                rr.commit(rr.index.write_seq)
            frame = b'{"stream":"btcusdt@depth","data":{"u":%d,"pad":"%s"}}' % (i, b"x" * (i * 13 % 70))
            ob.raw_fast(1_000 + i, memoryview(frame) if i % 2 else frame, 7 + i, 1 + i % 2, i % 3)
        return (bytes(rr.index._mv[HEADER_BYTES:]), rr.index.write_seq, rr.index._wseq, rr.dropped,
                bytes(rr._data), rr._wpos, int(rr._words[8]), sorted(ob._lost.items()))
    finally:
        ringset.close(rings)


@raw_writer
def test_compiled_and_python_raw_writers_write_the_same_bytes_through_a_full_ring_and_wraps() -> None:
    for read_at in ((), (9, 14, 20, 27, 33)):  # (): everything after the arena or index fills drops
        a = _raw_frames(True, read_at)
        b = _raw_frames(False, read_at)
        assert a == b
        if not read_at:
            assert a[3] > 0 and a[-1]  # the full ring dropped, counted, pending a drop event
    assert a[1] == 40 and a[3] == 0  # the run with reads wrapped the arena without a drop


@raw_writer
def test_raw_writer_refuses_out_of_range_arguments_before_writing() -> None:
    spec = ringset.make_spec("binance-futures", ["BTCUSDT"], ["depth"], ["book_change", "raw"], record_capacity=16,
                             raw_index_capacity=16, raw_arena_bytes=1 << 12)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings)
        assert ob.raw_fast != ob._raw_fast_py  # the compiled writer is the one in use
        ob.raw_fast(11, b"frame-bytes", 3, 0, 1)
        with pytest.raises(ValueError):
            ob.raw_fast(12, b"x", 3, 70_000, 1)
        with pytest.raises(TypeError):
            ob.raw_fast(12, "text", 3, 0, 1)
        _s, [(index, arena, base)] = rings["raw"].peek()
        i0 = index[0].copy()
        payload = bytes(arena[int(i0["pos"]) - base :][: int(i0["length"])])
        del index, arena  # views of the rings: gone before they close
        assert (int(i0["local_ts"]), int(i0["conn_id"]), int(i0["symbol"]), int(i0["channel"])) == (11, 3, 0, 1)
        assert payload == b"frame-bytes" and rings["raw"].index.write_seq == 1
    finally:
        ringset.close(rings)
