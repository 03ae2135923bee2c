"""Differential suite: ``/replay-normalized`` against tardis-dev 13.35.3's own ``replayNormalized``.

Archives are captured by ``capture run`` from the simulator: real recordings replayed (Binance futures 2021
depth@100ms + REST snapshots, Bybit v5 orderbook.1) and a synthetic market with faults (a dropped connection
mid-book, a sequence gap). The raw frames ticktape archived are written into tardis-dev's cache directory
(``tardis_oracle.js``), tardis-dev normalizes and computes them in Node, and every line must be byte-identical
to ticktape's."""

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

from ticktape.sim.faults import Fault
from ticktape.sim.thread import SimulatorThread

pytestmark = pytest.mark.slow

BN_RECORDED = ("SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT")
BY_RECORDED = ("BANDUSDT", "RADUSDT", "SNTUSDT", "AIOZUSDT")

BOOK_TYPES = [
    ["book_change"],
    ["book_snapshot_10_100ms"],
    ["book_snapshot_5_1s"],
    ["book_snapshot_3_grouped10_100ms"],
    ["quote"],
    ["quote_1s"],
    ["book_change", "book_snapshot_10_100ms"],
]
TRADE_TYPES = [
    ["trade"],
    ["trade_bar_1s"],
    ["trade_bar_10ticks"],
    ["trade_bar_2vol"],
    ["trade", "trade_bar_100ms"],
]


def _feed_total(m: dict[str, float], exchange: str) -> float:
    return sum(v for k, v in m.items()
               if k.startswith(f'ticktape_feed_messages_total{{exchange="{exchange}"') and 'symbol="_"' not in k)


def _frames(path: Path, pattern: bytes) -> int:
    return sum(1 for line in path.read_bytes().splitlines() if re.match(rb"^\d+\.\d+: ", line) and pattern in line)


@pytest.fixture(scope="module")
def modules() -> Path:
    return tardis_modules()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Iterator[tuple[Server, Path, int, int]]:
    tmp = tmp_path_factory.mktemp("diff-recorded")
    bn = samples_dir / "binance_futures" / "cryptofeed_v2_BINANCE_FUTURES.ws.1.0"
    by = samples_dir / "bybit" / "cryptofeed_v2_v5_BYBIT.ws.1.0"
    want_bn = sum(_frames(bn, f'"{s.lower()}@depth@100ms"'.encode()) for s in BN_RECORDED) + len(BN_RECORDED)
    want_by = sum(_frames(by, f'"orderbook.1.{s}"'.encode()) for s in BY_RECORDED)
    port = _port()
    t0 = time.time_ns()
    with SimulatorThread(["binance-futures"], replay=bn, replay_speed=0) as bsim, \
            SimulatorThread(["bybit"], replay=by, replay_speed=0) as ysim:
        toml = f"""
[exchanges.binance-futures]
symbols = {list(BN_RECORDED)!r}
channels = ["book_change"]
url = "{bsim.ws_url('binance-futures')}"

[exchanges.bybit]
symbols = {list(BY_RECORDED)!r}
channels = ["book_change"]
depth = 1
url = "{ysim.ws_url('bybit')}"
""".replace("'", '"')

        def done() -> bool:
            m = metrics(port)
            return _feed_total(m, "binance-futures") >= want_bn and _feed_total(m, "bybit") >= want_by

        run_capture(tmp, toml, port, done)
    t1 = time.time_ns()
    server = Server(tmp / "archive", tmp / "server.log")
    yield server, tmp, t0, t1
    server.close()


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, int, int]]:
    tmp = tmp_path_factory.mktemp("diff-faults")
    port = _port()
    t0 = time.time_ns()
    with SimulatorThread(["binance-futures", "bybit", "hyperliquid"], rate=25.0, seed=5, trade_share=0.4) as sim:
        url = sim.ws_url("binance-futures")
        toml = f"""
[exchanges.binance-futures]
symbols = ["BTCUSDT", "ETHUSDT"]
channels = ["trades", "book_change"]
url = "{url}"

[exchanges.bybit]
symbols = ["BTCUSDT"]
channels = ["trades", "book_change"]
depth = 50
url = "{sim.ws_url('bybit')}"

[exchanges.hyperliquid]
symbols = ["BTC"]
channels = ["trades", "book_change"]
depth = 20
url = "{sim.ws_url('hyperliquid')}"
"""
        plan = [(4.0, Fault("drop", "binance-futures")), (4.5, Fault("drop", "bybit")),
                (5.0, Fault("drop", "hyperliquid")), (8.0, Fault("gap", "binance-futures", symbol="ETHUSDT"))]
        started: list[float] = []

        def done() -> bool:
            # the plan's clock starts once every venue's data flows (a busy machine can take seconds to start)
            if not started:
                m = metrics(port)
                if all(_feed_total(m, ex) > 0 for ex in ("binance-futures", "bybit", "hyperliquid")):
                    started.append(time.monotonic())
                return False
            el = time.monotonic() - started[0]
            while plan and el >= plan[0][0]:
                sim.fault(plan.pop(0)[1])
            return el > 13.0

        run_capture(tmp, toml, port, done)
    t1 = time.time_ns()
    server = Server(tmp / "archive", tmp / "server.log")
    yield server, tmp, t0, t1
    server.close()


