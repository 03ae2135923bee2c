"""merge: seconds for ``capture merge`` of two synthetic captures of one busy Binance hour.

Each capture (cached under --cache) holds one symbol's hour: --updates diff-book updates
(two book_change rows each, and a raw ``depth`` frame with its ``u``) and as many
trades, arrival 0.2 / 0.3 ms after the venue; capture A misses 5 % of the hour, B
another 2 %, each hole ending in a snapshot. The merge splices both holes, so every
update is kept once: rows in = the two captures' rows, rows out = one of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from ticktape.archive import merge_run as R
from ticktape.archive.layout import FileKey
from ticktape.ipc import schemas as S

EXCHANGE, SYMBOL = "binance-futures", "BTCUSDT"
HOUR = datetime(2025, 1, 5, 22, tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--updates", type=int, default=500_000, help="book updates in the hour (default 500000)")
    parser.add_argument("--workers", type=int, default=1, help="merge worker processes (default 1)")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/ticktape/bench-merge"),
                        help="where the synthetic captures are kept between runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs (median reported)")


def _ts(ns: np.ndarray) -> pa.Array:
    return pa.array(ns // 1000, pa.int64()).cast(S.TS)


def _side(codes: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), pa.array(["bid", "ask"]))


def _capture(root: str, n: int, hole: tuple[int, int], lag: int) -> int:
    """Write one capture missing updates ``hole``; its row count."""
    t0 = int(HOUR.timestamp()) * 10**9
    k = np.arange(1, n + 1)
    rng = np.random.default_rng(7)  # the venue: the same for both captures
    bid, ask = 100.0 - rng.integers(0, 50, n) * 0.5, 101.0 + rng.integers(0, 50, n) * 0.5
    bq, aq = rng.integers(0, 5, n).astype(float), rng.integers(1, 5, n).astype(float)
    ets = t0 + k * (3_000_000_000_000 // n)  # spread over 50 minutes
    keep = (k < hole[0]) | (k >= hole[1])
    kk, t, m = k[keep], ets[keep] + lag, int(keep.sum())
    at = int(np.searchsorted(kk, hole[1]))
    snap_t = t[at] - 1000
    loc = np.concatenate([np.repeat(t, 2), np.full(4, snap_t)])
    order = np.argsort(loc, kind="stable")
    book = pa.table({
        "local_ts": _ts(loc[order]),
        "exchange_ts": _ts(np.concatenate([np.repeat(ets[keep], 2), np.full(4, ets[keep][at])])[order]),
        "is_snapshot": np.concatenate([np.zeros(2 * m, bool), np.ones(4, bool)])[order],
        "side": _side(np.concatenate([np.tile([0, 1], m), [0, 0, 1, 1]])[order]),
        "price": np.concatenate([np.column_stack([bid[keep], ask[keep]]).ravel(), [99.0, 98.0, 102.0, 103.0]])[order],
        "amount": np.concatenate([np.column_stack([bq[keep], aq[keep]]).ravel(), np.ones(4)])[order],
        S.LOCAL_TS_NS: loc[order],
    })
    payload = pa.array([b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","u":%d,"pu":%d}}' % (u, u - 1)
                        for u in kk.tolist()], pa.binary())
    raw = pa.table({"local_ts": _ts(t), "channel": pa.array(["depth"] * m), "conn_id": pa.array(np.ones(m, np.uint32)),
                    "payload": payload, S.LOCAL_TS_NS: t})
    trades = pa.table({"local_ts": _ts(t), "exchange_ts": _ts(ets[keep]), "id": pa.array(kk.astype(str)),
                       "price": bid[keep], "amount": aq[keep], "side": _side(np.zeros(m)).cast(S.DICT_STR),
                       S.LOCAL_TS_NS: t})
    brk = int(t[at - 1]) + 500
    events = pa.table({
        "local_ts": _ts(np.array([brk, snap_t])), "exchange_ts": pa.array([None, None], S.TS),
        "kind": pa.array(["disconnect", "resync"]).dictionary_encode().cast(S.DICT_STR),
        "channel": pa.array(["depth", "depth"]), "conn_id": pa.array([1, 0], pa.uint32()),
        "detail": pa.array(["connection lost", "synced"]), S.LOCAL_TS_NS: pa.array([brk, snap_t], pa.int64()),
    })
    for data_type, table in (("book_change", book), ("raw", raw), ("trades", trades), ("events", events)):
        R.write(root, FileKey(EXCHANGE, data_type, SYMBOL, HOUR), table, ["bench"])
    return book.num_rows + raw.num_rows + trades.num_rows + events.num_rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    n = args.updates
    base = os.path.join(args.cache, f"u{n}")
    sources = [R.Source(name, os.path.join(base, name)) for name in ("a", "b")]
    if not os.path.exists(os.path.join(base, "done")):
        _capture(sources[0].root, n, (int(n * 0.30), int(n * 0.35)), 200_000)
        _capture(sources[1].root, n, (int(n * 0.60), int(n * 0.62)), 300_000)
        open(os.path.join(base, "done"), "w").close()
    rows_in = sum(len(R.read(s, FileKey(EXCHANGE, t, SYMBOL, HOUR)) or [])
                  for s in sources for t in ("book_change", "raw", "trades", "events"))
    runs, cpu, filled, rows_out = [], [], 0, 0
    for _ in range(max(1, args.repeat)):
        with tempfile.TemporaryDirectory(dir=args.cache) as out:
            t, c = time.perf_counter(), time.process_time()
            results = R.run_all(sources, R.plan(sources, R.Selection()), out, args.workers)
            runs.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)  # this process only: meaningful with --workers 1
            filled = sum(r.tables["book_change"].filled for r in results if "book_change" in r.tables)
            rows_out = sum(sum(st.kept.values()) for r in results for st in r.tables.values())
    med = statistics.median(runs)
    return {"updates": n, "rows_in": rows_in, "rows_out": rows_out, "windows_filled": filled,
            "runs_s": [round(x, 2) for x in runs], "median_s": med, "rows_in_per_s": rows_in / med,
            "median_cpu_s": statistics.median(cpu)}
