"""book_ticker, derivative_ticker and liquidations through S3 (moto's server): written by the
writer, synced, restored by name into another root byte for byte, read back by the loader."""

from __future__ import annotations

import math
from pathlib import Path

from ticktape.archive.loaders import load
from ticktape.archive.s3 import S3Options, restore_range, sync_archive
from ticktape.engine.config import ArchiveConfig
from ticktape.ipc import ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.schemas import SIDE_SELL
from ticktape.writers.writer import Writer

H0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00Z
HOUR = 3_600_000_000_000
TYPES = ("book_ticker", "derivative_ticker", "liquidations")


def write(root: str) -> None:
    spec = ringset.make_spec("bybit", ["BTCUSDT", "ETHUSDT"], ["tickers"], list(TYPES), record_capacity=1 << 12)
    rings = ringset.create(spec)
    try:
        ob = Outbox(spec, rings)
        for h in range(3):
            for i in range(50):
                t = H0 + h * HOUR + i * 1_000_000_000
                for sym in (1, 2):
                    ob.book_ticker(t, t - 1, sym, 100.0 + i, 1.0, 100.5 + i, 2.0)
                    ob.derivative_ticker(t + 1, t, sym, 100.2, 100.1, math.nan, 0.0001, H0 + 8 * HOUR, math.nan, 5e3 + i)
                    if i % 10 == 0:
                        ob.liquidation(t + 2, t, sym, b"", 99.0, 0.5, SIDE_SELL)
        w = Writer([spec], ArchiveConfig(root=root, flush_interval=0.1), host="t")
        while w.drain_once():
            pass
        w.close()
    finally:
        ringset.close(rings)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("data.parquet")}


def test_ticker_tables_sync_and_restore(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    root = tmp_path / "archive"
    write(str(root))
    local = _files(root)
    assert {k.split("/")[0] for k in local} == set(TYPES) and len(local) == 3 * 2 * 3
    url = f"s3://{bucket}/tickers"
    assert sync_archive(str(root), url, endpoint_url=s3_endpoint).ok
    new = tmp_path / "restored"
    r = restore_range(url, str(new), exchange="bybit", symbols="ETHUSDT", start="2026-01-01:01", end="2026-01-01:02",
                      data_types=",".join(TYPES), opts=S3Options(endpoint_url=s3_endpoint))
    want = {k: v for k, v in local.items() if "symbol=ETHUSDT" in k and ("hour=01" in k or "hour=02" in k)}
    assert r.ok and r.missing == [] and len(want) == 6
    assert _files(new) == want
    for dt in TYPES:
        a = load(str(new), "bybit", dt, "ETHUSDT", "2026-01-01:01", "2026-01-01:02")
        b = load(str(root), "bybit", dt, "ETHUSDT", "2026-01-01:01", "2026-01-01:02")
        assert a.equals(b) and a.num_rows == (100 if dt != "liquidations" else 10)
