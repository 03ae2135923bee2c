"""A fleet of two shards of one config, as two ``capture run --shard K/2`` processes with their own
roots, syncing to one S3 prefix (moto's server) against the simulator: no key is written twice,
the union restored from the bucket holds every feed of the config with every trade the simulator
sent (one for one), and ``capture replay serve --archive s3://`` serves the union in local-time
order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow.compute as pc
import pytest
from feeds_run_helpers import CaptureRun, metric
from replay_proc import replay_server

from ticktape.archive import loaders
from ticktape.archive.layout import FileKey
from ticktape.archive.local_s3 import LocalS3Server
from ticktape.engine import shard
from ticktape.engine.config import from_dict
from ticktape.sim.thread import SimulatorThread

EXCHANGES = {
    "binance-futures": {"symbols": ["BTCUSDT", "ETHUSDT"], "channels": ["trades"]},
    "bybit": {"symbols": ["BTCUSDT", "ETHUSDT"], "channels": ["trades"]},
}
TRADE_CHANNEL = {"binance-futures": "trade", "bybit": "publicTrade"}
CREDS = {"AWS_ACCESS_KEY_ID": "fleettestkey", "AWS_SECRET_ACCESS_KEY": "fleet-test-secret", "AWS_REGION": "us-east-1"}
URL = "s3://fleet/ticks"


def sent_trade_ids(sim: SimulatorThread, ex: str, sym: str) -> list[str]:
    out: list[str] = []
    for s in sim.sent(ex, TRADE_CHANNEL[ex], sym):
        d = json.loads(s.data)["data"]
        out += [str(d["t"])] if ex == "binance-futures" else [str(t["i"]) for t in d]
    return out


def uploads(log: Path) -> list[str]:
    """The relpaths a capture's background sync uploaded (its JSON log lines)."""
    out = []
    for line in log.read_text().splitlines():
        msg = json.loads(line).get("message", "")
        if msg.startswith("upload "):
            out.append(msg.split()[1])
    return out


