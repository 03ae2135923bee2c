"""/replay-normalized serves book_ticker, derivative_ticker and liquidation messages from
their tables in Tardis Machine's shapes; each equals a reference computed here from the
Parquet files with plain pyarrow + json (tardis-dev's rules: undefined fields left out,
a derivative_ticker only when a value changed, timestamp = exchange time or local).
/exchanges lists the types each exchange has."""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from replay_helpers import ServerProc, get_lines, tardis_ms, tardis_us
from replay_proc import replay_server

from ticktape.engine.config import ArchiveConfig
from ticktape.ipc import ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL
from ticktape.writers.writer import Writer

REPO = Path(__file__).resolve().parents[2]
H0 = 1_767_261_600_000_000_000  # 2026-01-01T10:00Z
S = 1_000_000_000
NAN = math.nan
SYMS = {"binance-futures": ["BTCUSDT", "ETHUSDT"], "bybit": ["ETHUSDT"], "hyperliquid": ["BTC"]}
FROM, TO = "2026-01-01T10:00:30.000Z", "2026-01-01T11:30:00.000Z"


def write_archive(root: Path) -> None:
    """Rows over two hours, some before FROM; absent values, repeats, ids and sides of every kind."""
    rng = np.random.default_rng(3)
    for ex, syms in SYMS.items():
        types = ["book_ticker", "derivative_ticker"] + (["liquidations"] if ex != "hyperliquid" else [])
        spec = ringset.make_spec(ex, syms, [], types, record_capacity=1 << 12)
        rings = ringset.create(spec)
        try:
            ob = Outbox(spec, rings)
            for k, _sym in enumerate(syms, start=1):
                t = H0 + k * 1000  # distinct local times across symbols and types
                mark = oi = NAN
                funding, fts = 0.0001, H0 + 6 * 3600 * S
                for i in range(120):
                    t += int(rng.integers(20, 60)) * S
                    ets = 0 if ex == "hyperliquid" else t - 5_000_000
                    bid = 100.0 + i * 0.5
                    ob.book_ticker(t, ets, k, bid if i % 7 else NAN, 1.5 + i if i % 7 else NAN, bid + 0.25, 2.0 + i % 3)
                    # derivative: mark moves every 3rd row, OI every 4th, some rows repeat the state exactly
                    if i % 3 == 0:
                        mark = 100.0 + i * 0.125
                    if i % 4 == 1:
                        oi = 5000.0 + i
                    if i == 60:
                        funding, fts = -0.0000125, H0 + 14 * 3600 * S
                    last = 99.5 + i if ex == "bybit" else NAN
                    ob.derivative_ticker(t + 100, ets, k, last, mark, NAN if ex == "hyperliquid" and i < 5 else mark - 0.5,
                                         funding, 0 if ex == "hyperliquid" else fts, NAN, oi)
                    if ex != "hyperliquid" and i % 10 == 3:
                        lid = b"" if ex == "binance-futures" else (b"liq-%d" % i if i % 20 == 3 else b"")
                        ob.liquidation(t + 200, ets, k, lid, bid, 0.5 + i, SIDE_SELL if i % 20 == 3 else SIDE_BUY)
            w = Writer([spec], ArchiveConfig(root=str(root), flush_interval=0.1), host="t")
            while w.drain_once():
                pass
            w.close()
        finally:
            ringset.close(rings)


@pytest.fixture(scope="module")
def ticker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("ticker-archive")
    write_archive(root)
    with replay_server(root, tmp_path_factory.mktemp("ticker-log") / "server.log") as srv:
        yield ServerProc(srv.port, srv.proc, root)


# --- the reference: Parquet -> Tardis messages, computed independently ---------------------------


def js_number(x: float) -> str:
    """JavaScript's Number#toString for the values used here (positional from 1e-6 to 1e21)."""
    if x == int(x) and abs(x) < 1e21:
        return str(int(x))
    assert 1e-6 <= abs(x) < 1e21
    return np.format_float_positional(x, trim="-")


def dumps(msg: dict[str, Any]) -> bytes:
    parts = []
    for k, v in msg.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue  # undefined: JSON.stringify leaves it out
        parts.append(json.dumps(k) + ":" + (js_number(v) if isinstance(v, float) else json.dumps(v)))
    return ("{" + ",".join(parts) + "}\n").encode()


def table(root: Path, name: str, ex: str, sym: str) -> list[dict[str, Any]]:
    files = sorted((root / name / f"exchange={ex}" / f"symbol={sym}").glob("date=*/hour=*/data.parquet"))
    t = pa.concat_tables([pq.read_table(f) for f in files])
    rows = t.to_pylist()
    for k in ("exchange_ts", "funding_timestamp"):
        if k in t.column_names:
            us = t.column(k).cast(pa.int64()).to_pylist()
            for r, v in zip(rows, us, strict=True):
                r[k] = None if v is None else v * 1000
    rows.sort(key=lambda r: r["local_ts_ns"])
    return rows


