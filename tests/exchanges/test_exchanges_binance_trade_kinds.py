"""binance-futures ``@trade``: only ``X: MARKET`` prints are trades (Tardis's normalizer drops insurance fund,
ADL and NA prints); the others stay in the archive as raw frames, byte for byte."""

from __future__ import annotations

import json


def frame(tid: int, kind: str | None) -> bytes:
    d = {"e": "trade", "E": 1_700_000_000_100 + tid, "T": 1_700_000_000_000 + tid, "s": "BTCUSDT", "t": tid,
         "p": "42000.5", "q": "0.010"}
    if kind is not None:
        d["X"] = kind
    d["m"] = bool(tid % 2)
    return json.dumps({"stream": "btcusdt@trade", "data": d}, separators=(",", ":")).encode()


def test_only_market_prints_are_trades(rig) -> None:
    r = rig("binance-futures", symbols=["BTCUSDT"], channels=["trades"], trade_stream="trade")
    kinds = ["MARKET", "INSURANCE_FUND", "MARKET", "ADL", "NA", None, "MARKET"]
    frames = [(1_700_000_000_000_000_000 + i * 1_000_000, frame(100 + i, k)) for i, k in enumerate(kinds)]
    for ts, f in frames:
        r.frame(f, ts)
    ids = [t["id"].decode() for t in r.records("trades")]
    assert ids == ["100", "102", "105", "106"]  # a frame without X is a market trade (older recordings)
    assert [(ts, p) for ts, _, _, _, p in r.raw()] == frames  # every frame kept
