"""``capture merge SRC1 SRC2 [...] --out ROOT``: the canonical archive from redundant captures.

Arguments are checked before any work (one line, exit 2 for a user's mistake); the
output root takes the archive lock, as every command that writes an archive does.
``s3://`` sources are restored (``capture s3 restore``'s code) into the output's
``.tmp/`` first and merged from there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Any

from ticktape.archive.layout import LayoutError, check_exchange, check_symbol, parse_time

_FORMATS = ("table", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", metavar="SRC",
                        help="two or more captures of the same feeds: archive roots or s3://bucket/prefix "
                             "(the source's name is its source=NAME path component, else its last component)")
    parser.add_argument("--out", required=True, help="root of the merged archive (created if missing)")
    parser.add_argument("--exchange", default=None, help="only this exchange")
    parser.add_argument("--symbol", default=None, help="only these symbols (comma-separated)")
    parser.add_argument("--from", dest="start", default=None, help="first hour/instant (YYYY-MM-DD:HH or ISO)")
    parser.add_argument("--to", dest="end", default=None, help="last hour (YYYY-MM-DD:HH, included) or ISO instant")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="local worker processes (1..256; default min(4, cores))")
    parser.add_argument("--dask", default=None, metavar="ADDRESS",
                        help="run the partitions on this Dask scheduler (needs dask[distributed])")
    parser.add_argument("--format", choices=_FORMATS, default="table", help="report: a table, or one JSON object")
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint for s3:// sources (default AWS_ENDPOINT_URL)")
    parser.epilog = ("Rows are deduplicated by the venue's ids (trade ids; raw frames by channel and sequence id); "
                     "each source's book holes are filled from another source that held the same verified book; "
                     "what no source covers stays a disconnect marker. Rerunning writes identical files.")


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from ticktape.archive import merge_run as R
    from ticktape.archive.lock import ArchiveLock, LockHeld

    if len(args.sources) < 2:
        return _fail("capture merge needs at least two sources")
    if not 1 <= args.workers <= 256:
        return _fail(f"--workers {args.workers} is out of range (allowed 1..256)")
    try:
        exchange = check_exchange(args.exchange) if args.exchange else None
        symbols = tuple(check_symbol(s) for s in args.symbol.split(",") if s) if args.symbol else ()
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end, end=True) if args.end else None
    except (LayoutError, ValueError) as e:
        return _fail(str(e))
    out = os.path.abspath(args.out)
    for src in args.sources:
        if src.startswith("s3://"):
            continue
        if not os.path.isdir(src):
            return _fail(f"{src}: no such archive directory")
        if os.path.abspath(src) == out:
            return _fail(f"{src}: --out must not be one of the sources")
    submit = None
    if args.dask:
        try:
            from distributed import Client
        except ImportError:
            return _fail("--dask needs dask[distributed] (pip install 'dask[distributed]')")

        def submit(units: list[R.Unit]) -> list[R.UnitResult]:
            with Client(args.dask, timeout=10) as client:
                futures = client.map(R.run_unit, units, sources=sources, out=out, pure=False)
                return list(client.gather(futures))
    os.makedirs(out, exist_ok=True)
    lock = ArchiveLock(out, "capture merge")
    try:
        lock.acquire()
    except LockHeld as e:
        return _fail(str(e))
    staged: list[str] = []
    try:
        names = R.source_names(args.sources)
        sel = R.Selection(exchange, symbols, start, end)
        roots = []
        for name, src in zip(names, args.sources, strict=True):
            if src.startswith("s3://"):
                local = os.path.join(out, ".tmp", f"merge-source-{name}")
                staged.append(local)
                err = _stage_s3(src, local, sel, args.endpoint_url)
                if err:
                    return _fail(err)
                roots.append(local)
            else:
                roots.append(os.path.abspath(src))
        sources = [R.Source(n, r) for n, r in zip(names, roots, strict=True)]
        for src, given in zip(sources, args.sources, strict=True):
            if not R.holds_any(src, sel):
                return _fail(f"{given}: no archive files" + (" within the selection" if sel != R.Selection() else ""))
        units = R.plan(sources, sel)
        try:
            results = R.run_all(sources, units, out, args.workers, submit)
        except OSError as e:
            if submit is None:
                raise
            return _fail(f"--dask {args.dask}: {e}")
    finally:
        for d in staged:
            shutil.rmtree(d, ignore_errors=True)
        lock.release()
    report = summarize(names, args.sources, out, units, results)
    if args.format == "json":
        print(json.dumps(report, indent=1))
    else:
        render(report)
    return 0


def _stage_s3(url: str, local: str, sel: Any, endpoint: str | None) -> str | None:
    """Restore the selected files of an s3:// source into ``local``; an error line or None."""
    import asyncio

    from ticktape.archive.s3_client import S3Error, S3Options
    from ticktape.archive.s3_restore import listed_keys, restore_keys

    opts = S3Options(endpoint_url=endpoint) if endpoint else S3Options()
    try:
        keys, _ = asyncio.run(listed_keys(url, opts))
        keys = [k for k in keys if sel.wants(k)]
        rep = restore_keys(url, local, keys, opts)
    except (S3Error, OSError, ValueError) as e:
        return f"{url}: {e}"
    return None if rep.ok else f"{url}: {rep.summary()}"


def summarize(names: list[str], given: list[str], out: str, units: list[Any], results: list[Any]) -> dict[str, Any]:
    from ticktape.archive.merge import Stats

    tables: dict[str, Stats] = {}
    holes: list[dict[str, object]] = []
    files = 0
    for r in results:
        for t, st in r.tables.items():
            tables.setdefault(t, Stats()).add(st)
        holes += [h for h in r.holes if not h["shutdown"]]
        files += len(r.files)
    total = Stats()
    for st in tables.values():
        total.add(st)
    book, events = tables.get("book_change", Stats()), tables.get("events", Stats())
    totals = total.as_dict()  # windows: the book's, and those of symbols without a diff book
    totals.update(windows=book.windows + events.windows, windows_filled=book.filled + events.filled,
                  windows_left=book.left + events.left)
    return {"sources": [{"name": n, "path": p} for n, p in zip(names, given, strict=True)], "out": out,
            "partitions": len(units), "files": files,
            "tables": {t: st.as_dict() for t, st in sorted(tables.items())},
            "totals": totals, "holes": sorted(holes, key=lambda h: (str(h["exchange"]), str(h["symbol"]),
                                                                    int(str(h["local_ts_ns"]))))}


def render(report: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    names = [s["name"] for s in report["sources"]]
    t = Table(title=f"capture merge -> {report['out']} ({report['partitions']} partitions, {report['files']} files)")
    t.add_column("table")
    for n in names:
        t.add_column(f"rows from {n}", justify="right")
    t.add_column("duplicates dropped", justify="right")
    for name, st in report["tables"].items():
        t.add_row(name, *[str(st["kept"].get(n, 0)) for n in names], str(st["duplicates"]))
    c = Console()
    c.print(t)
    tot = report["totals"]
    c.print(f"book windows: {tot['windows']} (a source down), filled from another source: {tot['windows_filled']}; "
            f"left as disconnect markers (no source live): {tot['windows_left']}")
    for h in report["holes"]:
        at = datetime.fromtimestamp(int(h["local_ts_ns"]) / 1e9, UTC).isoformat()
        c.print(f"  disconnect kept: {h['exchange']} {h['symbol']} at {at} (source {h['source']} went down last)")
