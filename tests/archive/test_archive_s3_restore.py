"""restore (and the `capture s3` command) against a real S3 API (moto server on 127.0.0.1)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from archive_samples import write_sample_archive

from ticktape.archive.loaders import load
from ticktape.archive.local_s3 import LocalS3Server
from ticktape.archive.s3 import S3Options, restore_all, restore_range, sync_archive
from ticktape.archive.s3_client import redact
from ticktape.engine.cli import main as capture_main

EX = "binance-futures"
pytestmark = pytest.mark.s3


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for dp, dns, fs in os.walk(root):
        dns[:] = [d for d in dns if d != ".state"]  # the sync's checksum cache
        for f in fs:
            p = os.path.join(dp, f)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


@pytest.fixture
def synced(tmp_path, s3_endpoint, bucket) -> tuple[str, str, dict[str, bytes]]:
    root = str(tmp_path / "archive")
    write_sample_archive(
        root,
        data_types=("trades", "book_snapshot_20"),
        symbols=("BTCUSDT", "ETHUSDT"),
        start="2025-01-05:20",
        hours=8,
        rows_per_hour=300,
    )
    url = f"s3://{bucket}/ticks"
    assert sync_archive(root, url, endpoint_url=s3_endpoint).ok
    return root, url, _files(root)


def test_round_trip_restores_a_range_byte_for_byte(tmp_path, s3_endpoint, synced):
    root, url, original = synced
    originals = {
        t: load(root, EX, t, ["BTCUSDT", "ETHUSDT"], "2025-01-05:22", "2025-01-06:02")
        for t in ("trades", "book_snapshot_20")
    }
    shutil.rmtree(root)  # new workstation
    new = str(tmp_path / "restored")
    r = restore_range(
        url,
        new,
        exchange=EX,
        data_types="trades,book_snapshot_20",
        symbols="BTCUSDT,ETHUSDT",
        start="2025-01-05:22",
        end="2025-01-06:02",
        opts=S3Options(endpoint_url=s3_endpoint),
    )
    assert r.ok and len(r.downloaded) == 20 and r.missing == []
    got = _files(new)
    assert set(got) == set(r.downloaded)  # exactly the range, no temp file left
    assert all(got[rel] == original[rel] for rel in got)
    for t, table in originals.items():
        assert load(new, EX, t, ["BTCUSDT", "ETHUSDT"], "2025-01-05:22", "2025-01-06:02").equals(table)
    # the loaders read straight from the bucket too
    from_s3 = load(
        url,
        EX,
        "trades",
        ["BTCUSDT", "ETHUSDT"],
        "2025-01-05:22",
        "2025-01-06:02",
        s3_options=S3Options(endpoint_url=s3_endpoint),
    )
    assert from_s3.equals(originals["trades"])

    # again: everything present and equal -> skipped; wider range -> missing hours reported, not fatal
    again = restore_range(
        url,
        new,
        exchange=EX,
        data_types="trades",
        symbols="BTCUSDT",
        start="2025-01-05:18",
        end="2025-01-06:02",
        opts=S3Options(endpoint_url=s3_endpoint),
    )
    assert again.ok and again.skipped == 5
    assert again.downloaded == [
        f"trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour={h}/data.parquet" for h in (20, 21)
    ]
    assert again.missing == [
        "trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour=18/data.parquet",
        "trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour=19/data.parquet",
    ]


def test_restore_without_types_fetches_every_table_of_the_range(tmp_path, s3_endpoint, bucket):
    """The seed's restore: exchange + symbol + range, every data type (tables named by the bucket)."""
    root = str(tmp_path / "archive")
    keys = write_sample_archive(
        root, data_types=("trades", "book_snapshot_20", "raw", "events"), start="2025-01-05:22", hours=3,
        rows_per_hour=20,
    )
    url = f"s3://{bucket}/all"
    assert sync_archive(root, url, endpoint_url=s3_endpoint).ok
    new = str(tmp_path / "restored")
    r = restore_range(url, new, exchange=EX, symbols="ETHUSDT", start="2025-01-05:23", end="2025-01-06:00",
                      opts=S3Options(endpoint_url=s3_endpoint))
    want = sorted(k.relpath() for k in keys if k.symbol == "ETHUSDT" and k.hour.hour in (23, 0))
    assert r.ok and r.missing == [] and sorted(r.downloaded) == want
    assert {k.split("/")[0] for k in want} == {"trades", "book_snapshot_20", "raw", "events"}
    assert set(_files(new)) == set(want)


