"""Where archive files are read from: a local directory or ``s3://bucket/prefix`` (through s3fs).

Paths are always computed from the layout (``archive.layout``); only the
inventory lists. S3 credentials and endpoint come from the standard AWS
variables (``archive.s3_client``); nothing here logs them.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pyarrow.parquet as pq

from ticktape.archive.layout import PRIVATE_DIRS, FileKey, LayoutError, data_file_tag


def is_s3(root: str) -> bool:
    return root.startswith("s3://")


@cache
def _s3fs() -> Any:
    from ticktape.archive.s3_client import S3Options, make_fs

    return make_fs(S3Options())


_lock = threading.Lock()


def isfile(path: str) -> bool:
    if is_s3(path):
        with _lock:
            fs = _s3fs()
        return bool(fs.isfile(path[5:]))
    return os.path.isfile(path)


def hour_files(dir_path: str) -> list[str]:
    """The data files of one hour directory (every capture's tag), untagged first, then by tag."""
    if is_s3(dir_path):
        with _lock:
            fs = _s3fs()
        try:
            listed = [str(p) for p in fs.ls(dir_path[5:], detail=False, refresh=True)]
        except FileNotFoundError:
            return []
        names = [p.rsplit("/", 1)[-1] for p in listed]
    else:
        try:
            names = os.listdir(dir_path)
        except (FileNotFoundError, NotADirectoryError):
            return []
    found = sorted((t, n) for n in names if (t := data_file_tag(n)) is not None)
    return [f"{dir_path}/{n}" for _, n in found]


def open_parquet(path: str, read_dictionary: list[str] | None = None) -> pq.ParquetFile:
    if is_s3(path):
        with _lock:
            fs = _s3fs()
        return pq.ParquetFile(fs.open(path[5:], "rb"), read_dictionary=read_dictionary)
    return pq.ParquetFile(path, read_dictionary=read_dictionary)


def root_exists(root: str) -> bool:
    if is_s3(root):
        with _lock:
            fs = _s3fs()
        return bool(fs.exists(root[5:].rstrip("/")))
    return os.path.isdir(root)


def s3_files(root: str) -> list[tuple[FileKey, int, str]]:
    """Every finalized archive file under an S3 root: (key, size, full s3 path)."""
    with _lock:
        fs = _s3fs()
    base = root[5:].rstrip("/")
    fs.invalidate_cache()
    out: list[tuple[FileKey, int, str]] = []
    for path, info in fs.find(base, detail=True).items():
        rel = path[len(base) + 1 :]
        if rel.split("/", 1)[0] in PRIVATE_DIRS or os.path.basename(rel).startswith("."):
            continue
        try:
            key = FileKey.from_relpath(rel)
        except LayoutError:
            continue
        out.append((key, int(info.get("size", 0)), f"s3://{path}"))
    return out


def hour_text(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")
