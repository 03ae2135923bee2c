"""report: seconds for ``capture report`` (archive.report.build) on a month-sized synthetic archive.

The archive (cached under --cache) has one exchange, --symbols symbols, trades and
book_change files for every hour of --days days (each file several row groups, as a
real hour is), and an events table with a connect per hour and, per symbol and day,
a disconnect, a gap and its resync. Only Parquet footers and the events table are
read, so the time grows with the number of files, not with their rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
import pyarrow as pa

from ticktape.archive.layout import HOUR_NS, FileKey, hour_of_ns
from ticktape.bench.synth_archive import write_table
from ticktape.ipc import schemas as S

EXCHANGE = "binance-futures"
START_NS = 1_735_689_600_000_000_000  # 2025-01-01T00:00Z


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=30, help="days of hourly files (default 30: a month)")
    parser.add_argument("--symbols", type=int, default=4, help="symbols (default 4)")
    parser.add_argument("--rows", type=int, default=4000, help="rows per file (default 4000, in 4 row groups)")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/ticktape/bench-report"),
                        help="where the synthetic archive is kept between runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs (median reported)")


def _trades(ts: np.ndarray) -> pa.Table:
    n = len(ts)
    return S.table_from_ns("trades", ts, ts - 1_000_000, [
        pa.array(np.arange(n).astype(str)), pa.array(np.full(n, 100.0)), pa.array(np.full(n, 0.1)),
        pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array(["buy", "sell", "unknown"])),
    ])


def _book(ts: np.ndarray) -> pa.Table:
    n = len(ts)
    return S.table_from_ns("book_change", ts, ts - 1_000_000, [
        pa.array(np.zeros(n, bool)),
        pa.DictionaryArray.from_arrays(pa.array((np.arange(n) % 2).astype(np.int8)), pa.array(["bid", "ask"])),
        pa.array(np.full(n, 100.0)), pa.array(np.full(n, 1.0)),
    ])


def _events(rows: list[tuple[int, str, str]]) -> pa.Table:
    ts = np.array([r[0] for r in rows], np.int64)
    kinds = pa.DictionaryArray.from_arrays(pa.array([S.EVENT_CODE[r[1]] for r in rows], pa.int8()),
                                           pa.array(list(S.EVENT_KINDS)))
    n = len(rows)
    return S.table_from_ns("events", ts, np.zeros(n, np.int64), [
        kinds, pa.array(["depth"] * n), pa.array(np.ones(n, np.uint32)), pa.array([r[2] for r in rows]),
    ])


def build_archive(root: str, days: int, n_symbols: int, rows: int) -> dict[str, Any]:
    done = os.path.join(root, ".bench-done.json")
    if os.path.exists(done):
        with open(done) as f:
            return dict(json.load(f))
    t0 = time.perf_counter()
    symbols = [f"SYM{i}USDT" for i in range(n_symbols)]
    offsets = np.linspace(0, HOUR_NS - 1_000_000, rows).astype(np.int64)
    files = 0
    for h in range(days * 24):
        base = START_NS + h * HOUR_NS
        hour = hour_of_ns(base)
        ts = base + offsets
        for sym in symbols:
            write_table(root, FileKey(EXCHANGE, "trades", sym, hour), _trades(ts), row_group_size=rows // 4)
            write_table(root, FileKey(EXCHANGE, "book_change", sym, hour), _book(ts), row_group_size=rows // 4)
            files += 2
            if h % 24 == 5:  # once a day per symbol: a 20 s disconnect, a gap resynced after 2 s
                ev = [(base + 60 * 10**9, "disconnect", "connection lost"),
                      (base + 1800 * 10**9, "gap", "pu != u"),
                      (base + 1802 * 10**9, "resync", "synced at u=1")]
                write_table(root, FileKey(EXCHANGE, "events", sym, hour), _events(ev))
                files += 1
        write_table(root, FileKey(EXCHANGE, "events", "_", hour),
                    _events([(base + 1000, "connect", "public#0"), (base + 80 * 10**9, "connect", "public#0")]))
        files += 1
    info = {"files": files, "hours": days * 24, "symbols": n_symbols, "build_s": round(time.perf_counter() - t0, 1)}
    with open(done, "w") as f:
        json.dump(info, f)
    return info


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ticktape.archive import report

    root = os.path.join(args.cache, f"d{args.days}-s{args.symbols}-r{args.rows}")
    info = build_archive(root, args.days, args.symbols, args.rows)
    times = []
    rep = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rep = report.build(root)
        times.append(time.perf_counter() - t0)
    assert rep is not None
    return {
        "archive_files": info["files"],
        "hours": info["hours"],
        "feeds": len(rep.feeds),
        "faults_found": len(rep.faults),
        "report_s_median": round(statistics.median(times), 3),
        "report_s_runs": [round(t, 3) for t in times],
        "files_per_s": round(rep.files_read / statistics.median(times)),
    }
