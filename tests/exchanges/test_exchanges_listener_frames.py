"""What the picows listener hands its feed: every whole data frame once (with one arrival time),
fragmented messages joined, control frames (pongs) never; longer frames are taken as data
without reading their type (control frames carry at most 125 bytes)."""

from __future__ import annotations

from typing import Any

from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from ticktape.exchanges.connection import Link, Listener, Plan, Timing


class Recorder:
    exchange = "test"
    wake_armed = False  # ipc.wake: never armed here

    def __init__(self) -> None:
        self.got: list[tuple[str, int, bytes]] = []

    def frame_handler(self, plan: Plan) -> Any:
        return lambda lst, ts, payload: self.got.append(("fast", ts, bytes(payload)))

    def frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        self.got.append(("frame", ts, bytes(payload)))

    def on_frame(self, lst: Listener, ts: int, payload: memoryview) -> None:  # pragma: no cover - not called
        raise AssertionError

    def malformed(self, *a: Any) -> None:  # pragma: no cover - not called
        raise AssertionError


def test_listener_delivers_data_frames_joins_fragments_and_skips_control_frames() -> None:
    feed = Recorder()
    lst = Listener(Link(feed, Plan(url="ws://x"), Timing()), 1)  # type: ignore[arg-type]
    big = b'{"stream":"btcusdt@aggTrade","data":' + b"1" * 150 + b"}"
    small = b'{"result":null,"id":1}'

    def send(mt: WSMsgType, payload: bytes, fin: bool = True) -> None:
        lst.on_ws_frame(None, _make_test_ws_frame(mt, payload, fin, False))  # type: ignore[arg-type]

    send(WSMsgType.TEXT, big)
    send(WSMsgType.TEXT, small)
    send(WSMsgType.PONG, b"")
    send(WSMsgType.PONG, b"p" * 100)
    send(WSMsgType.BINARY, small)
    send(WSMsgType.TEXT, big[:100], fin=False)  # a fragmented message, a pong in between
    send(WSMsgType.PONG, b"")
    send(WSMsgType.CONTINUATION, big[100:130], fin=False)
    send(WSMsgType.CONTINUATION, big[130:])
    send(WSMsgType.TEXT, big[:10], fin=False)
    send(WSMsgType.TEXT, small)  # whole, while a fragmented one is open (a server's protocol error): kept
    send(WSMsgType.TEXT, big)

    assert [p for _, _, p in feed.got] == [big, small, small, big, small, big]
    assert [k for k, _, _ in feed.got][:3] == ["fast"] * 3  # whole frames take the connection's handler
    assert lst.frames == 6
    stamps = [ts for _, ts, _ in feed.got]
    assert stamps == sorted(stamps) and all(ts > 0 for ts in stamps)
