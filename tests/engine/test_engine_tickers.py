"""book_ticker, derivative_ticker and liquidations end to end: the simulator (3 venues
x 3 symbols, every channel at once) -> ``capture run`` (real processes, shared
memory) -> Parquet on disk, compared with what the simulator sent, every field,
with expected rows computed here from the sent frames by plain ``json``."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from engine_capture_helpers import parse_metrics, total

from ticktape.archive.loaders import load
from ticktape.sim.thread import SimulatorThread

SYMS = {"binance-futures": ["BTCUSDT", "ETHUSDT", "SOLUSDT"], "bybit": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
        "hyperliquid": ["BTC", "ETH", "SOL"]}
NEW = ["book_ticker", "derivative_ticker", "liquidations"]
CHANNELS = {"binance-futures": ["trades", "book_change", "book_snapshot", *NEW],
            "bybit": ["trades", "book_change", *NEW], "hyperliquid": ["trades", "book_snapshot", "book_ticker", "derivative_ticker"]}
DEPTH = {"binance-futures": 20, "bybit": 50, "hyperliquid": 20}
NAN = math.nan
OI_INTERVAL = 1.5


def config(tmp: Path, url: str, port: int) -> Path:
    text = f"""
writers = 1
[archive]
root = "{tmp / 'archive'}"
flush_interval = 0.2
[log]
dir = "{tmp / 'logs'}"
[metrics]
port = {port}
[ring]
records = 65536
raw_records = 65536
raw_bytes = 33554432
"""
    for ex, syms in SYMS.items():
        text += f"""