#: known differences of the recorded scenario (deterministic: strict, a fix must remove the entry)
KNOWN = {
    ("recorded", "bybit", t): "tardis-dev builds bybit book_change from orderbook.50 only (orderbook.1 is its "
                              "book_ticker): its own filters ask for a channel this archive does not have"
    for t in ("book_change", "book_snapshot_10_100ms", "book_snapshot_5_1s", "book_snapshot_3_grouped10_100ms",
              "quote", "quote_1s", "book_change+book_snapshot_10_100ms")
}
#: the fault scenario still differs in ways that depend on where the faults fall, so these are not strict:
#: after a sequence gap ticktape resyncs Binance from a new REST snapshot while tardis-dev's mapper ignores
#: it and keeps applying diffs; a bar can close on a repeated trade frame 1 µs apart. Computables (books,
#: snapshots, bars) start afresh at every disconnect and Hyperliquid's first trades frame after the start and
#: each disconnect is skipped, as tardis-dev does.
FAULTY_REASON = "binance gap resync, repeated trade frames (timing-dependent)"


def _known(request: pytest.FixtureRequest, scenario: str, exchange: str, data_types: list[str]) -> None:
    reason = KNOWN.get((scenario, exchange, "+".join(data_types)))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    elif scenario == "faulty":
        request.applymarker(pytest.mark.xfail(reason=FAULTY_REASON, strict=False))


def _port() -> int:
    from ports import free_port_pair

    return free_port_pair()


def _compare(modules: Path, env: tuple[Server, Path, int, int], work: str, exchange: str, symbols: list[str],
             data_types: list[str]) -> None:
    server, tmp, t0, t1 = env
    frm, to = minute_range(t0, t1)
    options: dict[str, Any] = {"exchange": exchange, "symbols": symbols, "from": frm, "to": to,
                               "dataTypes": data_types, "withDisconnectMessages": True}
    theirs = oracle(modules, tmp / work, server, options)
    ours = server.get("replay-normalized", options).splitlines()
    assert any(b'"type":"disconnect"' not in line for line in theirs), f"tardis-dev produced no data for {options}"
    assert ours == theirs, first_difference(ours, theirs)


@pytest.mark.parametrize("data_types", BOOK_TYPES, ids=lambda d: "+".join(d))
@pytest.mark.parametrize("exchange", ["binance-futures", "bybit"])
def test_recorded_books_match_tardis(modules: Path, recorded: Any, exchange: str, data_types: list[str],
                                    request: pytest.FixtureRequest) -> None:
    _known(request, "recorded", exchange, data_types)
    symbols = list(BN_RECORDED if exchange == "binance-futures" else BY_RECORDED)
    _compare(modules, recorded, f"{exchange}-{'+'.join(data_types)}", exchange, symbols, data_types)


@pytest.mark.parametrize("data_types", BOOK_TYPES + TRADE_TYPES, ids=lambda d: "+".join(d))
@pytest.mark.parametrize("exchange", ["binance-futures", "bybit", "hyperliquid"])
def test_faulty_capture_matches_tardis(modules: Path, faulty: Any, exchange: str, data_types: list[str],
                                      request: pytest.FixtureRequest) -> None:
    _known(request, "faulty", exchange, data_types)
    symbols = {"binance-futures": ["BTCUSDT", "ETHUSDT"], "bybit": ["BTCUSDT"], "hyperliquid": ["BTC"]}[exchange]
    _compare(modules, faulty, f"{exchange}-{'+'.join(data_types)}", exchange, symbols, data_types)
