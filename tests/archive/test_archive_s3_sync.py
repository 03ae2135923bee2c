"""sync against a real S3 API (moto server on 127.0.0.1) through s3fs."""

import asyncio
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from archive_samples import write_sample_archive

from ticktape.archive.layout import FileKey
from ticktape.archive.local_s3 import LocalS3Server
from ticktape.archive.s3 import BackgroundSync, S3Error, S3Options, sync_archive
from ticktape.archive.s3_sync import sync_archive_async

EX = "binance-futures"
pytestmark = pytest.mark.s3


def _local_hashes(root: str) -> dict[str, str]:
    out = {}
    for dp, dns, fs in os.walk(root):
        dns[:] = [d for d in dns if not d.startswith(".")]
        for f in fs:
            p = os.path.join(dp, f)
            rel = os.path.relpath(p, root)
            if f.endswith(".parquet") and not f.startswith(".") and f != "7.parquet":
                out[rel] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def _bucket_contents(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[str, str | None]]:
    """rel -> (sha256 of the bytes, sha256 in the metadata)."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            r = s3.get_object(Bucket=bucket, Key=o["Key"])
            out[o["Key"][len(prefix) + 1 :]] = (
                hashlib.sha256(r["Body"].read()).hexdigest(),
                r["Metadata"].get("sha256"),
            )
    return out


def _with_junk(root: str) -> None:
    """An open journal, writer temp files and stray files: none may ever be uploaded."""
    d = os.path.join(root, ".journal", "trades", f"exchange={EX}", "symbol=BTCUSDT", "date=2025-01-06", "hour=03")
    os.makedirs(d)
    Path(os.path.join(d, "data.arrows")).write_bytes(b"journal")
    os.makedirs(os.path.join(root, ".tmp"), exist_ok=True)
    Path(os.path.join(root, ".tmp", "trades,exchange=x,hour=23,data.w0.tmp")).write_bytes(b"half a file")
    sd = os.path.join(root, "trades", f"exchange={EX}", "symbol=BTCUSDT", "date=2025-01-05", "hour=23")
    Path(os.path.join(sd, ".data.parquet")).write_bytes(b"hidden")
    Path(os.path.join(sd, "notes.txt")).write_bytes(b"x")
    Path(os.path.join(sd, "7.parquet")).write_bytes(b"not an hour name")
    os.makedirs(os.path.join(root, ".state"), exist_ok=True)
    Path(os.path.join(root, ".state", "writer.msgpack")).write_bytes(b"state")


def test_sync_uploads_only_finalized_parquet_then_is_idempotent(tmp_path, s3_endpoint, s3, bucket, caplog):
    root = str(tmp_path / "archive")
    keys = write_sample_archive(root, data_types=("trades", "book_snapshot_20"), rows_per_hour=200)
    _with_junk(root)
    url = f"s3://{bucket}/ticks"

    dry = sync_archive(root, url, endpoint_url=s3_endpoint, dry_run=True)
    assert dry.ok and len(dry.uploaded) == len(keys) and dry.ignored == 2
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)  # dry run uploaded nothing

    with caplog.at_level("INFO", logger="ticktape.s3"):
        r = sync_archive(root, url, endpoint_url=s3_endpoint, concurrency=4)
    assert r.ok and sorted(r.uploaded) == sorted(k.relpath() for k in keys) and r.existing == 0
    assert f"upload {keys[0].relpath()}" in caplog.text
    remote = _bucket_contents(s3, bucket, "ticks")
    local = _local_hashes(root)
    assert set(remote) == set(local) == {k.relpath() for k in keys}  # no journal, temp or stray file
    assert all(remote[rel] == (h, h) for rel, h in local.items())  # same bytes, checksum in metadata

    caplog.clear()
    with caplog.at_level("INFO", logger="ticktape.s3"):
        again = sync_archive(root, url, endpoint_url=s3_endpoint)
    assert again.ok and again.uploaded == [] and again.existing == len(keys)
    assert f"nothing to upload: all {len(keys)} files already in {url}" in caplog.text


def test_sync_reuploads_changed_content_and_size(tmp_path, s3_endpoint, s3, bucket):
    root = str(tmp_path / "a")
    keys = write_sample_archive(root, symbols=("BTCUSDT",), hours=3, rows_per_hour=100)
    url = f"s3://{bucket}/p"
    assert len(sync_archive(root, url, endpoint_url=s3_endpoint).uploaded) == 3
    same_size = keys[0].relpath()
    other = keys[1].relpath()
    # the bucket holds other bytes of the same size for one file, a shorter object for another
    body = Path(os.path.join(root, same_size)).read_bytes()
    s3.put_object(Bucket=bucket, Key=f"p/{same_size}", Body=bytes(reversed(body)))
    s3.put_object(Bucket=bucket, Key=f"p/{other}", Body=b"short")
    r = sync_archive(root, url, endpoint_url=s3_endpoint)
    assert sorted(r.uploaded) == sorted([same_size, other]) and r.existing == 1
    assert _bucket_contents(s3, bucket, "p") == {rel: (h, h) for rel, h in _local_hashes(root).items()}


def test_wrong_bucket_url_and_missing_bucket_are_clear(tmp_path, s3_endpoint):
    root = str(tmp_path / "a")
    write_sample_archive(root, symbols=("BTCUSDT",), hours=1, rows_per_hour=10)
    with pytest.raises(S3Error, match="the bucket does not exist"):
        sync_archive(root, "s3://no-such-bucket-here/p", endpoint_url=s3_endpoint)
    with pytest.raises(S3Error, match="not an S3 URL"):
        sync_archive(root, "/tmp/x", endpoint_url=s3_endpoint)
    with pytest.raises(S3Error, match="invalid prefix"):
        sync_archive(root, "s3://bucket/../x", endpoint_url=s3_endpoint)


@pytest.mark.slow
def test_server_stopped_mid_sync_then_restarted(tmp_path, s3_server: LocalS3Server, s3, bucket):
    """The endpoint dies during a sync: the run stops with a clear error, nothing half-written
    anywhere; after a restart (moto forgets everything) the next sync uploads it all and a third
    finds nothing to do."""
    root = str(tmp_path / "a")
    write_sample_archive(root, symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"), hours=60, rows_per_hour=20)
    before = _local_hashes(root)
    assert len(before) == 180
    url = f"s3://{bucket}/p"
    opts = S3Options(endpoint_url=s3_server.endpoint, max_attempts=2, connect_timeout=1.0)
    enough, stopped = threading.Event(), threading.Event()
    uploaded = []

    def on_file(kind: str, rel: str) -> None:
        if kind == "upload":
            uploaded.append(rel)
            if len(uploaded) == 20:
                enough.set()
                assert stopped.wait(60)  # hold the sync's event loop until the server is down

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["report"] = asyncio.run(
                sync_archive_async(root, url, opts, concurrency=2, on_file=on_file)
            )
        except Exception as e:  # pragma: no cover - reported below
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    assert enough.wait(60)
    s3_server.stop()
    stopped.set()
    t.join(120)
    assert not t.is_alive()
    report = result["report"]
    assert not report.ok and report.error and "cannot reach the endpoint" in report.error
    assert 20 <= len(report.uploaded) < 180 and report.pending > 0
    assert len(report.uploaded) + len(report.failed) + report.pending == 180

    s3_server.start()  # same port, empty state
    s3.create_bucket(Bucket=bucket)
    resumed = sync_archive(root, url, endpoint_url=s3_server.endpoint, concurrency=4)
    assert resumed.ok and len(resumed.uploaded) == 180
    assert sync_archive(root, url, endpoint_url=s3_server.endpoint).uploaded == []
    assert _local_hashes(root) == before  # local side untouched
    assert _bucket_contents(s3, bucket, "p") == {rel: (h, h) for rel, h in before.items()}


def test_background_sync_uploads_after_notify(tmp_path, s3_endpoint, s3, bucket):
    root = str(tmp_path / "a")
    write_sample_archive(root, symbols=("BTCUSDT",), hours=2, rows_per_hour=10)
    bg = BackgroundSync(root, f"s3://{bucket}/bg", endpoint_url=s3_endpoint, retry_interval=0.2)
    bg.start()
    bg.notify()
    deadline = time.monotonic() + 30
    while (bg.last_report is None or len(bg.last_report.uploaded) != 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bg.last_report is not None and len(bg.last_report.uploaded) == 2
    # a new hour is finalized; stop() runs a final sync that takes it
    write_sample_archive(root, symbols=("BTCUSDT",), start="2025-01-06:00", hours=1, rows_per_hour=10)
    bg.stop()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert (
        f"bg/{FileKey.from_relpath('trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-06/hour=00/data.parquet').relpath()}"
        in keys
    )
    assert len(keys) == 3


def test_background_sync_survives_a_missing_bucket(tmp_path, s3_endpoint, caplog):
    root = str(tmp_path / "a")
    write_sample_archive(root, symbols=("BTCUSDT",), hours=1, rows_per_hour=10)
    bg = BackgroundSync(root, "s3://not-there-bucket/x", endpoint_url=s3_endpoint, retry_interval=0.1)
    bg.start()
    bg.notify()
    deadline = time.monotonic() + 30
    while bg.runs < 2 and time.monotonic() < deadline:  # it retries on its own
        time.sleep(0.05)
    bg.stop(final_sync=False)
    assert bg.runs >= 2 and bg.last_error and "bucket does not exist" in bg.last_error


def test_large_file_goes_multipart_and_round_trips(tmp_path, s3_endpoint, s3, bucket, monkeypatch):
    import ticktape.archive.s3_sync as sync_mod
    from ticktape.archive.s3 import restore_keys

    monkeypatch.setattr(sync_mod, "SINGLE_PUT_MAX", 1 << 20)
    monkeypatch.setattr(sync_mod, "MULTIPART_CHUNK", 5 << 20)
    root = str(tmp_path / "a")
    key = FileKey.from_relpath("raw/exchange=bybit/symbol=BTCUSDT/date=2025-01-05/hour=22/data.parquet")
    path = os.path.join(root, key.relpath())
    os.makedirs(os.path.dirname(path))
    Path(path).write_bytes(os.urandom(11 << 20))
    url = f"s3://{bucket}/m"
    r = sync_archive(root, url, endpoint_url=s3_endpoint)
    assert r.ok and r.uploaded == [key.relpath()]
    head = s3.head_object(Bucket=bucket, Key=f"m/{key.relpath()}")
    assert "-" in head["ETag"]  # multipart: the ETag is not the content md5
    assert sync_archive(root, url, endpoint_url=s3_endpoint).uploaded == []
    new = str(tmp_path / "b")
    rr = restore_keys(url, new, [key], S3Options(endpoint_url=s3_endpoint))
    assert rr.ok and Path(new, key.relpath()).read_bytes() == Path(path).read_bytes()


def test_warm_sync_reads_no_file_and_cold_cache_uploads_nothing(tmp_path, s3_endpoint, bucket, monkeypatch):
    import shutil

    import ticktape.archive.checksum as checksum

    root = str(tmp_path / "a")
    keys = write_sample_archive(root, symbols=("BTCUSDT", "ETHUSDT"), hours=4, rows_per_hour=50)
    url = f"s3://{bucket}/w"
    assert len(sync_archive(root, url, endpoint_url=s3_endpoint).uploaded) == len(keys)
    hashed: list[str] = []
    real = checksum.digest_file

    def counting(path: str) -> checksum.Digest:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(checksum, "digest_file", counting)
    again = sync_archive(root, url, endpoint_url=s3_endpoint)
    assert again.ok and again.uploaded == [] and hashed == []  # one listing, no file read
    shutil.rmtree(os.path.join(root, ".state"))  # e.g. the archive was copied to a new machine
    cold = sync_archive(root, url, endpoint_url=s3_endpoint)
    assert cold.ok and cold.uploaded == [] and cold.existing == len(keys) and len(hashed) == len(keys)


def test_frozen_endpoint_ends_in_a_clear_error(tmp_path: Path, capture_cmd: list[str]) -> None:
    """Issue 9: an endpoint that accepts connections and never answers hung a sync for as long
    as it stayed frozen. Timeouts + bounded attempts end it in one clear line, exit 1."""
    import socket
    import subprocess
    import sys

    root = tmp_path / "archive"
    write_sample_archive(str(root), symbols=("BTCUSDT",), start="2025-01-05:22", hours=1)
    accepted: list[socket.socket] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]

    def accept_forever() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            accepted.append(c)  # held open, never read, never answered

    threading.Thread(target=accept_forever, daemon=True).start()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            [*capture_cmd, "s3", "sync", str(root), "s3://frozen-bucket/p", "--endpoint-url",
             f"http://127.0.0.1:{port}", "--read-timeout", "1", "--connect-timeout", "1", "--max-attempts", "2", "-q"],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
        )
    finally:
        srv.close()
        for c in accepted:
            c.close()
    took = time.monotonic() - t0
    assert r.returncode == 1, (r.returncode, r.stderr, sys.executable)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not answer in time" in lines[0], r.stderr
    assert accepted, "the client never connected"
    assert took < 60, took
