"""``capture s3 restore``: fetch the files of a range from the bucket into the local archive.

Paths are computed from (exchange, type, symbol, hour); a range restore lists
each (table, symbol, day) directory once to find every capture's tagged file of
an hour (the shards of a fleet write ``data-<tag>.parquet`` side by side). Each object is streamed to a temp file under ``<root>/.tmp/`` (outside
every table, same filesystem) while hashed, checked against its size and the sha256 kept as
metadata (or the md5 ETag of objects uploaded by other tools), then fsynced
and renamed into place: a reader never sees half a file, and a mismatch leaves
nothing behind. A local file that differs from the bucket's copy is kept and
reported, never overwritten silently.

Every local path is built with ``layout.safe_join`` from a validated
``FileKey``, so an object key with '..' or an absolute path cannot write
outside the archive root (``restore_all`` parses listed keys the same way).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from ticktape.archive.checksum import digest_file
from ticktape.archive.layout import FileKey, LayoutError, safe_join
from ticktape.archive.s3_client import (
    S3Error,
    S3Options,
    check_bucket,
    close_fs,
    describe,
    error_code,
    is_fatal,
    make_fs,
    object_key,
    parse_url,
)
from ticktape.archive.s3_sync import SHA_META, Progress, connect_and_list, run_pool
from ticktape.ipc.schemas import is_data_type

log = logging.getLogger("ticktape.s3")

CHUNK = 1 << 20


@dataclass
class RestoreReport:
    url: str
    requested: int = 0
    downloaded: list[str] = field(default_factory=list)
    downloaded_bytes: int = 0
    #: already present locally with the same bytes
    skipped: int = 0
    #: relpaths not in the bucket (a gap in capture, or never synced)
    missing: list[str] = field(default_factory=list)
    #: present locally with other bytes than the bucket's: kept, not overwritten
    conflicts: list[str] = field(default_factory=list)
    #: (relpath, reason): checksum/size mismatch, errors
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: listed keys that are not archive paths (restore_all only), e.g. '..' or absolute
    rejected: list[str] = field(default_factory=list)
    pending: int = 0
    error: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Missing hours are not a failure; a refused object, a conflict or a stopped run is."""
        return self.error is None and not self.failed and not self.pending and not self.conflicts

    def summary(self) -> str:
        text = (
            f"restored {len(self.downloaded)} of {self.requested} files "
            f"({self.downloaded_bytes / 1e6:,.1f} MB) from {self.url}, {self.skipped} already present"
        )
        if self.missing:
            text += f", {len(self.missing)} not in the bucket"
        if self.conflicts:
            text += f", {len(self.conflicts)} differ locally (kept; use --overwrite to replace)"
        if self.failed:
            text += f", {len(self.failed)} failed"
        if self.rejected:
            text += f", {len(self.rejected)} keys rejected as unsafe/not archive paths"
        if self.pending:
            text += f", {self.pending} not attempted"
        if self.error:
            text += f" — {self.error}"
        return text


class ChecksumMismatch(S3Error):
    pass


_PART_TAG = "restore"


def _tmp_name(root: str, k: FileKey) -> str:
    return safe_join(root, k.tmp_relpath(f"{_PART_TAG}-{secrets.token_hex(4)}"))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _clean_stale_parts(root: str, k: FileKey) -> None:
    """Temp files an interrupted restore of the same file left behind."""
    d, stem = os.path.split(_tmp_name(root, k))
    prefix = stem[: stem.rindex(f".{_PART_TAG}-") + len(_PART_TAG) + 2]
    try:
        for n in os.listdir(d):
            if n.startswith(prefix) and n.endswith(".tmp"):
                os.unlink(os.path.join(d, n))
    except FileNotFoundError:
        pass


def _expected(resp: dict[str, Any]) -> tuple[str | None, str | None]:
    """(sha256 from metadata, md5 from a single-part ETag) of a GET/HEAD response."""
    sha = (resp.get("Metadata") or {}).get(SHA_META)
    etag = str(resp.get("ETag", "")).strip('"').lower()
    md5 = etag if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) else None
    return sha, md5


def _publish(tmp: str, dest: str) -> None:
    os.replace(tmp, dest)
    _fsync_dir(os.path.dirname(dest))


def _write_hash(f: Any, chunk: bytes, sha: Any, md5: Any, last: bool = False) -> None:
    f.write(chunk)
    sha.update(chunk)
    if md5 is not None:
        md5.update(chunk)
    if last:
        f.flush()
        os.fsync(f.fileno())


