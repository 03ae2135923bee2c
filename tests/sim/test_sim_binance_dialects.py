"""The simulator's Binance spot and COIN-M dialects: COIN-M frames have the real recording's
keys in the real order (``../shared/samples/binance_delivery``), spot frames the documented
spot shapes (no ``T``/``pu`` in diffs, partial depth ``lastUpdateId/bids/asks``, bookTicker
without times), and each dialect's sequence rule holds: COIN-M ``pu`` = previous ``u``, spot
``U`` = previous ``u`` + 1, and a REST snapshot bridges by the venue's own rule."""

from __future__ import annotations

import itertools
import json
from typing import Any

import aiohttp
import uvloop
from sim_test_helpers import connect, until
from test_sim_protocols import SAMPLES, real_frames, same_shape

from ticktape.sim.server import Simulator

COINM = SAMPLES / "binance_delivery" / "cryptofeed_v2_BINANCE_DELIVERY.ws.1.0"
COINM_HTTP = SAMPLES / "binance_delivery" / "cryptofeed_v2_BINANCE_DELIVERY.http.0.0"
#: Binance spot API docs ("WebSocket Streams"), key order as documented
SPOT_KEYS = {
    "@depth@100ms": ["e", "E", "s", "U", "u", "b", "a"],
    "@trade": ["e", "E", "s", "t", "p", "q", "T", "m", "M"],
    "@aggTrade": ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"],
    "@bookTicker": ["u", "s", "b", "B", "a", "A"],
    "@depth20@100ms": ["lastUpdateId", "bids", "asks"],
}


def stream_is(kind: str) -> Any:
    return lambda m: isinstance(m, dict) and m.get("stream", "").endswith(kind) and all(
        v for v in m["data"].values() if isinstance(v, list))


def frames_of(frames: list[bytes], kind: str) -> list[dict[str, Any]]:
    out = []
    for f in frames:
        m = json.loads(f)
        if stream_is(kind)(m):
            out.append(m)
    return out


def diffs_of(frames: list[bytes], stream: str) -> list[dict[str, Any]]:
    return [m["data"] for f in frames if (m := json.loads(f)).get("stream") == stream]


def bridges(snap: dict[str, Any], diffs: list[dict[str, Any]], spot: bool) -> bool:
    """The venue's documented rule: futures U <= L <= u; spot U <= L + 1 <= u (after dropping u <= L)."""
    last = snap["lastUpdateId"] + (1 if spot else 0)
    first = next((d for d in diffs if d["u"] >= last), None)
    return first is not None and first["U"] <= last <= first["u"]


def test_dialects_shapes_and_sequences() -> None:
    async def main() -> tuple[Any, ...]:
        async with Simulator(["binance", "binance-delivery"], rate=400, seed=5) as sim:
            spot = await connect(sim.ws_url("binance") + "/stream?streams=btcusdt@depth@100ms/btcusdt@trade/"
                                 "btcusdt@aggTrade/btcusdt@bookTicker/btcusdt@depth20@100ms")
            cm = await connect(sim.ws_url("binance-delivery") + "/stream?streams=btcusd_perp@depth@100ms/"
                               "btcusd_perp@bookTicker/btcusd_perp@aggTrade")
            await until(lambda: all(frames_of(spot.frames, k) for k in SPOT_KEYS)
                        and all(frames_of(cm.frames, k) for k in ("@depth@100ms", "@bookTicker", "@aggTrade"))
                        and len(diffs_of(spot.frames, "btcusdt@depth@100ms")) >= 5
                        and len(diffs_of(cm.frames, "btcusd_perp@depth@100ms")) >= 5, timeout=30.0)
            rest = sim.rest_url()
            async with aiohttp.ClientSession() as s:
                async with s.get(rest + "/api/v3/depth?symbol=BTCUSDT&limit=1000") as r:
                    spot_snap = json.loads(await r.read())
                async with s.get(rest + "/dapi/v1/depth?symbol=BTCUSD_PERP&limit=1000") as r:
                    cm_snap = json.loads(await r.read())
                async with s.get(rest + "/dapi/v1/exchangeInfo") as r:
                    cm_info = json.loads(await r.read())
                async with s.get(rest + "/api/v3/exchangeInfo") as r:
                    spot_info = json.loads(await r.read())
            # the diff window holding each snapshot's id has been sent (it closes up to 100 ms later)
            await until(lambda: any(d["u"] > spot_snap["lastUpdateId"] for d in diffs_of(spot.frames, "btcusdt@depth@100ms"))
                        and any(d["u"] > cm_snap["lastUpdateId"] for d in diffs_of(cm.frames, "btcusd_perp@depth@100ms")),
                        timeout=30.0)
            return spot.frames, cm.frames, spot_snap, cm_snap, cm_info, spot_info

    spot, cm, spot_snap, cm_snap, cm_info, spot_info = uvloop.run(main())
    # COIN-M: the recording's keys, in the recording's order, same JSON types
    for kind in ("@depth@100ms", "@bookTicker", "@aggTrade"):
        real = real_frames(COINM, stream_is(kind))[0]
        ours = frames_of(cm, kind)[0]
        same_shape(real, ours, kind)
        assert list(ours["data"]) == list(real["data"]), kind
    real_snap = json.loads(COINM_HTTP.read_bytes().splitlines()[0].split(b": ", 1)[1])
    assert list(cm_snap) == list(real_snap) and cm_snap["pair"] == "BTCUSD"
    assert "BTCUSD_PERP" in {s["symbol"] for s in cm_info["symbols"]}
    # spot: the documented keys in order; REST snapshot with no times
    for kind, keys in SPOT_KEYS.items():
        assert list(frames_of(spot, kind)[0]["data"]) == keys, kind
    assert list(spot_snap) == ["lastUpdateId", "bids", "asks"]
    assert "BTCUSDT" in {s["symbol"] for s in spot_info["symbols"]}
    # sequences: COIN-M's pu chain, spot's U = previous u + 1; each snapshot bridges by its own rule
    cm_d = diffs_of(cm, "btcusd_perp@depth@100ms")
    assert all(b["pu"] == a["u"] for a, b in itertools.pairwise(cm_d))
    sp_d = diffs_of(spot, "btcusdt@depth@100ms")
    assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(sp_d))
    assert bridges(cm_snap, cm_d, spot=False)
    assert bridges(spot_snap, sp_d, spot=True)