def replay_lines(port: int, options: dict[str, object]) -> list[dict[str, object]]:
    q = urllib.parse.quote(json.dumps(options))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/replay?options={q}", timeout=60) as r:
        return [json.loads(line) for line in r.read().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.s3
def test_two_shards_one_prefix_no_key_twice_union_is_the_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {**CREDS, "AWS_CONFIG_FILE": str(tmp_path / "nocfg"),
                 "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "nocreds")}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    fleet = from_dict({"exchanges": EXCHANGES}, "fleet")
    assigned = {k: shard.assign(fleet, k, 2) for k in (1, 2)}
    mine = {k: {(f.exchange, f.symbol) for f in a.feeds} for k, a in assigned.items()}
    assert mine[1] | mine[2] == {(ex, s) for ex, c in EXCHANGES.items() for s in c["symbols"]}
    assert not mine[1] & mine[2] and len(mine[1]) == len(mine[2]) == 2
    # both shards capture both exchanges: each writes its own rows of no symbol (symbol=_) for each
    assert {ex for ex, _ in mine[1]} == {ex for ex, _ in mine[2]} == set(EXCHANGES)

    with LocalS3Server(log_path=str(tmp_path / "moto.log")) as s3srv, \
            SimulatorThread(list(EXCHANGES), rate=80, seed=15) as sim:
        s3 = boto3.client("s3", endpoint_url=s3srv.endpoint, region_name="us-east-1",
                          aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket="fleet")
        s3_toml = f'[s3]\nurl = "{URL}"\nendpoint_url = "{s3srv.endpoint}"\n'
        runs = {k: CaptureRun(tmp_path, sim, EXCHANGES, raw=True, extra_toml=s3_toml, root=tmp_path / f"host{k}",
                              args=("--shard", f"{k}/2", "--root", str(tmp_path / f"host{k}")))
                for k in (1, 2)}
        try:
            for k, run in runs.items():
                run.until(lambda m, k=k: all(metric(m, "ticktape_feed_messages_total", exchange=ex, symbol=s) >= 20
                                             for ex, s in mine[k]), what=f"shard {k}'s feeds streaming")
            sim.call(lambda s: s.rates.update({e: 0.0 for e in s.rates}))  # no more trades from here on
            for k, run in runs.items():
                run.until(lambda m, k=k: all(
                    metric(m, "ticktape_feed_messages_total", exchange=ex, symbol=s) >= len(sim.sent(ex, None, s))
                    for ex, s in mine[k]), what=f"shard {k} read every frame sent")
            for run in runs.values():
                assert run.stop() == 0, run.output()[-3000:]
        finally:
            for run in runs.values():
                run.kill()

        # the capture said which shard it is, in its own log file (shards may share a log dir)
        logs = {k: tmp_path / "logs" / f"capture-shard-{k}-of-2.log" for k in (1, 2)}
        for k, log in logs.items():
            assert f"shard {k}/2: 2 of 4 feeds" in log.read_text()

        # no key written twice: every object was uploaded by exactly one shard, once
        listed = [o["Key"].removeprefix("ticks/") for o in
                  s3.list_objects_v2(Bucket="fleet", Prefix="ticks/").get("Contents", [])]
        up = {k: uploads(log) for k, log in logs.items()}
        both = up[1] + up[2]
        assert len(both) == len(set(both)), [r for r, n in Counter(both).items() if n > 1]
        assert sorted(both) == sorted(listed)
        keys = [FileKey.from_relpath(r) for r in listed]
        assert {k.tag for k in keys} == {"shard-1-of-2", "shard-2-of-2"}
        assert all(k.tag == "shard-1-of-2" for k in keys if k.symbol != "_" and (k.exchange, k.symbol) in mine[1])
        # the per-exchange rows of no symbol: one file per shard in the same hour directory
        no_sym = Counter(k.slot for k in keys if k.data_type == "events" and k.symbol == "_")
        assert no_sym and set(no_sym.values()) == {2}, no_sym

        # the union, restored from the bucket by range, is the fleet's feed set with every trade sent
        union = tmp_path / "union"
        env = {**os.environ, "AWS_ENDPOINT_URL": s3srv.endpoint}
        started = min(r.started for r in runs.values()) - timedelta(minutes=1)
        span = (f"{started:%Y-%m-%dT%H:%M}Z", f"{datetime.now(UTC) + timedelta(minutes=1):%Y-%m-%dT%H:%M}Z")
        for ex, cfg in EXCHANGES.items():
            r = subprocess.run([sys.executable, "-m", "ticktape.engine.cli", "s3", "restore", URL, str(union),
                                "--exchange", ex, "--symbol", ",".join([*cfg["symbols"], "_"]),
                                "--from", span[0], "--to", span[1], "-q"],
                               env=env, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[-2000:]
        restored = sorted(p.relative_to(union).as_posix() for p in union.rglob("*.parquet") if ".tmp" not in p.parts)
        assert restored == sorted(listed)
        # a single capture's feed set: every (exchange, symbol) of the config in each table it writes
        feeds = {(ex, s) for ex, c in EXCHANGES.items() for s in c["symbols"]}
        for table in ("trades", "raw", "events"):
            assert {(k.exchange, k.symbol) for k in keys if k.data_type == table and k.symbol != "_"} == feeds, table
        for ex, cfg in EXCHANGES.items():
            for sym in cfg["symbols"]:
                k = 1 if (ex, sym) in mine[1] else 2
                got = [str(x) for x in loaders.load(str(union), ex, "trades", sym, *span)["id"].to_pylist()]
                assert got == sent_trade_ids(sim, ex, sym) and len(got) >= 10, (ex, sym)
                local = loaders.load(str(runs[k].root), ex, "trades", sym, *span)
                assert local["id"].to_pylist() == got

        # replay from s3:// serves the union: both shards' feeds of an exchange, in local-time order
        with replay_server(URL, tmp_path / "replay.log", env=env, cwd=tmp_path) as srv:
            port = srv.port
            for ex, cfg in EXCHANGES.items():
                lines = replay_lines(port, {"exchange": ex, "from": span[0], "to": span[1],
                                            "filters": [{"channel": TRADE_CHANNEL[ex], "symbols": cfg["symbols"]}]})
                stamps = [str(x["localTimestamp"]) for x in lines]
                assert stamps == sorted(stamps)
                raw = [loaders.load(str(union), ex, "raw", sym, *span) for sym in cfg["symbols"]]
                frames = sum(int(pc.sum(pc.greater(pc.binary_length(t["payload"]), 0)).as_py() or 0) for t in raw)
                assert len(lines) == frames and frames >= 20, (ex, len(lines), frames)
                assert {str(x["message"]["data"]["s"] if ex == "binance-futures" else x["message"]["topic"]).split(".")[-1]
                        for x in lines} == set(cfg["symbols"])  # both shards' feeds, interleaved by time
