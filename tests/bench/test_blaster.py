"""The blaster's REST depth snapshot is at its stream position: a connector that resyncs
mid-blast re-bridges with the diffs still to come, as on the venue."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec

from ticktape.bench.blaster import Blaster, frame_bytes, frame_ends
from ticktape.bench.feed import START_U, binance_snapshot, diff_frames, diff_ids


def test_snapshot_bridges_with_the_next_diff() -> None:
    frames = diff_frames(300, 3, 3)
    ids = diff_ids(len(frames))
    first, rest = frames[:100], frames[100:]

    async def client(bl: Blaster) -> tuple[int, int, int]:
        async with aiohttp.ClientSession() as s:
            depth = f"http://127.0.0.1:{bl.port}/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
            before = msgspec.json.decode(await (await s.get(depth)).read())["lastUpdateId"]
            async with s.ws_connect(bl.url + "/stream?streams=btcusdt@depth@100ms") as ws:
                conn = await asyncio.to_thread(bl.wait_subscribed)
                await asyncio.to_thread(bl.blast, conn, frame_bytes(first), 60.0, (frame_ends(first), ids[:100]))
                for _ in range(100):
                    await ws.receive(timeout=30)
                mid = msgspec.json.decode(await (await s.get(depth)).read())["lastUpdateId"]
                await asyncio.to_thread(bl.blast, conn, frame_bytes(rest), 60.0, (frame_ends(rest), ids[100:]))
                nxt = msgspec.json.decode((await ws.receive(timeout=30)).data)["data"]
                return before, mid, nxt["U"]

    with Blaster(binance_snapshot(), START_U) as bl:
        before, mid, next_u = asyncio.run(client(bl))
    assert before == START_U  # before any diff: the first diff bridges (U <= id + 1 <= u)
    assert mid == ids[99]  # after 100 diffs: the id of the last one sent
    assert next_u == mid + 1  # the next diff sent bridges from it
    assert bl.snapshot_ids == [before, mid]
