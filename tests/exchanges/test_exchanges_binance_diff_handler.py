"""A connection of depth diff streams has its own frame handler (a synced book's next diff is
parsed straight into ring records). Fed through the picows listener, it must leave exactly
what the general path (``Feed.frame``) leaves for the same frames: book rows, raw rows, every
counter, and the gap, resync, duplicate and malformed events, through a sync from a snapshot,
a chain break, a duplicate, level text that is not levels, another stream, a control answer
and a planned reconnect's overlap; with each frame's ``local_ts`` its arrival time."""

from __future__ import annotations

import json
import time

import pytest
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from ticktape.exchanges.binance_futures import DIFF


def diff(sym: str, first: int, last: int, prev: int, k: int = 0, levels: str | None = None) -> bytes:
    """A futures ``depthUpdate`` of ``sym`` covering update ids ``first..last`` after ``prev``."""
    b = [[f"{100 - k - i * 0.5:.1f}", f"{1 + (k + i) % 7}.5"] for i in range(3)]
    a = [[f"{101 + k + i * 0.5:.1f}", "0" if i == 1 else f"{2 + i}.25"] for i in range(2)]
    body = json.dumps({"e": "depthUpdate", "E": 1_700_000_000_000 + last, "T": 1_700_000_000_000 + last,
                       "s": sym.upper(), "U": first, "u": last, "pu": prev, "b": b, "a": a}, separators=(",", ":"))
    if levels is not None:
        body = body.replace(json.dumps(b, separators=(",", ":")), levels, 1)
    return b'{"stream":"%s@depth@100ms","data":%s}' % (sym.encode(), body.encode())


def snap(last: int) -> bytes:
    """A REST depth snapshot at ``lastUpdateId`` ``last``."""
    return json.dumps({"lastUpdateId": last, "E": 1, "T": 1, "bids": [["99.0", "5"]], "asks": [["101.0", "6"]]}).encode()


#: frames, and REST snapshots (``("snapshot", body)``) answered between them
STEPS: list[bytes | tuple[str, bytes]] = [
    diff("btcusdt", 1001, 1005, 1000),  # buffered: no snapshot yet
    diff("btcusdt", 1006, 1008, 1005, 1),  # buffered
    ("snapshot", snap(1003)),  # bridges the buffer: the book syncs
    diff("btcusdt", 1009, 1012, 1008, 2),  # the synced book's next diff: the handler's own path
    diff("btcusdt", 1013, 1015, 1012, 3),
    diff("btcusdt", 1010, 1011, 1009, 4),  # already applied: a duplicate, counted, an event
    diff("btcusdt", 1020, 1021, 1019, 5),  # a chain break: a gap, a resync, buffered
    diff("btcusdt", 1022, 1023, 1021, 6),  # buffered
    ("snapshot", snap(1020)),  # bridges: synced at 1023
    diff("btcusdt", 1024, 1025, 1023, 7),  # the handler's own path again
    diff("btcusdt", 1026, 1027, 1025, 8, levels='[["1.0"]]'),  # not levels: malformed, kept raw, a resync
    b'{"stream":"xrpusdt@depth@100ms","data":{"e":"depthUpdate"}}',  # another stream
    b'{"result":null,"id":1}',  # a control answer: counted under "_", kept raw
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","U":',  # malformed JSON
    diff("ethusdt", 5, 6, 4),  # the other symbol, not synced: buffered
    diff("btcusdt", 1028, 1029, 1027, 9),  # buffered
    ("snapshot", snap(1028)),  # synced at 1029
]
#: during a planned reconnect's overlap: both connections deliver the same diffs
ROLLING = [diff("btcusdt", 1030, 1031, 1029, 10), diff("btcusdt", 1030, 1031, 1029, 10),
           diff("btcusdt", 1032, 1033, 1031, 11)]


def _state(r) -> dict:
    f = r.feed
    f.flush_stats()
    rows = r.records("book_change")
    return {
        "book": [(int(x["symbol"]), int(x["side"]), bool(x["is_snapshot"]), float(x["price"]), float(x["amount"]),
                  int(x["exchange_ts"])) for x in rows],
        "book_ts": [int(x["local_ts"]) for x in rows],
        "raw": [(c, s, conn, p) for _, c, s, conn, p in r.raw()],
        "raw_ts": [ts for ts, *_ in r.raw()],
        "events": r.events(),
        "counters": {name: [f.stat(name, i) for i in range(len(r.spec.symbols))]
                     for name in ("messages", "bytes", "duplicates", "malformed", "gaps", "resyncs")},
        "channels": list(f.cc),
        "last_u": [st.last_u for st in f.sync],
    }


@pytest.mark.parametrize("compiled", [True, False], ids=["c-packers", "python-packers"])
def test_diff_connection_handler_leaves_what_the_general_path_leaves(rig, compiled: bool) -> None:
    kw = dict(symbols=["BTCUSDT", "ETHUSDT"], channels=["book_change"], compiled=compiled)
    fast = rig("binance-futures", **kw)
    slow = rig("binance-futures", **kw)
    assert fast.listener.plan.tag == DIFF and fast.listener._on_frame != fast.feed.on_frame  # the handler runs
    btc = fast.spec.symbol_id("BTCUSDT")

    arrivals: list[tuple[int, int]] = []
    for i, step in enumerate(STEPS + ROLLING):
        if isinstance(step, tuple):  # a REST snapshot answered (both books)
            for r in (fast, slow):
                r.feed.on_snapshot(btc, 500 + i, step[1])
            continue
        fast.listener.link.rolling = slow.listener.link.rolling = i >= len(STEPS)
        if i == len(STEPS):
            fast.feed.overlap_started(fast.listener.link)
            slow.feed.overlap_started(slow.listener.link)
        t0 = time.time_ns()
        fast.listener.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, step, True, False))
        arrivals.append((t0, time.time_ns()))
        slow.frame(step, 1_000 + i)
    a, b = _state(fast), _state(slow)

    for key in ("book", "raw", "events", "counters", "channels", "last_u"):
        assert a[key] == b[key], key
    # what a user checks: the synced diffs are rows, the losses are marked, every frame is kept raw
    assert a["last_u"][btc] == 1033
    assert a["counters"]["duplicates"][btc] >= 1 and a["counters"]["malformed"][btc] == 2  # the level text, the cut JSON
    assert a["counters"]["gaps"][btc] == 1 and a["counters"]["resyncs"][btc] == 2
    kinds = sorted({k for k, _, _ in a["events"]})
    assert {"gap", "resync", "duplicate", "malformed"} <= set(kinds), kinds
    assert any(not is_snap for _, _, is_snap, *_ in a["book"])
    # every frame kept raw (the overlap's repeat may be left out), and the 3 snapshots; local_ts is a
    # frame's arrival (taken once, before decoding) on its raw and book rows, a snapshot's its answer's
    frame_ts = [ts for ts in a["raw_ts"] if ts >= 1_000]
    assert len(a["raw_ts"]) - len(frame_ts) == 3
    assert len(arrivals) - 1 <= len(frame_ts) <= len(arrivals)
    lo, hi = min(t for t, _ in arrivals), max(t for _, t in arrivals)
    assert all(lo <= ts <= hi for ts in frame_ts)
    assert all(lo <= ts <= hi or ts < 1_000 for ts in a["book_ts"])
