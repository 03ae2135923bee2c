"""Differential suite for okex (spot) and okex-swap: ``/replay-normalized`` against tardis-dev 13.35.3's
own ``replayNormalized`` with the same Tardis exchange ids, on an archive ``capture run`` made from the
simulator's OKX dialect (books with seqId and checksum, trades, tickers; the swaps' funding-rate,
mark-price, open-interest, index-tickers and liquidation-orders).

Compared: trades (captured with ``trade_stream = "trades-all"``, the channel tardis-dev reads for recent
dates) and the books (book_change and snapshots). Not comparable with tardis-dev 13.35.3, which takes
book_ticker from ``bbo-tbt`` (we use ``tickers``), keeps index prices under the index's own instId (we
file ``index-tickers`` under the swap) and asks for its generated ``liquidations`` channel beside
``liquidation-orders``: its filters name channels or symbols this archive does not have."""

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

SPOT = ("BTC-USDT", "ETH-USDT")
SWAP = ("BTC-USDT-SWAP", "ETH-USDT-SWAP")


def _feed_total(m: dict[str, float], exchange: str) -> float:
    return sum(v for k, v in m.items()
               if k.startswith(f'ticktape_feed_messages_total{{exchange="{exchange}"') and 'symbol="_"' not in k)


@pytest.fixture(scope="module")
def modules() -> Path:
    return tardis_modules()


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, int, int]]:
    from ports import free_port_pair

    tmp = tmp_path_factory.mktemp("diff-okx")
    port = free_port_pair()
    t0 = time.time_ns()
    with SimulatorThread({"okex": list(SPOT), "okex-swap": list(SWAP)}, rate=30.0, seed=9, trade_share=0.4) as sim:
        toml = f"""
[exchanges.okex]
symbols = {list(SPOT)!r}
channels = ["trades", "book_change", "book_ticker"]
trade_stream = "trades-all"
url = "{sim.ws_url('okex')}"

[exchanges.okex-swap]
symbols = {list(SWAP)!r}
channels = ["trades", "book_change", "book_ticker", "derivative_ticker", "liquidations"]
trade_stream = "trades-all"
url = "{sim.ws_url('okex-swap')}"
""".replace("'", '"')
        started: list[float] = []

        def done() -> bool:
            m = metrics(port)
            if not started and _feed_total(m, "okex") > 0 and _feed_total(m, "okex-swap") > 0:
                started.append(time.monotonic())
            return bool(started) and time.monotonic() - started[0] > 3.0

        run_capture(tmp, toml, port, done)
    t1 = time.time_ns()
    server = Server(tmp / "archive", tmp / "server.log")
    yield server, tmp, t0, t1
    server.close()


@pytest.mark.parametrize(("exchange", "data_types"), [
    ("okex", ["trade", "book_change"]),
    ("okex", ["book_snapshot_5_100ms"]),
    ("okex-swap", ["trade", "book_change", "book_snapshot_10_1s"]),
], ids=lambda v: v if isinstance(v, str) else "+".join(v))
def test_okx_ids_match_tardis(modules: Path, captured: Any, exchange: str, data_types: list[str]) -> None:
    server, tmp, t0, t1 = captured
    frm, to = minute_range(t0, t1)
    symbols = list(SPOT if exchange == "okex" else SWAP)
    options: dict[str, Any] = {"exchange": exchange, "symbols": symbols, "from": frm, "to": to,
                               "dataTypes": data_types, "withDisconnectMessages": True}
    theirs = oracle(modules, tmp / f"{exchange}-{'+'.join(data_types)}", server, options)
    ours = server.get("replay-normalized", options).splitlines()
    assert sum(b'"type":"disconnect"' not in line for line in theirs) > 10, f"tardis-dev produced no data for {options}"
    assert ours == theirs, first_difference(ours, theirs)
