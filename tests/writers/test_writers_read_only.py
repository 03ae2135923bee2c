"""Issue 9: the archive turning read-only under a running writer, at the moments where
finalizing an hour meets it: the hour falls due while writes fail (kept, finalized once
writable); the hour's file was renamed into place just before (the state save that retires
its journal fails: the writer used to raise out of its loop and crash); the finalize itself
is refused on a quiet feed (the writer stayed blocked, the hour unwritten, until the next
record came). Real rings,
a real writer, a tmpfs root in a private mount namespace turned read-only by ``mount``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mount_ns import READ_ONLY, WRITABLE, in_mount_ns, mount_ns_unavailable

HERE = Path(__file__).parent


def test_finalize_meeting_a_read_only_archive_is_retried_nothing_lost(tmp_path: Path) -> None:
    why = mount_ns_unavailable()
    if why:
        pytest.skip(why)
    root = tmp_path / "archive"
    root.mkdir()
    code = ("import json, sys, writers_procs; "
            "print(json.dumps(writers_procs.read_only_hours(*sys.argv[1:])))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *sys.path]))
    r = subprocess.run(in_mount_ns(f"mount -t tmpfs -o size=64m tmpfs {root}",
                                   [sys.executable, "-c", code, str(root), READ_ONLY, WRITABLE]),
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["first_cycle"] == 1000
    # read-only: nothing journaled, the hour due meanwhile not finalized, the writer blocked
    assert out["cycle_read_only"] == 0 and out["cycle_read_only_retry"] == 0 and out["blocked"]
    assert out["hour0_files_while_read_only"] == 0
    # writable again: the backlog in one cycle (the episode's info event goes in the next), then the hour
    assert out["cycle_writable"] == 100
    assert out["hour0_files"] == 2
    assert out["reap_read_only"] == 0 and out["late_cycle_read_only"] == 0
    assert out["late_cycle"] == 4 + 1  # + the first episode's info event
    assert out["last_cycle"] == 1
    # a finalize refused on a quiet feed: a probe ends the episode once writable, the hour is redone
    assert out["hour2_cycle"] == 10
    assert out["idle_cycle_read_only"] == 0 and out["idle_blocked_read_only"]
    assert out["idle_cycle"] == 1 and not out["idle_blocked"]
    assert out["hour2_files"] == 2
    # every trade once, merged late rows included; every journal retired, none in the state
    assert out["ids"] == [*range(1100), *range(5000, 5004), *range(6000, 6010)]
    assert out["journals_left"] == [] and out["state_journals"] == []
    assert sum("archive writes failed (EROFS" in d for d in out["events"]) == 3, out["events"]
