"""Issue 11: the streaming finalize (bounded memory, row groups as they come) and the
writer's background finalize thread (the drain never waits for an hour's file)."""

from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
from writers_procs import STEP_NS, journals_left, make_trades

from ticktape.archive.layout import HOUR_NS
from ticktape.engine.config import ArchiveConfig
from ticktape.ipc import ringset
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.schemas import fixed_batch_to_arrow
from ticktape.writers.finalize import finalize_batches, finalize_journal
from ticktape.writers.journal import Journal, read_journal
from ticktape.writers.writer import Writer

H0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00Z


@pytest.fixture
def capture(tmp_path):
    spec = ringset.make_spec(
        "bybit", ["BTCUSDT", "ETHUSDT"], ["publicTrade.BTCUSDT"], ["trades"],
        record_capacity=1 << 14, raw_index_capacity=1 << 10, raw_arena_bytes=1 << 20,
    )
    rings = ringset.create(spec)
    archive = ArchiveConfig(root=str(tmp_path / "a"), flush_interval=0.1, finalize_grace=5.0, row_group_size=1000)
    yield spec, rings, archive
    ringset.close(rings)


def _journal(root: str, spec, arrs: list[np.ndarray]) -> Journal:
    """One journal of BTCUSDT trades, one batch per array (as drain cycles append them)."""
    from ticktape.archive.layout import FileKey, hour_of_ns

    key = FileKey("bybit", "trades", "BTCUSDT", hour_of_ns(H0))
    j = Journal.create(root, key)
    for a in arrs:
        j.append(fixed_batch_to_arrow("trades", a, spec.channels))
    j.sync()
    return j


def test_streamed_file_equals_the_whole_file_path_in_row_groups(capture, tmp_path) -> None:
    spec, _rings, archive = capture
    arrs = [make_trades(i * 700, 700, H0, 1) for i in range(10)]  # 7000 rows in 10 appends
    j = _journal(archive.root, spec, arrs)
    res = finalize_journal(archive.root, j.key, j.path, j.length, j.journal_id, j.records, archive, "h")
    assert res is not None and res.records == 7000
    streamed = pq.ParquetFile(res.path)
    assert streamed.metadata.num_row_groups == 7  # cut at row_group_size rows, never the whole hour at once
    assert all(streamed.metadata.row_group(i).num_rows <= 1000 for i in range(7))
    md = streamed.metadata.metadata
    assert md[b"ticktape.journals"] == j.journal_id.encode() and md[b"ticktape.records"] == b"7000"
    # the same journal through the whole-file path: identical rows
    other = str(tmp_path / "b")
    ref = finalize_batches(other, j.key, read_journal(j.path).batches, j.journal_id, archive, "h")
    assert ref is not None
    assert streamed.read().equals(pq.read_table(ref.path))
    # idempotent: the id is in the file
    assert finalize_journal(archive.root, j.key, j.path, j.length, j.journal_id, j.records, archive, "h") is None


def test_rows_out_of_arrival_order_are_sorted(capture) -> None:
    spec, _rings, archive = capture
    a, b = make_trades(1000, 500, H0, 1), make_trades(0, 500, H0, 1)  # the second append is older
    j = _journal(archive.root, spec, [a, b])
    res = finalize_journal(archive.root, j.key, j.path, j.length, j.journal_id, j.records, archive, "h")
    assert res is not None
    ts = pq.read_table(res.path).column("local_ts_ns").to_numpy()
    assert len(ts) == 1000 and np.all(np.diff(ts) >= 0)
    assert os.listdir(os.path.join(archive.root, ".tmp")) == []  # the abandoned streamed temp file is gone


def test_background_finalize_keeps_draining_and_merges_rows_that_come_meanwhile(capture) -> None:
    spec, rings, archive = capture
    trades = rings["trades"]
    assert isinstance(trades, RecordRing)
    w = Writer([spec], archive, host="h")
    trades.push_array(make_trades(0, 8000, H0, 2))  # hour 00
    assert w.drain_once() == 8000
    assert w.finalize_due(now=(H0 + HOUR_NS) / 1e9 + 5.0, background=True) == 0  # handed over, not waited for
    assert w.journals == {} and len(w._inflight) == 2
    # the next hour and a late row of hour 00 arrive while the files are being written
    trades.push_array(make_trades(8000, 10, H0 + HOUR_NS, 2))
    trades.push_array(make_trades(9000, 2, H0 + 8000 * STEP_NS, 2))
    assert w.drain_once() == 12
    w.close()
    assert journals_left(archive.root) == []
    files = sorted(glob.glob(f"{archive.root}/trades/exchange=bybit/symbol=*/date=2026-01-01/hour=00/data.parquet"))
    assert len(files) == 2
    ids = sorted(int(x) for f in files for x in pq.read_table(f).column("id").to_pylist())
    assert ids == [*range(8000), 9000, 9001]  # hour 00: every row once, the late ones merged
    for f in files:
        assert len(pq.ParquetFile(f).metadata.metadata[b"ticktape.journals"].split(b",")) == 2


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_finalize_failing_after_its_rename_loses_no_late_row(capture, monkeypatch, background: bool) -> None:
    """The hour's file is renamed into place (listing the journal's id) but the directory fsync
    then fails (EIO): the finalize counts as failed. Late rows for that hour must not go into
    the journal the file already lists, where the next finalize would skip them as merged."""
    import errno

    from ticktape.writers import finalize as fin
    from ticktape.writers.storage import StorageGuard

    spec, rings, archive = capture
    trades = rings["trades"]
    assert isinstance(trades, RecordRing)
    w = Writer([spec], archive, host="h", storage=StorageGuard(archive.root, retry_interval=0.0))
    trades.push_array(make_trades(0, 100, H0, 2))  # hour 00
    assert w.drain_once() == 100
    real_fsync_dir = fin.fsync_dir
    failed: list[str] = []

    def fsync_dir_fails_once(path: str) -> None:
        if not failed:
            failed.append(path)
            raise OSError(errno.EIO, "Input/output error", path)
        real_fsync_dir(path)

    monkeypatch.setattr(fin, "fsync_dir", fsync_dir_fails_once)
    due = (H0 + HOUR_NS) / 1e9 + 5.0
    w.finalize_due(now=due, background=background)
    w._reap(block=True)
    assert failed, "the fault was never hit"
    files = sorted(glob.glob(f"{archive.root}/trades/exchange=bybit/symbol=*/date=2026-01-01/hour=00/data.parquet"))
    assert files, "the rename happened before the failing fsync"
    trades.push_array(make_trades(9000, 4, H0 + 100 * STEP_NS, 2))  # late rows of hour 00
    assert w.drain_once() == 4  # the EIO episode's retry interval is 0 here: the cycle tries at once
    for _ in range(3):
        w.finalize_due(now=due, background=background)
        w._reap(block=True)
    w.close()
    files = sorted(glob.glob(f"{archive.root}/trades/exchange=bybit/symbol=*/date=2026-01-01/hour=00/data.parquet"))
    ids = sorted(int(x) for f in files for x in pq.read_table(f).column("id").to_pylist())
    assert ids == [*range(100), *range(9000, 9004)]
    assert journals_left(archive.root) == []
