"""deribit in the replay server: /exchanges lists it, /ws-replay takes Deribit's own
JSON-RPC ``public/subscribe`` and streams the recorded frames (any interval suffix)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorded_frames import deribit_frames, write_frames
from replay_helpers import ServerProc, archived, serve
from test_replay_ws import END, START, ws_collect, ws_url

BOOK_SYM, TICK_SYM = "BTC-24SEP21-8000-P", "ETH-30JUL21-2800-C"


@pytest.fixture(scope="module")
def deribit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("deribit-archive")
    write_frames(str(root), "deribit", deribit_frames())
    with serve(root, tmp_path_factory.mktemp("deribit-log"), "--ws-subscribe-window", "0.6") as server:
        yield server


def test_exchanges_lists_deribit(deribit_server: ServerProc) -> None:
    with urllib.request.urlopen(f"{deribit_server.base}/exchanges", timeout=10) as r:
        ex = {e["id"]: e for e in json.load(r)}
    assert set(ex) == {"deribit"}
    assert set(ex["deribit"]["channels"]) == {"book", "trades", "ticker"}
    assert {BOOK_SYM, TICK_SYM} <= {s["id"] for s in ex["deribit"]["symbols"]}


def test_ws_replay_takes_deribit_subscribe(deribit_server: ServerProc) -> None:
    url = ws_url(deribit_server, 1, exchange="deribit", **{"from": START, "to": END})
    sub = {"jsonrpc": "2.0", "id": 7, "method": "public/subscribe",
           "params": {"channels": [f"book.{BOOK_SYM}.100ms", f"ticker.{TICK_SYM}.raw"]}}
    got, _ = asyncio.run(ws_collect(url, [sub]))
    root = Path(deribit_server.root)
    want = sorted(archived(root, "deribit", {"book"}, {BOOK_SYM}) + archived(root, "deribit", {"ticker"}, {TICK_SYM}),
                  key=lambda x: x[0])
    assert len(want) > 30
    assert [g.encode() for g in got] == [p for _, p in want]
