"""``capture bench NAME``: every benchmark prints a table, or one JSON object with --json."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from typing import Any

BENCHES: dict[str, str] = {
    "ring": "ticktape.bench.ring",
    "writer": "ticktape.bench.writer",
    "ingest": "ticktape.bench.ingest",
    "capture": "ticktape.bench.capture",
    "feed": "ticktape.bench.feed",
    "s3": "ticktape.bench.s3",
    "replay": "ticktape.bench.replay",
    "replay-start": "ticktape.bench.replay_start",
    "report": "ticktape.bench.report",
    "merge": "ticktape.bench.merge",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, module in BENCHES.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        p = sub.add_parser(name, help=(mod.__doc__ or name).strip().splitlines()[0])
        p.add_argument("--json", action="store_true", help="print one JSON object of the figures")
        mod.add_arguments(p)
        p.set_defaults(_bench=mod.run)


def machine() -> str:
    import os

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(title: str, figures: dict[str, Any], as_json: bool) -> None:
    """The shared output convention of all benchmarks."""
    if as_json:
        print(json.dumps({"bench": title, "machine": machine(), **figures}))
        return
    width = max(len(k) for k in figures) if figures else 0
    print(f"{title}  ({machine()})")
    for k, v in figures.items():
        if isinstance(v, float):
            v = f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        elif isinstance(v, int):
            v = f"{v:,}"
        print(f"  {k:<{width}}  {v}")


def _check_numbers(args: argparse.Namespace) -> str:
    """Every numeric option of a benchmark is a finite number >= 0 (seconds, counts, sizes;
    0 means "skip" or "any free port" where the option says so)."""
    for name, value in vars(args).items():
        if name.startswith("_") or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not 0 <= value < float("inf"):
            return f"capture bench {args.bench}: --{name.replace('_', '-')} {value!r}: must be a number >= 0"
    return ""


def main(args: argparse.Namespace) -> int:
    bad = _check_numbers(args)
    if bad:
        print(bad, file=sys.stderr)
        return 2
    figures = args._bench(args)
    report(f"bench {args.bench}", figures, args.json)
    sys.stdout.flush()
    return 0
