"""Child-process bodies and readers shared by the writer tests."""

from __future__ import annotations

import glob
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ticktape.ipc import ringset
from ticktape.ipc.raw_ring import RawRing
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import TRADE_DTYPE

STEP_NS = 1000  # local_ts step between consecutive trades


def make_trades(start: int, n: int, base_ns: int, n_symbols: int) -> np.ndarray:
    """Trades whose id is their sequence number; symbols cycle 1..n_symbols."""
    seq = np.arange(start, start + n, dtype=np.int64)
    arr = np.zeros(n, TRADE_DTYPE)
    arr["local_ts"] = base_ns + seq * STEP_NS
    arr["exchange_ts"] = arr["local_ts"] - 7
    arr["price"] = seq.astype(np.float64)
    arr["amount"] = 1.5
    arr["symbol"] = 1 + seq % n_symbols
    arr["side"] = 1 + seq % 2
    arr["id"] = np.char.encode(seq.astype(str))
    return arr


def raw_payload(seq: int) -> bytes:
    return b"" if seq % 50 == 0 else b'{"seq":%d}' % seq


def produce(spec: RingSetSpec, total: int, base_ns: int, batch: int = 100, raw_every: int = 4) -> None:
    """Push ``total`` trades (and every ``raw_every``-th one as a raw frame), waiting
    for room instead of dropping: the test checks every record arrives."""
    rings = ringset.attach(spec)
    trades = rings["trades"]
    raw = rings["raw"]
    assert isinstance(trades, RecordRing) and isinstance(raw, RawRing)
    n_symbols = len(spec.symbols) - 1
    i = 0
    while i < total:
        n = min(batch, total - i)
        arr = make_trades(i, n, base_ns, n_symbols)
        k = 0
        while k < n:
            if trades.free() <= 0:
                time.sleep(0.001)
                continue
            k += trades.push_array(arr[k : k + min(trades.free(), n - k)])
        for seq in range(i, i + n):
            if seq % raw_every:
                continue
            payload = raw_payload(seq)
            while not raw.room(len(payload)):
                time.sleep(0.001)
            assert raw.push(base_ns + seq * STEP_NS, payload, 7, int(1 + seq % n_symbols), 1)
        i += n
        time.sleep(0.0005)
    ringset.close(rings)


def read_type(root: str, data_type: str) -> pa.Table:
    files = sorted(glob.glob(os.path.join(root, data_type, "exchange=*/**/data.parquet"), recursive=True))
    tables = []
    for f in files:
        t = pq.read_table(f)
        sym = f.split("symbol=")[1].split("/")[0]
        tables.append(t.append_column("symbol", pa.array([sym] * t.num_rows, pa.string())))
    return pa.concat_tables(tables) if tables else pa.table({})


def journals_left(root: str) -> list[str]:
    return glob.glob(os.path.join(root, ".journal/**/*.arrows"), recursive=True)


