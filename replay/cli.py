"""``capture replay serve --archive DIR --port 8000 [--host 127.0.0.1]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ticktape.replay.options import DEFAULT_MAX_RANGE_HOURS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="replay_cmd", metavar="CMD", required=True)
    p = sub.add_parser("serve", help="serve an archive over the Tardis Machine replay API (HTTP + WebSocket)")
    p.add_argument("--archive", required=True, help="archive root: a directory or s3://bucket/prefix")
    p.add_argument("--port", type=int, default=8000, help="HTTP port; WebSocket routes also on port + 1 (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    p.add_argument("--max-range-hours", type=float, default=DEFAULT_MAX_RANGE_HOURS,
                   help=f"largest from..to span a request may ask for (default {DEFAULT_MAX_RANGE_HOURS} h)")
    p.add_argument("--ws-subscribe-window", type=float, default=2.0,
                   help="seconds a /ws-replay client has to send its subscribe messages (default 2)")
    p.add_argument("--batch-rows", type=int, default=0,
                   help="rows per read batch (bounds memory per client; default 32768)")
    p.add_argument("--threads", type=int, default=4, help="worker threads that build response batches")


def main(args: argparse.Namespace) -> int:
    from ticktape.replay.server import Settings, serve_forever

    s3 = args.archive.startswith("s3://")
    if not s3 and not os.path.isdir(args.archive):
        print(f"replay: archive directory {args.archive!r} does not exist", file=sys.stderr)
        return 2
    if not 0 < args.port < 65535:
        print(f"replay: bad port {args.port}", file=sys.stderr)
        return 2
    try:
        from ticktape.engine.logging_setup import setup

        setup(None, "replay")  # the engine's JSON lines on stdout
    except ImportError:
        logging.basicConfig(level=logging.INFO)
    if args.batch_rows > 0:
        from ticktape.replay import sources

        sources.BATCH_ROWS = args.batch_rows
    if s3:
        from ticktape.archive.s3_client import load_env

        load_env()  # AWS_* from the environment or a .env file
    settings = Settings(args.archive if s3 else os.path.abspath(args.archive), args.max_range_hours, args.ws_subscribe_window, args.threads)
    try:
        import uvloop

        uvloop.run(serve_forever(settings, args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0
