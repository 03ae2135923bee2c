"""``capture s3 sync`` and ``capture s3 restore``.

Per-file lines (``upload``/``exists``/``download``/``missing``) and a summary go
to the JSON log on stdout; the progress bar goes to stderr when it is a
terminal. A failure is one line on stderr and exit code 1, never a traceback
and never a credential.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ticktape.archive.layout import LayoutError
from ticktape.archive.s3_client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_READ_TIMEOUT,
    S3Error,
    S3Options,
    load_env,
    parse_url,
    redact,
)

log = logging.getLogger("ticktape.s3")

DEFAULT_ROOT = "./archive"


class _IntermixedParser(argparse.ArgumentParser):
    """Positionals before and after options (``restore URL --exchange E ... ARCHIVE``), which plain
    argparse refuses once an optional positional has been matched empty."""

    _inner = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        if self._inner:
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--endpoint-url",
        help="S3 endpoint (B2, MinIO, R2...); default AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL",
    )
    p.add_argument("--profile", help="AWS profile name (~/.aws/credentials)")
    p.add_argument("--region", help="region; default AWS_REGION / AWS_DEFAULT_REGION")
    p.add_argument("--env-file", help="read credentials from this .env file (default: ./.env if present)")
    p.add_argument("--concurrency", type=int, default=8, help="parallel transfers (default 8)")
    p.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT,
                   help=f"seconds to open a connection (default {DEFAULT_CONNECT_TIMEOUT:g})")
    p.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT,
                   help=f"seconds to wait for each read before the attempt fails (default {DEFAULT_READ_TIMEOUT:g})")
    p.add_argument("--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS,
                   help=f"attempts per request before giving up (default {DEFAULT_MAX_ATTEMPTS})")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--verbose", "-v", action="store_true", help="also log files that are skipped")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(
        dest="s3_command", metavar="{sync,restore}", required=True, parser_class=_IntermixedParser
    )
    s = sub.add_parser(
        "sync", help="upload finalized Parquet files the bucket lacks or holds with other bytes"
    )
    s.add_argument(
        "paths",
        nargs="+",
        metavar="[ARCHIVE] URL",
        help=f"archive root (default {DEFAULT_ROOT}) and s3://bucket/prefix",
    )
    s.add_argument("--dry-run", action="store_true", help="list what would be uploaded, upload nothing")
    _common(s)
    s.set_defaults(_s3=_sync)

    r = sub.add_parser("restore", help="download a range (exchange/symbol/type/hours) into the archive")
    r.add_argument("url", help="s3://bucket/prefix")
    r.add_argument("archive", nargs="?", default=DEFAULT_ROOT, help=f"archive root (default {DEFAULT_ROOT})")
    r.add_argument("--exchange", help="exchange id, e.g. binance-futures")
    r.add_argument("--symbol", help="symbol(s), comma separated")
    r.add_argument(
        "--type",
        dest="types",
        help="data type(s), comma separated: trades,book_snapshot_20,... (default: every table in the bucket)",
    )
    r.add_argument("--depth", type=int, help="levels for a bare 'book_snapshot' type")
    r.add_argument("--from", dest="start", help="YYYY-MM-DD:HH or ISO time (inclusive)")
    r.add_argument("--to", dest="end", help="YYYY-MM-DD:HH (that hour included) or ISO time (exclusive)")
    r.add_argument(
        "--all", action="store_true", help="restore every archive file under the prefix (lists the bucket)"
    )
    r.add_argument(
        "--overwrite", action="store_true", help="replace local files that differ from the bucket's"
    )
    _common(r)
    r.set_defaults(_s3=_restore)


def _setup_logging(verbose: bool) -> None:
    try:
        from ticktape.engine.logging_setup import setup
    except ImportError:  # pragma: no cover - engine logging not available
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    else:
        setup(None, "s3", stdout=True)
    for noisy in ("botocore", "aiobotocore", "s3fs", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # "Found credentials in ..." per client
    if verbose:
        logging.getLogger("ticktape.s3").setLevel(logging.DEBUG)


def _opts(args: argparse.Namespace) -> S3Options:
    return S3Options(
        endpoint_url=args.endpoint_url, profile=args.profile, region=args.region, max_attempts=args.max_attempts,
        connect_timeout=args.connect_timeout, read_timeout=args.read_timeout,
    )


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _sync(args: argparse.Namespace) -> int:
    from ticktape.archive.s3_sync import sync_archive_async

    if len(args.paths) == 1:
        root, url = DEFAULT_ROOT, args.paths[0]
    elif len(args.paths) == 2:
        root, url = args.paths
    else:
        raise S3Error("expected [ARCHIVE] s3://bucket/prefix")
    parse_url(url)
    import asyncio

    report = asyncio.run(
        sync_archive_async(
            root,
            url,
            _opts(args),
            concurrency=args.concurrency,
            dry_run=args.dry_run,
            progress=_progress(args),
        )
    )
    log.info("%s", report.summary())
    if not report.ok:
        print(f"capture s3 sync: {report.summary()}", file=sys.stderr)
        return 1
    return 0


def _restore(args: argparse.Namespace) -> int:
    from ticktape.archive.catalog import keys_for_range
    from ticktape.archive.s3 import range_keys
    from ticktape.archive.s3_restore import restore_all, restore_keys

    parse_url(args.url)
    root = args.archive
    if args.all:
        report = restore_all(
            args.url,
            root,
            _opts(args),
            concurrency=args.concurrency,
            overwrite=args.overwrite,
            progress=_progress(args),
        )
    else:
        need = [
            n
            for n, v in (
                ("--exchange", args.exchange),
                ("--symbol", args.symbol),
                ("--from", args.start),
                ("--to", args.end),
            )
            if not v
        ]
        if need:
            raise S3Error(f"missing {', '.join(need)} (or use --all to restore everything)")
        if args.types:  # every range input checked before any S3 call (a bad --depth is not a credentials error)
            keys_for_range(args.exchange, args.types, args.symbol, args.start, args.end, args.depth)
        keys = range_keys(
            args.url, args.exchange, args.symbol, args.start, args.end, args.types, args.depth, _opts(args)
        )
        report = restore_keys(
            args.url,
            root,
            keys,
            _opts(args),
            concurrency=args.concurrency,
            overwrite=args.overwrite,
            progress=_progress(args),
        )
    for rel, reason in report.failed:
        print(
            f"capture s3 restore: {reason}" if rel in reason else f"capture s3 restore: {rel}: {reason}",
            file=sys.stderr,
        )
    if not report.ok:
        print(f"capture s3 restore: {report.summary()}", file=sys.stderr)
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    try:
        load_env(args.env_file)
        _setup_logging(args.verbose)
        if not 1 <= args.concurrency <= 256:
            raise S3Error(f"--concurrency {args.concurrency}: must be 1..256")
        if not 0 < args.connect_timeout <= 600:
            raise S3Error(f"--connect-timeout {args.connect_timeout:g}: must be > 0 and <= 600 seconds")
        if not 0 < args.read_timeout <= 3600:
            raise S3Error(f"--read-timeout {args.read_timeout:g}: must be > 0 and <= 3600 seconds")
        if not 1 <= args.max_attempts <= 20:
            raise S3Error(f"--max-attempts {args.max_attempts}: must be 1..20")
        return int(args._s3(args))
    except (S3Error, LayoutError, ValueError, OSError) as e:
        print(f"capture s3 {args.s3_command}: error: {redact(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"capture s3 {args.s3_command}: interrupted (files already transferred are complete; run again to resume)",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # last resort: still one line, still no secrets
        print(f"capture s3 {args.s3_command}: error: {redact(f'{type(e).__name__}: {e}')}", file=sys.stderr)
        if os.environ.get("TICKTAPE_DEBUG"):
            raise
        return 1
