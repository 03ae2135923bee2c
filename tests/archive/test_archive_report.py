"""``capture report`` on an archive with scripted faults: a real capture of the
simulator with its fault script (connection drops, sequence gaps), plus a
kill -9 of one ingest process. The report lists every fault at its time with its
duration, and its coverage / book-verified figures equal an independent
computation (full reads of the data and events tables, sampled on a 1 ms grid);
the HTML page renders in headless Chromium with no console errors."""

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
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import pytest

pytestmark = pytest.mark.slow
HOUR = 3_600_000_000_000
GRID = 1_000_000  # 1 ms


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _value(text: str, metric: str, **labels: str) -> float:
    tot = 0.0
    for line in text.splitlines():
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            tot += float(line.rsplit(" ", 1)[1])
    return tot


def _until(cond, timeout: float, what: str) -> Any:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = cond()
            if got:
                return got
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False


@pytest.fixture(scope="module")
def faulty_archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("report")
    sim_port, mport = _port(), _port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "ticktape.engine.cli", "sim", "--port", str(sim_port), "--rate", "80",
         "--exchanges", "binance-futures,bybit,hyperliquid",
         "--fault", "200:drop:bybit", "--fault", "400:gap:binance-futures", "--fault", "400:gap:bybit",
         "--fault", "250:drop:hyperliquid"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    root = tmp / "archive"
    cfg = tmp / "c.toml"
    url = f"ws://127.0.0.1:{sim_port}"
    cfg.write_text(f"""
[archive]
root = "{root}"
flush_interval = 0.2
finalize_grace = 1.0
[log]
dir = "{tmp / 'logs'}"
[metrics]
port = {mport}
[ring]
records = 65536
raw_records = 65536
raw_bytes = 16777216
[supervisor]
restart_delay = 0.3
[exchanges.binance-futures]
symbols = ["BTCUSDT", "ETHUSDT"]
channels = ["trades", "book_change"]
url = "{url}"
[exchanges.bybit]
symbols = ["BTCUSDT"]
channels = ["trades", "book_change"]
depth = 50
url = "{url}"
[exchanges.hyperliquid]
symbols = ["BTC"]
channels = ["trades", "book_snapshot"]
depth = 20
url = "{url}"
""")
    env = {**os.environ, "TICKTAPE_INGEST_OPTIONS": '{"backoff_base": 0.2, "backoff_max": 0.5}'}
    out = open(tmp / "capture.out", "wb")  # noqa: SIM115
    cap = subprocess.Popen([sys.executable, "-m", "ticktape.engine.cli", "run", str(cfg)], cwd=tmp, stdout=out,
                           stderr=subprocess.STDOUT, env=env)
    try:
        _until(lambda: _ready(mport), 60, "ready")
        # the simulator's script: bybit and hyperliquid connections dropped, gaps on both diff books
        _until(lambda: (m := _metrics(mport)) and _value(m, "ticktape_exchange_disconnects_total", exchange="bybit") >= 1
               and _value(m, "ticktape_exchange_disconnects_total", exchange="hyperliquid") >= 1
               and _value(m, "ticktape_feed_gaps_total", exchange="binance-futures") >= 1
               and _value(m, "ticktape_feed_gaps_total", exchange="bybit") >= 1, 90, "the scripted faults")
        m = _metrics(mport)
        pid = int(_value(m, "ticktape_child_pid", name="ingest-binance-futures"))
        os.kill(pid, signal.SIGKILL)
        killed_ns = time.time_ns()
        _until(lambda: _value(_metrics(mport), "ticktape_child_restarts_total", name="ingest-binance-futures") >= 1,
               60, "ingest restarted")
        _until(lambda: _ready(mport), 60, "ready again after the kill")
        time.sleep(1.0)  # a little data after the recovery (the end of the feed's span)
        _until(lambda: _value(_metrics(mport), "ticktape_exchange_reconnects_total", exchange="bybit") >= 1, 30,
               "bybit reconnected")
    finally:
        cap.send_signal(signal.SIGINT)
        rc = cap.wait(120)
        out.close()
        sim.terminate()
        sim.wait(10)
    assert rc == 0, (tmp / "capture.out").read_text()[-3000:]
    return {"root": root, "tmp": tmp, "killed_ns": killed_ns}


def _report(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ticktape.engine.cli", "report", str(root), *args],
                          capture_output=True, text=True, timeout=120)


def _events(root: Path) -> list[dict[str, Any]]:
    t = ds.dataset(root / "events", format="parquet", partitioning="hive").to_table(
        columns=["exchange", "symbol", "local_ts_ns", "kind", "detail"])
    rows = t.to_pylist()
    for r in rows:
        r["kind"] = str(r["kind"])
        r["detail"] = r["detail"] or ""
    return sorted(rows, key=lambda r: r["local_ts_ns"])


