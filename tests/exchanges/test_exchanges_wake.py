"""A quiet feed arms the writer's wake-up (``ipc.wake``): every connection's next data frame,
on the hot path or the fragmented one, first disarms the feed and wakes the writer, then is
handled exactly as unarmed (same rows); a connection opened while armed is armed too."""

from __future__ import annotations

import json

from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from ticktape.exchanges.connection import Listener
from ticktape.ipc.wake import WakeListener, Waker


def agg(i: int) -> bytes:
    d = {"e": "aggTrade", "E": i, "s": "BTCUSDT", "p": "100.5", "q": "0.25", "T": 1_700_000_000_000 + i, "m": False,
         "a": i, "f": i, "l": i}
    return json.dumps({"stream": "btcusdt@aggTrade", "data": d}, separators=(",", ":")).encode()


def test_the_first_frame_after_quiet_wakes_the_writer_then_frames_go_straight_on(rig) -> None:
    r = rig("binance-futures", symbols=["BTCUSDT"], channels=["trades"], trade_stream="aggTrade")
    feed, lst = r.feed, r.listener
    feed.links = [lst.link]
    lst.link.current = lst
    feed.waker = Waker(feed.spec)
    writer = WakeListener([feed.spec])
    try:
        plain = lst._on_frame
        feed.arm_wake()
        assert feed.wake_armed and r.rings["events"].wake_armed  # the word the writer reads
        assert lst._on_frame != plain
        spare = Listener(lst.link, 2)  # a connection opened while armed is armed from its start
        assert spare._on_frame == spare._first_after_quiet

        lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, agg(1), True, False))
        assert not feed.wake_armed and not r.rings["events"].wake_armed
        assert lst._on_frame == plain  # the busy path pays nothing
        assert writer.wait(10.0) is True  # the datagram came
        lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, agg(2), True, False))
        assert writer.wait(0.0) is False  # one wake per quiet spell

        feed.arm_wake()  # a fragmented frame (the slow path) wakes it too
        half = agg(3)
        lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, half[:40], False, False))
        assert not feed.wake_armed and writer.wait(10.0) is True
        lst.on_ws_frame(None, _make_test_ws_frame(WSMsgType.CONTINUATION, half[40:], True, False))

        ids = [bytes(t["id"]) for t in r.records("trades")]
        assert ids == [b"1", b"2", b"3"]  # every frame handled as unarmed
    finally:
        writer.close()
        feed.waker.close()
