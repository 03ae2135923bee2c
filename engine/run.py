"""``capture run config.toml [--duration SECONDS]``: the live capture (``--demo``: the shipped demo config)."""

from __future__ import annotations

import argparse
import logging
import sys

import msgspec

from ticktape.engine import logging_setup, shard
from ticktape.engine.config import ConfigError, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", nargs="?", help="TOML config: exchanges, symbols, channels, archive root, ... (see README)"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run the shipped demo config instead (built-in simulator; archive in ./archive-demo, logs in ./logs-demo)",
    )
    parser.add_argument(
        "--root",
        default=None,
        metavar="DIR",
        help="archive directory instead of the config's archive.root (--demo: instead of ./archive-demo)",
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="capture shard K of N of the config's feeds (dealt by expected load, the same on every host); "
        "its files are tagged shard-K-of-N so N captures can sync to one S3 prefix",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /metrics on this port instead of metrics.port (0 disables; e.g. two shards on one host)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop by itself after this many seconds (graceful: drain, finalize, exit 0)",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="stdout: a live status and readable event lines (console), or JSON lines (json); "
        "auto = console on a terminal, else json. The log file always holds JSON lines.",
    )
    parser.epilog = (
        "SIGINT/SIGTERM stop ingest first, then the writers drain the rings and finalize their files. "
        "Prometheus metrics at http://127.0.0.1:<metrics.port>/metrics."
    )


def main(args: argparse.Namespace) -> int:
    from ticktape.engine.preflight import StartError
    from ticktape.engine.supervisor import Supervisor

    if args.duration is not None and not args.duration > 0:
        print("error: --duration must be > 0 seconds", file=sys.stderr)
        return 2
    if args.demo == (args.config is not None):
        print("error: give a CONFIG file or --demo (one of them)", file=sys.stderr)
        return 2
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        print(f"error: --metrics-port {args.metrics_port} is out of range (allowed 0..65535)", file=sys.stderr)
        return 2
    try:
        if args.demo:
            from ticktape.engine.demo import demo_config

            cfg, notes = demo_config(args.root)
            for note in notes:
                print(f"demo: {note}", file=sys.stderr)
        else:
            cfg = load(args.config)
            if args.root is not None:
                cfg = msgspec.structs.replace(cfg, archive=msgspec.structs.replace(cfg.archive, root=args.root))
        if args.metrics_port is not None:
            cfg = msgspec.structs.replace(cfg, metrics=msgspec.structs.replace(cfg.metrics, port=args.metrics_port))
        assignment = None
        if args.shard is not None:
            k, n = shard.parse_spec(args.shard)
            assignment = shard.assign(cfg, k, n)
            cfg = shard.shard_config(cfg, assignment)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fmt = args.log_format
    view = None
    if fmt == "console" or (fmt == "auto" and sys.stdout.isatty()):
        from ticktape.engine.console import ConsoleView

        view = ConsoleView()
    try:
        logging_setup.setup(cfg.log, process_name="supervisor", console=view)
    except OSError as e:
        print(f"error: {cfg.source}: key log.dir: cannot open the log file: {e}", file=sys.stderr)
        return 2
    if assignment is not None:
        a = assignment
        logging.getLogger("ticktape.supervisor").info(
            a.describe(),
            extra={"shard": f"{a.k}/{a.n}", "file_tag": cfg.archive.file_tag, "load": a.load,
                   "shard_loads": list(a.loads), "feeds": [f"{f.exchange}/{f.symbol}" for f in a.feeds]},
        )
    sup = Supervisor(cfg, duration=args.duration, view=view)
    try:
        rc = sup.run()
    except StartError as e:
        logging.getLogger("ticktape.supervisor").error("cannot start: %s", e)
        print(f"error: {e}", file=sys.stderr)
        return 2
    if view is not None and sup.summary is not None:
        from ticktape.engine import summary

        view.print(summary.render(sup.summary))
    if sup.failure:
        print(f"error: {sup.failure}", file=sys.stderr)
    elif sup.summary is not None:
        for why in sup.summary.no_data_reasons():
            print(f"error: {why}", file=sys.stderr)
    return rc
