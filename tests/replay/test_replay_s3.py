"""`capture replay serve --archive s3://bucket/prefix` against a real S3 API server (moto, server mode)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from replay_helpers import SYNTH_END, SYNTH_START, ServerProc, get_lines
from replay_proc import replay_server

from ticktape.archive.local_s3 import LocalS3Server

REPO = Path(__file__).resolve().parents[2]
CREDS = {"AWS_ACCESS_KEY_ID": "replaytestkey", "AWS_SECRET_ACCESS_KEY": "replay-test-secret", "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server(server: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    """The local test archive's 2021 binance hour and synthetic hours uploaded to moto, served from s3://."""
    import s3fs

    moto = LocalS3Server(log_path=str(tmp_path_factory.mktemp("moto") / "moto.log"))
    moto.start()
    env = {**os.environ, **CREDS, "AWS_ENDPOINT_URL": moto.endpoint, "PYTHONPATH": str(REPO)}
    env.pop("AWS_PROFILE", None)
    fs = s3fs.S3FileSystem(key=CREDS["AWS_ACCESS_KEY_ID"], secret=CREDS["AWS_SECRET_ACCESS_KEY"],
                           endpoint_url=moto.endpoint, skip_instance_cache=True)
    fs.mkdir("replaybucket")
    root = server.root
    for f in root.rglob("*.parquet"):
        rel = f.relative_to(root).as_posix()
        if "CORRUPTUSDT" in rel or "BIGUSDT" in rel:
            continue
        fs.put_file(str(f), f"replaybucket/arch/{rel}")
    try:
        with replay_server("s3://replaybucket/arch", tmp_path_factory.mktemp("replay-s3") / "server.log",
                           "--max-range-hours", "48", env=env) as srv:
            yield ServerProc(srv.port, srv.proc, root)
    finally:
        moto.stop()


@pytest.mark.slow
def test_s3_archive_replays_like_the_local_one(server: ServerProc, s3_server: ServerProc) -> None:
    raw = {"exchange": "binance-futures", "from": "2021-07-22T22:00:00Z", "to": "2021-07-22T23:00:00Z",
           "filters": [{"channel": "depth", "symbols": ["SUSHIUSDT", "AKROUSDT"]}], "withDisconnects": True}
    local = get_lines(server.url("replay", raw))
    assert len(local) > 100
    assert get_lines(s3_server.url("replay", raw)) == local
    norm = {"exchange": "binance-futures", "symbols": ["BTCUSDT"], "from": SYNTH_START, "to": SYNTH_END,
            "dataTypes": ["trade", "book_change", "book_snapshot_5_1s"]}
    assert get_lines(s3_server.url("replay-normalized", norm)) == get_lines(server.url("replay-normalized", norm))