async def _download(client: Any, bucket: str, key: str, root: str, k: FileKey) -> int:
    """GET -> temp file -> verify -> fsync -> rename. Returns bytes written."""
    rel = k.relpath()
    dest = safe_join(root, rel)
    resp = await client.get_object(Bucket=bucket, Key=key)
    want_sha, want_md5 = _expected(resp)
    want_size = int(resp.get("ContentLength", -1))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    _clean_stale_parts(root, k)
    tmp = _tmp_name(root, k)
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    sha = hashlib.sha256()
    md5 = hashlib.md5() if want_sha is None else None  # md5 only when it is all there is to check
    size = 0
    ok = False
    try:
        with open(tmp, "wb") as f:
            body = resp["Body"]
            buf: list[bytes] = []
            pending = 0
            try:
                while chunk := await body.read(CHUNK):
                    buf.append(chunk)
                    pending += len(chunk)
                    size += len(chunk)
                    if pending >= CHUNK:
                        # hashing and writing release the GIL: off the loop, other transfers go on meanwhile
                        await asyncio.to_thread(_write_hash, f, b"".join(buf), sha, md5)
                        buf.clear()
                        pending = 0
            finally:
                body.close()
            await asyncio.to_thread(_write_hash, f, b"".join(buf), sha, md5, True)
        if want_size >= 0 and size != want_size:
            raise ChecksumMismatch(
                f"{rel}: size mismatch (got {size} bytes, object says {want_size}); refused"
            )
        if want_sha is not None and sha.hexdigest() != want_sha:
            raise ChecksumMismatch(
                f"{rel}: checksum mismatch (sha256 {sha.hexdigest()[:16]}…, metadata says {want_sha[:16]}…); "
                "the object in the bucket is corrupt; refused, nothing written"
            )
        if md5 is not None and want_md5 is not None and md5.hexdigest() != want_md5:
            raise ChecksumMismatch(f"{rel}: checksum mismatch (md5 != ETag); refused, nothing written")
        if want_sha is None and want_md5 is None:
            log.warning("restore %s: object has no checksum to verify against (size only)", rel)
        await asyncio.to_thread(_publish, tmp, dest)
        ok = True
        return size
    finally:
        if not ok:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


async def restore_keys_async(
    url: str,
    root: str,
    keys: list[FileKey],
    opts: S3Options | None = None,
    *,
    concurrency: int = 8,
    overwrite: bool = False,
    progress: bool = False,
    _listed: bool = False,
) -> RestoreReport:
    opts = opts or S3Options()
    bucket, prefix = parse_url(url)
    where = opts.where(url)
    report = RestoreReport(url=url, requested=len(keys))
    t0 = time.perf_counter()
    os.makedirs(root, exist_ok=True)
    fs = make_fs(opts, asynchronous=True)
    try:
        try:
            client = await fs.set_session()
        except Exception as e:
            raise S3Error(describe(e, where)) from None
        await check_bucket(client, bucket, prefix, where, need_list=False)
        stop = asyncio.Event()
        bar = Progress(progress, len(keys), 0, "restore")

        async def one(k: FileKey) -> None:
            rel = k.relpath()
            dest = safe_join(os.path.abspath(root), rel)
            key = object_key(prefix, rel)
            if stop.is_set():
                report.pending += 1
                return
            try:
                if os.path.exists(dest):
                    try:
                        head = await client.head_object(Bucket=bucket, Key=key)
                    except Exception as e:
                        if error_code(e) in ("404", "NoSuchKey", "NotFound"):
                            report.skipped += 1  # only local: nothing to fetch
                            log.info("exists %s (local only)", rel)
                            return
                        raise
                    want_sha, want_md5 = _expected(head)
                    d = await asyncio.to_thread(digest_file, dest)
                    same = d.size == int(head.get("ContentLength", -1)) and (
                        (want_sha is not None and d.sha256 == want_sha)
                        or (want_sha is None and want_md5 is not None and d.md5 == want_md5)
                    )
                    if same:
                        report.skipped += 1
                        log.info("exists %s", rel)
                        bar.advance(0)
                        return
                    if not overwrite:
                        report.conflicts.append(rel)
                        log.warning("differs %s: local copy differs from the bucket's; kept", rel)
                        return
                n = await _download(client, bucket, key, os.path.abspath(root), k)
            except ChecksumMismatch as e:
                report.failed.append((rel, str(e)))
                log.error("%s", e)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if error_code(e) in ("404", "NoSuchKey", "NotFound"):
                    report.missing.append(rel)
                    log.info("missing %s (not in the bucket)", rel)
                    return
                msg = describe(e, rel)
                report.failed.append((rel, msg))
                log.error("download failed %s", msg)
                if is_fatal(e) and not stop.is_set():
                    stop.set()
                    report.error = describe(e, where)
                return
            report.downloaded.append(rel)
            report.downloaded_bytes += n
            log.info("download %s (%d bytes)", rel, n)
            bar.advance(n)

        try:
            await run_pool([(k,) for k in keys], one, concurrency)
        finally:
            bar.close()
        report.missing.sort()
        report.downloaded.sort()
        return report
    finally:
        report.elapsed = time.perf_counter() - t0
        await close_fs(fs)


