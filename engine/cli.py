"""The ``capture`` command. Each subcommand lives with its concept; this module
only wires them up (their modules are imported when the subcommand runs)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module with add_arguments(parser) and main(args) -> int, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("ticktape.engine.run", "capture live market data into the archive (capture run config.toml)"),
    "sim": ("ticktape.sim.cli", "run the local exchange simulator (binance-futures, binance, binance-delivery, bybit, bybit-spot, "
            "hyperliquid, deribit, bitmex, okex, okex-swap)"),
    "s3": ("ticktape.archive.s3_cli", "mirror the archive to S3 (sync) and fetch ranges back (restore)"),
    "replay": ("ticktape.replay.cli", "serve the archive over the Tardis Machine replay API"),
    "report": ("ticktape.archive.report_cli", "data-quality report: coverage, gaps, disconnects, drops (table, JSON, HTML)"),
    "export": ("ticktape.archive.export", "write a range as Tardis CSV datasets (trades, incremental_book_L2, ...)"),
    "import": ("ticktape.archive.import_", "bring Tardis CSV datasets and raw NDJSON into the archive"),
    "recover": ("ticktape.writers.recover_cli", "turn journals left by a crash into Parquet files"),
    "merge": ("ticktape.archive.merge_cli", "merge redundant captures of the same feeds into one gap-free archive"),
    "migrate": ("ticktape.archive.migrate", "convert an archive of the old layout (exchange=/type=/...) into tables"),
    "bench": ("ticktape.bench.cli", "reproducible benchmarks: ring, writer, ingest, capture, s3, replay"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, import just that subcommand's module (the
    others are listed with their help text), so ``capture run`` starts without
    importing the replay server, S3 and simulator code."""
    parser = argparse.ArgumentParser(
        prog="capture",
        description="ticktape: multi-exchange market-data capture to zstd Parquet, S3 backup, Tardis-compatible replay.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is not None and name != only:
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as e:  # a subcommand whose part is missing still shows in --help
            p.set_defaults(_unavailable=f"{name}: not available ({e})")
            continue
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
        fill_descriptions(p)
    return parser


def fill_descriptions(parser: argparse.ArgumentParser) -> None:
    """Every nested subcommand's ``--help`` starts with a description: its one-line
    help when the subcommand's module gave none."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help for a in action._choices_actions}
        for name, sub in action.choices.items():
            if not sub.description and helps.get(name):
                sub.description = helps[name]
            fill_descriptions(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(only=chosen if chosen in SUBCOMMANDS else "")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_unavailable", None):
        print(args._unavailable, file=sys.stderr)
        return 2
    try:
        return int(args._main(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
