"""The replay server on a base install: pandas is a test extra, not a dependency,
so nothing on the serving path may need it (pyarrow converts ns timestamps to
Python objects only through pandas). The server runs with pandas made
unimportable and must still serve every row."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from replay_proc import replay_server

from ticktape.bench.synth_archive import synth_archive

REPO = Path(__file__).resolve().parents[2]
START_NS = 1_736_186_400_000_000_000  # 2025-01-06T18:00Z


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.status == 200
        return bytes(r.read())


@pytest.mark.slow
def test_replay_serves_without_pandas(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    synth_archive(str(root), symbols=("BTCUSDT", "ETHUSDT"), start_ns=START_NS, raw_per_hour=3000,
                  trades_per_hour=2000, book_msgs_per_hour=500, levels=20, disconnects=1)
    blocker = tmp_path / "nopandas" / "pandas"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pandas deliberately unavailable')\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker.parent}{os.pathsep}{REPO}"}
    with replay_server(root, tmp_path / "server.log", env=env, cwd=tmp_path) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        raw = ds.dataset(root / "raw" / "exchange=binance-futures", format="parquet", partitioning="hive")
        want_raw = int(pc.sum(pc.greater(pc.binary_length(raw.to_table(columns=["payload"])["payload"]), 0)).as_py())
        opts = {"exchange": "binance-futures", "filters": [], "from": "2025-01-06T18:00:00Z", "to": "2025-01-06T19:00:00Z"}
        lines = _get(f"{base}/replay?options={urllib.parse.quote(json.dumps(opts))}").splitlines()
        assert len(lines) == want_raw
        want_trades = ds.dataset(root / "trades" / "exchange=binance-futures", format="parquet",
                                 partitioning="hive").count_rows()
        nopts = {"exchange": "binance-futures", "symbols": ["BTCUSDT", "ETHUSDT"], "dataTypes": ["trade"],
                 "from": "2025-01-06T18:00:00Z", "to": "2025-01-06T19:00:00Z"}
        trades = _get(f"{base}/replay-normalized?options={urllib.parse.quote(json.dumps(nopts))}").splitlines()
        assert len(trades) == want_trades
        assert json.loads(_get(f"{base}/exchanges"))[0]["id"] == "binance-futures"
    out = (tmp_path / "server.log").read_text()
    assert '"level": "ERROR"' not in out, out[-2000:]
