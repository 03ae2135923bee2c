"""Issue 9: one capture per archive root, everything a run needs checked before any
child starts, and a child that can never start fails the run (real processes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from engine_capture_helpers import Capture, write_config
from mount_ns import in_mount_ns, mount_ns_unavailable

from ticktape.writers import state as wstate

pytestmark = pytest.mark.slow


def _wait_output(c: Capture, text: str, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in c.output():
            return
        if c.proc.poll() is not None:
            raise AssertionError(f"capture exited ({c.proc.returncode}) before {text!r}: {c.output()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {text!r}: {c.output()[-3000:]}")


def _config(tmp_path: Path, name: str, root: Path, **kw: object) -> Path:
    return write_config(
        tmp_path / f"{name}.toml", root=root, logs=tmp_path / f"logs-{name}", port=0,
        url="synthetic://?rate=500&seed=3", channels=("trades",), records=1 << 14, **kw,  # type: ignore[arg-type]
    )


def test_second_capture_on_the_same_root_refused_naming_the_holder(
    tmp_path: Path, capture: Callable[..., Capture], capture_cmd: list[str]
) -> None:
    root = tmp_path / "archive"
    first = capture(_config(tmp_path, "a", root), 0)
    _wait_output(first, "capture started")
    r = subprocess.run([*capture_cmd, "run", str(_config(tmp_path, "b", root)), "--duration", "30"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr + r.stdout[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.proc.pid}" in lines[0] and "in use" in lines[0], r.stderr
    assert "started (pid" not in r.stdout  # no child of the second run was spawned
    # `capture recover` refuses too while the capture holds the root
    rec = subprocess.run([*capture_cmd, "recover", str(root)], capture_output=True, text=True, timeout=60)
    assert rec.returncode == 2 and f"pid {first.proc.pid}" in rec.stdout, rec.stdout + rec.stderr
    # the first capture is untouched: it stops cleanly, every journal finalized by itself
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait(120) == 0, first.output()[-3000:]
    assert "journal kept" not in first.output()
    assert list(root.rglob("*.parquet"))


def test_busy_simulator_port_is_one_line_before_anything_starts(tmp_path: Path, capture_cmd: list[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f"[metrics]\nport = 0\n[log]\ndir = '{tmp_path}/logs'\n[archive]\nroot = '{tmp_path}/archive'\n"
            f"[simulator]\nport = {port}\n"
            f'[exchanges.bybit]\nsymbols = ["BTCUSDT"]\nchannels = ["trades"]\nurl = "ws://127.0.0.1:{port}"\n'
        )
        r = subprocess.run([*capture_cmd, "run", str(cfg), "--duration", "5"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr + r.stdout[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"simulator.port 127.0.0.1:{port}" in lines[0] and "in use" in lines[0], r.stderr
    assert "started (pid" not in r.stdout


def test_child_that_can_never_start_fails_the_run_with_the_reason(tmp_path: Path, capture_cmd: list[str]) -> None:
    """An unreadable writer state makes the writer die at every start: the run used to
    restart it forever (or exit 0 with --duration); now it stops, non-zero, saying why."""
    root = tmp_path / "archive"
    path = Path(wstate.state_path(str(root), 0))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{not json")
    cfg = _config(tmp_path, "a", root)
    cfg.write_text(cfg.read_text().replace("restart_delay = 0.2", "restart_delay = 0.1\nstart_failures = 3"))
    t0 = time.monotonic()
    r = subprocess.run([*capture_cmd, "run", str(cfg), "--duration", "300"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=280)
    assert r.returncode not in (0, 2), r.stderr + r.stdout[-3000:]
    assert time.monotonic() - t0 < 200
    line = r.stderr.strip().splitlines()[-1]
    assert "writer-0 failed 3 times in a row" in line and "unreadable" in line, r.stderr


def test_read_only_root_is_a_preflight_error(tmp_path: Path, capture_cmd: list[str]) -> None:
    why = mount_ns_unavailable()
    if why:
        pytest.skip(why)
    root = tmp_path / "ro-archive"
    root.mkdir()
    cfg = _config(tmp_path, "a", root)
    r = subprocess.run(in_mount_ns(f"mount -t tmpfs -o ro,size=1m tmpfs {root}", [*capture_cmd, "run", str(cfg)]),
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr + r.stdout[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"archive.root {root}: not writable" in lines[0], r.stderr
    assert "Read-only" in lines[0] and "started (pid" not in r.stdout


def test_full_dev_shm_after_start_does_not_sigbus(tmp_path: Path, capture_cmd: list[str]) -> None:
    """Issue 9: the rings were sparse, so /dev/shm filled by another program after start
    killed every producer with SIGBUS. Reserved at creation, they keep running."""
    why = mount_ns_unavailable()
    if why:
        pytest.skip(why)
    root = tmp_path / "archive"
    cfg = write_config(tmp_path / "shm.toml", root=root, logs=tmp_path / "logs", port=0,
                       url="synthetic://?rate=1000&seed=3", channels=("trades",), records=1 << 20)
    out = tmp_path / "shm.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            in_mount_ns("mount -t tmpfs -o size=400m tmpfs /dev/shm", [*capture_cmd, "run", str(cfg), "--duration", "12"]),
            cwd=tmp_path, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            end = time.monotonic() + 90
            while "capture started" not in out.read_text(errors="replace"):
                assert proc.poll() is None, out.read_text(errors="replace")[-3000:]
                assert time.monotonic() < end, "capture did not start"
                time.sleep(0.05)
            # another program takes every free byte of the capture's /dev/shm
            fill = subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "sh", "-c",
                                   "cat /dev/zero > /dev/shm/filler; df -k /dev/shm | tail -1"],
                                  capture_output=True, text=True, timeout=120)
            filled_ns = time.time_ns()
            assert "No space left" in fill.stderr and " 0 100%" in fill.stdout, (fill.stdout, fill.stderr)
            rc = proc.wait(180)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
    text = out.read_text(errors="replace")
    assert rc == 0, text[-3000:]
    assert "exited with code" not in text, text[-3000:]  # no child died (SIGBUS = code -7)
    import pyarrow.dataset as ds

    t = ds.dataset(str(root / "trades"), format="parquet").to_table(columns=["local_ts"])
    assert t.num_rows
    last = t["local_ts"].to_numpy().astype("datetime64[ns]").astype("int64").max()
    assert last > filled_ns + 5_000_000_000, "the capture did not go on after /dev/shm filled up"


def _journals(root: Path, table: str) -> list[Path]:
    return list((root / ".journal" / table).rglob("*.arrows")) if (root / ".journal" / table).exists() else []


def test_unclean_stop_is_marked_at_the_next_start(
    tmp_path: Path, capture: Callable[..., Capture], capture_cmd: list[str]
) -> None:
    """Issue 9: after a kill -9 of the whole capture the seconds while nothing ran had no
    disconnect event and no empty raw row: replay showed the hole as a quiet market. The
    next start also proves the archive lock left by the kill -9 does not block it (exit 0)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    root = tmp_path / "archive"
    first = capture(_config(tmp_path, "a", root, symbols=("AAA", "BBB")), 0)
    _wait_output(first, "capture started")
    end = time.monotonic() + 60
    while not _journals(root, "trades"):  # something durable from the first run
        assert time.monotonic() < end and first.proc.poll() is None, first.output()[-3000:]
        time.sleep(0.05)
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.wait(30)
    killed_ns = time.time_ns()
    r = subprocess.run([*capture_cmd, "run", str(_config(tmp_path, "b", root, symbols=("AAA", "BBB"))),
                        "--duration", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr + r.stdout[-3000:]

    ev = ds.dataset(str(root / "events"), format="parquet", partitioning="hive").to_table()
    marks = ev.filter(pc.match_substring(ev["detail"], "without a clean stop"))
    assert marks.num_rows >= 2, ev.to_pandas().to_string()[-3000:]
    assert set(marks["kind"].to_pylist()) == {"disconnect"}
    assert set(marks["symbol"].to_pylist()) == {"AAA", "BBB"}  # every stream of the dead run
    ts = set(marks["local_ts_ns"].to_pylist())
    assert len(ts) == 1
    mark_ns = ts.pop()
    trades = ds.dataset(str(root / "trades"), format="parquet", partitioning="hive").to_table(columns=["local_ts_ns"])
    t = np.sort(trades["local_ts_ns"].to_numpy())
    # the marker sits at the last durable record of the dead run, before the kill: the hole
    # (nothing recorded) starts there and the next run's data comes after it
    assert mark_ns <= killed_ns
    before = t[t <= mark_ns]
    after = t[t > mark_ns]
    assert len(before) and len(after)
    assert after[0] - mark_ns > 0 and after[0] > killed_ns, "no hole after the marker?"
    raw = ds.dataset(str(root / "raw"), format="parquet", partitioning="hive").to_table(
        columns=["local_ts_ns", "payload", "symbol"])
    empty = raw.filter(pc.and_(pc.equal(raw["local_ts_ns"], mark_ns), pc.equal(pc.binary_length(raw["payload"]), 0)))
    assert set(empty["symbol"].to_pylist()) == {"AAA", "BBB"}
    # a clean stop leaves no marker behind: a third start marks nothing new
    r = subprocess.run([*capture_cmd, "run", str(_config(tmp_path, "c", root, symbols=("AAA", "BBB"))),
                        "--duration", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    ev2 = ds.dataset(str(root / "events"), format="parquet", partitioning="hive").to_table()
    assert ev2.filter(pc.match_substring(ev2["detail"], "without a clean stop")).num_rows == marks.num_rows


def test_next_capture_waits_for_a_dead_supervisors_writers(
    tmp_path: Path, capture: Callable[..., Capture], capture_cmd: list[str]
) -> None:
    """kill -9 of the supervisor alone leaves its writers draining for a moment; the next
    capture (or ``capture recover``) must not recover journals they still write."""
    import sys

    root = tmp_path / "archive"
    root.mkdir()
    holder = subprocess.Popen(  # stands in for an orphaned writer: holds the writers' lock until stdin closes
        [sys.executable, "-c", "import sys; from ticktape.archive.lock import hold_writers_lock; "
         f"hold_writers_lock({str(root)!r}); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        rec = subprocess.run([*capture_cmd, "recover", str(root)], capture_output=True, text=True, timeout=60)
        assert rec.returncode == 2 and "still finishing" in rec.stdout, rec.stdout + rec.stderr
        nxt = capture(_config(tmp_path, "b", root), 0, ["--duration", "2"])
        _wait_output(nxt, "still finishing")
        assert "writer-0 started" not in nxt.output()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    assert nxt.wait(120) == 0, nxt.output()[-3000:]
    assert "writer-0 started" in nxt.output()
