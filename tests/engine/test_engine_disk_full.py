"""Issue 9: a full (or read-only) archive file system while a capture runs. The writer
used to crash on ENOSPC and come back only after the child restart back-off (33 s after
space returned, 47k drops meanwhile). Now it keeps the records in the rings, reports
it (log once, metric, an events row), retries on a short interval and resumes within
seconds; nothing is lost or written twice while the rings can hold the backlog."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from engine_capture_helpers import child_pid, kill9, parse_metrics, total, write_config
from mount_ns import READ_ONLY, WRITABLE, mount_ns_unavailable

from ticktape.archive.layout import JOURNAL_DIR, JOURNAL_SUFFIX
from ticktape.writers import state as wstate

pytestmark = pytest.mark.slow


def _metrics(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return parse_metrics(r.read().decode())
    except OSError:
        return {}


def _until(cond, what: str, proc: subprocess.Popen, out: Path, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        assert proc.poll() is None, f"capture exited waiting for {what}: {out.read_text(errors='replace')[-3000:]}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {out.read_text(errors='replace')[-3000:]}")


@contextmanager
def _capture_in_mount_ns(tmp_path: Path, port: int, capture_cmd: list[str], count: int, drain_timeout: float = 60.0,
              after: str = "", mount: str = "mount -t tmpfs -o size=8m tmpfs {root}",
              ) -> Iterator[tuple[subprocess.Popen, Path, Path]]:
    """A ``capture run`` of ``count`` synthetic trades (1500/s) on an 8 MiB tmpfs root (or what
    ``mount`` mounts there) in its own
    mount namespace; when it exits, the ``after`` shell commands run there and the root is
    copied to ``saved`` (the tmpfs vanishes with the namespace). (shell, output file, saved);
    killed on the way out if still running."""
    root, saved, out = tmp_path / "archive", tmp_path / "saved", tmp_path / "capture.out"
    root.mkdir()
    cfg = write_config(tmp_path / "c.toml", root=root, logs=tmp_path / "logs", port=port,
                       url=f"synthetic://?rate=1500&count={count}&seed=3", channels=("trades",), records=1 << 17,
                       drain_timeout=drain_timeout)
    script = (f"set -e; {mount.format(root=root)}; set +e; "
              f'"$@" & wait $!; rc=$?; {after.format(root=root) or ":"}; cp -a {root}/. {saved}/; exit $rc')
    with open(out, "wb") as f:
        sh = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                               *capture_cmd, "run", str(cfg)], cwd=tmp_path, stdout=f, stderr=subprocess.STDOUT,
                              start_new_session=True)
    saved.mkdir()
    try:
        yield sh, out, saved
    finally:
        if sh.poll() is None:
            os.killpg(sh.pid, signal.SIGKILL)
            sh.wait(30)


def _ns(sh: subprocess.Popen, cmd: str) -> subprocess.CompletedProcess[str]:
    """A shell command in the capture's mount namespace (where its tmpfs root is)."""
    return subprocess.run(["nsenter", "-t", str(sh.pid), "-m", "sh", "-c", cmd], capture_output=True,
                          text=True, timeout=60)


def _stop(sh: subprocess.Popen) -> int:
    """SIGTERM to the capture (the shell's child), as a service manager stops it; its exit code."""
    kids = Path(f"/proc/{sh.pid}/task/{sh.pid}/children").read_text().split()
    assert kids, "capture process not found"
    os.kill(int(kids[0]), signal.SIGTERM)
    return sh.wait(120)


