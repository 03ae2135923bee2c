"""Deterministic restarts at the two crash windows of a cycle, on real files and
shared memory: journal written but state not saved; state saved but ring commit lost."""

from __future__ import annotations

import numpy as np
import pytest
from writers_procs import make_trades, read_type

from ticktape.engine.config import ArchiveConfig
from ticktape.ipc import ringset
from ticktape.ipc.ring import _W, RecordRing
from ticktape.writers.writer import Writer

H0 = 1_767_225_600_000_000_000


@pytest.fixture
def setup(tmp_path):
    spec = ringset.make_spec(
        "bybit", ["BTCUSDT"], [], ["trades"], record_capacity=1 << 12, raw_index_capacity=1024,
        raw_arena_bytes=1 << 20,
    )
    rings = ringset.create(spec)
    yield spec, rings, ArchiveConfig(root=str(tmp_path / "a"))
    ringset.close(rings)


def _abandon(w: Writer) -> None:
    """What kill -9 leaves: open files closed by the OS, nothing finalized, no state saved."""
    for j in w.journals.values():
        j.close()
    for rs in w._ringsets:
        ringset.close(rs)


def _ids(root: str) -> list[int]:
    return sorted(int(x) for x in read_type(root, "trades").column("id").to_pylist())


def test_journal_written_state_not_saved(setup) -> None:
    spec, rings, archive = setup
    ring = rings["trades"]
    assert isinstance(ring, RecordRing)
    ring.push_array(make_trades(0, 100, H0, 1))
    w = Writer([spec], archive)
    assert w.drain_once() == 100
    ring.push_array(make_trades(100, 50, H0, 1))
    src = w.sources[0]
    touched: set[str] = set()
    assert w._drain_fixed(src, touched) == 50  # appended to the journal, not yet in the state
    (j,) = w.journals.values()
    j.sync()
    _abandon(w)
    w2 = Writer([spec], archive)  # must cut the 50 back off and read them again from the ring
    assert w2.drain_once() == 50
    w2.close()
    assert _ids(archive.root) == list(range(150))


def test_state_saved_ring_commit_lost(setup) -> None:
    spec, rings, archive = setup
    ring = rings["trades"]
    assert isinstance(ring, RecordRing)
    ring.push_array(make_trades(0, 100, H0, 1))
    w = Writer([spec], archive)
    assert w.drain_once() == 100
    _abandon(w)
    ring._words[_W["read"]] = 0  # the commit never reached shared memory
    w2 = Writer([spec], archive)
    assert ring.read_seq == 100  # resumed at the state's sequence
    assert w2.drain_once() == 0
    ring.push_array(make_trades(100, 10, H0, 1))
    assert w2.drain_once() == 10
    w2.close()
    ids = _ids(archive.root)
    assert ids == list(range(110))
    assert np.unique(ids).size == len(ids)
