"""``capture recover ARCHIVE_ROOT``: finalize every journal left in an archive.

For a capture that will not be restarted (or an archive copied off a dead
machine): each journal becomes its hour's Parquet file, up to its last
complete batch; a torn tail is cut; late records merge into existing files.
It takes the archive's lock (``archive.lock``): while a capture holds it,
it refuses (exit 2) rather than finalize that capture's live journals.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket

from ticktape.archive.layout import TMP_DIR
from ticktape.archive.lock import ArchiveLock, LockHeld, wait_writers_gone
from ticktape.engine.config import ArchiveConfig
from ticktape.writers.writer import recover_journal, scan_journals

log = logging.getLogger("ticktape.writer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="ARCHIVE_ROOT", help="archive directory holding .journal/")
    parser.add_argument("--zstd-level", type=int, default=ArchiveConfig().zstd_level, help="zstd level (1..22)")
    parser.add_argument(
        "--row-group-size", type=int, default=ArchiveConfig().row_group_size, help="rows per Parquet row group"
    )
    parser.add_argument("--host", default="", help="host name for file metadata (default: this machine)")


def recover_all(root: str, archive: ArchiveConfig, host: str = "") -> tuple[int, int]:
    """(journals finalized, records recovered)."""
    host = host or socket.gethostname()
    files = records = 0
    for rel in list(scan_journals(root)):
        records += recover_journal(root, rel, archive, host, tag="recover")
        files += 1
    sweep_temp_files(root)
    return files, records


def sweep_temp_files(root: str) -> int:
    """Remove temp files (``<root>/.tmp/*``) left by a crash mid-finalize or mid-restore."""
    n = 0
    d = os.path.join(root, TMP_DIR)
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return 0
    for name in names:
        path = os.path.join(d, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
            log.info("removed leftover temp file %s", path)
            n += 1
    return n


def main(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        print(f"capture recover: {root} is not a directory")
        return 2
    if not 1 <= args.zstd_level <= 22:
        print("capture recover: --zstd-level must be 1..22")
        return 2
    if args.row_group_size < 1:
        print("capture recover: --row-group-size must be >= 1")
        return 2
    archive = ArchiveConfig(root=root, zstd_level=args.zstd_level, row_group_size=args.row_group_size)
    lock = ArchiveLock(root, "capture recover")
    try:
        lock.acquire()
    except LockHeld as e:  # a live capture's journals are not leftovers: never touch them
        print(f"capture recover: archive root {root} is in use by {e.holder}; stop that capture first "
              "(it recovers its journals itself)")
        return 2
    except OSError as e:
        print(f"capture recover: cannot lock {root} ({e.strerror or e})")
        return 2
    try:
        if not wait_writers_gone(root, 10.0):
            print(f"capture recover: writers of a capture whose supervisor died are still finishing on {root}; "
                  "run it again once they are gone")
            return 2
        files, records = recover_all(root, archive, args.host)
    finally:
        lock.release()
    print(f"recovered {files} journals, {records} records")
    return 0
