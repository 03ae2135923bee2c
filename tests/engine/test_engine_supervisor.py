"""Supervisor failure paths with real processes: a writer that cannot run is
restarted with a growing delay, and records it never wrote are reported at
shutdown (exit code 1), never dropped silently."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from ticktape.engine.config import from_dict
from ticktape.engine.supervisor import Supervisor


@pytest.mark.slow
def test_crashing_writer_backs_off_and_undrained_records_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = from_dict(
        {
            "archive": {"root": str(tmp_path / "archive"), "raw": False},
            "log": {"dir": str(tmp_path / "logs")},
            "metrics": {"port": 0},
            "ring": {"records": 4096, "raw_records": 4096, "raw_bytes": 1 << 20},
            "supervisor": {"restart_delay": 0.1, "drain_timeout": 5.0},
            "exchanges": {
                "synthetic": {"symbols": ["AAA"], "channels": ["trades"], "url": "synthetic://?rate=1000&count=100"}
            },
        },
        "test.toml",
    )
    caplog.set_level(logging.INFO, logger="ticktape")
    rc = Supervisor(cfg, duration=6.0, writer_target="ticktape.engine.no_such_module:writer_main").run()
    assert rc == 1
    delays = [
        float(m[1])
        for r in caplog.records
        if r.name == "ticktape.supervisor" and (m := re.search(r"writer-0 .*restarting in ([\d.]+) s", r.getMessage()))
    ]
    assert len(delays) >= 2, caplog.text
    assert delays == sorted(delays) and delays[1] == pytest.approx(2 * delays[0])
    lost = [r.getMessage() for r in caplog.records if "were never written" in r.getMessage()]
    assert sorted(lost) == [
        "1 events records of synthetic were never written (writer did not drain the ring)",  # the connect row
        "100 trades records of synthetic were never written (writer did not drain the ring)",
    ]
