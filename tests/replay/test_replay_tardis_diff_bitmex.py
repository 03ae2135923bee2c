"""Differential suite for bitmex: ``/replay-normalized`` against tardis-dev 13.35.3's own
``replayNormalized`` (its BitMEX mappers) on an archive ``capture run`` made from the simulator's
BitMEX dialect (orderBookL2 partial/insert/update/delete, trade, quote, instrument, liquidation)."""

from __future__ import annotations

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

from ticktape.sim.thread import SimulatorThread

pytestmark = pytest.mark.slow

SYMBOLS = ("XBTUSD", "ETHUSD", "SOLUSD")


@pytest.fixture(scope="module")
def modules() -> Path:
    return tardis_modules()


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, int, int]]:
    from ports import free_port_pair

    tmp = tmp_path_factory.mktemp("diff-bitmex")
    port = free_port_pair()
    t0 = time.time_ns()
    with SimulatorThread({"bitmex": list(SYMBOLS)}, rate=25.0, seed=9, trade_share=0.4) as sim:
        toml = f"""
[exchanges.bitmex]
symbols = {list(SYMBOLS)!r}
channels = ["trades", "book_change", "book_ticker", "derivative_ticker", "liquidations"]
url = "{sim.ws_url('bitmex')}"
""".replace("'", '"')
        started: list[float] = []

        def done() -> bool:
            m = metrics(port)
            total = sum(v for k, v in m.items() if k.startswith('ticktape_feed_messages_total{exchange="bitmex"'))
            if not started and total > 0:
                started.append(time.monotonic())
            return bool(started) and time.monotonic() - started[0] > 3.0

        run_capture(tmp, toml, port, done)
    t1 = time.time_ns()
    server = Server(tmp / "archive", tmp / "server.log")
    yield server, tmp, t0, t1
    server.close()


@pytest.mark.parametrize("data_types", [
    ["book_change", "book_snapshot_5_100ms"], ["trade", "book_ticker", "derivative_ticker", "liquidation"],
], ids=lambda v: "+".join(v))
def test_bitmex_matches_tardis(modules: Path, captured: Any, data_types: list[str]) -> None:
    server, tmp, t0, t1 = captured
    frm, to = minute_range(t0, t1)
    options: dict[str, Any] = {"exchange": "bitmex", "symbols": list(SYMBOLS), "from": frm, "to": to,
                               "dataTypes": data_types, "withDisconnectMessages": True}
    theirs = oracle(modules, tmp / "+".join(data_types), server, options)
    ours = server.get("replay-normalized", options).splitlines()
    least = {"liquidation": 1, "derivative_ticker": 5}  # a liquidation needs a sharp move; instrument: 2/s
    for t in data_types:
        t = "book_snapshot" if t.startswith("book_snapshot") else t
        assert sum(f'"type":"{t}"'.encode() in line for line in theirs) >= least.get(t, 20), (t, options)
    assert ours == theirs, first_difference(ours, theirs)


RECORDED = ("XRPU21", "UNIUSDT", "XBTUSD", "ADAUSDT", "SOLUSDT", "TRXU21", "EOSUSDT", "TRXUSDT", "BCHUSD", "MATICUSDT")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Iterator[tuple[Server, Path, int, int]]:
    """The real 2021 recording (update and delete without a price) replayed into ``capture run``."""
    from ports import free_port_pair

    tmp = tmp_path_factory.mktemp("diff-bitmex-recorded")
    rec = samples_dir / "bitmex" / "cryptofeed_v2_BITMEX.ws.1.0"
    want = sum(1 for line in rec.read_bytes().splitlines() if b': {"table":' in line)
    port = free_port_pair()
    t0 = time.time_ns()
    with SimulatorThread({"bitmex": None}, replay=rec, replay_speed=5.0) as sim:
        toml = f"""
[exchanges.bitmex]
symbols = {list(RECORDED)!r}
channels = ["trades", "book_change", "book_ticker"]
url = "{sim.ws_url('bitmex')}"
""".replace("'", '"')

        def done() -> bool:
            m = metrics(port)
            return sum(v for k, v in m.items() if k.startswith('ticktape_feed_messages_total{exchange="bitmex"')
                       and 'symbol="_"' not in k) >= want

        run_capture(tmp, toml, port, done)
    t1 = time.time_ns()
    server = Server(tmp / "archive", tmp / "server.log")
    yield server, tmp, t0, t1
    server.close()


def test_bitmex_recording_matches_tardis(modules: Path, recorded: Any) -> None:
    server, tmp, t0, t1 = recorded
    frm, to = minute_range(t0, t1)
    options: dict[str, Any] = {"exchange": "bitmex", "symbols": list(RECORDED), "from": frm, "to": to,
                               "dataTypes": ["book_change", "trade", "book_ticker"], "withDisconnectMessages": True}
    theirs = oracle(modules, tmp / "recorded", server, options)
    ours = server.get("replay-normalized", options).splitlines()
    assert sum(b'"type":"book_change"' in line for line in theirs) > 1000 and any(b'"type":"trade"' in x for x in theirs)
    assert ours == theirs, first_difference(ours, theirs)
