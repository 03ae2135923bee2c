"""Replay tests: one archive (real recorded frames + synthetic tables) and one real server subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from recorded_frames import Frame, binance_frames, bybit_frames, write_frames
from replay_helpers import BIG_ROWS, MARK_A, MARK_B, ServerProc
from replay_proc import replay_server

from ticktape.bench.synth_archive import synth_archive

REPO = Path(__file__).resolve().parents[2]

def write_l2book_snapshots(root: Path) -> None:
    """hyperliquid BTC as captured from l2Book: book_snapshot_20 only (no book_change), two hours."""
    import numpy as np
    import pyarrow as pa

    from ticktape.archive.layout import FileKey, hour_of_ns
    from ticktape.bench.synth_archive import write_table
    from ticktape.ipc import schemas as S

    rng = np.random.default_rng(11)
    for h in range(2):
        h0 = 1_736_186_400_000_000_000 + h * 3_600_000_000_000
        n = 2000
        local = np.sort(rng.integers(h0, h0 + 3_600_000_000_000, n))
        mid = 95_000 + np.round(rng.normal(0, 3, n))
        steps = np.arange(1, 21)
        bid_p, ask_p = mid[:, None] - steps, mid[:, None] + steps
        bid_a, ask_a = np.round(rng.exponential(1, (n, 20)), 4), np.round(rng.exponential(1, (n, 20)), 4)
        for a in (bid_p, ask_p, bid_a, ask_a):
            a[4::5] = a[3::5][: len(a[4::5])]  # every fifth snapshot repeats the one before: unchanged book
        thin = rng.random(n) < 0.1
        bid_p[thin, 15:] = np.nan
        bid_a[thin, 15:] = np.nan

        def lv(a: np.ndarray) -> pa.Array:
            return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), 20)

        t = S.table_from_ns("book_snapshot_20", local, local - 1_000_000, [lv(bid_p), lv(bid_a), lv(ask_p), lv(ask_a)])
        write_table(str(root), FileKey("hyperliquid", "book_snapshot_20", "BTC", hour_of_ns(h0)), t, 500)


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay-archive")
    frames = binance_frames()
    frames += [
        Frame(MARK_A, "SUSHIUSDT", "depth", b""),
        Frame(MARK_A, "AKROUSDT", "depth", b""),
        Frame(MARK_B, "_", "", b""),
    ]
    write_frames(str(root), "binance-futures", frames)
    write_frames(str(root), "bybit", bybit_frames())
    bad = root / "raw/exchange=binance-futures/symbol=CORRUPTUSDT/date=2021-07-22/hour=20/data.parquet"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PAR1 this is not a parquet file PAR1")
    synth_archive(str(root), symbols=("BTCUSDT", "ETHUSDT"), hours=2, raw_per_hour=2000, trades_per_hour=3000,
                  book_msgs_per_hour=3000, levels=40, disconnects=2, seed=7)
    synth_archive(str(root), exchange="bybit", symbols=("BTCUSDT",), hours=2, raw_per_hour=1000,
                  trades_per_hour=2000, book_msgs_per_hour=2000, levels=30, disconnects=1, seed=8)
    write_l2book_snapshots(root)
    synth_archive(str(root), symbols=("BIGUSDT",), start_ns=1_736_208_000_000_000_000, hours=1,
                  raw_per_hour=BIG_ROWS, trades_per_hour=100, book_msgs_per_hour=100, levels=5, disconnects=0, seed=9,
                  row_group_size=16_384)
    return root


@pytest.fixture(scope="session")
def server(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with replay_server(archive, tmp_path_factory.mktemp("replay-log") / "server.log", "--max-range-hours", "48",
                       "--ws-subscribe-window", "0.6", "--batch-rows", "4096") as srv:
        yield ServerProc(srv.port, srv.proc, archive)
