"""A connection of aggTrade (or trade) streams has its own frame handler (the busiest path:
one small frame per trade). Fed through the picows listener, it must leave exactly what the
general path (``Feed.frame``) leaves for the same frames: trades, raw rows, every counter,
the duplicate and malformed events, with each frame's ``local_ts`` its arrival time."""

from __future__ import annotations

import json
import time

import pytest
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from ticktape.exchanges.binance_futures import AGG, TRADE


def trade(kind: str, sym: str, i: int, m: bool = False, x: str = "MARKET") -> bytes:
    """An ``aggTrade`` or ``trade`` frame of ``sym`` with id ``i``."""
    d = {"e": kind, "E": i, "s": sym.upper(), "p": f"{100 + i * 0.5}", "q": "0.25", "T": 1_700_000_000_000 + i, "m": m}
    d.update({"a": i, "f": i, "l": i} if kind == "aggTrade" else {"t": i, "X": x})
    return json.dumps({"stream": f"{sym}@{kind}", "data": d}, separators=(",", ":")).encode()


def frames(kind: str) -> tuple[list[bytes], list[bytes]]:
    """(frames, frames during a planned reconnect's overlap)"""
    out = [
        trade(kind, "btcusdt", 100), trade(kind, "btcusdt", 101, True), trade(kind, "ethusdt", 7),
        trade(kind, "btcusdt", 101),  # a repeat: dropped, counted, one event, kept raw
        b'{"stream":"btcusdt@%s","data":{"e":"x","a":' % kind.encode(),  # malformed: counted, an event, kept raw
        b'{"result":null,"id":1}',  # a control answer: counted under "_", kept raw
        trade(kind, "btcusdt", 99),  # older than the last: a duplicate too
        trade(kind, "btcusdt", 102), trade(kind, "ethusdt", 8, True),
    ]
    if kind == "trade":  # no market trade: kept raw, no trade row (as Tardis)
        out.append(trade(kind, "ethusdt", 9, x="INSURANCE_FUND"))
    return out, [trade(kind, "btcusdt", 104), trade(kind, "btcusdt", 103), trade(kind, "btcusdt", 104)]


def _state(r) -> dict:
    f = r.feed
    f.flush_stats()
    trades = r.records("trades")
    return {
        "trades": [(int(t["symbol"]), bytes(t["id"]), float(t["price"]), float(t["amount"]), int(t["side"]),
                    int(t["exchange_ts"])) for t in trades],
        "trade_ts": [int(t["local_ts"]) for t in trades],
        "raw": [(c, s, conn, p) for _, c, s, conn, p in r.raw()],
        "raw_ts": [ts for ts, *_ in r.raw()],
        "events": r.events(),
        "counters": {name: [f.stat(name, i) for i in range(len(r.spec.symbols))]
                     for name in ("messages", "bytes", "duplicates", "malformed")},
        "channels": list(f.cc),
    }


@pytest.mark.parametrize("kind", ["aggTrade", "trade"])
@pytest.mark.parametrize("compiled", [True, False], ids=["c-writer", "python-writer"])
def test_trade_connection_handler_leaves_what_the_general_path_leaves(rig, compiled: bool, kind: str) -> None:
    FRAMES, ROLLING = frames(kind)
    kw = dict(symbols=["BTCUSDT", "ETHUSDT"], channels=["trades"], trade_stream=kind)
    fast = rig("binance-futures", **kw)
    slow = rig("binance-futures", **kw)
    if not compiled:
        fast.feed.out._trade_frame_writer = None  # the Python closure (TICKTAPE_PURE_PYTHON's path)
        fast.listener._on_frame = fast.feed.frame_handler(fast.listener.plan)
    tag = AGG if kind == "aggTrade" else TRADE
    assert fast.listener.plan.tag == tag and fast.listener._on_frame != fast.feed.on_frame  # the handler runs

    arrivals = []
    for i, f in enumerate(FRAMES + ROLLING):
        fast.listener.link.rolling = slow.listener.link.rolling = i >= len(FRAMES)
        if i == len(FRAMES):
            fast.feed.overlap_started(fast.listener.link)
            slow.feed.overlap_started(slow.listener.link)
        t0 = time.time_ns()
        fast.listener.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, f, True, False))
        arrivals.append((t0, time.time_ns()))
        slow.frame(f, 1_000 + i)
    a, b = _state(fast), _state(slow)

    assert [bytes(t[1]) for t in a["trades"]] == [b"100", b"101", b"7", b"102", b"8", b"104", b"103"]
    for key in ("trades", "raw", "events", "counters", "channels"):
        assert a[key] == b[key], key
    assert a["counters"]["duplicates"][1] == 2 + 1 and a["counters"]["malformed"] == [0, 1, 0]
    assert sorted(k for k, _, _ in a["events"]) == ["duplicate", "malformed"]
    # local_ts: each frame's own arrival (taken once, before decoding), on its trade and raw rows
    kept = [i for i, f in enumerate(FRAMES + ROLLING) if i != len(FRAMES) + 2]  # the overlap's repeat is not kept raw
    assert len(a["raw_ts"]) == len(kept)
    for ts, i in zip(a["raw_ts"], kept, strict=True):
        assert arrivals[i][0] <= ts <= arrivals[i][1]
    traded = [0, 1, 2, 7, 8, len(FRAMES), len(FRAMES) + 1]
    for ts, i in zip(a["trade_ts"], traded, strict=True):
        assert arrivals[i][0] <= ts <= arrivals[i][1]
