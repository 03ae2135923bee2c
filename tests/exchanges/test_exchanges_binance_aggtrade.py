"""A connection of aggTrade streams has its own frame handler (the busiest path: one small
frame per trade). Fed through the picows listener, it must leave exactly what the general
path (``Feed.frame``) leaves for the same frames: trades, raw rows, every counter, the
duplicate and malformed events, with each frame's ``local_ts`` its arrival time."""

from __future__ import annotations

import json
import time

import pytest
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from ticktape.exchanges.binance_futures import AGG


def agg(stream: str, a: int, m: bool = False) -> bytes:
    return json.dumps({"stream": stream, "data": {"e": "aggTrade", "E": a, "a": a, "s": stream.split("@")[0].upper(),
                                                  "p": f"{100 + a * 0.5}", "q": "0.25", "f": a, "l": a, "T": 1_700_000_000_000 + a,
                                                  "m": m}}, separators=(",", ":")).encode()


FRAMES = [
    agg("btcusdt@aggTrade", 100), agg("btcusdt@aggTrade", 101, True), agg("ethusdt@aggTrade", 7),
    agg("btcusdt@aggTrade", 101),  # a repeat: dropped, counted, one event, kept raw
    b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","a":', # malformed: counted, an event, kept raw
    b'{"result":null,"id":1}',  # a control answer: counted under "_", kept raw
    agg("btcusdt@aggTrade", 99),  # older than the last: a duplicate too
    agg("btcusdt@aggTrade", 102), agg("ethusdt@aggTrade", 8, True),
]
ROLLING = [agg("btcusdt@aggTrade", 104), agg("btcusdt@aggTrade", 103), agg("btcusdt@aggTrade", 104)]  # overlap


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


@pytest.mark.parametrize("compiled", [True, False], ids=["c-writer", "python-writer"])
def test_aggtrade_connection_handler_leaves_what_the_general_path_leaves(rig, compiled: bool) -> None:
    kw = dict(symbols=["BTCUSDT", "ETHUSDT"], channels=["trades"], trade_stream="aggTrade")
    fast = rig("binance-futures", **kw)
    slow = rig("binance-futures", **kw)
    if not compiled:
        fast.feed.out._trade_frame_writer = None  # the Python closure (TICKTAPE_PURE_PYTHON's path)
        fast.listener._on_frame = fast.feed.frame_handler(fast.listener.plan)
    assert fast.listener.plan.tag == AGG and fast.listener._on_frame != fast.feed.on_frame  # the handler runs

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
    traded = [0, 1, 2, 7, 8, 9, 10]
    for ts, i in zip(a["trade_ts"], traded, strict=True):
        assert arrivals[i][0] <= ts <= arrivals[i][1]
