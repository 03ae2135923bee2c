"""``capture s3 sync``: upload the finalized Parquet files the bucket lacks or holds with other bytes.

One listing of the prefix gives each object's size and ETag; a file whose size
differs is uploaded, one whose size matches is compared by content (the ETag
of a single-part upload is the md5 of the bytes; otherwise the sha256 kept as
object metadata). Only paths ``FileKey.from_relpath`` accepts are candidates:
journals, temp files (leading '.') and anything else are never uploaded.

A PUT is atomic per object and is sent with Content-MD5, so the server refuses
bytes damaged in transit and an interrupted upload leaves no object (a large
file goes multipart; an unfinished multipart upload is aborted and never
becomes visible under the key).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ticktape.archive.checksum import Digest, HashCache, digest_bytes
from ticktape.archive.layout import JOURNAL_DIR, FileKey, LayoutError
from ticktape.archive.s3_client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_READ_TIMEOUT,
    S3Error,
    S3Options,
    check_bucket,
    close_fs,
    describe,
    is_fatal,
    make_fs,
    object_key,
    parse_url,
)

log = logging.getLogger("ticktape.s3")

#: files up to this size go in one PUT with Content-MD5; larger ones multipart through s3fs
SINGLE_PUT_MAX = 64 << 20
#: part size of multipart uploads (S3 minimum is 5 MiB)
MULTIPART_CHUNK = 64 << 20
SHA_META = "sha256"


@dataclass(slots=True)
class LocalFile:
    rel: str
    path: str
    size: int
    mtime_ns: int = 0


@dataclass
class SyncReport:
    url: str
    dry_run: bool = False
    local_files: int = 0
    #: relpaths uploaded (or that would be, in a dry run)
    uploaded: list[str] = field(default_factory=list)
    uploaded_bytes: int = 0
    existing: int = 0
    #: (relpath, reason) of uploads that failed
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: uploads not attempted because the run stopped on a fatal error
    pending: int = 0
    #: files under the root that are not finalized archive files (never uploaded)
    ignored: int = 0
    error: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed and not self.pending

    def summary(self) -> str:
        verb = "would upload" if self.dry_run else "uploaded"
        if self.ok and not self.uploaded:
            return f"nothing to upload: all {self.existing} files already in {self.url}"
        text = (
            f"{verb} {len(self.uploaded)} files ({self.uploaded_bytes / 1e6:,.1f} MB) to {self.url}, "
            f"{self.existing} already there"
        )
        if self.elapsed > 0 and self.uploaded and not self.dry_run:
            text += f", {self.uploaded_bytes / 1e6 / self.elapsed:,.1f} MB/s"
        if self.failed:
            text += f", {len(self.failed)} failed"
        if self.pending:
            text += f", {self.pending} not attempted"
        if self.error:
            text += f" — {self.error}"
        return text


def scan_local(root: str) -> tuple[list[LocalFile], int]:
    """Finalized archive files under ``root`` (no journals, no dot files) and the count of others."""
    files: list[LocalFile] = []
    ignored = 0
    root = os.path.abspath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        # never descend into journals, state or temp dirs
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != JOURNAL_DIR)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            try:
                FileKey.from_relpath(rel)
            except LayoutError:
                ignored += 1
                log.debug("ignore %s (not a finalized archive file)", rel)
                continue
            try:
                st = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not os.path.isfile(path) or os.path.islink(path):
                ignored += 1
                continue
            files.append(LocalFile(rel, path, st.st_size, st.st_mtime_ns))
    return files, ignored


async def list_remote(client: Any, bucket: str, prefix: str) -> dict[str, tuple[int, str]]:
    """relpath -> (size, etag without quotes) for every object under the prefix."""
    out: dict[str, tuple[int, str]] = {}
    pfx = f"{prefix}/" if prefix else ""
    paginator = client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=pfx):
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            out[key[len(pfx) :]] = (int(obj["Size"]), str(obj.get("ETag", "")).strip('"'))
    return out


async def connect_and_list(
    fs: Any, bucket: str, prefix: str, where: str
) -> tuple[Any, dict[str, tuple[int, str]]]:
    """Open the session, check the bucket answers, list the prefix; any failure is one S3Error line."""
    try:
        client = await fs.set_session()
    except Exception as e:
        raise S3Error(describe(e, where)) from None
    await check_bucket(client, bucket, prefix, where)
    try:
        remote = await list_remote(client, bucket, prefix)
    except Exception as e:
        raise S3Error(describe(e, where)) from None
    return client, remote


async def run_pool(items: list[tuple[Any, ...]], worker: Callable[..., Any], n: int) -> None:
    """``worker(*item)`` for every item with at most ``n`` running: n tasks, not one per file."""
    it = iter(items)

    async def loop() -> None:
        for item in it:
            await worker(*item)

    tasks = [asyncio.create_task(loop()) for _ in range(max(1, min(n, len(items))))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _plain_md5(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


class Progress:
    """rich progress on stderr (files, bytes, rate); a no-op when off or when stderr is not a terminal."""

    def __init__(self, enabled: bool, files: int, total_bytes: int, label: str):
        self.bar: Any = None
        self._swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._done = 0
        self._nfiles = files
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as RichProgress

        console = Console(stderr=True)
        if not console.is_terminal:
            return
        self.bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[nfiles]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            redirect_stdout=True,
            redirect_stderr=False,
        )
        self._task = self.bar.add_task(label, total=total_bytes or None, done=0, nfiles=files)
        orig = sys.stdout
        self.bar.start()
        # log handlers opened on stdout before the bar: route their lines above the bar, not through it
        self._swapped = []
        if sys.stdout is not orig:
            for h in logging.getLogger().handlers:
                if isinstance(h, logging.StreamHandler) and h.stream is orig:
                    h.setStream(sys.stdout)
                    self._swapped.append((h, orig))

    def advance(self, nbytes: int) -> None:
        self._done += 1
        if self.bar is not None:
            self.bar.update(self._task, advance=nbytes, done=self._done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            for h, stream in self._swapped:
                h.setStream(stream)
            self.bar = None


async def _upload(fs: Any, client: Any, bucket: str, key: str, f: LocalFile, cache: HashCache) -> Digest:
    if f.size <= SINGLE_PUT_MAX:
        data, d = await asyncio.to_thread(_read_digest, f.path)
        resp = await client.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentMD5=base64.b64encode(bytes.fromhex(d.md5)).decode(),
            ContentType="application/vnd.apache.parquet",
            Metadata={SHA_META: d.sha256},
        )
        etag = str(resp.get("ETag", "")).strip('"')
        if _plain_md5(etag) and etag != d.md5:
            raise S3Error(f"{key}: server stored other bytes (ETag {etag} != md5 {d.md5})")
        cache.put(f.rel, f.path, d)
        return d
    d = await asyncio.to_thread(cache.get, f.rel, f.path)
    await fs._put_file(
        f.path,
        f"{bucket}/{key}",
        chunksize=MULTIPART_CHUNK,
        Metadata={SHA_META: d.sha256},
        ContentType="application/vnd.apache.parquet",
    )
    head = await client.head_object(Bucket=bucket, Key=key)
    if head.get("Metadata", {}).get(SHA_META) != d.sha256 or int(head["ContentLength"]) != f.size:
        raise S3Error(f"{key}: the stored object does not match the upload (size or checksum)")
    cache.add_etag(f.rel, str(head.get("ETag", "")).strip('"'))
    return d


def _read_digest(path: str) -> tuple[bytes, Digest]:
    with open(path, "rb") as fh:
        data = fh.read()
    return data, digest_bytes(data)


async def sync_archive_async(
    root: str,
    url: str,
    opts: S3Options | None = None,
    *,
    concurrency: int = 8,
    dry_run: bool = False,
    progress: bool = False,
    on_file: Callable[[str, str], None] | None = None,
) -> SyncReport:
    """Upload what ``url`` lacks. Fatal problems (credentials, bucket, endpoint) raise S3Error before any
    upload; once uploads run, failures are counted in the report and a fatal one stops the rest."""
    opts = opts or S3Options()
    bucket, prefix = parse_url(url)
    where = opts.where(url)
    if concurrency < 1:
        raise S3Error("concurrency must be >= 1")
    if not os.path.isdir(root):
        raise S3Error(f"archive root {root!r} is not a directory")
    t0 = time.perf_counter()
    report = SyncReport(url=url, dry_run=dry_run)
    files, report.ignored = await asyncio.to_thread(scan_local, root)
    report.local_files = len(files)
    cache = HashCache(root)
    fs = make_fs(opts, asynchronous=True)
    try:
        client, remote = await connect_and_list(fs, bucket, prefix, where)

        # plan: sizes from the listing, then content where sizes agree. Unchanged files answer from the
        # checksum cache without I/O, so an hourly sync of a large archive costs one listing.
        to_upload: list[tuple[LocalFile, str]] = []
        to_check: list[tuple[LocalFile, str]] = []

        def same_as(f: LocalFile, etag: str) -> None:
            report.existing += 1
            log.debug("exists %s", f.rel)
            if on_file:
                on_file("exists", f.rel)

        for f in files:
            r = remote.get(f.rel)
            if r is None:
                to_upload.append((f, "missing"))
                continue
            size, etag = r
            if size != f.size:
                to_upload.append((f, f"size {size} != {f.size}"))
                continue
            cached = cache.lookup(f.rel, f.size, f.mtime_ns)
            if cached is not None and _plain_md5(etag):
                if etag == cached[0].md5:
                    same_as(f, etag)
                else:
                    to_upload.append((f, "checksum differs"))
            elif cached is not None and etag and etag in cached[1]:
                same_as(f, etag)  # a multipart object we uploaded from these very bytes
            else:
                to_check.append((f, etag))

        async def check(f: LocalFile, etag: str) -> None:
            d = await asyncio.to_thread(cache.get, f.rel, f.path)
            if _plain_md5(etag):
                same = etag == d.md5
            else:
                head = await client.head_object(Bucket=bucket, Key=object_key(prefix, f.rel))
                same = head.get("Metadata", {}).get(SHA_META) == d.sha256
                if same:
                    cache.add_etag(f.rel, etag)
            if same:
                same_as(f, etag)
            else:
                to_upload.append((f, "checksum differs"))

        try:
            await run_pool(to_check, check, max(concurrency, 2))
        except Exception as e:
            raise S3Error(describe(e, where)) from None
        to_upload.sort(key=lambda x: x[0].rel)

        if dry_run:
            for f, reason in to_upload:
                log.info("would upload %s (%s, %d bytes)", f.rel, reason, f.size)
                report.uploaded.append(f.rel)
                report.uploaded_bytes += f.size
                if on_file:
                    on_file("would_upload", f.rel)
            return report

        bar = Progress(progress, len(to_upload), sum(f.size for f, _ in to_upload), "upload")
        stop = asyncio.Event()

        async def upload(f: LocalFile, reason: str) -> None:
            if stop.is_set():
                report.pending += 1
                return
            key = object_key(prefix, f.rel)
            try:
                await _upload(fs, client, bucket, key, f, cache)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                msg = describe(e, f.rel)
                report.failed.append((f.rel, msg))
                log.error("upload failed %s", msg)
                if is_fatal(e) and not stop.is_set():
                    stop.set()
                    report.error = describe(e, where)
                return
            report.uploaded.append(f.rel)
            report.uploaded_bytes += f.size
            log.info("upload %s (%s, %d bytes)", f.rel, reason, f.size)
            bar.advance(f.size)
            if on_file:
                on_file("upload", f.rel)

        try:
            await run_pool(to_upload, upload, concurrency)
        finally:
            bar.close()
        return report
    finally:
        report.elapsed = time.perf_counter() - t0
        cache.save()
        await close_fs(fs)


def sync_archive(
    root: str,
    url: str,
    *,
    endpoint_url: str | None = None,
    profile: str | None = None,
    region: str | None = None,
    concurrency: int = 8,
    dry_run: bool = False,
    progress: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> SyncReport:
    """Blocking form of ``sync_archive_async`` (runs its own event loop; call it from any thread)."""
    opts = S3Options(
        endpoint_url=endpoint_url, profile=profile, region=region, max_attempts=max_attempts,
        connect_timeout=connect_timeout, read_timeout=read_timeout,
    )
    report = asyncio.run(
        sync_archive_async(root, url, opts, concurrency=concurrency, dry_run=dry_run, progress=progress)
    )
    log.info("%s", report.summary())
    return report
