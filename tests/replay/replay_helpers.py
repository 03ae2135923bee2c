"""Shared constants and the server handle of the replay tests."""

from __future__ import annotations

import contextlib
import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from replay_proc import replay_server

# disconnect markers put into the real binance recording (ns); the first hits two symbols at once
MARK_A = 1_626_992_750_000_000_000
MARK_B = 1_626_992_760_500_000_000
SYNTH_START = "2025-01-06T18:00:00Z"
SYNTH_END = "2025-01-06T20:00:00Z"
BIG_START = "2025-01-07T00:00:00Z"
BIG_END = "2025-01-07T01:00:00Z"
BIG_ROWS = 300_000



@dataclass
class ServerProc:
    port: int
    proc: subprocess.Popen[bytes]
    root: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str, options: Any) -> str:
        return f"{self.base}/{path}?options={urllib.parse.quote_plus(json.dumps(options))}"

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}/status", timeout=5) as r:
            return dict(json.load(r))




@contextlib.contextmanager
def serve(root: Path, log_dir: Path, *args: str) -> Iterator[ServerProc]:
    """``capture replay serve`` on ``root`` (extra CLI ``args``) until the block ends; ready once
    the HTTP port and port + 1 accept connections."""
    with replay_server(root, log_dir / "server.log", *args, cwd=log_dir) as srv:
        yield ServerProc(srv.port, srv.proc, root)


def tardis_ts(ns: int) -> str:
    """Tardis's timestamp text (UTC, 7 fractional digits), computed here independently of the server."""
    s = np.datetime_as_string(np.datetime64(ns, "ns"), unit="ns")  # 2021-07-22T22:25:42.289739000
    return s[:-2] + "Z"


def tardis_ms(ns: int) -> str:
    """A normalized message's exchange time: milliseconds, as Tardis Machine writes it."""
    return tardis_ts(ns)[:23] + "Z"


def tardis_us(ns: int) -> str:
    """A normalized message's localTimestamp: microseconds, as Tardis Machine writes it."""
    return tardis_ts(ns)[:26] + "Z"


def get_lines(url: str) -> list[bytes]:
    import asyncio

    import aiohttp

    async def run() -> list[bytes]:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            assert r.status == 200, await r.text()
            assert r.headers["Content-Type"].startswith("application/x-json-stream")
            r.content._high_water = 100_000_000
            return [line async for line in r.content]

    return asyncio.run(run())


def archived(
    root: Path, exchange: str, channels: set[str] | None, symbols: set[str] | None,
    lo: int = 1_626_991_200_000_000_000, hi: int = 1_626_994_800_000_000_000,
) -> list[tuple[int, bytes]]:
    """Every non-empty raw frame of the archive for the filter in [lo, hi), straight from Parquet, by local_ts."""
    rows: list[tuple[int, int, bytes]] = []
    for i, f in enumerate(sorted((root / "raw" / f"exchange={exchange}").rglob("data.parquet"))):
        sym = f.parents[2].name.split("=", 1)[1]
        if sym in ("_", "CORRUPTUSDT") or (symbols is not None and sym not in symbols):
            continue
        t = pq.read_table(f)
        for ts, ch, p in zip(t.column("local_ts_ns").to_pylist(), t.column("channel").to_pylist(),
                             t.column("payload").to_pylist(), strict=True):
            if p and (channels is None or ch in channels) and lo <= ts < hi:
                rows.append((ts, i, p))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [(ts, p) for ts, _, p in rows]
