"""Ring throughput, process to process, trades-sized records, next to a plain memcpy."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

import numpy as np

from ticktape.ipc.ring import RecordRing, new_ring_name
from ticktape.ipc.schemas import TRADE_DTYPE, TRADE_STRUCT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=20_000_000, help="records per run (default 20M)")
    parser.add_argument("--batch", type=int, default=4096, help="records per push_array call")
    parser.add_argument("--capacity", type=int, default=1 << 20, help="ring capacity in records")
    parser.add_argument("--packed", type=int, default=1_000_000, help="records for the push_packed figure")
    parser.add_argument("--runs", type=int, default=3, help="runs; figures are medians")


def _producer(name: str, total: int, batch: int, go: MpEvent) -> None:
    ring = RecordRing.attach(name, TRADE_DTYPE)
    arr = np.zeros(batch, TRADE_DTYPE)
    arr["local_ts"] = np.arange(batch)
    arr["price"] = 100.0
    arr["id"] = b"1234567890"
    go.wait()
    parent = os.getppid()
    sent = spins = 0
    while sent < total:
        n = min(batch, total - sent)
        if ring.free() < n:
            spins += 1
            if spins & 0xFFFFF == 0 and os.getppid() != parent:
                return  # the consumer (our parent) is gone: never spin as an orphan
            continue  # spin: the consumer frees room within microseconds
        ring.push_array(arr[:n])
        sent += n
    ring.close()


def _one_run(args: argparse.Namespace) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    ring = RecordRing.create(new_ring_name("bench"), TRADE_DTYPE, args.capacity)
    go = ctx.Event()
    proc = ctx.Process(target=_producer, args=(ring.name, args.records, args.batch, go))
    proc.start()
    dest = np.empty(args.capacity, TRADE_DTYPE)  # the consumer copies every record out
    time.sleep(0.5)  # let the child import and attach
    got = 0
    t0 = time.perf_counter()
    go.set()
    while got < args.records:
        start, views = ring.peek(args.capacity)
        n = 0
        for v in views:
            np.copyto(dest[n : n + len(v)], v)
            n += len(v)
        views = v = None  # type: ignore[assignment]
        if n:
            ring.commit(start + n)
            got += n
    elapsed = time.perf_counter() - t0
    proc.join()
    dropped = ring.dropped
    ring.close()
    nbytes = args.records * TRADE_DTYPE.itemsize

    # memcpy of the same bytes, same run, same buffer sizes
    src = np.ones(args.capacity, TRADE_DTYPE)
    copied = 0
    t1 = time.perf_counter()
    while copied < args.records:
        n = min(args.capacity, args.records - copied)
        np.copyto(dest[:n], src[:n])
        copied += n
    memcpy_s = time.perf_counter() - t1

    # push_packed from Python: one struct.pack_into per record
    pr = RecordRing.create(new_ring_name("bench-p"), TRADE_DTYPE, args.packed + 1)
    push, st = pr.push_packed, TRADE_STRUCT
    t2 = time.perf_counter()
    for i in range(args.packed):
        push(st, i, i, 100.5, 0.25, 1, 1, b"123456789")
    packed_s = time.perf_counter() - t2
    pr.close()
    return {
        "records_per_s": args.records / elapsed,
        "gb_per_s": nbytes / elapsed / 1e9,
        "memcpy_gb_per_s": nbytes / memcpy_s / 1e9,
        "memcpy_ratio": (nbytes / elapsed) / (nbytes / memcpy_s),
        "push_packed_ns_per_record": packed_s / args.packed * 1e9,
        "dropped": float(dropped),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = [_one_run(args) for _ in range(max(1, args.runs))]
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["dropped"] = int(out["dropped"])
    out["record_bytes"] = TRADE_DTYPE.itemsize
    out["records"] = args.records
    out["batch"] = args.batch
    out["runs"] = len(runs)
    out["records_per_s_all_runs"] = [round(r["records_per_s"]) for r in runs]
    return out
