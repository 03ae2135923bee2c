"""/replay against real recorded binance-futures and bybit frames: the seed's client, ordering, filters, markers."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import aiohttp
import pytest
from replay_helpers import MARK_A, MARK_B, ServerProc, archived, get_lines, tardis_ts

START, END = "2021-07-22T22:00:00Z", "2021-07-22T23:00:00Z"


def run_seed_client(port: int, replay_options: dict[str, Any]) -> list[tuple[str, Any]]:
    """The seed's client code, unchanged but for the port (the seed assumes localhost:8000)."""
    out: list[tuple[str, Any]] = []

    async def replay_via_tardis_machine_machine(replay_options):  # type: ignore[no-untyped-def]
        timeout = aiohttp.ClientTimeout(total=0)

        async with aiohttp.ClientSession(timeout=timeout) as session:
            # url encode as json object options
            encoded_options = urllib.parse.quote_plus(json.dumps(replay_options))

            # assumes tardis-machine HTTP API running on localhost:8000
            url = f"http://localhost:{port}/replay?options={encoded_options}"

            async with session.get(url) as response:
                # otherwise we may get line to long errors
                response.content._high_water = 100_000_000

                # returned data is in NDJSON format http://ndjson.org/
                # each line is separate message JSON encoded
                async for line in response.content:
                    yield line

    async def run() -> None:
        lines = replay_via_tardis_machine_machine(replay_options)

        async for line in lines:
            message = json.loads(line)
            # localTimestamp string marks timestamp when message was received
            # message is a message dict as provided by exchange real-time stream
            out.append((message["localTimestamp"], message["message"]))

    asyncio.run(run())
    return out


def test_seed_client_gets_every_message_in_order(server: ServerProc) -> None:
    got = run_seed_client(server.port, {
        "exchange": "binance-futures", "from": START, "to": END,
        "filters": [{"channel": "aggTrade"}, {"channel": "depth"}, {"channel": "bookTicker"}, {"channel": "kline_1m"}],
    })
    want = archived(server.root, "binance-futures", None, None)
    assert len(want) > 1000
    assert [ts for ts, _ in got] == [tardis_ts(ts) for ts, _ in want]
    assert [m for _, m in got] == [json.loads(p) for _, p in want]


def test_frames_are_byte_exact_and_filtered(server: ServerProc) -> None:
    opts = {"exchange": "binance-futures", "from": START, "to": END,
            "filters": [{"channel": "depth", "symbols": ["sushiusdt", "CTKUSDT"]}]}
    lines = get_lines(server.url("replay", opts))
    want = archived(server.root, "binance-futures", {"depth"}, {"SUSHIUSDT", "CTKUSDT"})
    assert len(want) > 100
    assert lines == [b'{"localTimestamp":"' + tardis_ts(ts).encode() + b'","message":' + p + b"}\n" for ts, p in want]


def test_time_window_cuts_inside_the_hour(server: ServerProc) -> None:
    frm, to = "2021-07-22T22:25:50Z", "2021-07-22T22:26:00Z"
    lines = get_lines(server.url("replay", {"exchange": "binance-futures", "from": frm, "to": to,
                                            "filters": [{"channel": "aggTrade"}]}))
    lo, hi = 1_626_992_750_000_000_000, 1_626_992_760_000_000_000
    want = [x for x in archived(server.root, "binance-futures", {"aggTrade"}, None) if lo <= x[0] < hi]
    assert 0 < len(lines) == len(want)
    assert [json.loads(line)["localTimestamp"] for line in lines] == [tardis_ts(ts) for ts, _ in want]


def test_disconnect_markers_are_empty_lines(server: ServerProc) -> None:
    base = {"exchange": "binance-futures", "from": START, "to": END,
            "filters": [{"channel": "depth"}, {"channel": "aggTrade"}]}
    plain = get_lines(server.url("replay", base))
    assert b"\n" not in plain
    marked = get_lines(server.url("replay", {**base, "withDisconnects": True}))
    empties = [i for i, line in enumerate(marked) if line == b"\n"]
    # MARK_A is on two streams of one connection at one instant: one line; MARK_B is connection-level
    assert len(empties) == 2
    assert [line for line in marked if line != b"\n"] == plain
    for i, mark in zip(empties, (MARK_A, MARK_B), strict=True):
        before = json.loads(marked[i - 1])["localTimestamp"]
        after = json.loads(marked[i + 1])["localTimestamp"]
        assert before <= tardis_ts(mark) <= after


def test_bybit_real_frames(server: ServerProc) -> None:
    opts = {"exchange": "bybit", "from": "2025-06-13T16:00:00Z", "to": "2025-06-13T18:00:00Z"}
    lines = get_lines(server.url("replay", opts))
    want = archived(server.root, "bybit", None, None, 1_749_830_400_000_000_000, 1_749_837_600_000_000_000)
    assert len(lines) == len(want) > 50
    assert [json.loads(line)["message"] for line in lines] == [json.loads(p) for _, p in want]


def test_exchanges_lists_ids_channels_symbols(server: ServerProc) -> None:
    async def get() -> Any:
        async with aiohttp.ClientSession() as s, s.get(f"{server.base}/exchanges") as r:
            assert r.status == 200
            return await r.json()

    ex = {e["id"]: e for e in asyncio.run(get())}
    assert set(ex) == {"binance-futures", "bybit", "hyperliquid"}
    assert ex["hyperliquid"]["archiveTypes"] == {"book_snapshot_20": ["BTC"]}
    assert "quote" in ex["hyperliquid"]["dataTypes"]
    assert {"aggTrade", "depth", "bookTicker"} <= set(ex["binance-futures"]["channels"])
    assert "orderbook.1" in ex["bybit"]["channels"]
    syms = {s["id"]: s for s in ex["binance-futures"]["symbols"]}
    assert {"SUSHIUSDT", "AKROUSDT", "BTCUSDT"} <= set(syms)
    assert syms["SUSHIUSDT"]["availableSince"] == "2021-07-22T22:00:00.000Z"
    assert "book_snapshot_{levels}_{interval}{ms|s|m}" in ex["binance-futures"]["dataTypes"]


@pytest.mark.parametrize("channel", ["aggTrade", "depth"])
def test_replay_over_synthetic_hours_is_ordered_across_files(server: ServerProc, channel: str) -> None:
    lines = get_lines(server.url("replay", {"exchange": "binance-futures", "from": "2025-01-06T18:00:00Z",
                                            "to": "2025-01-06T20:00:00Z", "filters": [{"channel": channel}]}))
    stamps = [json.loads(line)["localTimestamp"] for line in lines]
    assert stamps == sorted(stamps)
    lo, hi = 1_736_186_400_000_000_000, 1_736_193_600_000_000_000
    assert len(stamps) == len(archived(server.root, "binance-futures", {channel}, {"BTCUSDT", "ETHUSDT"}, lo, hi))


def test_unreadable_file_fails_the_stream_loudly(server: ServerProc) -> None:
    """A corrupt hour is never skipped silently: the response ends without its terminating chunk."""
    url = server.url("replay", {"exchange": "binance-futures", "from": "2021-07-22T20:00:00Z",
                                "to": "2021-07-22T21:00:00Z", "filters": [{"channel": "aggTrade",
                                                                           "symbols": ["CORRUPTUSDT"]}]})

    async def run() -> None:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            assert r.status == 200
            await r.read()

    with pytest.raises(aiohttp.ClientPayloadError):
        asyncio.run(run())
