"""JSON-lines logging: the seed's line shape, extra fields, and no credentials."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ticktape.engine import logging_setup
from ticktape.engine.config import LogConfig


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    path = logging_setup.setup(LogConfig(dir=str(tmp_path / "logs"), file="t.log"), process_name="test", stdout=False)
    assert path is not None
    yield path
    for h in list(root.handlers):
        if h not in before[0]:
            root.removeHandler(h)
            h.close()
    root.setLevel(before[1])


def _lines(path: Path) -> list[dict]:
    for h in logging.getLogger().handlers:
        h.flush()
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_line_shape_and_extras(logged: Path) -> None:
    log = logging.getLogger("ticktape.test")
    log.info("WRITE %s records: %d size: %d KB", "x/00.parquet", 12, 3, extra={"exchange": "bybit"})
    (line,) = _lines(logged)
    assert list(line)[:4] == ["level", "time", "message", "logger"]
    assert line["level"] == "INFO"
    assert line["message"] == "WRITE x/00.parquet records: 12 size: 3 KB"
    assert line["logger"] == "ticktape.test" and line["process"] == "test" and line["exchange"] == "bybit"
    t = datetime.fromisoformat(line["time"])
    assert t.utcoffset() is not None and t.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert len(line["time"].split(".")[1]) == len("123456+00:00")  # microseconds


def test_credentials_never_logged(logged: Path) -> None:
    log = logging.getLogger("ticktape.test")
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    logging_setup.register_secret("b2-app-key-0123456789")
    log.warning("connecting to https://user:hunter2pass@s3.example.com/bucket")
    log.warning("s3 refused key %s", secret, extra={"aws_secret_access_key": "abc123", "api_key": "k"})
    log.info("token b2-app-key-0123456789 used")
    try:
        raise RuntimeError(f"boom {secret}")
    except RuntimeError:
        log.exception("failed")
    text = logged.read_text()
    for leaked in (secret, "hunter2pass", "abc123", "b2-app-key-0123456789"):
        assert leaked not in text
    lines = _lines(logged)
    assert lines[0]["message"] == "connecting to https://user:***@s3.example.com/bucket"
    assert lines[1]["aws_secret_access_key"] == "***" and lines[1]["api_key"] == "***"
    assert "RuntimeError: boom ***" in lines[3]["exc"]


def test_setup_is_idempotent(logged: Path, tmp_path: Path) -> None:
    logging_setup.setup(LogConfig(dir=str(tmp_path / "logs"), file="t.log"), process_name="again", stdout=False)
    logging.getLogger("ticktape.test").info("once")
    lines = _lines(logged)
    assert [ln["message"] for ln in lines] == ["once"] and lines[0]["process"] == "again"


def _reset_root(before: tuple[list[logging.Handler], int]) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if h not in before[0]:
            root.removeHandler(h)
            h.close()
    root.setLevel(before[1])


def test_log_file_rotates_by_size_and_keeps_only_the_backups(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        cfg = LogConfig(dir=str(tmp_path), file="cap.log", max_bytes=4096, backups=2)
        logging_setup.setup(cfg, process_name="test", stdout=False)
        log = logging.getLogger("ticktape.test")
        for i in range(400):  # ~60 KB of lines: many rotations
            log.info("line %05d %s", i, "x" * 60)
    finally:
        _reset_root(before)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["cap.log", "cap.log.1", "cap.log.2"]
    assert all((tmp_path / n).stat().st_size <= 4096 for n in names)
    last = [json.loads(x)["message"] for x in (tmp_path / "cap.log").read_text().splitlines()]
    assert last[-1].startswith("line 00399")  # the newest lines are in the live file, whole


def test_child_lines_reach_the_one_file_through_the_sink(tmp_path: Path) -> None:
    """A child process sends its lines to the supervisor's sink; only the supervisor writes the file."""
    import multiprocessing as mp

    from ticktape.engine.log_sink import LogSink

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    cfg = LogConfig(dir=str(tmp_path), file="cap.log")
    try:
        logging_setup.setup(cfg, process_name="supervisor", stdout=False)
        sink = LogSink(logging_setup.forward)
        sink.start()
        p = mp.get_context("spawn").Process(target=_child_logs, args=(cfg, sink.address))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        sink.stop()
        logging.getLogger("ticktape.test").info("supervisor line")
    finally:
        _reset_root(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cap.log"]  # no per-child file: the sink was there
    lines = [json.loads(x) for x in (tmp_path / "cap.log").read_text().splitlines()]
    child = [x for x in lines if x["process"] == "child-1"]
    assert [x["message"] for x in child] == [f"child line {i}" for i in range(200)] + ["WRITE /a/b.parquet records: 7 size: 1 KB"]
    assert sink.written == {"/a/b.parquet": 7}
    assert lines[-1]["message"] == "supervisor line"


def _child_logs(cfg: LogConfig, sink: str) -> None:
    logging_setup.setup(cfg, process_name="child-1", sink=sink)
    log = logging.getLogger("ticktape.test")
    for i in range(200):
        log.info("child line %d", i)
    log.info("WRITE %s records: %d size: %d KB", "/a/b.parquet", 7, 1)