[exchanges.{ex}]
symbols = {json.dumps(syms)}
channels = {json.dumps(CHANNELS[ex])}
depth = {DEPTH[ex]}
url = "{url}"
"""
        if ex == "binance-futures":
            text += f"open_interest_interval = {OI_INTERVAL}\n"
    p = tmp / "tickers.toml"
    p.write_text(text)
    return p


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def f(x: Any) -> float:
    return NAN if x is None or x == "" else float(x)


def disk(root: Path, ex: str, dt: str, sym: str, hours: tuple[str, str]) -> list[dict[str, Any]]:
    """Rows as stored: timestamps (µs, UTC) as ns ints (None when null), null doubles as NaN."""
    t = load(str(root), ex, dt, sym, *hours)
    cols = {}
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_timestamp(col.type):
            cols[name] = [None if v is None else v * 1000 for v in col.cast(pa.int64()).to_pylist()]
        elif pa.types.is_floating(col.type):
            cols[name] = [NAN if v is None else v for v in col.to_pylist()]
        else:
            cols[name] = col.to_pylist()
    return [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


def check_prefix(got: list[tuple], want: list[tuple], what: str, tail: int = 6) -> None:
    """Disk rows are what was sent, in order, nothing missing in between; only frames
    still in flight at the stop may be absent."""
    assert len(got) <= len(want) and len(want) - len(got) <= tail, (what, len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        assert len(g) == len(w) and all(same(a, b) for a, b in zip(g, w, strict=True)), (what, i, g, w)


def sent_json(sim: SimulatorThread, ex: str, channel: str, sym: str) -> list[dict[str, Any]]:
    return [json.loads(s.data) for s in sim.sent(ex, channel, sym) if not s.fault]


def binance_expected(sim: SimulatorThread, sym: str) -> dict[str, list[tuple]]:
    bt = [(d["E"] * 10**6, f(d["b"]), f(d["B"]), f(d["a"]), f(d["A"]))
          for d in (m["data"] for m in sent_json(sim, "binance-futures", "bookTicker", sym))]
    lq = [(o["T"] * 10**6, None, "sell" if o["S"] == "SELL" else "buy", f(o["p"]), f(o["z"]))
          for o in (m["data"]["o"] for m in sent_json(sim, "binance-futures", "forceOrder", sym))]
    return {"book_ticker": bt, "liquidations": lq}


def bybit_expected(sim: SimulatorThread, sym: str) -> dict[str, list[tuple]]:
    bt, best = [], [NAN] * 4
    for m in sent_json(sim, "bybit", "orderbook.1", sym):
        if m["type"] == "snapshot":
            best = [NAN] * 4
        for off, side in ((0, "b"), (2, "a")):
            for p, q in m["data"][side]:
                if float(q) != 0:
                    best[off], best[off + 1] = float(p), float(q)
                elif float(p) == best[off]:
                    best[off] = best[off + 1] = NAN
        bt.append((m["ts"] * 10**6, *best))
    dt, full = [], None
    for m in sent_json(sim, "bybit", "tickers", sym):
        full = dict(m["data"]) if m["type"] == "snapshot" else {**full, **m["data"]}
        nft = full.get("nextFundingTime", "")
        dt.append((m["ts"] * 10**6, f(full.get("lastPrice")), f(full.get("markPrice")), f(full.get("indexPrice")),
                   f(full.get("fundingRate")), int(nft) * 10**6 if nft else None, NAN, f(full.get("openInterest"))))
    lq = [(x["T"] * 10**6, None, "sell" if x["S"] == "Buy" else "buy", f(x["p"]), f(x["v"]))
          for m in sent_json(sim, "bybit", "allLiquidation", sym) for x in m["data"]]
    return {"book_ticker": bt, "derivative_ticker": dt, "liquidations": lq}


def hyperliquid_expected(sim: SimulatorThread, sym: str) -> dict[str, list[tuple]]:
    bt = []
    for m in sent_json(sim, "hyperliquid", "bbo", sym):
        b, a = m["data"]["bbo"]
        bt.append((m["data"]["time"] * 10**6, f(b and b["px"]), f(b and b["sz"]), f(a and a["px"]), f(a and a["sz"])))
    dt = [(None, NAN, f(c["markPx"]), f(c["oraclePx"]), f(c["funding"]), None, NAN, f(c["openInterest"]))
          for c in (m["data"]["ctx"] for m in sent_json(sim, "hyperliquid", "activeAssetCtx", sym))]
    return {"book_ticker": bt, "derivative_ticker": dt}


BT_COLS = ("exchange_ts", "bid_price", "bid_amount", "ask_price", "ask_amount")
DT_COLS = ("exchange_ts", "last_price", "mark_price", "index_price", "funding_rate", "funding_timestamp",
           "predicted_funding_rate", "open_interest")
LQ_COLS = ("exchange_ts", "id", "side", "price", "amount")
COLS = {"book_ticker": BT_COLS, "derivative_ticker": DT_COLS, "liquidations": LQ_COLS}


@pytest.mark.slow
def test_new_tables_on_disk_equal_what_the_simulator_sent(tmp_path: Path, capture_cmd: list[str],
                                                           free_port: int) -> None:
    with SimulatorThread(list(SYMS), rate=120, seed=21) as sim:
        cfg = config(tmp_path, sim.ws_url(), free_port)
        t0 = datetime.now(UTC)
        proc = subprocess.Popen([*capture_cmd, "run", str(cfg), "--duration", "60"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 90

            def written() -> dict[tuple[str, str], float]:
                """Records each (exchange, table) ring got from the capture's ingest (its metrics)."""
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{free_port}/metrics", timeout=5) as r:
                        m = parse_metrics(r.read().decode())
                except OSError:
                    return {}  # not serving yet
                return {(ex, dt): total(m, "ticktape_ring_written_records_total", exchange=ex, table=dt)
                        for ex in SYMS for dt in CHANNELS[ex] if dt in NEW}

            def enough() -> bool:
                # what the final assertions count, as the capture itself received it (each venue's
                # ingest starts on its own time on a busy machine: the simulator's clock says nothing)
                rows = written()
                if not rows or any(n < (2 if dt == "liquidations" else 9) for (_, dt), n in rows.items()):
                    return False
                oi = sim.call(lambda s: sum(1 for x in s.venue("binance-futures").rest_log if "openInterest" in x[1]))
                marks = min(len(sim.sent("binance-futures", "markPrice", s)) for s in SYMS["binance-futures"])
                return oi >= 6 and marks >= 5

            while not enough():
                assert proc.poll() is None, "capture exited early"
                assert time.monotonic() < deadline, f"too few rows / polls after 90 s: {written()}"
                time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err[-3000:]
        t1 = datetime.now(UTC)
        hours = (t0.strftime("%Y-%m-%d:%H"), t1.strftime("%Y-%m-%d:%H"))
        root = tmp_path / "archive"
        expected = {"binance-futures": binance_expected, "bybit": bybit_expected, "hyperliquid": hyperliquid_expected}
        totals: dict[tuple[str, str], int] = {}
        for ex, syms in SYMS.items():
            for sym in syms:
                want = expected[ex](sim, sym)
                for dt, rows in want.items():
                    got = [tuple(r[c] for c in COLS[dt]) for r in disk(root, ex, dt, sym, hours)]
                    check_prefix(got, rows, f"{ex}/{dt}/{sym}")
                    totals[(ex, dt)] = totals.get((ex, dt), 0) + len(got)
                if ex == "binance-futures":
                    key = (ex, "derivative_ticker")
                    totals[key] = totals.get(key, 0) + binance_derivs(sim, root, sym, hours)
        for ex in SYMS:
            for dt in CHANNELS[ex]:
                if dt in NEW:
                    assert totals.get((ex, dt), 0) >= (2 if dt == "liquidations" else 9), (ex, dt, totals)


