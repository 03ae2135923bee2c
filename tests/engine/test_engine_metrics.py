"""/metrics, /healthz and /readyz of a real ``capture run`` against the simulator:
the exposition parses as OpenMetrics (negotiated by Accept) and as text 0.0.4,
passes ``promtool check metrics``, and /readyz turns ready only once every feed's
frames arrive (the simulator is started after the capture, so nothing can be
subscribed before it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

pytestmark = pytest.mark.slow

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def _until(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            got = cond()
            if got:
                return got
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} ({last})")


def test_metrics_formats_promtool_and_readiness(tmp_path: Path, capture_cmd: list[str]) -> None:
    sim_port, mport = free_tcp_port(), free_tcp_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[archive]
root = "{tmp_path / 'archive'}"
flush_interval = 0.2
[log]
dir = "{tmp_path / 'logs'}"
[metrics]
port = {mport}
[ring]
records = 65536
raw_records = 65536
raw_bytes = 8388608
[exchanges.hyperliquid]
symbols = ["BTC", "ETH"]
channels = ["trades", "book_snapshot"]
depth = 20
url = "ws://127.0.0.1:{sim_port}"
check_symbols = false  # the venue only comes up later in this test
""")
    base = f"http://127.0.0.1:{mport}"
    out = open(tmp_path / "capture.out", "wb")  # noqa: SIM115
    cap = subprocess.Popen([*capture_cmd, "run", str(cfg)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                           env={**os.environ, "TICKTAPE_INGEST_OPTIONS": '{"backoff_base": 0.05, "backoff_max": 0.3}'})
    sim = None
    try:
        _until(lambda: _get(f"{base}/healthz")[0] == 200, 60, "/healthz")
        # no exchange to talk to: alive but not ready, naming the feeds
        _until(lambda: cap.poll() is None and "ingest-hyperliquid" in _get(f"{base}/metrics")[2], 30, "children")
        time.sleep(1.0)  # give a wrongly-ready capture the chance to say so
        status, _, body = _get(f"{base}/readyz")
        assert status == 503 and "hyperliquid/BTC: no frame yet" in body and "hyperliquid/ETH" in body, body
        _, _, text = _get(f"{base}/metrics")
        assert "ticktape_ready 0.0" in text

        sim = subprocess.Popen([sys.executable, "-m", "ticktape.engine.cli", "sim", "--port", str(sim_port),
                                "--exchanges", "hyperliquid", "--rate", "50"], stdout=subprocess.DEVNULL)
        _until(lambda: _get(f"{base}/readyz")[0] == 200, 60, "/readyz 200 after the simulator started")
        fams = {f.name: f for f in parse_text(_get(f"{base}/metrics")[2])}
        msgs = {s.labels["symbol"]: s.value for s in fams["ticktape_feed_messages"].samples}
        assert msgs["BTC"] > 0 and msgs["ETH"] > 0  # ready means frames arrived for every symbol
        assert fams["ticktape_ready"].samples[0].value == 1

        # text 0.0.4 by default; OpenMetrics when asked for
        status, ctype, text = _get(f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), ctype
        status, ctype, om = _get(f"{base}/metrics", accept=OPENMETRICS)
        assert status == 200 and ctype.startswith("application/openmetrics-text"), ctype
        assert om.endswith("# EOF\n")
        om_fams = {f.name: f for f in parse_openmetrics(om)}  # raises on clashing names, bad suffixes
        for name in ("ticktape_feed_messages", "ticktape_ring_dropped_records", "ticktape_child_restarts",
                     "ticktape_exchange_disconnects"):
            assert om_fams[name].type == "counter", name
        for name in ("ticktape_writer_lag_seconds", "ticktape_ring_fill_ratio", "ticktape_disk_free_bytes",
                     "ticktape_feed_last_message_age_seconds"):
            assert om_fams[name].type == "gauge", name
        lag = [s.value for s in om_fams["ticktape_writer_lag_seconds"].samples]
        assert lag and all(0 <= v < 30 for v in lag)
        assert all(s.labels["symbol"] != "_" for s in om_fams["ticktape_feed_messages"].samples)

        # the shipped Grafana dashboard asks only for series the capture exports
        dashboard = (Path(__file__).resolve().parents[2] / "docs" / "grafana" / "ticktape.json").read_text()
        exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
        wanted = set(re.findall(r"ticktape_[a-z_]+", json.loads(dashboard) and dashboard))
        assert wanted and wanted <= exported, wanted - exported

        # per (exchange, symbol, channel) counters, with the venue's own channel names
        for name in ("ticktape_feed_channel_messages", "ticktape_feed_channel_bytes"):
            assert om_fams[name].type == "counter", name
        streams = {(s.labels["exchange"], s.labels["symbol"], s.labels["channel"])
                   for s in om_fams["ticktape_feed_channel_messages"].samples if s.name.endswith("_total")}
        assert streams == {("hyperliquid", sym, ch) for sym in ("BTC", "ETH") for ch in ("trades", "l2Book")}, streams

        promtool = shutil.which("promtool")
        if promtool is not None:  # .ci/run installs Debian's prometheus; elsewhere the parsers above must do
            # promtool lints the Prometheus text format (its check reads OpenMetrics' family
            # names as help-less); the OpenMetrics body is checked by the OpenMetrics parser above
            r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr

        # the venue goes away: once the counters stop moving, each symbol's channels sum to its messages
        sim.terminate()
        sim.wait(10)
        sim = None
        seen: list[dict[tuple[str, str], float]] = []

        def settled() -> bool:
            fams = {f.name: f for f in parse_text(_get(f"{base}/metrics")[2])}
            ch = {(x.labels["symbol"], x.labels["channel"]): x.value
                  for x in fams["ticktape_feed_channel_messages"].samples}
            per_sym = {x.labels["symbol"]: x.value for x in fams["ticktape_feed_messages"].samples}
            seen.append(ch)
            time.sleep(0.3)  # two scrapes 0.3 s apart (the counters are published 10 times a second)
            return len(seen) > 1 and seen[-2] == ch and all(
                sum(v for (s2, _), v in ch.items() if s2 == sym) == n for sym, n in per_sym.items())

        _until(settled, 60, "per-channel counters to settle and sum to the per-symbol ones")
        counted = seen[-1]
    finally:
        if cap.poll() is None:
            cap.send_signal(signal.SIGINT)
            assert cap.wait(90) == 0, (tmp_path / "capture.out").read_text()[-3000:]
        out.close()
        if sim is not None:
            sim.terminate()
            sim.wait(10)
    # ... and equal the frames archived per (symbol, channel) (disconnect markers are empty rows)
    raw = ds.dataset(tmp_path / "archive" / "raw" / "exchange=hyperliquid", partitioning="hive").to_table(
        columns=["symbol", "channel", "payload"])
    frames = raw.filter(pc.greater(pc.binary_length(raw["payload"]), 0))
    archived = {(r["symbol"], r["channel"]): float(r["count"]) for r in frames.group_by(["symbol", "channel"]).aggregate(
        [([], "count_all")]).rename_columns(["symbol", "channel", "count"]).to_pylist() if r["symbol"] != "_"}
    assert archived == counted and min(counted.values()) > 0, (archived, counted)
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed: checked with prometheus_client's parsers only")
