"""Bad configs are one clear line naming the file and the key, before anything starts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ticktape.engine.config import ConfigError, load

GOOD = """
[exchanges.synthetic]
symbols = ["AAA", "BBB"]
"""


_NOT_A_RECORDING = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.mark.parametrize(
    ("text", "key", "why"),
    [
        ("colour = 1\n" + GOOD, "key colour", "unknown key"),
        (GOOD + "speed = 3\n", "key exchanges.synthetic.speed", "unknown key"),
        ('[archive]\nflush_interval = "fast"\n' + GOOD, "key archive.flush_interval", "Expected `float`"),
        ("[archive]\nflush_interval = 5.0\n" + GOOD, "key archive.flush_interval", "<= 1 second"),
        ('[exchanges.synthetic]\nchannels = ["trades"]\n', "key exchanges.synthetic.symbols", "missing required"),
        ("[archive]\nroot = 'x'\n", "key exchanges", "missing required"),
        ('[exchanges.nosuchex]\nsymbols = ["A"]\n', "key exchanges.nosuchex", "unknown exchange 'nosuchex'"),
        ('[exchanges.synthetic]\nsymbols = ["../etc"]\n', "key exchanges.synthetic.symbols", "invalid symbol"),
        ('[exchanges.synthetic]\nsymbols = ["A", "A"]\n', "key exchanges.synthetic.symbols", "duplicate"),
        ('[exchanges.synthetic]\nsymbols = ["A"]\nchannels = ["candles"]\n', "key exchanges.synthetic", "candles"),
        ('[exchanges.synthetic]\nsymbols = ["A"]\nurl = "synthetic://?rate=fast"\n', "key exchanges.synthetic", "rate"),
        ('[exchanges.synthetic]\nsymbols = ["A"]\nurl = "synthetic://?speed=1"\n', "key exchanges.synthetic", "speed"),
        ('[log]\nlevel = "LOUD"\n' + GOOD, "key log.level", "must be one of"),
        ("[supervisor]\nrestart_delay = -1\n" + GOOD, "key supervisor.restart_delay", "> 0"),
        ("writers = '2'\n" + GOOD, "key writers", "Expected `int`"),
        ("exchanges = [\n", "invalid TOML", ""),
        # every value range-checked (issue 9): the key and the allowed range in one line
        ("[archive]\nrow_group_size = 0\n" + GOOD, "key archive.row_group_size", "allowed 1..67108864"),
        ("[archive]\nrow_group_size = -5\n" + GOOD, "key archive.row_group_size", "allowed 1.."),
        ("[archive]\nfinalize_grace = -1.0\n" + GOOD, "key archive.finalize_grace", "allowed 0..3600"),
        ("[archive]\nfinalize_grace = inf\n" + GOOD, "key archive.finalize_grace", "allowed 0..3600"),
        ("[archive]\nflush_interval = nan\n" + GOOD, "key archive.flush_interval", "<= 1 second"),
        ("[archive]\nzstd_level = 0\n" + GOOD, "key archive.zstd_level", "allowed 1..22"),
        ("[archive]\nroot = ''\n" + GOOD, "key archive.root", "must not be empty"),
        ("[ring]\nrecords = 10\n" + GOOD, "key ring.records", "allowed 1024.."),
        ("[ring]\nraw_bytes = 100\n" + GOOD, "key ring.raw_bytes", "allowed 1048576.."),
        ("[metrics]\nport = 70000\n" + GOOD, "key metrics.port", "allowed 0..65535"),
        ('[exchanges.binance-futures]\nsymbols = ["BTCUSDT"]\nsilent_after = -1\n',
         "key exchanges.binance-futures.silent_after", "allowed 0..86400 seconds (0 = off)"),
        ('[exchanges.bybit]\nsymbols = ["BTCUSDT"]\ndepth = 50\nsilent_after = 5\n', "key exchanges.bybit",
         "silent_after is a binance family option"),
        ("[simulator]\nport = 0\n" + GOOD, "key simulator.port", "allowed 1..65535"),
        ("[simulator]\nseed = -1\n" + GOOD, "key simulator.seed", "allowed 0.."),
        ("[simulator]\nreplay = '/nonexistent/rec.jsonl.zst'\n" + GOOD, "key simulator.replay",
         "'/nonexistent/rec.jsonl.zst': no such file"),
        ("[simulator]\nreplay = '/'\n" + GOOD, "key simulator.replay", "'/': not a file"),
        (f"[simulator]\nreplay = '{_NOT_A_RECORDING}'\n" + GOOD, "key simulator.replay", "not a recording"),
        ("[simulator]\nreplay_speed = -1\n" + GOOD, "key simulator.replay_speed", "allowed 0..1000"),
        ("[supervisor]\ndrain_timeout = 0\n" + GOOD, "key supervisor.drain_timeout", "allowed > 0"),
        ("writers = 0\n" + GOOD, "key writers", "allowed 1..64"),
        ("[log]\nfile = 'a/b.log'\n" + GOOD, "key log.file", "file name"),
        ("[s3]\nurl = 's3://bkt/p'\nconcurrency = 0\n" + GOOD, "key s3.concurrency", "allowed 1..256"),
        ("[s3]\nurl = 'not-a-url'\n" + GOOD, "key s3.url", "expected s3://bucket/prefix"),
        ("[s3]\nurl = 's3://bkt/p'\nendpoint_url = 'localhost:9000'\n" + GOOD, "key s3.endpoint_url", "not a URL"),
        ("[s3]\nurl = 's3://bkt/p'\nread_timeout = 0\n" + GOOD, "key s3.read_timeout", "allowed > 0"),
        ('[exchanges.synthetic]\nsymbols = ["A"]\ndepth = 0\n', "key exchanges.synthetic.depth", "allowed 1..1000"),
    ],
)
def test_config_error_names_file_and_key(tmp_path: Path, text: str, key: str, why: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: "), msg
    assert key in msg and why in msg, msg
    assert "\n" not in msg


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(GOOD)
    cfg = load(path)
    assert cfg.exchanges["synthetic"].symbols == ["AAA", "BBB"]
    assert cfg.metrics.host == "127.0.0.1"
    assert 0 < cfg.archive.flush_interval <= 1.0
    assert cfg.supervisor.restart_delay > 0


def test_capture_run_bad_config_exits_2_with_one_line(tmp_path: Path, capture_cmd: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[exchanges.synthetic]\nsymbols = ["AAA"]\ndepth = "deep"\n')
    root = tmp_path / "archive"
    r = subprocess.run([*capture_cmd, "run", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(path) in lines[0] and "key exchanges.synthetic.depth" in lines[0]
    assert r.stdout == ""
    assert not root.exists() and not (tmp_path / "logs").exists()  # nothing started


def test_capture_run_missing_file_exits_2(tmp_path: Path, capture_cmd: list[str]) -> None:
    r = subprocess.run(
        [*capture_cmd, "run", str(tmp_path / "nope.toml")], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.toml'}: config file not found"]


def test_metrics_port_in_use_is_one_line_before_anything_starts(tmp_path: Path, capture_cmd: list[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "c.toml"
        path.write_text(f"[metrics]\nport = {port}\n[log]\ndir = '{tmp_path}/logs'\n{GOOD}")
        r = subprocess.run([*capture_cmd, "run", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"metrics.port 127.0.0.1:{port}" in lines[0] and "cannot listen" in lines[0], r.stderr
    assert "started" not in r.stdout  # no child was spawned


def test_rings_larger_than_shared_memory_refused_before_start(tmp_path: Path, capture_cmd: list[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f"[metrics]\nport = 0\n[log]\ndir = '{tmp_path}/logs'\n[ring]\nrecords = {1 << 24}\n"
        '[exchanges.synthetic]\nsymbols = ["AAA"]\nchannels = ["book_snapshot"]\ndepth = 1000\n'
    )  # 16 M snapshots of 1000 levels: ~500 GiB
    r = subprocess.run([*capture_cmd, "run", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "key ring" in lines[0] and "MiB of shared memory" in lines[0], r.stderr


@pytest.mark.parametrize(
    ("data", "key", "why"),
    [
        (b"[exchanges.synthetic]\nsymbols = [\"A\xff\xfe\"]\n", "", "not UTF-8"),
        (b"[s3]\nurl = 'not-a-url'\n" + GOOD.encode(), "key s3.url", "not an S3 URL"),
        (b"[archive]\nrow_group_size = 0\n" + GOOD.encode(), "key archive.row_group_size", "out of range"),
    ],
)
def test_capture_run_bad_value_one_line_before_any_child(
    tmp_path: Path, capture_cmd: list[str], data: bytes, key: str, why: str
) -> None:
    """Issue 9: these gave tracebacks (or ran and wrote no Parquet) after children were spawned."""
    path = tmp_path / "bad.toml"
    path.write_bytes(data)
    r = subprocess.run([*capture_cmd, "run", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {path}: ") and key in lines[0] and why in lines[0], lines[0]
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (tmp_path / "archive").exists() and not (tmp_path / "logs").exists()  # nothing started


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["bench", "capture", "--seconds", "-1"], "--seconds -1.0: must be a number >= 0"),
        (["bench", "capture", "--seconds", "0"], "--seconds 0: must be > 0"),
        (["bench", "capture", "--rates", "fast"], "--rates 'fast'"),
        (["bench", "ring", "--runs", "-2"], "--runs -2"),
    ],
)
def test_cli_numbers_are_checked_one_line(capture_cmd: list[str], argv: list[str], named: str) -> None:
    """Issue 9: every CLI input validated (a negative window was a traceback)."""
    r = subprocess.run([*capture_cmd, *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in r.stderr, r.stderr
