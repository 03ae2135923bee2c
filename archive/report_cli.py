"""``capture report ARCHIVE [--from --to --exchange ... --format table|json|html --out FILE]``."""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = (
    "Data-quality report of an archive (a directory or s3://bucket/prefix): coverage per feed and hour, "
    "every gap, disconnect, drop and resync with its duration, the share of each hour each book was "
    "continuous from a verified snapshot, duplicate and malformed counts. Reads only the events table "
    "and the Parquet footers."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("archive", help="archive root: a directory or s3://bucket/prefix")
    parser.add_argument("--from", dest="start", help="YYYY-MM-DD:HH or ISO time (inclusive; default: all)")
    parser.add_argument("--to", dest="end", help="YYYY-MM-DD:HH (that hour included) or ISO time (exclusive)")
    parser.add_argument("--exchange", action="append", default=[],
                        help="only these exchanges (repeat or comma-separate; default: all)")
    parser.add_argument("--format", choices=("table", "json", "html"), default="table",
                        help="terminal tables (default), JSON, or one self-contained HTML page with a timeline per feed")
    parser.add_argument("--out", help="write to this file instead of stdout")


def main(args: argparse.Namespace) -> int:
    from ticktape.archive.layout import parse_time

    def ns(text: str | None, end: bool) -> int | None:
        return None if text is None else int(parse_time(text, end=end).timestamp() * 1e9)

    try:
        start, end = ns(args.start, False), ns(args.end, True)
    except ValueError as e:
        print(f"report: {e}", file=sys.stderr)
        return 2
    if start is not None and end is not None and start >= end:
        print("report: --from must be before --to", file=sys.stderr)
        return 2
    exchanges = [x for a in args.exchange for x in a.split(",") if x]
    fs = None
    if args.archive.startswith("s3://"):
        from ticktape.archive.s3_client import S3Options, load_env, make_fs

        load_env()
        fs = make_fs(S3Options())
    elif not os.path.isdir(args.archive):
        print(f"report: archive directory {args.archive!r} does not exist", file=sys.stderr)
        return 2
    from ticktape.archive import report, report_render

    try:
        rep = report.build(args.archive if fs is not None else os.path.abspath(args.archive), start, end,
                           exchanges or None, fs=fs)
    except Exception as e:  # unreadable file, S3 credentials/bucket/endpoint: one line
        if fs is not None:
            from ticktape.archive.s3_client import describe

            print(f"report: {describe(e, args.archive)}", file=sys.stderr)
        else:
            print(f"report: cannot read {args.archive}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.format == "table" and args.out is None:
        report_render.print_tables(rep)
        return 0
    if args.format == "table":
        from rich.console import Console

        with open(args.out, "w", encoding="utf-8") as f:
            report_render.print_tables(rep, Console(file=f, width=160, highlight=False))
        return 0
    text = report_render.as_json(rep) if args.format == "json" else report_render.as_html(rep)
    if args.out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0