def test_corrupted_object_is_refused_and_leaves_nothing(tmp_path, s3_endpoint, s3, bucket, synced, capsys):
    _, url, original = synced
    rel = "trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour=23/data.parquet"
    key = f"ticks/{rel}"
    head = s3.head_object(Bucket=bucket, Key=key)
    body = bytearray(original[rel])
    body[len(body) // 2] ^= 0xFF  # bit rot in the bucket, same size, original checksum metadata
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata=head["Metadata"])
    new = str(tmp_path / "restored")
    r = restore_range(
        url,
        new,
        exchange=EX,
        data_types="trades",
        symbols="BTCUSDT",
        start="2025-01-05:22",
        end="2025-01-06:00",
        opts=S3Options(endpoint_url=s3_endpoint),
    )
    assert not r.ok and [f for f, _ in r.failed] == [rel] and "checksum mismatch" in r.failed[0][1]
    files = _files(new)
    assert rel not in files and not any(os.path.basename(f).startswith(".") for f in files)
    assert len(r.downloaded) == 2 and all(files[f] == original[f] for f in r.downloaded)

    # the command says so in clear words and exits 1
    code = capture_main(
        [
            "s3",
            "restore",
            url,
            "--exchange",
            EX,
            "--symbol",
            "BTCUSDT",
            "--type",
            "trades",
            "--from",
            "2025-01-05:23",
            "--to",
            "2025-01-05:23",
            "--endpoint-url",
            s3_endpoint,
            "-q",
            new,  # ARCHIVE after the options, as in the docs
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "checksum mismatch" in err and "refused" in err and "Traceback" not in err
    assert rel not in _files(new)


def test_local_file_that_differs_is_kept(tmp_path, s3_endpoint, synced):
    root, url, original = synced
    rel = "trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour=22/data.parquet"
    path = os.path.join(root, rel)
    Path(path).write_bytes(b"local edit")
    opts = S3Options(endpoint_url=s3_endpoint)
    kw: dict[str, Any] = dict(
        exchange=EX, data_types="trades", symbols="BTCUSDT", start="2025-01-05:22", end="2025-01-05:22"
    )
    r = restore_range(url, root, opts=opts, **kw)
    assert r.conflicts == [rel] and not r.ok and Path(path).read_bytes() == b"local edit"
    r = restore_range(url, root, opts=opts, overwrite=True, **kw)
    assert r.ok and r.downloaded == [rel] and Path(path).read_bytes() == original[rel]


def test_evil_keys_never_write_outside_the_root(tmp_path, s3_endpoint, s3, bucket, synced):
    _, url, original = synced
    evil = [
        "ticks/../../escaped.parquet",
        "ticks//tmp/abs.parquet",
        "ticks/trades/exchange=binance-futures/symbol=../date=2025-01-05/hour=22/data.parquet",
        "ticks/trades/exchange=../symbol=BTCUSDT/date=2025-01-05/hour=22/data.parquet",
        "ticks/trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/../../../../../../x/data.parquet",
        "ticks/trades/exchange=binance-futures/symbol=BTCUSDT/date=2025-01-05/hour=22/data.parquet/../../../evil.parquet",
    ]
    for k in evil:
        s3.put_object(Bucket=bucket, Key=k, Body=b"evil")
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ticks/")["Contents"]}
    assert sum(".." in k or "//" in k for k in listed) >= 5  # the server kept them as given
    sandbox = tmp_path / "sandbox"
    new = sandbox / "inside" / "archive"
    new.mkdir(parents=True)
    r = restore_all(url, str(new), S3Options(endpoint_url=s3_endpoint))
    assert r.ok and len(r.downloaded) == len(original) and len(r.rejected) >= 5
    outside = [p for p in sandbox.rglob("*") if p.is_file() and new not in p.parents]
    assert outside == [] and not (tmp_path / "escaped.parquet").exists()
    assert _files(str(new)) == original
    assert all(v != b"evil" for v in _files(str(new)).values())


def _run_capture(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ticktape.engine.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )


@pytest.mark.slow
def test_wrong_credentials_and_missing_bucket_give_one_line_without_secrets(tmp_path, s3_env, s3_endpoint):
    root = str(tmp_path / "archive")
    write_sample_archive(root, symbols=("BTCUSDT",), hours=1, rows_per_hour=10)
    secret = "wJalrXUtnFEMI-K7MDENG-SuperSecret-42"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIAWRONGKEY0000", "AWS_SECRET_ACCESS_KEY": secret}
    with LocalS3Server(strict_auth=True) as strict:  # refuses keys it does not know, as a provider does
        for args in (
            ["s3", "sync", root, "s3://any-bucket/p", "--endpoint-url", strict.endpoint],
            [
                "s3",
                "restore",
                "s3://any-bucket/p",
                root,
                "--exchange",
                EX,
                "--symbol",
                "BTCUSDT",
                "--type",
                "trades",
                "--from",
                "2025-01-05:22",
                "--to",
                "2025-01-05:23",
                "--endpoint-url",
                strict.endpoint,
            ],
        ):
            p = _run_capture(*args, env=env)
            assert p.returncode == 1, p
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and "access key is not known" in lines[0], p.stderr
            assert secret not in p.stderr + p.stdout and "Traceback" not in p.stderr
        # a bad range input is named before any S3 call, whatever the credentials
        p = _run_capture("s3", "restore", "s3://any-bucket/p", root, "--exchange", EX, "--symbol", "BTCUSDT",
                         "--type", "book_snapshot", "--depth", "-3", "--from", "2025-01-05:22", "--to", "2025-01-05:23",
                         "--endpoint-url", strict.endpoint, env=env)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 1 and "depth -3: must be 1..1000" in lines[0], p.stderr

    # credentials through a .env file; a missing bucket on a working endpoint
    envfile = tmp_path / ".env"
    envfile.write_text(f"AWS_ACCESS_KEY_ID=ticktapetestkey\nAWS_SECRET_ACCESS_KEY={secret}\n")
    env2 = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")
    }
    env2["AWS_ENDPOINT_URL"] = s3_endpoint
    p = _run_capture("s3", "sync", root, "s3://missing-bucket-xyz/p", "--env-file", str(envfile), env=env2)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "the bucket does not exist" in lines[0] and "missing-bucket-xyz" in lines[0]
    assert secret not in p.stderr + p.stdout


def test_cli_sync_dry_run_then_sync_then_nothing(tmp_path, s3_endpoint, s3, bucket, capsys):
    root = str(tmp_path / "archive")
    write_sample_archive(root, symbols=("BTCUSDT",), hours=3, rows_per_hour=10)
    url = f"s3://{bucket}/c"
    assert capture_main(["s3", "sync", root, url, "--dry-run", "--endpoint-url", s3_endpoint, "-q"]) == 0
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    out = capsys.readouterr().out
    assert "would upload 3 files" in out
    assert (
        capture_main(["s3", "sync", root, url, "--endpoint-url", s3_endpoint, "--concurrency", "2", "-q"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.count('"upload trades/exchange=') == 3 and "uploaded 3 files" in out
    assert capture_main(["s3", "sync", root, url, "--endpoint-url", s3_endpoint, "-q"]) == 0
    assert "nothing to upload: all 3 files already in" in capsys.readouterr().out
    assert capture_main(["s3", "restore", url, root, "--exchange", EX, "--endpoint-url", s3_endpoint]) == 1
    assert "missing --symbol, --from, --to" in capsys.readouterr().err
    # without --type: every table of the range (the seed's restore)
    new = str(tmp_path / "restored")
    args = ["s3", "restore", url, new, "--exchange", EX, "--symbol", "BTCUSDT", "--from", "2025-01-05:23",
            "--to", "2025-01-06:00", "--endpoint-url", s3_endpoint, "-q"]
    assert capture_main(args) == 0
    assert sorted(_files(new)) == [
        f"trades/exchange={EX}/symbol=BTCUSDT/date=2025-01-05/hour=23/data.parquet",
        f"trades/exchange={EX}/symbol=BTCUSDT/date=2025-01-06/hour=00/data.parquet",
    ]


def test_redact_masks_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "abcdSECRETxyz")
    assert redact("boom abcdSECRETxyz http://u:pw@host/x") == "boom *** http://***@host/x"
