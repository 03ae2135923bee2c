"""Symbols are checked against the venue's own instrument list before a capture
starts (Binance exchangeInfo, Bybit instruments-info, Hyperliquid meta via
POST /info, served by the simulator in their real shapes): an unknown symbol
is one line naming it, exit 2, before any writer or ingest process exists."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ticktape.sim.thread import SimulatorThread

GOOD = {"binance-futures": "BTCUSDT", "bybit": "ETHUSDT", "bybit-spot": "ETHUSDC", "hyperliquid": "SOL", "bitmex": "XBTUSD",
        "okex-swap": "ETH-USDT-SWAP", "binance": "ETHUSDT", "binance-delivery": "BTCUSD_PERP"}
#: a well-formed symbol the venue does not list (COIN-M symbols have a contract suffix)
BAD = {"okex-swap": "NOTACOIN-USDT-SWAP", "binance-delivery": "NOTACOINUSD_PERP"}


def config(tmp: Path, ex: str, url: str, symbols: list[str]) -> Path:
    path = tmp / f"{ex}.toml"
    path.write_text(
        f"[metrics]\nport = 0\n[log]\ndir = '{tmp}/logs'\n[archive]\nroot = '{tmp}/archive-{ex}'\n"
        f"[exchanges.{ex}]\nsymbols = {json.dumps(symbols)}\nchannels = [\"trades\"]\nurl = \"{url}\"\n"
    )
    return path


def run(tmp: Path, cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ticktape.engine.cli", "run", str(cfg), "--duration", "30"],
                          cwd=tmp, capture_output=True, text=True, timeout=120)


def test_the_simulator_serves_the_instrument_lists_in_their_real_shapes():
    with SimulatorThread({"binance-futures": None, "bybit": None, "bybit-spot": None, "hyperliquid": None}) as sim:
        base = sim.rest_url()
        info = json.loads(urllib.request.urlopen(base + "/fapi/v1/exchangeInfo", timeout=10).read())
        btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
        assert btc["contractType"] == "PERPETUAL" and btc["status"] == "TRADING" and info["timezone"] == "UTC"
        by = json.loads(urllib.request.urlopen(base + "/v5/market/instruments-info?category=linear&limit=5",
                                               timeout=10).read())
        assert by["retCode"] == 0 and len(by["result"]["list"]) == 5 and by["result"]["nextPageCursor"]
        assert by["result"]["list"][0]["contractType"] == "LinearPerpetual"
        spot = json.loads(urllib.request.urlopen(base + "/v5/market/instruments-info?category=spot",
                                                 timeout=10).read())["result"]  # bybit-spot answers its own category
        eth = next(x for x in spot["list"] if x["symbol"] == "ETHUSDC")
        assert spot["category"] == "spot" and eth["quoteCoin"] == "USDC" and "contractType" not in eth
        req = urllib.request.Request(base + "/info", data=b'{"type":"meta"}', headers={"Content-Type": "application/json"})
        meta = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert {"BTC", "ETH", "kPEPE"} <= {u["name"] for u in meta["universe"]} and "marginTables" in meta
        assert all(not n["name"].startswith("NOTACOIN") for n in meta["universe"])


@pytest.mark.slow
@pytest.mark.parametrize("ex", list(GOOD))
def test_unknown_symbol_is_a_config_error_before_capture_starts(tmp_path, ex):
    with SimulatorThread({ex: None}) as sim:
        r = run(tmp_path, config(tmp_path, ex, sim.ws_url(ex), [GOOD[ex], BAD.get(ex, "NOTACOIN")]))
        conns = sim.call(lambda s: len(s.venue(ex).conns) + s.venue(ex).frames)
    assert r.returncode == 2, r.stderr + r.stdout[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "NOTACOIN" in lines[0] and f"exchanges.{ex}.symbols" in lines[0], r.stderr
    assert GOOD[ex] not in lines[0].split("not listed")[0], "only the unknown symbol is named"
    assert "started (pid" not in r.stdout and "Traceback" not in r.stderr + r.stdout
    assert conns == 0, "nothing subscribed"
    assert not (tmp_path / f"archive-{ex}").exists() or not any((tmp_path / f"archive-{ex}").rglob("*.parquet"))


@pytest.mark.slow
def test_unreachable_venue_is_one_clear_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    r = run(tmp_path, config(tmp_path, "bybit", f"ws://127.0.0.1:{port}", ["BTCUSDT"]))
    assert r.returncode == 2, r.stderr + r.stdout[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "exchanges.bybit: cannot fetch the instrument list" in lines[0], r.stderr
    assert "started (pid" not in r.stdout


def test_the_simulator_lists_okx_spot_and_swaps_apart():
    with SimulatorThread({"okex": None, "okex-swap": None}) as sim:
        base = sim.rest_url() + "/api/v5/public/instruments?instType="
        spot = json.loads(urllib.request.urlopen(base + "SPOT", timeout=10).read())
        swap = json.loads(urllib.request.urlopen(base + "SWAP", timeout=10).read())
    assert spot["code"] == "0" and "BTC-USDT" in {x["instId"] for x in spot["data"]}
    assert {x["instType"] for x in spot["data"]} == {"SPOT"} and {x["instType"] for x in swap["data"]} == {"SWAP"}
    assert "BTC-USDT-SWAP" in {x["instId"] for x in swap["data"]} and all(x["state"] == "live" for x in swap["data"])