# (how the file system breaks, how it heals, the errno the events row names)
FAULTS = {
    "full": ("cat /dev/zero > {root}/filler", "rm {root}/filler", "ENOSPC"),
    # remounted read-only under the running writer (journals, state, locks open): see mount_ns.READ_ONLY
    "read-only": (READ_ONLY, WRITABLE, "EROFS"),
    # and the writer killed meanwhile: its restarts used to fail at the lock until the capture gave up
    "read-only-writer-restarted": (READ_ONLY, WRITABLE, "EROFS"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_storage_fault_while_running_resumes_within_seconds_nothing_lost(
    tmp_path: Path, free_port: int, capture_cmd: list[str], fault: str
) -> None:
    break_cmd, heal_cmd, errname = (c.format(root=tmp_path / "archive") for c in FAULTS[fault])
    restarted = int(fault.endswith("-restarted"))
    why = mount_ns_unavailable()
    if why:
        pytest.skip(why)
    count = 15_000  # 10 s of feed at 1500/s: the break, backlog and healing need ~3 s of it
    with _capture_in_mount_ns(tmp_path, free_port, capture_cmd, count) as (sh, out, saved):
        def ns(cmd: str) -> subprocess.CompletedProcess[str]:
            return _ns(sh, cmd)

        _until(lambda: total(_metrics(free_port), "ticktape_ring_committed_records_total", table="trades") > 1000,
               "first records durable", sh, out)
        broken = ns(break_cmd)  # another program takes all the space / the file system goes read-only
        assert ("No space left" in broken.stderr) if fault == "full" else broken.returncode == 0, broken.stderr
        _until(lambda: total(_metrics(free_port), "ticktape_writer_storage_blocked") == 1, "writer blocked", sh, out)
        m = _metrics(free_port)
        assert total(m, "ticktape_writer_storage_errors_total") >= 1
        committed = total(m, "ticktape_ring_committed_records_total", table="trades")
        # records keep arriving and wait in the ring; nothing is committed while the disk is full
        _until(lambda: total(_metrics(free_port), "ticktape_ring_written_records_total", table="trades")
               > committed + 2000, "backlog in the ring", sh, out)
        assert total(_metrics(free_port), "ticktape_ring_committed_records_total", table="trades") == committed
        # and the writer went on retrying (a few seconds' worth), each attempt refused
        _until(lambda: total(_metrics(free_port), "ticktape_writer_storage_errors_total") >= 4, "retries", sh, out)
        if restarted:  # a new writer starts on the read-only root: it waits, blocked, and keeps trying
            m = _metrics(free_port)
            kill9(child_pid(m, "writer-0"))
            errors = total(m, "ticktape_writer_storage_errors_total")
            _until(lambda: total(m2 := _metrics(free_port), "ticktape_child_restarts_total", role="writer") == 1
                   and total(m2, "ticktape_writer_storage_errors_total") >= errors + 3, "writer restarted, waiting",
                   sh, out)
        backlog = total(_metrics(free_port), "ticktape_ring_written_records_total", table="trades")
        assert ns(heal_cmd).returncode == 0  # space returns / writable again
        freed = time.monotonic()
        _until(lambda: total(_metrics(free_port), "ticktape_writer_storage_blocked") == 0
               and total(_metrics(free_port), "ticktape_ring_committed_records_total", table="trades") > committed,
               "writer resumed", sh, out, timeout=30)
        resumed_after = time.monotonic() - freed
        assert resumed_after < 5.0, resumed_after
        # the backlog and then the live feed are written (the stop below drains the rest)
        _until(lambda: total(_metrics(free_port), "ticktape_ring_committed_records_total", table="trades")
               >= min(backlog + 1000, count), "backlog and live feed durable", sh, out, timeout=120)
        assert total(_metrics(free_port), "ticktape_ring_dropped_records_total") == 0  # the rings held it all
        rc = _stop(sh)
    text = out.read_text(errors="replace")
    assert rc == 0, text[-3000:]  # nothing dropped at the rings: a clean exit
    assert text.count("exited with code") == restarted, text[-3000:]  # the writer never crashed (only the kill)
    assert text.count("records stay in the rings") == 1 + restarted, text[-3000:]  # said once (per writer life)
    for p in saved.rglob("*.parquet"):  # nothing corrupt
        pq.read_table(p)
    # every journal finalized and retired at the stop: none left, none in the writer's state
    assert not list((saved / JOURNAL_DIR).rglob(f"*{JOURNAL_SUFFIX}"))
    assert wstate.load(str(saved), 0).journals == {}
    # every trade the source made, each once: its ids are consecutive
    produced = int(re.search(r'"produced": (\d+)', text).group(1))  # type: ignore[union-attr]
    trades = ds.dataset(saved / "trades", format="parquet", partitioning="hive").to_table(columns=["id"])
    ids = np.sort(trades["id"].to_numpy(zero_copy_only=False).astype(np.int64))
    assert produced > backlog and len(ids) == produced
    assert (ids == np.arange(ids[0], ids[0] + produced)).all()
    ev = ds.dataset(saved / "events", format="parquet", partitioning="hive").to_table()
    info = ev.filter(pc.match_substring(ev["detail"], f"archive writes failed ({errname}"))
    assert info.num_rows == 1 and info["kind"].to_pylist() == ["info"], ev.to_pandas().to_string()[-2000:]
    print(f"{fault}: resumed {resumed_after:.2f} s after the file system healed")


def test_stopped_while_read_only_exits_1_and_keeps_what_was_durable(
    tmp_path: Path, free_port: int, capture_cmd: list[str]
) -> None:
    """A capture stopped while its root is read-only cannot write what waits in its rings:
    the exit code (1) and the log say so, with the count; what was durable before the
    remount is intact and comes back whole with ``capture recover`` once writable."""
    why = mount_ns_unavailable()
    if why:
        pytest.skip(why)
    root = tmp_path / "archive"
    with _capture_in_mount_ns(tmp_path, free_port, capture_cmd, 15_000, drain_timeout=2.0,
                   after=f"{WRITABLE}; {' '.join(capture_cmd)} recover {{root}}; echo recover-rc=$?") as (sh, out, saved):
        _until(lambda: total(_metrics(free_port), "ticktape_ring_committed_records_total", table="trades") > 1000,
               "first records durable", sh, out)
        assert _ns(sh, READ_ONLY.format(root=root)).returncode == 0
        _until(lambda: total(_metrics(free_port), "ticktape_writer_storage_blocked") == 1, "writer blocked", sh, out)
        committed = total(_metrics(free_port), "ticktape_ring_committed_records_total", table="trades")
        _until(lambda: total(_metrics(free_port), "ticktape_ring_written_records_total", table="trades")
               > committed + 1000, "backlog in the ring", sh, out)
        rc = _stop(sh)
    text = out.read_text(errors="replace")
    assert rc == 1, text[-3000:]  # data was lost: the exit code says so
    assert "recover-rc=0" in text, text[-3000:]
    produced = int(re.search(r'"produced": (\d+)', text).group(1))  # type: ignore[union-attr]
    lost = int(re.search(r"(\d+) trades records of synthetic were never written", text).group(1))  # type: ignore[union-attr]
    trades = ds.dataset(saved / "trades", format="parquet", partitioning="hive").to_table(columns=["id", "symbol"])
    pairs = pc.binary_join_element_wise(trades["symbol"], trades["id"], "/")
    assert trades.num_rows == committed == pc.count_distinct(pairs).as_py()  # the durable part, whole, once
    assert lost == produced - committed and lost > 1000  # and the log counts exactly what is missing
    assert not list((saved / JOURNAL_DIR).rglob(f"*{JOURNAL_SUFFIX}"))


def test_file_system_turning_read_only_on_errors_loses_nothing_durable(
    tmp_path: Path, free_port: int, capture_cmd: list[str]
) -> None:
    """The way a root really goes read-only under a running capture: ext4 with
    ``errors=remount-ro`` meets an error and turns itself read-only for good (writes to the
    open journals fail with EIO, every new file with EROFS; a plain ``remount,ro`` is refused
    while files are open). The writer keeps the records in the rings, the run stopped that
    way exits 1 naming what it could not write, and after fsck ``capture recover`` brings back
    every record that was durable, each once."""
    why = mount_ns_unavailable()
    if why:
        pytest.skip(why)
    img, root = tmp_path / "fs.img", tmp_path / "archive"
    probe = subprocess.run(  # on an image of its own: a loop device is let go asynchronously
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"set -e; truncate -s 64M {img} {img}.probe; mkfs.ext4 -q -F {img}; mkfs.ext4 -q -F {img}.probe; "
         f"mkdir {root}; mount -o loop {img}.probe {root}"],
        capture_output=True, text=True, timeout=120)
    if probe.returncode:
        pytest.skip(f"cannot mount an ext4 image on a loop device here: {probe.stderr.strip()}")
    if root.exists():
        root.rmdir()
    after = (f"umount {{root}}; e2fsck -fy {img} >/dev/null 2>&1; echo fsck-rc=$?; mount -o loop {img} {{root}}; "
             f"{' '.join(capture_cmd)} recover {{root}}; echo recover-rc=$?")
    with _capture_in_mount_ns(tmp_path, free_port, capture_cmd, 15_000, drain_timeout=2.0, after=after,
                   mount=f"mount -o loop,errors=remount-ro {img} {{root}}") as (sh, out, saved):
        _until(lambda: total(_metrics(free_port), "ticktape_ring_committed_records_total", table="trades") > 1000,
               "first records durable", sh, out)
        dev = _ns(sh, f"findmnt -no SOURCE {root}").stdout.strip()
        fail = _ns(sh, f"echo test > /sys/fs/ext4/{os.path.basename(dev)}/trigger_fs_error")
        assert fail.returncode == 0, fail.stderr
        _until(lambda: total(_metrics(free_port), "ticktape_writer_storage_blocked") == 1, "writer blocked", sh, out)
        committed = total(_metrics(free_port), "ticktape_ring_committed_records_total", table="trades")
        _until(lambda: total(_metrics(free_port), "ticktape_ring_written_records_total", table="trades")
               > committed + 1000, "backlog in the ring", sh, out)
        assert total(_metrics(free_port), "ticktape_ring_committed_records_total", table="trades") == committed
        rc = _stop(sh)
    text = out.read_text(errors="replace")
    assert rc == 1, text[-3000:]  # data was lost: the exit code says so
    assert "exited with code" not in text, text[-3000:]  # the writer never crashed
    assert "fsck-rc=0" in text or "fsck-rc=1" in text, text[-3000:]  # 1: errors corrected
    assert "recover-rc=0" in text, text[-3000:]
    produced = int(re.search(r'"produced": (\d+)', text).group(1))  # type: ignore[union-attr]
    lost = int(re.search(r"(\d+) trades records of synthetic were never written", text).group(1))  # type: ignore[union-attr]
    for p in saved.rglob("*.parquet"):
        pq.read_table(p)
    trades = ds.dataset(saved / "trades", format="parquet", partitioning="hive").to_table(columns=["id", "symbol"])
    pairs = pc.binary_join_element_wise(trades["symbol"], trades["id"], "/")
    assert trades.num_rows == pc.count_distinct(pairs).as_py()  # nothing twice
    assert trades.num_rows == committed  # everything durable, nothing half-written
    assert lost == produced - committed and lost > 1000
