"""The compiled level packer writes exactly what the Python packer writes: same slots,
same bytes, the same wrap at the ring's end, the same full-ring drops; a bad level
raises before anything is written. CI runs both (the build has a compiler)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ticktape.ipc import fastpack, ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.ring import HEADER_BYTES

compiled = pytest.mark.skipif(fastpack.pack_levels is None, reason="the C packer was not built here")


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
    code = "from ticktape.ipc import fastpack; print(fastpack.pack_levels is None)"
    env = {**os.environ, "TICKTAPE_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
