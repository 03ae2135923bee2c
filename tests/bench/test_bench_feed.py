"""``capture bench feed``: a real capture driven by the blaster; the JSON contract holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_feed_json_contract() -> None:
    scen = "aggtrade_noraw,diff17_raw,bybit50_raw,hl_l2book_raw"
    out = subprocess.run(
        [sys.executable, "-m", "ticktape.engine.cli", "bench", "feed", "--json", "--scenarios", scen,
         "--scale", "0.001", "--idle-seconds", "1"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    fig = json.loads(out.stdout)
    assert set(fig["cpu_us_per_frame"]) == set(scen.split(","))
    assert all(v > 0 for v in fig["cpu_us_per_frame"].values())
    assert fig["idle_cpu_ms_per_s"] >= 0
    for name, d in fig["detail"].items():
        assert d["frames"] >= 1000, name
        assert d["ring_dropped"] == 0 and d["gaps"] == 0, (name, d)
        assert set(d["by_process_us_per_frame"]) >= {"supervisor", "ingest", "writer"}, (name, d)
