"""Writer throughput on one core: ring -> journal (fsynced) -> finalized zstd Parquet.

Trades (``--records``) and raw frames (``--raw-frames`` of ``--raw-bytes``
each). ``*_per_s`` figures are wall clock; ``*_per_cpu_s`` divide by this
process's CPU time instead (user + system, the finalize thread included), the
"one core" figure on a machine shared with other work. Journal figures stop
when the records are durable (journal fsynced, state saved, ring committed).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from ticktape.engine.config import ArchiveConfig
from ticktape.ipc import ringset
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.schemas import TRADE_DTYPE
from ticktape.writers.writer import Writer

H0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00Z


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=4_000_000, help="trade records per run (default 4M)")
    parser.add_argument("--batch", type=int, default=1 << 18, help="records per drain cycle")
    parser.add_argument("--symbols", type=int, default=2, help="symbols the trades are spread over")
    parser.add_argument("--zstd-level", type=int, default=ArchiveConfig().zstd_level)
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are medians")
    parser.add_argument("--dir", default=None, help="archive directory (default: a temp dir, removed)")
    parser.add_argument("--raw-frames", type=int, default=1_000_000, help="raw frames per run (0 skips)")
    parser.add_argument("--raw-bytes", type=int, default=200, help="bytes per raw frame")


def market_trades(n: int, n_symbols: int, seed: int = 1) -> np.ndarray:
    """Trades shaped like a real aggTrade feed: increasing ids and times, tick prices."""
    rng = np.random.default_rng(seed)
    arr = np.zeros(n, TRADE_DTYPE)
    arr["local_ts"] = H0 + np.cumsum(rng.integers(1, 2_000_000, n))  # ~1 ms apart
    arr["exchange_ts"] = arr["local_ts"] - rng.integers(1_000_000, 5_000_000, n)
    arr["price"] = np.round(60_000 + np.cumsum(rng.normal(0, 2, n)), 1)
    arr["amount"] = np.round(rng.exponential(0.05, n) + 0.001, 3)
    arr["symbol"] = 1 + rng.integers(0, n_symbols, n)
    arr["side"] = 1 + rng.integers(0, 2, n)
    arr["id"] = np.char.encode((5_000_000_000 + np.arange(n)).astype(str))
    return arr


def _one_run(args: argparse.Namespace, data: np.ndarray, root: str) -> dict[str, float]:
    spec = ringset.make_spec(
        "binance-futures", [f"SYM{i}USDT" for i in range(args.symbols)], ["aggTrade"], ["trades"],
        record_capacity=args.batch, raw_index_capacity=1024, raw_arena_bytes=1 << 20,
    )
    rings = ringset.create(spec)
    ring = rings["trades"]
    assert isinstance(ring, RecordRing)
    archive = ArchiveConfig(root=root, zstd_level=args.zstd_level)
    try:
        w = Writer([spec], archive, host="bench")
        drain_s = drain_cpu = 0.0
        for i in range(0, len(data), args.batch):
            ring.push_array(data[i : i + args.batch])  # the producer's part, not timed
            t, c = time.perf_counter(), time.process_time()
            w.drain_once()
            drain_s += time.perf_counter() - t
            drain_cpu += time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        w.close(finalize_all=True)
        finalize_s = time.perf_counter() - t
        finalize_cpu = time.process_time() - c
    finally:
        ringset.close(rings)
    files = glob.glob(os.path.join(root, "**/*.parquet"), recursive=True)
    size = sum(os.path.getsize(f) for f in files)
    n = len(data)
    return {
        "records_per_s": n / (drain_s + finalize_s),
        "journal_records_per_s": n / drain_s,
        "journal_records_per_cpu_s": n / drain_cpu,
        "finalize_records_per_cpu_s": n / finalize_cpu,
        "finalize_records_per_s": n / finalize_s,
        "bytes_per_record_on_disk": size / n,
        "files": float(len(files)),
    }


def _raw_run(args: argparse.Namespace, root: str) -> dict[str, float]:
    """Raw frames pushed by the ingest path's own entry (``Outbox.raw_fast``), drained to journals."""
    from ticktape.ipc.outbox import Outbox

    n, size, batch = args.raw_frames, args.raw_bytes, min(args.batch, 1 << 16)
    spec = ringset.make_spec(
        "binance-futures", ["BTCUSDT"], ["aggTrade"], ["trades", "raw"], record_capacity=1024,
        raw_index_capacity=batch, raw_arena_bytes=batch * size * 2,
    )
    rings = ringset.create(spec)
    frame = bytes(range(256)) * (size // 256 + 1)
    frame = frame[:size]
    try:
        ob = Outbox(spec, rings)
        w = Writer([spec], ArchiveConfig(root=root, zstd_level=args.zstd_level), host="bench")
        drain_s = drain_cpu = 0.0
        ts = H0
        for _ in range(0, n, batch):
            for _k in range(batch):  # the producer's part, not timed
                ts += 1000
                ob.raw_fast(ts, frame, 1, 1, 1)
            t, c = time.perf_counter(), time.process_time()
            w.drain_once()
            drain_s += time.perf_counter() - t
            drain_cpu += time.process_time() - c
        done = w.records_written
        t, c = time.perf_counter(), time.process_time()
        w.close(finalize_all=True)
        finalize_s, finalize_cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        ringset.close(rings)
    return {
        "raw_journal_frames_per_s": done / drain_s,
        "raw_journal_frames_per_cpu_s": done / drain_cpu,
        "raw_finalize_frames_per_cpu_s": done / finalize_cpu,
        "raw_frames_per_s": done / (drain_s + finalize_s),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = market_trades(args.records, args.symbols)
    runs = []
    for _ in range(max(1, args.runs)):
        root = tempfile.mkdtemp(prefix="ticktape-bench-", dir=args.dir)
        try:
            runs.append(_one_run(args, data, root))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["files"] = int(out["files"])
    out["records"] = args.records
    out["ring_bytes_per_record"] = TRADE_DTYPE.itemsize
    out["zstd_level"] = args.zstd_level
    out["runs"] = len(runs)
    out["records_per_s_all_runs"] = [round(r["records_per_s"]) for r in runs]
    if args.raw_frames > 0:
        raws = []
        for _ in range(max(1, args.runs)):
            root = tempfile.mkdtemp(prefix="ticktape-bench-", dir=args.dir)
            try:
                raws.append(_raw_run(args, root))
            finally:
                shutil.rmtree(root, ignore_errors=True)
        out.update({k: statistics.median(r[k] for r in raws) for k in raws[0]})
        out["raw_frame_bytes"] = args.raw_bytes
        out["raw_journal_frames_per_cpu_s_all_runs"] = [round(r["raw_journal_frames_per_cpu_s"]) for r in raws]
    return out
