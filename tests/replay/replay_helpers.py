"""Shared constants and the server handle of the replay tests."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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




def tardis_ts(ns: int) -> str:
    """Tardis's timestamp text (UTC, 7 fractional digits), computed here independently of the server."""
    s = np.datetime_as_string(np.datetime64(ns, "ns"), unit="ns")  # 2021-07-22T22:25:42.289739000
    return s[:-2] + "Z"


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
