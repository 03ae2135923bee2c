"""Writer throughput on one core: ring -> journal (fsynced) -> finalized zstd Parquet."""

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
        drain_s = 0.0
        for i in range(0, len(data), args.batch):
            ring.push_array(data[i : i + args.batch])  # the producer's part, not timed
            t = time.perf_counter()
            w.drain_once()
            drain_s += time.perf_counter() - t
        t = time.perf_counter()
        w.close(finalize_all=True)
        finalize_s = time.perf_counter() - t
    finally:
        ringset.close(rings)
    files = glob.glob(os.path.join(root, "**/*.parquet"), recursive=True)
    size = sum(os.path.getsize(f) for f in files)
    n = len(data)
    return {
        "records_per_s": n / (drain_s + finalize_s),
        "journal_records_per_s": n / drain_s,
        "finalize_records_per_s": n / finalize_s,
        "bytes_per_record_on_disk": size / n,
        "files": float(len(files)),
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
    return out
