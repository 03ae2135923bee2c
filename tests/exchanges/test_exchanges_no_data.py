"""A configured exchange that delivers no data frame during the whole run fails the run:
``capture run`` used to exit 0 with one exchange pointed at a server that never streamed it.
Here binance-futures' url names a simulator serving only bybit (its upgrades are refused):
the run exits 3 with one line naming binance-futures (stderr, log, summary), while bybit's
symbol without data is only a warning."""

from __future__ import annotations

import json

import pytest
from feeds_run_helpers import CaptureRun, metric

from ticktape.engine.summary import NO_DATA_EXIT
from ticktape.sim.thread import SimulatorThread


@pytest.mark.slow
def test_an_exchange_without_a_single_data_frame_fails_the_run(tmp_path):
    with SimulatorThread({"bybit": ["BTCUSDT"]}, rate=40, seed=5) as sim:
        exchanges = {
            "bybit": {"symbols": ["BTCUSDT", "ETHUSDT"], "channels": ["trades"], "check_symbols": False},
            # the simulator serves no binance-futures: every upgrade is answered 404
            "binance-futures": {"symbols": ["BTCUSDT"], "channels": ["trades"], "check_symbols": False},
        }
        run = CaptureRun(tmp_path, sim, exchanges)
        try:
            run.until(lambda m: metric(m, "ticktape_feed_messages_total", exchange="bybit", symbol="BTCUSDT") >= 20
                      and metric(m, "ticktape_exchange_subscribe_errors_total", exchange="binance-futures") >= 2,
                      what="bybit streaming, binance-futures refused")
            rc = run.stop()
        finally:
            run.kill()
    out = run.output()
    assert rc == NO_DATA_EXIT == 3, out[-3000:]
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "exchange binance-futures delivered no data frame" in errors[0], errors
    assert "Traceback" not in out
    logs = [json.loads(ln) for ln in run.logs().splitlines() if ln.startswith("{")]
    assert any(r["level"] == "ERROR" and "binance-futures delivered no data frame" in r["message"] for r in logs)
    assert not any("bybit delivered no data" in r["message"] for r in logs)
    quiet = [r for r in logs if r["level"] == "WARNING" and "no data frame for ETHUSDT" in r["message"]]
    assert len(quiet) == 1 and quiet[0]["message"].startswith("bybit:"), quiet
    stopped = next(r for r in logs if r["message"] == "capture stopped")
    assert stopped["exit_code"] == 3 and stopped["summary"]["no_data"] == ["binance-futures"]
    assert stopped["summary"]["quiet_symbols"] == {"bybit": ["ETHUSDT"]}