def _spans(root: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """First and last local_ts_ns of every feed, from a full read of every data table."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for table in os.listdir(root):
        if table.startswith(".") or table == "events":
            continue
        t = ds.dataset(root / table, format="parquet", partitioning="hive").to_table(
            columns=["exchange", "symbol", "local_ts_ns"])
        for r in t.group_by(["exchange", "symbol"]).aggregate([("local_ts_ns", "min"), ("local_ts_ns", "max")]).to_pylist():
            k = (str(r["exchange"]), str(r["symbol"]))
            if k[1] == "_":
                continue
            lo, hi = out.get(k, (r["local_ts_ns_min"], r["local_ts_ns_max"]))
            out[k] = (min(lo, r["local_ts_ns_min"]), max(hi, r["local_ts_ns_max"]))
    return out


def _grid_share(exchange: str, symbol: str, events: list[dict[str, Any]], span: tuple[int, int],
                book: bool) -> dict[int, float]:
    """Per hour, the share covered (or book-verified), by sampling the span every millisecond."""
    t = np.arange(span[0], span[1], GRID, dtype=np.int64)
    mine = [e for e in events if e["exchange"] == exchange and e["symbol"] in (symbol, "_")]
    connects = np.array([e["local_ts_ns"] for e in events if e["exchange"] == exchange and e["kind"] == "connect"],
                        dtype=np.int64)
    ok = np.ones(len(t), dtype=bool)
    for e in mine:
        if e["kind"] != "disconnect":
            continue
        m = re.search(r"last frame ns=(\d+)", e["detail"])
        a = int(m[1]) if m else e["local_ts_ns"]
        later = connects[connects > e["local_ts_ns"]]
        b = int(later[0]) if len(later) else span[1]
        ok &= ~((t >= a) & (t < b))
    if book:  # verified from a connect or a snapshot resync, broken by gaps, drops, resync requests, disconnects
        state = np.zeros(len(t), dtype=bool)
        marks = []
        for e in mine:
            if e["kind"] == "connect" or (e["kind"] == "resync" and e["detail"].startswith(("synced at", "snapshot at",
                                                                                             "u == 1"))):
                marks.append((e["local_ts_ns"], True))
            elif e["kind"] in ("gap", "drop", "checksum", "resync") or (e["kind"] == "disconnect" and e["symbol"] in (symbol, "_")):
                m = re.search(r"last frame ns=(\d+)", e["detail"])
                marks.append((int(m[1]) if m else e["local_ts_ns"], False))
        on = None
        for ts, up in sorted(marks, key=lambda x: x[0]):
            if up and on is None:
                on = ts
            elif not up and on is not None:
                state |= (t >= on) & (t < ts)
                on = None
        if on is not None:
            state |= t >= on
        ok &= state
    hours = t - t % HOUR
    return {int(h): float(ok[hours == h].sum()) * GRID / HOUR for h in np.unique(hours)}


def test_report_lists_each_fault_with_time_and_duration(faulty_archive: dict[str, Any]) -> None:
    root = faulty_archive["root"]
    r = _report(root, "--format", "json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    events = _events(root)
    faults = rep["faults"]

    def connect_after(ex: str, ts: int) -> int:
        return next(e["local_ts_ns"] for e in events if e["exchange"] == ex and e["kind"] == "connect" and e["local_ts_ns"] > ts)

    # the simulator's connection drops: one disconnect each, lasting until the reconnect
    for ex in ("bybit", "hyperliquid"):
        lost = [e for e in events if e["exchange"] == ex and e["kind"] == "disconnect" and e["detail"] == "connection lost"]
        assert lost, ex
        f = [x for x in faults if x["exchange"] == ex and x["kind"] == "disconnect" and x["detail"] == "connection lost"]
        assert len(f) == len({e["local_ts_ns"] for e in lost})
        ts = lost[0]["local_ts_ns"]
        assert f[0]["start_ns"] == ts and f[0]["end_ns"] == connect_after(ex, ts)
        assert f[0]["duration_s"] == pytest.approx((connect_after(ex, ts) - ts) / 1e9) and f[0]["duration_s"] > 0
    # the gaps: at the gap event, lasting until the book was rebuilt from a snapshot
    for ex in ("binance-futures", "bybit"):
        gaps = [e for e in events if e["exchange"] == ex and e["kind"] == "gap"]
        assert gaps, ex
        f = [x for x in faults if x["exchange"] == ex and x["kind"] == "gap"]
        assert [x["start_ns"] for x in f] == sorted({e["local_ts_ns"] for e in gaps})
        g = gaps[0]
        fixed = next(e["local_ts_ns"] for e in events if e["exchange"] == ex and e["local_ts_ns"] > g["local_ts_ns"]
                     and e["symbol"] == g["symbol"] and e["kind"] == "resync"
                     and e["detail"].startswith(("synced at", "snapshot at")))
        assert f[0]["end_ns"] == fixed and f[0]["duration_s"] > 0
        assert g["symbol"] in f[0]["symbols"]
    # the kill -9: each symbol's hole starts at its own last frame before the kill, not at the restart
    k = [x for x in faults if x["exchange"] == "binance-futures" and x["kind"] == "disconnect"
         and x["detail"].startswith("ingest process restarted")]
    assert sorted(s for x in k for s in x["symbols"]) == ["BTCUSDT", "ETHUSDT"], faults
    for x in k:
        last = int(re.search(r"last frame ns=(\d+)", x["detail"])[1])
        assert x["start_ns"] == last and last < faulty_archive["killed_ns"]
        restart_marker = next(e["local_ts_ns"] for e in events if e["detail"] == x["detail"])
        assert last < restart_marker and x["end_ns"] == connect_after("binance-futures", restart_marker)
        assert x["duration_s"] == pytest.approx((x["end_ns"] - last) / 1e9)
    assert not [x for x in faults if x["detail"] == "shutdown"]  # the capture's own stop is no fault
    # counts straight from the events table
    for ex, counts in rep["counts"].items():
        for kind, n in counts.items():
            assert n == sum(1 for e in events if e["exchange"] == ex and e["kind"] == kind)


def test_report_coverage_equals_an_independent_computation(faulty_archive: dict[str, Any]) -> None:
    root = faulty_archive["root"]
    rep = json.loads(_report(root, "--format", "json").stdout)
    events = _events(root)
    spans = _spans(root)
    assert {(f["exchange"], f["symbol"]) for f in rep["feeds"]} == set(spans)
    seen_hole = False
    for h in rep["hours"]:
        key = (h["exchange"], h["symbol"])
        cov = _grid_share(*key, events, spans[key], book=False)
        hour_ns = min(cov, key=lambda x: abs(x - _iso_ns(h["hour"])))
        assert h["coverage"] == pytest.approx(cov[hour_ns], abs=5e-6), key
        span_share = (min(spans[key][1], hour_ns + HOUR) - max(spans[key][0], hour_ns)) / HOUR
        seen_hole |= h["coverage"] < span_share - 1e-4
        if key[0] in ("binance-futures", "bybit"):
            ver = _grid_share(*key, events, spans[key], book=True)
            assert h["book_verified"] == pytest.approx(ver[hour_ns], abs=5e-6), key
            assert h["book_verified"] <= h["coverage"] + 1e-9
    assert seen_hole  # the faults left holes the coverage shows


def _iso_ns(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()) * 1_000_000_000


def test_html_report_renders_in_headless_chromium(faulty_archive: dict[str, Any], tmp_path: Path) -> None:
    root = faulty_archive["root"]
    page = tmp_path / "report.html"
    r = _report(root, "--format", "html", "--out", str(page))
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert text.count('class="hole"') >= 3  # bybit, hyperliquid drops and the kill
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (.ci/run installs Debian's chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "report.png"
    r = subprocess.run([chromium, *flags, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                        "--window-size=1280,1600", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000, r.stderr[-3000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = subprocess.run([chromium, *flags, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.stdout.count("<svg") == len(json.loads(_report(root, "--format", "json").stdout)["feeds"])
    assert 'class="hole"' in dom.stdout and "binance-futures" in dom.stdout


def test_report_bad_input_is_one_line(tmp_path: Path, faulty_archive: dict[str, Any]) -> None:
    r = _report(tmp_path / "nope")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr
    r = _report(faulty_archive["root"], "--from", "yesterday")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bad time" in r.stderr
    r = _report(faulty_archive["root"], "--format", "table")
    assert r.returncode == 0 and "coverage per feed and hour" in r.stdout and "faults" in r.stdout


@pytest.mark.s3
def test_report_reads_an_s3_archive_like_the_local_one(tmp_path: Path, s3: Any, bucket: str, s3_endpoint: str) -> None:
    from ticktape.archive import report
    from ticktape.archive.s3_client import S3Options, make_fs
    from ticktape.bench.report import build_archive

    root = tmp_path / "a"
    build_archive(str(root), days=1, n_symbols=2, rows=400)
    for p in root.rglob("*.parquet"):
        rel = p.relative_to(root).as_posix()
        if not rel.startswith("."):
            s3.upload_file(str(p), bucket, f"ticks/{rel}")
    local = report.build(str(root)).as_dict()
    remote = report.build(f"s3://{bucket}/ticks", fs=make_fs(S3Options(endpoint_url=s3_endpoint))).as_dict()
    assert local["faults"] and local["hours"]
    for k in ("feeds", "hours", "faults", "counts", "tables"):
        assert remote[k] == local[k], k
    # and through the CLI, the endpoint from the environment as for `capture s3`
    r = subprocess.run([sys.executable, "-m", "ticktape.engine.cli", "report", f"s3://{bucket}/ticks", "--format", "json"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "AWS_ENDPOINT_URL": s3_endpoint})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["hours"] == local["hours"]