def stamp(r: dict[str, Any]) -> tuple[str, str]:
    local = r["local_ts_ns"]
    return tardis_ms(r["exchange_ts"] or local), tardis_us(local)


def reference(root: Path, ex: str, sym: str, lo: int, hi: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    keys = (["bidPrice", "bidAmount", "askPrice", "askAmount"] if ex == "hyperliquid"
            else ["askAmount", "askPrice", "bidPrice", "bidAmount"])
    col = {"bidPrice": "bid_price", "bidAmount": "bid_amount", "askPrice": "ask_price", "askAmount": "ask_amount"}
    for r in table(root, "book_ticker", ex, sym):
        if lo <= r["local_ts_ns"] < hi:
            ts, lts = stamp(r)
            msg = {"type": "book_ticker", "symbol": sym, "exchange": ex, **{k: r[col[k]] for k in keys},
                   "timestamp": ts, "localTimestamp": lts}
            out.append((r["local_ts_ns"], dumps(msg)))
    fields = [("lastPrice", "last_price"), ("openInterest", "open_interest"), ("fundingRate", "funding_rate"),
              ("fundingTimestamp", "funding_timestamp"), ("predictedFundingRate", "predicted_funding_rate"),
              ("indexPrice", "index_price"), ("markPrice", "mark_price")]
    state: dict[str, Any] = {}
    for r in table(root, "derivative_ticker", ex, sym):
        if not lo <= r["local_ts_ns"] < hi:
            continue
        changed = False
        for k, c in fields:
            v = r[c]
            if v is None:
                continue
            if k == "fundingTimestamp":
                v = tardis_ms(v)
            if state.get(k) != v:
                state[k] = v
                changed = True
        if changed:
            ts, lts = stamp(r)
            msg = {"type": "derivative_ticker", "symbol": sym, "exchange": ex, **{k: state.get(k) for k, _ in fields},
                   "timestamp": ts, "localTimestamp": lts}
            out.append((r["local_ts_ns"], dumps(msg)))
    if ex != "hyperliquid":
        for r in table(root, "liquidations", ex, sym):
            if lo <= r["local_ts_ns"] < hi:
                ts, lts = stamp(r)
                msg = {"type": "liquidation", "symbol": sym, "exchange": ex, "id": r["id"], "price": r["price"],
                       "amount": r["amount"], "side": r["side"], "timestamp": ts, "localTimestamp": lts}
                out.append((r["local_ts_ns"], dumps(msg)))
    return out


def ns(iso: str) -> int:
    return int(np.datetime64(iso.rstrip("Z"), "ns").astype(np.int64))


@pytest.mark.parametrize("exchange", list(SYMS))
def test_new_types_equal_the_reference_from_parquet(ticker_server: ServerProc, exchange: str) -> None:
    types = ["book_ticker", "derivative_ticker"] + (["liquidation"] if exchange != "hyperliquid" else [])
    opts: dict[str, Any] = {"exchange": exchange, "symbols": SYMS[exchange], "from": FROM, "to": TO, "dataTypes": types}
    if exchange == "binance-futures":  # the reference stamps each row with its own time (tardis-dev's: the diff test)
        opts["openInterestTime"] = "poll"
    got = get_lines(ticker_server.url("replay-normalized", opts))
    want: list[tuple[int, bytes]] = []
    for sym in SYMS[exchange]:
        want += reference(ticker_server.root, exchange, sym, ns(FROM), ns(TO))
    want.sort(key=lambda x: x[0])
    assert len(want) > 100
    assert got == [line for _, line in want]
    kinds = {json.loads(x)["type"] for x in got}
    assert kinds == {"book_ticker", "derivative_ticker", *(["liquidation"] if exchange != "hyperliquid" else [])}


def test_derivative_ticker_only_on_change_and_exchanges_lists_the_types(ticker_server: ServerProc) -> None:
    opts = {"exchange": "binance-futures", "symbols": ["BTCUSDT"], "from": FROM, "to": TO,
            "dataTypes": ["derivative_ticker"]}
    got = [json.loads(x) for x in get_lines(ticker_server.url("replay-normalized", opts))]
    rows = [r for r in table(ticker_server.root, "derivative_ticker", "binance-futures", "BTCUSDT")
            if ns(FROM) <= r["local_ts_ns"] < ns(TO)]
    assert 0 < len(got) < len(rows)  # rows that repeat the state send nothing, as tardis-dev
    assert all("lastPrice" not in m and "predictedFundingRate" not in m for m in got)  # never given by binance
    with urllib.request.urlopen(f"{ticker_server.base}/exchanges", timeout=5) as r:
        listing = {e["id"]: e["dataTypes"] for e in json.load(r)}
    for ex in SYMS:
        assert {"book_ticker", "derivative_ticker"} <= set(listing[ex])
        assert ("liquidation" in listing[ex]) == (ex != "hyperliquid")
