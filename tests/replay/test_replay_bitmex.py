"""bitmex in the replay server: /exchanges lists it, /ws-replay takes BitMEX's own
``{"op":"subscribe","args":["orderBookL2:XBTUSD"]}`` and streams the recorded frames."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorded_frames import bitmex_frames, write_frames
from replay_helpers import ServerProc, archived, serve
from test_replay_ws import END, START, ws_collect, ws_url

from ticktape.exchanges.registry import CHANNELS


@pytest.fixture(scope="module")
def bitmex_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("bitmex-archive")
    write_frames(str(root), "bitmex", bitmex_frames())
    with serve(root, tmp_path_factory.mktemp("bitmex-log"), "--ws-subscribe-window", "0.6") as server:
        yield server


def test_exchanges_lists_bitmex(bitmex_server: ServerProc) -> None:
    with urllib.request.urlopen(f"{bitmex_server.base}/exchanges", timeout=10) as r:
        ex = {e["id"]: e for e in json.load(r)}
    assert set(ex) == {"bitmex"}
    assert set(ex["bitmex"]["channels"]) == set(CHANNELS["bitmex"])
    assert {"XBTUSD", "UNIUSDT", "MATICUSDT"} <= {s["id"] for s in ex["bitmex"]["symbols"]}


def test_ws_replay_takes_bitmex_subscribe(bitmex_server: ServerProc) -> None:
    url = ws_url(bitmex_server, 1, exchange="bitmex", **{"from": START, "to": END})
    sub = {"op": "subscribe", "args": ["orderBookL2:XBTUSD", "trade:UNIUSDT", "quote:BCHUSD"]}
    got, _ = asyncio.run(ws_collect(url, [sub]))
    root = Path(bitmex_server.root)
    want = sorted(archived(root, "bitmex", {"orderBookL2"}, {"XBTUSD"}) + archived(root, "bitmex", {"trade"}, {"UNIUSDT"})
                  + archived(root, "bitmex", {"quote"}, {"BCHUSD"}), key=lambda x: x[0])
    assert len(want) > 300
    assert [g.encode() for g in got] == [p for _, p in want]
