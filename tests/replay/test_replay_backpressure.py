"""A slow client does not make the server buffer the stream; clients that leave mid-stream free everything."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse

import aiohttp
import pytest
from replay_helpers import BIG_END, BIG_ROWS, BIG_START, ServerProc

BIG = {"exchange": "binance-futures", "from": BIG_START, "to": BIG_END,
       "filters": [{"channel": "aggTrade", "symbols": ["BIGUSDT"]}, {"channel": "depth", "symbols": ["BIGUSDT"]}]}


async def read_all(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return sum([d.count(b"\n") async for d in r.content.iter_any()])


def wait_idle(server: ServerProc, timeout: float = 60.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        st = server.status()
        if st["active_streams"] == 0 or time.monotonic() > deadline:
            return st
        time.sleep(0.1)


def _tcp_max(name: str) -> int:
    """The kernel's largest socket buffer of that kind (bytes): ``net.ipv4.<name>``'s third value."""
    try:
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            return int(f.read().split()[2])
    except (OSError, IndexError, ValueError):
        return 6 << 20  # Linux's default tcp_rmem max


@pytest.mark.slow
def test_slow_client_bounded_server_memory(server: ServerProc) -> None:
    url = server.url("replay", BIG)
    asyncio.run(read_all(url))  # warm-up: first use of the readers and allocator arenas
    base = wait_idle(server)

    async def run() -> tuple[int, int, int, int]:
        total = 0
        peak = 0
        sent = 0
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            assert r.status == 200
            first = await r.content.read(1 << 20)
            total += first.count(b"\n")
            # stall: the server must stop producing, not queue the rest of the ~75 MB stream
            for _ in range(15):
                await asyncio.sleep(0.2)
                st = await asyncio.to_thread(server.status)
                peak = max(peak, st["rss_kb"])
                sent = max([sent, *(x["sent_bytes"] for x in st["streams"])])
            stream_bytes = len(first)
            async for data in r.content.iter_any():
                total += data.count(b"\n")
                stream_bytes += len(data)
        return total, peak, stream_bytes, sent

    total, peak, stream_bytes, sent = asyncio.run(run())
    assert total == BIG_ROWS  # nothing lost while the client was stalled
    assert stream_bytes > 60_000_000
    grew_mb = (peak - base["rss_kb"]) / 1024
    # what the server handed to the socket while stalled: the 1 MB read + what the kernel may buffer on the
    # loopback (the receiver's autotuned buffer up to tcp_rmem's max, 32 MB on some kernels, + the sender's)
    # + one chunk; the stream must be larger than that for the check to mean anything
    allowed = (1 << 20) + _tcp_max("tcp_rmem") + _tcp_max("tcp_wmem") + (4 << 20)
    assert allowed < stream_bytes, f"a {stream_bytes >> 20} MB stream cannot show a stop within {allowed >> 20} MB"
    assert sent < allowed, f"server wrote {sent >> 20} MB of a {stream_bytes >> 20} MB stream to a stalled client"
    assert grew_mb < 40, f"server grew {grew_mb:.0f} MB while the client stalled on a {stream_bytes >> 20} MB stream"


@pytest.mark.slow
def test_disconnecting_clients_free_resources(server: ServerProc) -> None:
    base = wait_idle(server)
    url = server.url("replay", BIG)

    async def leave_early() -> None:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            assert r.status == 200
            await r.content.read(200_000)
        # the session closes the connection with most of the stream unsent

    for _ in range(6):
        asyncio.run(leave_early())
    after = wait_idle(server)
    assert after["active_streams"] == 0
    assert after["tasks"] <= base["tasks"] + 1  # the /status handler's own task at most
    assert (after["rss_kb"] - base["rss_kb"]) / 1024 < 60
    # and the server still serves a full stream afterwards
    assert asyncio.run(read_all(url)) == BIG_ROWS


@pytest.mark.slow
def test_ws_client_leaving_mid_replay_frees_the_session(server: ServerProc) -> None:
    base = wait_idle(server)
    q = urllib.parse.urlencode({"exchange": "binance-futures", "from": BIG_START, "to": BIG_END, "session": "gone"})

    async def run() -> int:
        n = 0
        async with aiohttp.ClientSession() as s, s.ws_connect(f"ws://127.0.0.1:{server.port + 1}/ws-replay?{q}") as ws:
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["bigusdt@aggTrade"], "id": 1}))
            async for _ in ws:
                n += 1
                if n == 2000:
                    break
        return n

    assert asyncio.run(run()) == 2000
    deadline = time.monotonic() + 60
    while True:
        st = server.status()
        if st["tasks"] <= base["tasks"] + 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert st["ws_sessions"] == 0
    assert st["tasks"] <= base["tasks"] + 1
