"""bybit ``tickers``: snapshot then partial deltas rebuild the full ticker exactly; a
delta before any snapshot (or after the connection dropped) is counted, marked and
kept in raw, never merged onto a guess."""

from __future__ import annotations

import json
import math
import random

FIELDS = ["lastPrice", "markPrice", "indexPrice", "openInterest", "openInterestValue", "fundingRate",
          "nextFundingTime", "bid1Price", "bid1Size", "ask1Price", "ask1Size", "price24hPcnt", "volume24h",
          "turnover24h", "tickDirection"]


def frame(typ: str, data: dict, ts: int) -> bytes:
    return json.dumps({"topic": f"tickers.{data['symbol']}", "type": typ, "data": data, "cs": ts, "ts": ts}).encode()


def value(rng: random.Random, k: str) -> str:
    if k == "tickDirection":
        return rng.choice(["PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick"])
    if k == "nextFundingTime":
        return str(1_767_225_600_000 + 8 * 3_600_000 * rng.randrange(3))
    return f"{rng.uniform(0.0001, 100000):.4f}"


def test_snapshot_then_partial_deltas_rebuild_the_full_ticker(rig) -> None:
    r = rig("bybit", symbols=["BTCUSDT", "ETHUSDT"], channels=["derivative_ticker"])
    rng = random.Random(5)
    full = {s: {"symbol": s, **{k: value(rng, k) for k in FIELDS}} for s in ("BTCUSDT", "ETHUSDT")}
    want = []
    ts = 1_700_000_000_000
    for s in full:
        r.frame(frame("snapshot", dict(full[s]), ts), ts)
        want.append(dict(full[s]))
    for _ in range(400):
        ts += 1
        s = rng.choice(list(full))
        delta = {"symbol": s, **{k: value(rng, k) for k in rng.sample(FIELDS, rng.randint(1, 5))}}
        full[s].update(delta)
        r.frame(frame("delta", delta, ts), ts)
        want.append(dict(full[s]))
        assert r.feed.tickers.state[r.spec.symbol_id(s)] == full[s]
    rows = r.records("derivative_ticker")
    assert len(rows) == len(want)
    for row, t in zip(rows, want, strict=True):
        assert r.spec.symbols[int(row["symbol"])] == t["symbol"]
        assert (row["last_price"], row["mark_price"], row["index_price"], row["funding_rate"], row["open_interest"]) == (
            float(t["lastPrice"]), float(t["markPrice"]), float(t["indexPrice"]), float(t["fundingRate"]),
            float(t["openInterest"]))
        assert row["funding_timestamp"] == int(t["nextFundingTime"]) * 10**6
        assert math.isnan(row["predicted_funding_rate"])
    assert r.feed.stat("gaps") == 0


def test_delta_before_any_snapshot_is_counted_marked_and_not_guessed(rig) -> None:
    r = rig("bybit", symbols=["BTCUSDT"], channels=["derivative_ticker"])
    sid = r.spec.symbol_id("BTCUSDT")
    d1 = frame("delta", {"symbol": "BTCUSDT", "markPrice": "100.5"}, 1)
    d2 = frame("delta", {"symbol": "BTCUSDT", "lastPrice": "100.4"}, 2)
    r.frame(d1, 10)
    r.frame(d2, 11)
    assert len(r.records("derivative_ticker")) == 0
    assert r.feed.stat("gaps", sid) == 2
    ev = r.events()
    assert [e for e in ev if e[0] == "gap"] == [("gap", "BTCUSDT", "tickers delta before any snapshot: not applied")] * 2
    assert sum(e[0] == "resync" for e in ev) == 1  # one resubscribe, not one per delta
    assert [x[4] for x in r.raw()] == [d1, d2]  # kept as received
    snap = {"symbol": "BTCUSDT", "lastPrice": "99", "markPrice": "99.5", "indexPrice": "99.4", "openInterest": "7",
            "fundingRate": "0.0001", "nextFundingTime": "1767225600000"}
    r.frame(frame("snapshot", snap, 3), 12)
    r.frame(frame("delta", {"symbol": "BTCUSDT", "markPrice": "101"}, 4), 13)
    rows = r.records("derivative_ticker")
    assert [(x["last_price"], x["mark_price"]) for x in rows] == [(99.0, 99.5), (99.0, 101.0)]
    # the connection drops: the next delta has no snapshot under it again
    r.feed.on_lost(r.listener)
    r.frame(frame("delta", {"symbol": "BTCUSDT", "markPrice": "102"}, 5), 14)
    assert len(r.records("derivative_ticker")) == 2 and r.feed.stat("gaps", sid) == 3
