"""Tardis's HTTP data API served from the archive: the official Python client (``tardis-dev`` from PyPI)
replays with its endpoint pointed at ticktape and gets every archived frame, at its time, with the
disconnects, through its own download, cache and slice parsing."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from replay_helpers import MARK_A, MARK_B, ServerProc, archived

tardis_dev = pytest.importorskip("tardis_dev")

FROM, TO = "2021-07-22T22:00:00.000Z", "2021-07-22T23:00:00.000Z"
LO, HI = 1_626_991_200_000_000_000, 1_626_994_800_000_000_000


def replay(server: ServerProc, cache: Path, filters: list[Any] | None) -> list[Any]:
    async def run() -> list[Any]:
        return [m async for m in tardis_dev.replay(
            exchange="binance-futures", from_date=FROM, to_date=TO, filters=filters, endpoint=f"{server.base}/v1",
            cache_dir=str(cache), with_disconnects=True, compression="gzip")]

    return asyncio.run(run())


def us(ns: int) -> datetime:
    return datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC).replace(tzinfo=None, microsecond=ns // 1000 % 1_000_000)


def test_python_client_replays_the_archive(server: ServerProc, tmp_path: Path) -> None:
    from tardis_dev import Channel

    got = replay(server, tmp_path, [Channel("depth", ["SUSHIUSDT"]), Channel("aggTrade", ["SUSHIUSDT", "AKROUSDT"])])
    frames = [(m.local_timestamp, m.message) for m in got if m is not None]
    want = archived(server.root, "binance-futures", {"depth"}, {"SUSHIUSDT"}, LO, HI)
    want += archived(server.root, "binance-futures", {"aggTrade"}, {"SUSHIUSDT", "AKROUSDT"}, LO, HI)
    want.sort(key=lambda r: r[0])
    assert len(frames) == len(want) > 100
    assert sorted(frames, key=lambda f: f[0]) == [(us(ts), json.loads(p)) for ts, p in want]
    # disconnects come through as None, where the archive marked them (SUSHIUSDT's drop, the connection's)
    nones = [i for i, m in enumerate(got) if m is None]
    assert len(nones) == 2
    for i, mark in zip(nones, (MARK_A, MARK_B), strict=True):
        assert got[i - 1].local_timestamp < us(mark) <= got[i + 1].local_timestamp


def test_python_client_exchange_details(server: ServerProc) -> None:
    details = tardis_dev.get_exchange_details("binance-futures", endpoint=f"{server.base}/v1")
    assert details["id"] == "binance-futures" and "depth" in details["channels"]


def test_data_feed_errors_are_400_with_a_reason(server: ServerProc) -> None:
    base = f"{server.base}/v1/data-feeds/binance-futures"
    for query, reason in (("?offset=0", "'from' is required"), ("?from=2021-07-22T22:00:00Z", "'offset' is required"),
                          ("?from=2021-07-22T22:00:00Z&offset=-1", "'offset' must be"),
                          ("?from=2021-07-22T22:00:00Z&offset=0&sliceSize=999", "'sliceSize' must be"),
                          ("?from=nope&offset=0", "'from' is not an ISO 8601 date"),
                          ('?from=2021-07-22T22:00:00Z&offset=0&filters=[{"channel":"nosuch"}]', "unknown channel")):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + query.replace('"', "%22").replace("{", "%7B").replace("}", "%7D"),
                                   timeout=30)
        assert e.value.code == 400
        assert reason in json.loads(e.value.read())["message"], query
