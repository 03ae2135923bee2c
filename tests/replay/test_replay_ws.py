"""/ws-replay with exchange subscribe messages (on the HTTP port and port + 1), sessions, /ws-replay-normalized."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from replay_helpers import SYNTH_END, SYNTH_START, ServerProc, archived, get_lines, serve

START, END = "2021-07-22T22:00:00Z", "2021-07-22T23:00:00Z"


async def ws_collect(url: str, subscribe: list[dict[str, Any]], idle: float = 1.5) -> tuple[list[str], float]:
    """Frames received until the server closes; and when the first one arrived (monotonic)."""
    got: list[str] = []
    first = 0.0
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        for m in subscribe:
            await ws.send_str(json.dumps(m))
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if not got:
                first = time.monotonic()
            got.append(msg.data)
    return got, first


def ws_url(server: ServerProc, port_offset: int, **q: str) -> str:
    return f"ws://127.0.0.1:{server.port + port_offset}/ws-replay?{urllib.parse.urlencode(q)}"


@pytest.mark.parametrize("port_offset", [0, 1])
def test_binance_subscribe_gets_matching_frames(server: ServerProc, port_offset: int) -> None:
    url = ws_url(server, port_offset, exchange="binance-futures", **{"from": START, "to": END})
    sub = {"method": "SUBSCRIBE", "params": ["sushiusdt@aggTrade", "ctkusdt@depth@100ms"], "id": 1}
    got, _ = asyncio.run(ws_collect(url, [sub]))
    want = [p for ts, p in archived(server.root, "binance-futures", {"aggTrade"}, {"SUSHIUSDT"})]
    want_depth = archived(server.root, "binance-futures", {"depth"}, {"CTKUSDT"})
    both = sorted(archived(server.root, "binance-futures", {"aggTrade"}, {"SUSHIUSDT"}) + want_depth,
                  key=lambda x: x[0])
    assert len(want) > 10 and len(want_depth) > 10
    assert [g.encode() for g in got] == [p for _, p in both]


def test_bybit_subscribe(server: ServerProc) -> None:
    url = ws_url(server, 1, exchange="bybit", **{"from": "2025-06-13T16:00:00Z", "to": "2025-06-13T18:00:00Z"})
    got, _ = asyncio.run(ws_collect(url, [{"op": "subscribe", "args": ["orderbook.1.BANDUSDT"]}]))
    want = archived(server.root, "bybit", {"orderbook.1"}, {"BANDUSDT"}, 1_749_830_400_000_000_000,
                    1_749_837_600_000_000_000)
    assert len(want) > 5
    assert [g.encode() for g in got] == [p for _, p in want]


@pytest.fixture(scope="module")
def session_server(server: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """The same archive behind a subscribe window of SESSION_WINDOW s: room for a second client to join
    on a loaded machine, and a wide gap between two sessions' starts had it not joined."""
    with serve(server.root, tmp_path_factory.mktemp("ws-session"), "--max-range-hours", "48",
               "--ws-subscribe-window", str(SESSION_WINDOW), "--batch-rows", "4096") as srv:
        yield srv


SESSION_WINDOW = 6.0
JOIN_AFTER = 2.0  # the second client joins this long after the first: well inside the window


def test_session_synchronizes_clients(session_server: ServerProc) -> None:
    """Two clients with one session key: each gets its own frames, and the replay starts for both together."""
    server = session_server
    q = {"exchange": "binance-futures", "from": START, "to": END, "session": "s1"}

    async def run() -> tuple[Any, Any, float]:
        a = asyncio.create_task(ws_collect(ws_url(server, 0, **q), [
            {"method": "SUBSCRIBE", "params": ["sushiusdt@aggTrade"], "id": 1}]))
        await asyncio.sleep(JOIN_AFTER)
        joined = time.monotonic()
        b = asyncio.create_task(ws_collect(ws_url(server, 1, **q), [
            {"method": "SUBSCRIBE", "params": ["akrousdt@aggTrade"], "id": 1}]))
        return await a, await b, joined

    (ga, fa), (gb, fb), joined = asyncio.run(run())
    assert [g.encode() for g in ga] == [p for _, p in archived(server.root, "binance-futures", {"aggTrade"}, {"SUSHIUSDT"})]
    assert [g.encode() for g in gb] == [p for _, p in archived(server.root, "binance-futures", {"aggTrade"}, {"AKROUSDT"})]
    # the first client's frames did not start before the second client had joined and subscribed
    assert fa > joined
    # one merged clock: both streams ran in one replay, so the first frames came close together (two
    # sessions would have started JOIN_AFTER apart, each at the end of its own client's window)
    assert abs(fa - fb) < JOIN_AFTER / 2


def test_ws_replay_rejects_bad_query(server: ServerProc) -> None:
    async def run() -> int:
        async with aiohttp.ClientSession() as s:
            try:
                async with s.ws_connect(ws_url(server, 1, exchange="nope", **{"from": START, "to": END})):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    assert asyncio.run(run()) == 400


def test_ws_replay_normalized_equals_http(server: ServerProc) -> None:
    options = {"exchange": "binance-futures", "symbols": ["BTCUSDT"], "from": SYNTH_START, "to": SYNTH_END,
               "dataTypes": ["trade", "book_snapshot_3_1s"]}
    http = [json.loads(line) for line in get_lines(server.url("replay-normalized", options))]
    url = f"ws://127.0.0.1:{server.port + 1}/ws-replay-normalized?options={urllib.parse.quote_plus(json.dumps(options))}"
    got, _ = asyncio.run(ws_collect(url, []))
    assert [json.loads(g) for g in got] == http
    assert len(http) > 1000


def test_ws_unknown_and_hostile_symbols_are_refused(server: ServerProc) -> None:
    url = ws_url(server, 1, exchange="binance-futures", **{"from": START, "to": END})
    sub = {"method": "SUBSCRIBE", "params": ["sushiusdt@aggTrade", "../../etc@aggTrade", "nopeusdt@aggTrade"], "id": 1}
    got, _ = asyncio.run(ws_collect(url, [sub]))
    errors = [json.loads(g) for g in got if g.startswith('{"error"')]
    frames = [g.encode() for g in got if not g.startswith('{"error"')]
    assert len(errors) == 1 and "NOPEUSDT" in errors[0]["error"] and "../../ETC" in errors[0]["error"]
    assert frames == [p for _, p in archived(server.root, "binance-futures", {"aggTrade"}, {"SUSHIUSDT"})]