@asynccontextmanager
async def _checked_session(url: str, opts: S3Options | None) -> AsyncIterator[tuple[Any, str, str, str]]:
    """(client, bucket, prefix, where) of a session whose bucket answered; one S3Error line otherwise."""
    opts = opts or S3Options()
    bucket, prefix = parse_url(url)
    where = opts.where(url)
    fs = make_fs(opts, asynchronous=True)
    try:
        try:
            client = await fs.set_session()
        except Exception as e:
            raise S3Error(describe(e, where)) from None
        await check_bucket(client, bucket, prefix, where)
        yield client, bucket, prefix, where
    finally:
        await close_fs(fs)


async def remote_tables(url: str, opts: S3Options | None = None) -> list[str]:
    """The tables (data types) under the prefix: one delimiter listing of its top level, no file listing."""
    async with _checked_session(url, opts) as (client, bucket, prefix, where):
        pfx = f"{prefix}/" if prefix else ""
        names: list[str] = []
        try:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket, Prefix=pfx, Delimiter="/"):
                for cp in page.get("CommonPrefixes", ()):
                    name = str(cp["Prefix"])[len(pfx) :].rstrip("/")
                    if is_data_type(name):
                        names.append(name)
        except Exception as e:
            raise S3Error(describe(e, where)) from None
        return sorted(names)


async def tagged_keys(
    url: str, keys: list[FileKey], opts: S3Options | None = None, concurrency: int = 8
) -> list[FileKey]:
    """The range's files as the bucket holds them: every capture's tagged file of each hour (shards of
    a fleet write ``data-<tag>.parquet`` side by side), found by one listing per (table, symbol, day);
    an hour with no file keeps its untagged key (reported missing by the restore)."""
    if not keys:
        return []
    days = sorted({k.dir_relpath().rsplit("/", 1)[0] + "/" for k in keys})
    slots = {k.slot for k in keys}
    found: dict[tuple[Any, ...], list[FileKey]] = {}
    async with _checked_session(url, opts) as (client, bucket, prefix, where):
        pfx = f"{prefix}/" if prefix else ""

        async def day(rel_dir: str) -> None:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=bucket, Prefix=pfx + rel_dir):
                for obj in page.get("Contents", ()):
                    try:
                        k = FileKey.from_relpath(str(obj["Key"])[len(pfx) :])
                    except LayoutError:
                        continue
                    if k.slot in slots:
                        found.setdefault(k.slot, []).append(k)

        try:
            await run_pool([(d,) for d in days], day, concurrency)
        except Exception as e:
            raise S3Error(describe(e, where)) from None
    out: list[FileKey] = []
    for k in keys:
        out += sorted(found.get(k.slot, [k]), key=lambda x: x.tag)
    return out


async def listed_keys(url: str, opts: S3Options | None = None) -> tuple[list[FileKey], list[str]]:
    """Every archive file under the prefix, and the keys refused (traversal, absolute, not archive paths)."""
    opts = opts or S3Options()
    bucket, prefix = parse_url(url)
    where = opts.where(url)
    fs = make_fs(opts, asynchronous=True)
    try:
        _, remote = await connect_and_list(fs, bucket, prefix, where)
    finally:
        await close_fs(fs)
    keys: list[FileKey] = []
    rejected: list[str] = []
    for rel in sorted(remote):
        try:
            k = FileKey.from_relpath(rel)
            safe_join("/x", rel)
        except LayoutError:
            rejected.append(rel)
            continue
        keys.append(k)
    return keys, rejected


def restore_keys(
    url: str,
    root: str,
    keys: list[FileKey],
    opts: S3Options | None = None,
    *,
    concurrency: int = 8,
    overwrite: bool = False,
    progress: bool = False,
) -> RestoreReport:
    report = asyncio.run(
        restore_keys_async(
            url, root, keys, opts, concurrency=concurrency, overwrite=overwrite, progress=progress
        )
    )
    log.info("%s", report.summary())
    return report


def restore_all(
    url: str,
    root: str,
    opts: S3Options | None = None,
    *,
    concurrency: int = 8,
    overwrite: bool = False,
    progress: bool = False,
) -> RestoreReport:
    """Restore every archive file under the prefix; keys that are not safe archive paths are refused."""
    keys, rejected = asyncio.run(listed_keys(url, opts))
    for rel in rejected:
        log.warning("rejected key %r: not an archive path inside the root", rel)
    report = asyncio.run(
        restore_keys_async(
            url, root, keys, opts, concurrency=concurrency, overwrite=overwrite, progress=progress
        )
    )
    report.rejected = rejected
    log.info("%s", report.summary())
    return report
