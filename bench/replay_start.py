"""replay-start: seconds from starting ``capture replay serve`` to listening, to ``/exchanges``, to a first /replay line.

On the same synthetic archive as ``capture bench replay`` (default 10 M raw frames plus as many trades and
book messages, built once in a cache directory): each run starts the server as a user does (a new
process), connects until the socket accepts (listening), asks ``GET /exchanges`` once (the README's
``serve & curl`` step; no retry) and then a one-minute ``/replay`` until its first line (the server's
whole pipeline loaded). Medians over ``--runs``. The test suite checks the same on a small archive
(``tests/replay/test_replay_startup.py``); this is the issue's full size, too slow to build in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

from ticktape.bench.replay import ARCHIVE_VERSION, SYMBOLS, build_archive, free_port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=10_000_000, help="raw frames in the archive (default 10 M)")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/ticktape/bench-replay"),
                        help="where the archive is built once and reused (shared with `capture bench replay`)")
    parser.add_argument("--runs", type=int, default=5, help="server starts (median reported)")
    parser.add_argument("--compare", default=None, metavar="CHECKOUT",
                        help="also start the server of another checkout (its directory on PYTHONPATH), run by run "
                             "in turn with this one: on a busy machine the side-by-side figures are what count")


def _files(root: str) -> int:
    return sum(1 for _dir, _sub, names in os.walk(root) for n in names if n == "data.parquet")


def one_start(root: str, checkout: str | None = None) -> dict[str, float]:
    """One server process (of ``checkout`` if given): listening, /exchanges answered, first /replay line,
    in seconds after Popen."""
    port = free_port()
    options = {"exchange": "binance-futures", "from": "2025-01-06T18:00:00.000Z", "to": "2025-01-06T18:01:00.000Z",
               "filters": [{"channel": "aggTrade", "symbols": [SYMBOLS[0]]}]}
    replay_url = f"http://127.0.0.1:{port}/replay?options={urllib.parse.quote_plus(json.dumps(options))}"
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout)) if checkout else None
    proc = subprocess.Popen([sys.executable, "-m", "ticktape.engine.cli", "replay", "serve", "--archive", root,
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            cwd=os.path.abspath(checkout) if checkout else None)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"replay server exited with {proc.returncode}") from None
                if time.perf_counter() - t0 > 60:
                    raise RuntimeError("replay server not listening after 60 s") from None
                time.sleep(0.002)
        listening = time.perf_counter() - t0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/exchanges", timeout=60) as r:
            body = json.loads(r.read())
        exchanges = time.perf_counter() - t0
        if [e["id"] for e in body] != ["binance-futures"]:
            raise RuntimeError(f"unexpected /exchanges answer: {str(body)[:200]}")
        with urllib.request.urlopen(replay_url, timeout=120) as r:
            if not r.readline():
                raise RuntimeError("/replay gave no line")
        first_line = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"listening_s": listening, "exchanges_s": exchanges, "first_replay_line_s": first_line}


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = os.path.join(args.cache, f"v{ARCHIVE_VERSION}-m{args.messages}")
    info = build_archive(root, args.messages)
    runs: list[dict[str, float]] = []
    other: list[dict[str, float]] = []
    for _ in range(max(1, args.runs)):
        runs.append(one_start(root))
        if args.compare:
            other.append(one_start(root, args.compare))
    figures: dict[str, Any] = {
        "archive_raw_messages": info["raw"],
        "archive_normalized_messages": info["trades"] + info["book_change_msgs"],
        "archive_files": _files(root),
        "load_average_1m": os.getloadavg()[0],
    }
    for prefix, got in (("", runs), ("compare_", other)):
        if not got:
            continue
        for key in ("listening_s", "exchanges_s", "first_replay_line_s"):
            vals = [r[key] for r in got]
            figures[prefix + key] = statistics.median(vals)
            figures[f"{prefix}{key}_runs"] = ", ".join(f"{v:.3f}" for v in vals)
    if args.compare:
        figures["compare_checkout"] = args.compare
    return figures
