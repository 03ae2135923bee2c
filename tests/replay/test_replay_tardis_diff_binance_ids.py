"""Differential suite for binance-delivery (COIN-M) and binance (spot): ``/replay-normalized`` against
tardis-dev 13.35.3's own ``replayNormalized`` with the same Tardis exchange ids, on archives ``capture
run`` made from the real COIN-M recording (depth@100ms + its /dapi/v1/depth snapshots, bookTicker)
and from the simulator's spot dialect (depth@100ms bridged from /api/v3/depth, @trade, bookTicker) with a
sequence gap on ETHUSDT: spot's mapper ignores the resync snapshot too (``bookGaps`` defaults to tardis-dev's)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tardis_diff_helpers import (
    Server,
    first_difference,
    metrics,
    minute_range,
    oracle,
    run_capture,
    tardis_modules,
)
from test_replay_tardis_diff import _feed_total

from ticktape.sim.faults import Fault
from ticktape.sim.thread import SimulatorThread

pytestmark = pytest.mark.slow

COINM = ("BCHUSD_PERP", "XRPUSD_PERP", "BTCUSD_211231", "ETHUSD_210924")
SPOT = ("BTCUSDT", "ETHUSDT")


@pytest.fixture(scope="module")
def modules() -> Path:
    return tardis_modules()


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Iterator[tuple[Server, Path, int, int]]:
    from ports import free_port_pair

    tmp = tmp_path_factory.mktemp("diff-binance-ids")
    rec = samples_dir / "binance_delivery" / "cryptofeed_v2_BINANCE_DELIVERY.ws.1.0"
    lines = rec.read_bytes().splitlines()
    want = sum(1 for line in lines if re.match(rb"^\d+\.\d+: ", line) and any(
        f'"{s.lower()}@{c}"'.encode() in line for s in COINM for c in ("depth@100ms", "bookTicker"))) + len(COINM)
    port = free_port_pair()
    t0 = time.time_ns()
    # at 5x the recorded pace (~6 s): the REST snapshots arrive early in the diff streams, as live, so most
    # diffs follow them (replayed at full speed, every diff could precede its snapshot: nothing left to compare)
    with SimulatorThread(["binance-delivery"], replay=rec, replay_speed=5.0) as csim, \
            SimulatorThread({"binance": list(SPOT)}, rate=25.0, seed=5, trade_share=0.4) as ssim:
        toml = f"""
[exchanges.binance-delivery]
symbols = {list(COINM)!r}
channels = ["book_change", "book_ticker"]
url = "{csim.ws_url('binance-delivery')}"

[exchanges.binance]
symbols = {list(SPOT)!r}
channels = ["trades", "book_change", "book_ticker"]
url = "{ssim.ws_url('binance')}"
""".replace("'", '"')
        started: list[float] = []
        gap = [Fault("gap", "binance", symbol="ETHUSDT")]

        def done() -> bool:
            m = metrics(port)
            if not started and _feed_total(m, "binance") > 0:
                started.append(time.monotonic())
            if gap and started and time.monotonic() - started[0] > 2.0:
                ssim.fault(gap.pop())
            resynced = sum(v for k, v in m.items()
                           if k.startswith('ticktape_feed_resyncs_total{exchange="binance",') and "ETHUSDT" in k)
            return (bool(started) and time.monotonic() - started[0] > 6.0 and resynced >= 1
                    and _feed_total(m, "binance-delivery") >= want)

        run_capture(tmp, toml, port, done)
    t1 = time.time_ns()
    server = Server(tmp / "archive", tmp / "server.log")
    yield server, tmp, t0, t1
    server.close()


@pytest.mark.parametrize(("exchange", "data_types"), [
    ("binance-delivery", ["book_change"]),
    ("binance-delivery", ["book_snapshot_5_100ms", "quote"]),
    ("binance-delivery", ["book_ticker"]),
    ("binance", ["book_change"]),
    ("binance", ["trade", "book_snapshot_10_1s"]),
    ("binance", ["book_ticker"]),
], ids=lambda v: v if isinstance(v, str) else "+".join(v))
def test_binance_ids_match_tardis(modules: Path, captured: Any, exchange: str, data_types: list[str]) -> None:
    server, tmp, t0, t1 = captured
    frm, to = minute_range(t0, t1)
    symbols = list(COINM if exchange == "binance-delivery" else SPOT)
    options: dict[str, Any] = {"exchange": exchange, "symbols": symbols, "from": frm, "to": to,
                               "dataTypes": data_types, "withDisconnectMessages": True}
    theirs = oracle(modules, tmp / f"{exchange}-{'+'.join(data_types)}", server, options)
    ours = server.get("replay-normalized", options).splitlines()
    assert sum(b'"type":"disconnect"' not in line for line in theirs) > 10, f"tardis-dev produced no data for {options}"
    assert ours == theirs, first_difference(ours, theirs)
