"""``capture bench feed``: a real capture driven by the blaster; the JSON contract holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ticktape.bench.feed import _flag_drops

ROOT = Path(__file__).resolve().parents[2]


def test_bench_feed_json_contract() -> None:
    scen = "aggtrade_noraw,diff17_raw,bybit50_raw,hl_l2book_raw"
    out = subprocess.run(
        [sys.executable, "-m", "ticktape.engine.cli", "bench", "feed", "--json", "--scenarios", scen,
         "--scale", "0.001", "--idle-seconds", "1", "--idle-windows", "2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    fig = json.loads(out.stdout)
    assert set(fig["cpu_us_per_frame"]) == set(scen.split(","))
    assert all(v > 0 for v in fig["cpu_us_per_frame"].values())
    assert fig["idle_cpu_ms_per_s"] >= 0
    assert len(fig["idle_windows"]) == 2  # the figure is the median window; each window is kept
    for w in fig["idle_windows"]:
        assert set(w["cpu_ms_per_s"]) == set(w["wakeups_per_s"]) >= {"supervisor", "ingest", "writer"}
    assert set(fig["idle_cpu_ms_per_s_by_process"]) == set(fig["idle_windows"][0]["cpu_ms_per_s"])
    assert fig["runs_with_drops"] == {s: 0 for s in scen.split(",")}
    for name, d in fig["detail"].items():
        assert d["frames"] >= 1000, name
        assert d["ring_dropped"] == 0 and d["gaps"] == 0, (name, d)
        assert set(d["by_process_us_per_frame"]) >= {"supervisor", "ingest", "writer"}, (name, d)


def test_a_run_with_drops_is_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    """A run that dropped at a full ring measured a resync: counted and said, not averaged silently."""
    runs = [{"ring_dropped": 0, "gaps": 0}, {"ring_dropped": 38, "gaps": 2}, {"ring_dropped": 0, "gaps": 0}]
    counts: dict[str, int] = {}
    _flag_drops("diff42_raw", runs, "", counts)
    _flag_drops("diff17_raw", runs[:1], "", counts)
    assert counts == {"diff42_raw": 1, "diff17_raw": 0}
    err = capsys.readouterr().err
    assert "warning: diff42_raw: 1 of 3 runs dropped" in err and "[0, 38, 0]" in err
    assert "diff17_raw" not in err
