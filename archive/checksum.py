"""Content checksums of archive files, cached by (size, mtime) so an hourly sync re-hashes only new files.

sha256 is the checksum kept as S3 object metadata and verified on restore;
md5 is what S3 reports as the ETag of a single-part upload, so a listing alone
can tell whether the bucket holds the same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass

import msgspec

from ticktape.archive.layout import STATE_DIR

log = logging.getLogger("ticktape.s3")

CHUNK = 1 << 20
CACHE_NAME = "s3-hashes.json"


@dataclass(frozen=True, slots=True)
class Digest:
    size: int
    md5: str
    sha256: str


def digest_bytes(data: bytes | memoryview) -> Digest:
    return Digest(len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())


def digest_file(path: str) -> Digest:
    md5, sha = hashlib.md5(), hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return Digest(size, md5.hexdigest(), sha.hexdigest())


class _Entry(msgspec.Struct, array_like=True):
    size: int
    mtime_ns: int
    md5: str
    sha256: str
    #: ETags S3 gave these bytes on upload (multipart ETags are not an md5 of the content)
    etags: list[str] = []


class HashCache:
    """relpath -> digest, valid while the file keeps its size and mtime (finalized files never change)."""

    def __init__(self, root: str):
        self.path = os.path.join(root, STATE_DIR, CACHE_NAME)
        self._lock = threading.Lock()
        self._dirty = False
        self._entries: dict[str, _Entry] = {}
        try:
            with open(self.path, "rb") as f:
                self._entries = msgspec.json.decode(f.read(), type=dict[str, _Entry])
        except FileNotFoundError:
            pass
        except (OSError, msgspec.DecodeError) as e:  # a damaged cache only costs re-hashing
            log.warning("ignoring unreadable checksum cache %s: %s", self.path, e)

    def get(self, rel: str, path: str) -> Digest:
        st = os.stat(path)
        with self._lock:
            e = self._entries.get(rel)
        if e is not None and e.size == st.st_size and e.mtime_ns == st.st_mtime_ns:
            return Digest(e.size, e.md5, e.sha256)
        d = digest_file(path)
        self.put(rel, path, d, st.st_mtime_ns)
        return d

    def lookup(self, rel: str, size: int, mtime_ns: int) -> tuple[Digest, list[str]] | None:
        """Cached digest and upload ETags if the file is unchanged; no I/O."""
        with self._lock:
            e = self._entries.get(rel)
        if e is None or e.size != size or e.mtime_ns != mtime_ns:
            return None
        return Digest(e.size, e.md5, e.sha256), list(e.etags)

    def put(self, rel: str, path: str, d: Digest, mtime_ns: int | None = None) -> None:
        if mtime_ns is None:
            mtime_ns = os.stat(path).st_mtime_ns
        with self._lock:
            old = self._entries.get(rel)
            etags = old.etags if old is not None and old.sha256 == d.sha256 else []
            self._entries[rel] = _Entry(d.size, mtime_ns, d.md5, d.sha256, etags)
            self._dirty = True

    def uploaded_etag(self, rel: str) -> list[str]:
        with self._lock:
            e = self._entries.get(rel)
            return list(e.etags) if e is not None else []

    def add_etag(self, rel: str, etag: str) -> None:
        """Remember the ETag of an upload, so the next sync trusts a listing that shows it (no HEAD)."""
        with self._lock:
            e = self._entries.get(rel)
            if e is not None and etag and etag not in e.etags:
                e.etags = [*e.etags[-3:], etag]
                self._dirty = True

    def save(self) -> None:
        """Atomic replace; entries of files that no longer exist are kept (cheap, harmless)."""
        with self._lock:
            if not self._dirty:
                return
            data = msgspec.json.encode(self._entries)
            self._dirty = False
        d = os.path.dirname(self.path)
        try:
            os.makedirs(d, exist_ok=True)
            tmp = os.path.join(d, f".{CACHE_NAME}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("could not save checksum cache %s: %s", self.path, e)
