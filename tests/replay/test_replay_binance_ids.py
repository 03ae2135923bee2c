"""binance (spot) and binance-delivery (COIN-M) in the replay server: /exchanges lists both
with their connectors' channels, /ws-replay takes Binance's own SUBSCRIBE for each id and
streams exactly the archived frames of those streams (the real COIN-M recording; spot frames
in spot's shape: no ``pu``, trades with ``M``)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorded_frames import SAMPLES, Frame, binance_frames, write_frames
from replay_helpers import ServerProc, archived, serve
from test_replay_ws import ws_collect, ws_url

from ticktape.exchanges import registry

COINM = str(SAMPLES / "binance_delivery" / "cryptofeed_v2_BINANCE_DELIVERY.ws.1.0")
START, END = "2021-07-22T01:00:00Z", "2021-07-22T02:00:00Z"
LO, HI = 1_626_915_600_000_000_000, 1_626_919_200_000_000_000
SPOT_T0 = 1_626_916_500_000_000_000


def spot_frames() -> list[Frame]:
    """Spot's combined-stream frames for two symbols: diffs chained by U = previous u + 1, trades."""
    out: list[Frame] = []
    u = {"BTCUSDT": 1000, "ETHUSDT": 5000}
    for i in range(60):
        sym = "BTCUSDT" if i % 2 else "ETHUSDT"
        low, ts, ms = sym.lower(), SPOT_T0 + i * 10_000_000, SPOT_T0 // 1_000_000 + i * 10
        first, u[sym] = u[sym] + 1, u[sym] + 3
        depth = {"stream": f"{low}@depth@100ms", "data": {"e": "depthUpdate", "E": ms, "s": sym, "U": first,
                                                          "u": u[sym], "b": [["100.1", "2"]], "a": [["100.2", "0"]]}}
        trade = {"stream": f"{low}@trade", "data": {"e": "trade", "E": ms, "s": sym, "t": i, "p": "100.15", "q": "1",
                                                    "T": ms, "m": bool(i % 3), "M": True}}
        out.append(Frame(ts, sym, "depth", json.dumps(depth, separators=(",", ":")).encode()))
        out.append(Frame(ts + 1000, sym, "trade", json.dumps(trade, separators=(",", ":")).encode()))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    root = tmp_path_factory.mktemp("binance-ids-archive")
    write_frames(str(root), "binance-delivery", binance_frames(COINM))
    write_frames(str(root), "binance", spot_frames())
    with serve(root, tmp_path_factory.mktemp("binance-ids-log"), "--ws-subscribe-window", "0.6") as s:
        yield s


def test_exchanges_lists_both_ids(server: ServerProc) -> None:
    with urllib.request.urlopen(f"{server.base}/exchanges", timeout=10) as r:
        ex = {e["id"]: e for e in json.load(r)}
    assert set(ex) == {"binance", "binance-delivery"}
    for name in ex:
        assert ex[name]["channels"] == sorted(registry.CHANNELS[name])
    assert {"BCHUSD_PERP", "BTCUSD_211231"} <= {s["id"] for s in ex["binance-delivery"]["symbols"]}
    assert {s["id"] for s in ex["binance"]["symbols"]} == {"BTCUSDT", "ETHUSDT"}


@pytest.mark.parametrize(("exchange", "streams", "want"), [
    ("binance-delivery", ["bchusd_perp@depth@100ms", "btcusd_211231@aggTrade", "xrpusd_perp@bookTicker"],
     [({"depth"}, {"BCHUSD_PERP"}), ({"aggTrade"}, {"BTCUSD_211231"}), ({"bookTicker"}, {"XRPUSD_PERP"})]),
    ("binance", ["btcusdt@depth@100ms", "ethusdt@trade"], [({"depth"}, {"BTCUSDT"}), ({"trade"}, {"ETHUSDT"})]),
])
def test_ws_replay_takes_binance_subscribes(server: ServerProc, exchange: str, streams: list[str],
                                            want: list[tuple[set[str], set[str]]]) -> None:
    url = ws_url(server, 1, exchange=exchange, **{"from": START, "to": END})
    got, _ = asyncio.run(ws_collect(url, [{"method": "SUBSCRIBE", "params": streams, "id": 1}]))
    rows = sorted((r for ch, sy in want for r in archived(Path(server.root), exchange, ch, sy, LO, HI)),
                  key=lambda x: x[0])
    assert len(rows) > 20
    assert [g.encode() for g in got] == [p for _, p in rows]
