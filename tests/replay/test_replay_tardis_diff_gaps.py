"""Differential suite for a sequence gap on the venues that resync by resubscribing (bybit-spot, okex,
okex-swap, deribit, bitmex: a missed insert seen at the level's next update): ``/replay-normalized`` against tardis-dev 13.35.3's own ``replayNormalized`` on an archive
``capture run`` made from the simulator with one ``gap`` fault per venue, captured until each venue resynced.

tardis-dev maps every book frame as it is, the deltas between the gap and the resubscribe's snapshot
included; ticktape's connector skips those (they are in ``raw`` only), and the default ``bookGaps: "tardis"``
adds them back before the snapshot (``replay.book_gaps``): the books must match strictly."""

from __future__ import annotations

import json
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

#: per venue: the symbols captured, the one whose book frames get a gap, the capture's TOML extras
VENUES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "bybit-spot": (("BTCUSDT",), "BTCUSDT", "depth = 50"),
    "okex": (("BTC-USDT",), "BTC-USDT", ""),
    "okex-swap": (("ETH-USDT-SWAP",), "ETH-USDT-SWAP", ""),
    "deribit": (("BTC-PERPETUAL",), "BTC-PERPETUAL", ""),
    "bitmex": (("XBTUSD",), "XBTUSD", ""),
}


def _resyncs(m: dict[str, float], exchange: str) -> float:
    return sum(v for k, v in m.items() if k.startswith(f'ticktape_feed_resyncs_total{{exchange="{exchange}",'))


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, int, int]]:
    from ports import free_port_pair

    tmp = tmp_path_factory.mktemp("diff-gaps")
    port = free_port_pair()
    t0 = time.time_ns()
    with SimulatorThread({ex: list(v[0]) for ex, v in VENUES.items()}, rate=25.0, seed=11, trade_share=0.2) as sim:
        toml = "".join(f"""
[exchanges.{ex}]
symbols = {json.dumps(list(syms))}
channels = ["book_change"]
url = "{sim.ws_url(ex)}"
{extra}
""" for ex, (syms, _, extra) in VENUES.items())
        gaps = {ex: Fault("gap", ex, symbol=v[1]) for ex, v in VENUES.items()}
        started: list[float] = []

        def done() -> bool:
            # the gaps come once every venue's book flows; the capture ends 1.5 s after every venue resynced
            m = metrics(port)
            if not started:
                if all(_feed_total(m, ex) > 0 for ex in VENUES):
                    started.append(time.monotonic())
                return False
            el = time.monotonic() - started[0]
            if el > 1.5 and gaps:
                for f in gaps.values():
                    sim.fault(f)
                gaps.clear()
            if not gaps and len(started) == 1 and all(_resyncs(m, ex) >= 1 for ex in VENUES):
                started.append(time.monotonic())
            return len(started) == 2 and time.monotonic() - started[1] > 1.5

        run_capture(tmp, toml, port, done)
    t1 = time.time_ns()
    server = Server(tmp / "archive", tmp / "server.log")
    yield server, tmp, t0, t1
    server.close()


@pytest.mark.parametrize("data_types", [["book_change"], ["book_snapshot_5_100ms"]], ids=lambda v: "+".join(v))
@pytest.mark.parametrize("exchange", list(VENUES))
def test_a_gap_resynced_by_resubscribing_matches_tardis(captured: Any, exchange: str, data_types: list[str]) -> None:
    server, tmp, t0, t1 = captured
    modules = tardis_modules()  # installed once (a file check after that)
    frm, to = minute_range(t0, t1)
    options: dict[str, Any] = {"exchange": exchange, "symbols": list(VENUES[exchange][0]), "from": frm, "to": to,
                               "dataTypes": data_types, "withDisconnectMessages": True}
    theirs = oracle(modules, tmp / f"{exchange}-{'+'.join(data_types)}", server, options)
    ours = server.get("replay-normalized", options).splitlines()
    # the resubscribe's snapshot is there (tardis-dev's too): the gap was resynced inside the range
    if data_types == ["book_change"]:
        snaps = {json.loads(line)["localTimestamp"] for line in theirs if b'"isSnapshot":true' in line}
        assert len(snaps) >= 2, f"no resync snapshot in tardis-dev's output for {exchange}"
    assert ours == theirs, first_difference(ours, theirs)
