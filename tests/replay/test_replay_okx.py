"""okex and okex-swap in the replay server: /exchanges lists both (channels from the registry),
/ws-replay takes OKX's own ``{"op":"subscribe","args":[{"channel","instId"}]}`` and streams the
real 2022 recording's frames byte for byte."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorded_frames import SAMPLES, Frame, okx_frames, write_frames
from replay_helpers import ServerProc, archived, serve
from test_replay_ws import ws_collect, ws_url

from ticktape.exchanges import registry

START, END = "2022-05-13T16:00:00Z", "2022-05-13T17:00:00Z"
LO, HI = 1_652_457_600_000_000_000, 1_652_461_200_000_000_000


def liquidation_frames() -> list[Frame]:
    """tardis-node's real ``liquidation-orders`` messages (an instrument nobody configured: symbol ``_``,
    as the connector files them), placed inside the recording's hour."""
    lines = [x for x in (SAMPLES / "okx/tardis_node_mappers_test_okx_v5.jsonl").read_bytes().splitlines()
             if b'"liquidation-orders"' in x]
    return [Frame(LO + 1_900_000_000_000 + i, "_", "liquidation-orders", x) for i, x in enumerate(lines)]


@pytest.fixture(scope="module")
def okx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("okx-archive")
    write_frames(str(root), "okex", okx_frames(swap=False))
    write_frames(str(root), "okex-swap", okx_frames(swap=True) + liquidation_frames())
    with serve(root, tmp_path_factory.mktemp("okx-log"), "--ws-subscribe-window", "0.6") as server:
        yield server


def test_exchanges_lists_okex_and_okex_swap(okx_server: ServerProc) -> None:
    with urllib.request.urlopen(f"{okx_server.base}/exchanges", timeout=10) as r:
        ex = {e["id"]: e for e in json.load(r)}
    assert set(ex) == {"okex", "okex-swap"}
    for name in ex:
        assert set(ex[name]["channels"]) == set(registry.CHANNELS[name])
    assert {s["id"] for s in ex["okex"]["symbols"]} == {"BTC-USDT"}
    assert {s["id"] for s in ex["okex-swap"]["symbols"]} == {"UNI-USD-SWAP"}


@pytest.mark.parametrize(("exchange", "inst"), [("okex", "BTC-USDT"), ("okex-swap", "UNI-USD-SWAP")])
def test_ws_replay_takes_okx_subscribe(okx_server: ServerProc, exchange: str, inst: str) -> None:
    url = ws_url(okx_server, 1, exchange=exchange, **{"from": START, "to": END})
    sub = {"op": "subscribe", "args": [{"channel": "books", "instId": inst}, {"channel": "trades", "instId": inst}]}
    got, _ = asyncio.run(ws_collect(url, [sub]))
    want = archived(Path(okx_server.root), exchange, {"books", "trades"}, {inst}, LO, HI)
    assert len(want) > 90
    assert [g.encode() for g in got] == [p for _, p in want]


def test_ws_replay_okx_subscribe_by_instrument_type_gets_every_symbol(okx_server: ServerProc) -> None:
    url = ws_url(okx_server, 1, exchange="okex-swap", **{"from": START, "to": END})
    sub = {"op": "subscribe", "args": [{"channel": "liquidation-orders", "instType": "SWAP"}]}
    got, _ = asyncio.run(ws_collect(url, [sub]))
    assert [g.encode() for g in got] == [f.payload for f in liquidation_frames()]
