"""S3 sync/restore throughput against a local moto server, next to a plain s3fs put/get loop.

Two file sets, each in the archive layout: many small files (per-request cost
dominates) and a few larger ones (bytes dominate). For each repeat the server
is restarted empty, then: ``sync_archive`` (parallel, checksummed), a plain
sequential ``S3FileSystem.put_file`` loop over the same files, ``restore_keys``
(parallel, verified, temp+rename) and a plain ``get_file`` loop. Medians are
reported; ratio = ticktape rate / plain-loop rate. moto is a Python server on
the same (shared) machine, so absolute numbers are a floor, not what a real
provider gives; the ratios are the point.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from ticktape.archive.layout import FileKey


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--small-files", type=int, default=1000, help="number of small files (default 1000)")
    parser.add_argument("--small-kb", type=float, default=8.0, help="size of a small file in KiB (default 8)")
    parser.add_argument("--large-files", type=int, default=10, help="number of larger files (default 10)")
    parser.add_argument(
        "--large-mb", type=float, default=8.0, help="size of a larger file in MiB (default 8)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="parallel transfers for sync/restore (default 8)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="repeats; medians are reported (default 2)")


def _write_set(root: str, name: str, n: int, size: int, rng: np.random.Generator) -> list[FileKey]:
    """``n`` files of ``size`` random bytes at archive paths (sync only cares about paths and bytes)."""
    keys = []
    h0 = datetime(2025, 1, 1, tzinfo=UTC)
    symbols = max(1, min(50, n // 20))
    for i in range(n):
        k = FileKey(f"bench-{name}", "trades", f"S{i % symbols:03d}", h0 + timedelta(hours=i // symbols))
        p = os.path.join(root, k.relpath())
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(rng.bytes(size))
        keys.append(k)
    return keys


def _measure(label: str, fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _one_round(server: Any, root: str, keys: list[FileKey], size: int, concurrency: int) -> dict[str, float]:
    import boto3

    from ticktape.archive.s3_client import S3Options, make_fs
    from ticktape.archive.s3_restore import restore_keys
    from ticktape.archive.s3_sync import sync_archive

    server.restart()  # empty, so every round uploads everything
    s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bench-sync")
    s3.create_bucket(Bucket="bench-plain")
    shutil.rmtree(os.path.join(root, ".state"), ignore_errors=True)  # no checksum cache: a cold sync
    opts = S3Options(endpoint_url=server.endpoint)
    out: dict[str, float] = {}

    rep: Any = None

    def do_sync() -> None:
        nonlocal rep
        rep = sync_archive(root, "s3://bench-sync/a", endpoint_url=server.endpoint, concurrency=concurrency)

    out["sync"] = _measure("sync", do_sync)
    assert rep.ok and len(rep.uploaded) == len(keys), rep.summary()

    fs = make_fs(opts)
    rels = [k.relpath() for k in keys]

    def plain_put() -> None:
        for rel in rels:
            fs.put_file(os.path.join(root, rel), f"bench-plain/a/{rel}")

    out["put"] = _measure("put", plain_put)

    dest = tempfile.mkdtemp(prefix="ticktape-bench-restore-")
    dest2 = tempfile.mkdtemp(prefix="ticktape-bench-get-")
    try:

        def do_restore() -> None:
            nonlocal rep
            rep = restore_keys("s3://bench-sync/a", dest, keys, opts, concurrency=concurrency)

        out["restore"] = _measure("restore", do_restore)
        assert rep.ok and len(rep.downloaded) == len(keys), rep.summary()

        def plain_get() -> None:
            for rel in rels:
                p = os.path.join(dest2, rel)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                fs.get_file(f"bench-plain/a/{rel}", p)

        out["get"] = _measure("get", plain_get)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
        shutil.rmtree(dest2, ignore_errors=True)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ticktape.archive.local_s3 import LocalS3Server

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    rng = np.random.default_rng(0)
    sets = [
        ("small", args.small_files, int(args.small_kb * 1024)),
        ("large", args.large_files, int(args.large_mb * 1024 * 1024)),
    ]
    figures: dict[str, Any] = {"concurrency": args.concurrency, "repeats": args.repeat}
    with LocalS3Server() as server:
        for name, n, size in sets:
            if n <= 0:
                continue
            root = tempfile.mkdtemp(prefix=f"ticktape-bench-{name}-")
            try:
                keys = _write_set(root, name, n, size, rng)
                rounds = [_one_round(server, root, keys, size, args.concurrency) for _ in range(args.repeat)]
            finally:
                shutil.rmtree(root, ignore_errors=True)
            mb = n * size / 1e6
            figures[f"{name}_files"] = n
            figures[f"{name}_file_kb"] = round(size / 1024, 1)
            for op, base in (("sync", "put"), ("restore", "get")):
                t = statistics.median(r[op] for r in rounds)
                tb = statistics.median(r[base] for r in rounds)
                figures[f"{name}_{op}_files_per_s"] = n / t
                figures[f"{name}_{op}_MB_per_s"] = mb / t
                figures[f"{name}_plain_{base}_files_per_s"] = n / tb
                figures[f"{name}_plain_{base}_MB_per_s"] = mb / tb
                figures[f"{name}_{op}_vs_plain_ratio"] = tb / t
    return figures
