"""bybit-spot in the replay server: the 2025 Bybit recording's spot connection archived under
``bybit-spot`` beside its linear one under ``bybit``; /exchanges lists both apart, and
/ws-replay with ``exchange=bybit-spot`` takes Bybit's own ``op: subscribe``."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorded_frames import BYBIT_SAMPLES, bybit_frames, write_frames
from replay_helpers import ServerProc, archived, serve
from test_replay_ws import ws_collect, ws_url

FROM, TO = "2025-06-13T16:00:00Z", "2025-06-13T17:00:00Z"


@pytest.fixture(scope="module")
def bybit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("bybit-spot-archive")
    write_frames(str(root), "bybit", bybit_frames(BYBIT_SAMPLES[:1]))
    write_frames(str(root), "bybit-spot", bybit_frames(BYBIT_SAMPLES[1:]))
    with serve(root, tmp_path_factory.mktemp("bybit-spot-log"), "--ws-subscribe-window", "0.6") as server:
        yield server


def test_exchanges_lists_bybit_spot_apart_from_linear(bybit_server: ServerProc) -> None:
    with urllib.request.urlopen(f"{bybit_server.base}/exchanges", timeout=10) as r:
        ex = {e["id"]: e for e in json.load(r)}
    assert set(ex) == {"bybit", "bybit-spot"}
    assert "orderbook.1" in ex["bybit-spot"]["channels"] and "tickers" not in ex["bybit-spot"]["channels"]
    spot = {s["id"] for s in ex["bybit-spot"]["symbols"]}
    assert spot == {"OPUSDC", "TUSDUSDT", "KCSUSDT", "CPOOLUSDT", "ARBUSDC", "MASAUSDT"}
    assert not spot & {s["id"] for s in ex["bybit"]["symbols"]}


def test_ws_replay_takes_bybit_spot_subscribe(bybit_server: ServerProc) -> None:
    url = ws_url(bybit_server, 1, exchange="bybit-spot", **{"from": FROM, "to": TO})
    got, _ = asyncio.run(ws_collect(url, [{"op": "subscribe", "args": ["orderbook.1.ARBUSDC", "orderbook.1.OPUSDC"]}]))
    want = sorted(archived(Path(bybit_server.root), "bybit-spot", {"orderbook.1"}, {"ARBUSDC", "OPUSDC"},
                           lo=1_749_830_400_000_000_000, hi=1_749_834_000_000_000_000), key=lambda x: x[0])
    assert len(want) == 84 and [g.encode() for g in got] == [p for _, p in want]
