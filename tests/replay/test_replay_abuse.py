"""Abusive clients: the server does no work for clients already gone, caps streams and memory per stream,
bounds options' size and depth on every route, and gives every byte, fd and task back afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from replay_helpers import BIG_END, BIG_START, ServerProc
from replay_proc import replay_server

REPO = Path(__file__).resolve().parents[2]
ROUTES = ("replay", "replay-normalized", "exchanges", "status", "ws-replay", "ws-replay-normalized",
          "v1/data-feeds/binance-futures", "v1/exchanges/binance-futures")
BIG = {"exchange": "binance-futures", "from": BIG_START, "to": BIG_END,
       "filters": [{"channel": "aggTrade", "symbols": ["BIGUSDT"]}, {"channel": "depth", "symbols": ["BIGUSDT"]}]}
TEN_MIN = {**BIG, "to": "2025-01-07T00:10:00Z"}


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("route", ROUTES)
def test_deeply_nested_options_are_a_400_on_every_route(server: ServerProc, route: str) -> None:
    for text in (nested(15_000), "[" * 40_000 + "]" * 40_000, nested(9)):  # the first two: RecursionError before
        status, body = get(f"{server.base}/{route}?options={urllib.parse.quote(text, safe='[]{}:,')}")
        assert status == 400, (route, status, body)
        assert body["code"] == 400 and "nests" in body["message"] and "at most 8" in body["message"], body


@pytest.mark.parametrize("route", ROUTES)
def test_oversized_options_are_a_400_on_every_route(server: ServerProc, route: str) -> None:
    big = json.dumps({**TEN_MIN, "pad": "x" * 150_000})
    status, body = get(f"{server.base}/{route}?options={urllib.parse.quote(big)}")
    assert status == 400, (route, status, body)
    assert "at most 100000" in body["message"], body


def test_options_within_limits_still_work(server: ServerProc) -> None:
    opts = {**TEN_MIN, "filters": [{"channel": "aggTrade", "symbols": ["BIGUSDT"]}], "deep": [[[[["ok"]]]]]}
    status, body = get(server.url("replay", opts))
    assert status == 200 and body.count(b"\n") > 1000


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _read_all(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as r:
        assert r.status == 200, await r.text()
        return sum([d.count(b"\n") async for d in r.content.iter_any()])


def _abort_storm(port: int, path: str, n: int) -> None:
    """n clients send their request and reset the connection right away (SO_LINGER 0: an RST, no FIN)."""
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.sendall(req)
        socks.append(s)
    for s in socks:
        s.close()


def _settle(server: ServerProc, base: dict[str, Any], rss_mb: float, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until nothing is left running; returns the last measurements."""
    pid = server.proc.pid
    deadline = time.monotonic() + timeout
    while True:
        st = server.status()
        now = {"active": st["active_streams"], "tasks": st["tasks"], "fds": _fds(pid), "rss_kb": _rss_kb(pid)}
        ok = (now["active"] == 0 and now["tasks"] <= base["tasks"] and now["fds"] <= base["fds"]
              and now["rss_kb"] - base["rss_kb"] < rss_mb * 1024)
        if ok or time.monotonic() > deadline:
            return now
        time.sleep(0.25)


@pytest.mark.slow
def test_aborted_requests_then_concurrent_replays_leave_nothing_behind(server: ServerProc) -> None:
    pid = server.proc.pid
    full = server.url("replay", TEN_MIN)
    expected = [0]

    async def replays(n: int) -> list[int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            return list(await asyncio.gather(*(_read_all(s, full) for _ in range(n))))

    expected = asyncio.run(replays(2))  # warm-up: readers, pools and allocator arenas in place
    assert expected[0] == expected[1] > 40_000
    time.sleep(1.0)
    st = server.status()
    base = {"tasks": st["tasks"], "fds": _fds(pid), "rss_kb": _rss_kb(pid)}

    t0 = time.monotonic()
    _abort_storm(server.port, "/replay?options=" + urllib.parse.quote(json.dumps(BIG)), 200)
    after_storm = _settle(server, base, 100)
    storm_s = time.monotonic() - t0
    peak_storm = after_storm["rss_kb"]

    gone = server.status()["counts"].get("gone_before_start", 0)
    counts = asyncio.run(replays(50))
    assert counts == [expected[0]] * 50  # every concurrent replay complete
    end = _settle(server, base, 100)
    print(f"idle {base}, after 200 aborts {after_storm} ({storm_s:.1f} s, {gone} never started), "
          f"after 50 replays {end}")
    assert (peak_storm - base["rss_kb"]) / 1024 < 100, f"RSS after 200 aborted requests {after_storm} vs idle {base}"
    assert end["active"] == 0
    assert end["tasks"] <= base["tasks"], f"tasks left behind: {end} vs idle {base}"
    assert end["fds"] <= base["fds"], f"fds left behind: {end} vs idle {base}"
    assert (end["rss_kb"] - base["rss_kb"]) / 1024 < 100, f"RSS {end} vs idle {base}"


@pytest.fixture(scope="module")
def tight(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """A server that allows 2 streams of 1 MB each."""
    with replay_server(archive, tmp_path_factory.mktemp("tight-log") / "server.log", "--max-range-hours", "48",
                       "--max-streams", "2", "--max-stream-mb", "1") as srv:
        yield ServerProc(srv.port, srv.proc, archive)


@pytest.mark.slow
def test_stream_cap_is_a_429_with_a_reason(tight: ServerProc) -> None:
    opts = {**BIG, "filters": [{"channel": "aggTrade", "symbols": ["BIGUSDT"]}]}

    async def run() -> list[tuple[int, str]]:
        async with aiohttp.ClientSession() as s:
            held = [await s.get(tight.url("replay", opts)) for _ in range(2)]  # two streams, left unread
            try:
                for r in held:
                    assert r.status == 200
                async with s.get(tight.url("replay", opts)) as r3:
                    third = (r3.status, await r3.text(), r3.headers.get("Retry-After"))
            finally:
                for r in held:
                    r.close()
            return [third[:2], (0, third[2] or "")]

    (status, text), (_, retry) = asyncio.run(run())
    assert status == 429 and "already running 2 streams" in json.loads(text)["message"], text
    assert retry == "1"
    deadline = time.monotonic() + 20
    while tight.status()["active_streams"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get(tight.url("replay", TEN_MIN))[0] == 200  # slots come back when the holders leave


@pytest.mark.slow
def test_memory_per_stream_is_capped(tight: ServerProc) -> None:
    # 1 MB per stream: one series' batches shrink to fit (the stream is complete) ...
    status, body = get(tight.url("replay", TEN_MIN))
    assert status == 200 and body.count(b"\n") > 40_000
    # ... but the recording's four symbols (~1.1 KB per row together) cannot fit even at the smallest batch:
    # refused up front with the figures
    many = {"exchange": "binance-futures", "from": "2021-07-22T22:00:00Z", "to": "2021-07-22T23:00:00Z"}
    status, body = get(tight.url("replay", many))
    assert status == 503, body
    assert "per stream (--max-stream-mb)" in body["message"] and "fewer symbols" in body["message"], body
