"""The simulator as a background thread (thread-safe API) and as ``capture sim``."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import uvloop
from sim_test_helpers import connect, until

from ticktape.sim.faults import Fault
from ticktape.sim.server import Simulator
from ticktape.sim.thread import SimulatorThread


def test_thread_serves_a_client_on_another_loop_and_takes_faults() -> None:
    with SimulatorThread(["hyperliquid"], rate=300, seed=8) as sim:
        url = sim.ws_url("hyperliquid")

        async def client() -> list[bytes]:
            c = await connect(url + "/ws")
            c.send(b'{"method":"subscribe","subscription":{"type":"l2Book","coin":"SOL"}}')
            await until(lambda: len(c.frames) > 10)
            assert sim.connections("hyperliquid")
            sim.fault(Fault("drop", "hyperliquid"))
            await until(lambda: c.closed)
            return c.frames

        frames = uvloop.run(client())
        sent = sim.sent("hyperliquid", channel="l2Book")
        assert [s.data for s in sent[: len(frames) - 1]] == frames[1:]
        bids, asks = sim.book("hyperliquid", "SOL", event=sent[-1].event, depth=20)
        assert len(bids) == len(asks) == 20 and bids[0][0] < asks[0][0]
    assert not sim._thread or not sim._thread.is_alive()


def test_bybit_depth1_resends_its_snapshot_with_the_same_u() -> None:
    async def main() -> None:
        async with Simulator(["bybit"], rate=0, seed=2) as sim:
            sim.venue("bybit").resend_depth1 = 0.2  # type: ignore[attr-defined]
            c = await connect(sim.ws_url() + "/v5/public/linear")
            c.send(b'{"req_id":"1","op":"subscribe","args":["orderbook.1.BTCUSDT"]}')
            await until(lambda: len(c.frames) >= 4, 30)
            snaps = [json.loads(f) for f in c.frames[1:4]]
            assert all(s["type"] == "snapshot" for s in snaps)
            assert len({s["data"]["u"] for s in snaps}) == 1
            assert len(snaps[0]["data"]["b"]) == len(snaps[0]["data"]["a"]) == 1

    uvloop.run(main())


@pytest.mark.slow
def test_capture_sim_cli_prints_urls_and_serves(capture_cmd: list[str]) -> None:
    p = subprocess.Popen([*capture_cmd, "sim", "--port", "0", "--exchanges", "bybit", "--rate", "200",
                          "--seed", "3", "--duration", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        info = json.loads(p.stdout.readline())
        assert info["url"].startswith("ws://127.0.0.1:") and info["exchanges"]["bybit"]["ws_paths"] == ["/v5/public/linear"]

        async def client() -> int:
            c = await connect(info["url"] + "/v5/public/linear")
            c.send(b'{"req_id":"1","op":"subscribe","args":["publicTrade.BTCUSDT"]}')
            await until(lambda: len(c.frames) > 5)
            return len(c.frames)

        assert uvloop.run(client()) > 5
        t0 = time.monotonic()
        _, err = p.communicate(timeout=15)
        assert p.returncode == 0 and time.monotonic() - t0 < 10
        assert json.loads(err.decode().strip().splitlines()[-1])["stats"]["frames"]["bybit"] > 5
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.slow
def test_capture_sim_cli_rejects_bad_arguments(capture_cmd: list[str]) -> None:
    r = subprocess.run([*capture_cmd, "sim", "--exchanges", "kraken", "--duration", "1"], capture_output=True, timeout=30)
    assert r.returncode == 2 and b"unknown exchange 'kraken'" in r.stderr
    r = subprocess.run([*capture_cmd, "sim", "--fault", "1.0:explode", "--duration", "1"], capture_output=True, timeout=30)
    assert r.returncode == 2 and b"unknown fault 'explode'" in r.stderr


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--port", "99999"], "--port 99999: must be 0..65535"),
        (["--fault", "12:drop:kraken"], "EXCHANGE: unknown exchange 'kraken'"),
        (["--exchanges", "bybit", "--fault", "12:drop:hyperliquid"], "unknown exchange 'hyperliquid'"),
        (["--fault", "soon:drop"], "AT 'soon' is not a number"),
        (["--fault", "1.0:stall:bybit:long"], "SECONDS 'long' is not a number"),
        (["--fault", "1.0:delist:binance-futures"], "delist needs AT:delist:EXCHANGE:SYMBOL"),
        (["--rate", "-5"], "--rate -5: must be > 0"),
        (["--trade-share", "2"], "--trade-share 2: must be 0..1"),
        (["--host", "256.1.1.1"], "--host 256.1.1.1 --port 0: cannot listen"),
    ],
)
def test_capture_sim_cli_names_the_bad_part(capture_cmd: list[str], argv: list[str], named: str) -> None:
    """Issue 9: ``--port 99999`` was a traceback; ``--fault 12:drop:kraken`` was accepted and
    then silently killed the market pump. Each is one line naming the bad part, exit 2."""
    r = subprocess.run([*capture_cmd, "sim", *argv, "--duration", "1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