def read_only_hours(root: str, read_only: str, writable: str) -> dict[str, object]:
    """Run in a private mount namespace where ``root`` is a tmpfs: an hour due while the
    archive is read-only, and an hour whose file was renamed into place just before the
    archive turned read-only (its journal not yet retired), then late rows for that hour.
    Returns what the test checks."""
    import subprocess

    from ticktape.archive.layout import HOUR_NS
    from ticktape.engine.config import ArchiveConfig
    from ticktape.writers import state as wstate
    from ticktape.writers.writer import Writer

    h0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00Z
    grace = 5.0

    def sh(cmd: str) -> None:
        subprocess.run(["sh", "-c", cmd.format(root=root)], check=True, timeout=60)

    def retry_due(w: Writer) -> None:  # the writer's own retry interval, as its process loop waits
        end = time.monotonic() + 30
        while not w.storage.may_try():
            assert time.monotonic() < end
            time.sleep(0.02)

    def files_of_hour(hour: int) -> list[str]:
        return sorted(glob.glob(os.path.join(root, f"trades/**/hour={hour:02d}/*.parquet"), recursive=True))

    def journals_of_hour(hour: int) -> list[str]:
        return glob.glob(os.path.join(root, f".journal/trades/**/hour={hour:02d}/*.arrows"), recursive=True)

    def finalize_until(w: Writer, now: float, hour: int, n_files: int) -> None:
        """Until the hour's files are there and its journals (late rows' too) merged and retired."""
        end = time.monotonic() + 60
        while True:
            w.finalize_due(now=now, background=True)
            if len(files_of_hour(hour)) >= n_files and not w._inflight and not journals_of_hour(hour):
                return
            assert time.monotonic() < end, "finalize never finished"
            time.sleep(0.02)

    spec = ringset.make_spec("bybit", ["BTCUSDT", "ETHUSDT"], ["publicTrade.BTCUSDT"], ["trades"],
                             record_capacity=1 << 12)
    rings = ringset.create(spec)
    out: dict[str, object] = {}
    try:
        trades = rings["trades"]
        assert isinstance(trades, RecordRing)
        w = Writer([spec], ArchiveConfig(root=root, flush_interval=0.1, finalize_grace=grace), host="h1")
        trades.push_array(make_trades(0, 1000, h0 + HOUR_NS - 500 * STEP_NS, 2))  # half in hour 00, half in 01
        out["first_cycle"] = w.drain_once()
        # 1. hour 00 becomes due while the archive is read-only: kept, finalized once writable
        sh(read_only)
        trades.push_array(make_trades(1000, 100, h0 + HOUR_NS, 2))
        out["cycle_read_only"] = w.drain_once()
        due0 = (h0 + HOUR_NS) / 1e9 + grace + 1
        w.finalize_due(now=due0, background=True)
        retry_due(w)
        out["cycle_read_only_retry"] = w.drain_once()
        w.finalize_due(now=due0, background=True)
        out["hour0_files_while_read_only"] = len(files_of_hour(0))
        out["blocked"] = w.storage.blocked
        sh(writable)
        retry_due(w)
        out["cycle_writable"] = w.drain_once()
        finalize_until(w, due0, 0, 2)
        out["hour0_files"] = len(files_of_hour(0))
        # 2. hour 01's files are renamed into place, then the archive turns read-only before
        # the writer retires their journals (state save, unlink), then late rows for hour 01 come
        due1 = (h0 + 2 * HOUR_NS) / 1e9 + grace + 1
        w.finalize_due(now=due1, background=True)
        end = time.monotonic() + 60
        while not all(f.done() for _, f in w._inflight.values()):
            assert time.monotonic() < end, "finalize thread never finished"
            time.sleep(0.02)
        sh(read_only)
        out["reap_read_only"] = w.finalize_due(now=due1, background=True)  # must not raise
        trades.push_array(make_trades(5000, 4, h0 + HOUR_NS + 10, 2))  # late rows for hour 01
        retry_due(w)
        out["late_cycle_read_only"] = w.drain_once()
        sh(writable)
        retry_due(w)
        out["late_cycle"] = w.drain_once()
        finalize_until(w, due1, 1, 2)
        out["last_cycle"] = w.drain_once()  # the second episode's info event, as the writer loop's next cycle
        # 3. hour 02's finalize itself fails (read-only) on a quiet feed: nothing waits in the rings
        trades.push_array(make_trades(6000, 10, h0 + 2 * HOUR_NS, 2))
        out["hour2_cycle"] = w.drain_once()
        sh(read_only)
        due2 = (h0 + 3 * HOUR_NS) / 1e9 + grace + 1
        end = time.monotonic() + 60
        while not w.storage.blocked:  # the finalize thread's EROFS, seen when reaped
            assert time.monotonic() < end, "finalize never failed"
            w.finalize_due(now=due2, background=True)
            time.sleep(0.02)
        while w._inflight:  # each symbol's finalize fails and is reaped in this one read-only episode
            assert time.monotonic() < end, "finalize thread never finished"
            w.finalize_due(now=due2, background=True)
            time.sleep(0.02)
        retry_due(w)
        out["idle_cycle_read_only"] = w.drain_once()  # nothing to write: a probe, refused
        out["idle_blocked_read_only"] = w.storage.blocked
        sh(writable)
        retry_due(w)
        out["idle_cycle"] = w.drain_once()  # the probe works: episode over, its event written at once
        out["idle_blocked"] = w.storage.blocked
        finalize_until(w, due2, 2, 2)
        out["hour2_files"] = len(files_of_hour(2))
        w.close()
        t = read_type(root, "trades")
        out["ids"] = sorted(int(x) for x in t["id"].to_pylist())
        out["journals_left"] = journals_left(root)
        out["state_journals"] = sorted(wstate.load(root, 0).journals)
        out["events"] = read_type(root, "events")["detail"].to_pylist()
    finally:
        ringset.close(rings)
    return out