def binance_derivs(sim: SimulatorThread, root: Path, sym: str, hours: tuple[str, str]) -> int:
    """derivative_ticker on binance merges two sources (markPrice frames, REST open interest):
    each row pairs with the raw frame that made it (same local_ts, channel order); raw equals
    what the simulator sent / answered, and the row is the merged state computed here."""
    raw = [r for r in disk(root, "binance-futures", "raw", sym, hours)
           if r["channel"] in ("markPrice", "openInterest") and r["payload"]]  # b"": the shutdown marker
    marks = [s.data for s in sim.sent("binance-futures", "markPrice", sym) if not s.fault]
    got_marks = [r["payload"] for r in raw if r["channel"] == "markPrice"]
    assert got_marks == marks[: len(got_marks)] and len(marks) - len(got_marks) <= 2 and len(got_marks) >= 4
    bodies = sim.call(lambda s: [x[3] for x in s.venue("binance-futures").rest_log
                                 if x[1] == "/fapi/v1/openInterest" and x[3] and f"\"{sym}\"".encode() in x[3]])
    got_oi = [json.loads(r["payload"])["data"] for r in raw if r["channel"] == "openInterest"]
    assert got_oi == [json.loads(b) for b in bodies[: len(got_oi)]] and len(got_oi) >= 2
    rows = disk(root, "binance-futures", "derivative_ticker", sym, hours)
    assert [r["local_ts_ns"] for r in rows] == [r["local_ts_ns"] for r in raw]
    st = [NAN, NAN, NAN, None, NAN]
    for row, r in zip(rows, raw, strict=True):
        m = json.loads(r["payload"])["data"]
        if r["channel"] == "markPrice":
            st[:4] = [f(m["p"]), f(m["i"]), f(m["r"]), m["T"] * 10**6]
            ets = m["E"] * 10**6
        else:
            st[4] = f(m["openInterest"])
            ets = m["time"] * 10**6
        want = (ets, NAN, st[0], st[1], st[2], st[3], NAN, st[4])
        assert all(same(a, b) for a, b in zip((row[c] for c in DT_COLS), want, strict=True)), (row, want)
    return len(rows)
