"""``capture migrate``: an archive written in the first layout (old paths, naive timestamp[ns])
becomes tables with the same rows; an interrupted run, rerun, finishes without duplicates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ticktape.archive.loaders import load
from ticktape.archive.migrate import migrate_archive
from ticktape.engine.cli import main as capture_main
from ticktape.ipc import schemas as S

EX = "binance-futures"
H0 = 1_736_114_400_000_000_000  # 2025-01-05T22:00Z
HOUR = 3_600_000_000_000
NS = pa.timestamp("ns")  # the old layout's timestamp type: naive, nanoseconds


def _old_table(data_type: str, rng: np.random.Generator, h: int, n: int) -> pa.Table:
    """Rows as the old writer stored them (timestamp[ns] without tz, 0 = no exchange time)."""
    local = np.sort(rng.integers(h, h + HOUR, n)).astype(np.int64)
    local[1] = local[0]  # equal arrival times: order must survive
    exch = local - rng.integers(1_000, 5_000_000, n)
    exch[::7] = 0  # messages without exchange time
    exch[3] += 123  # sub-µs exchange time: floored
    ts = lambda a: pa.array(a, pa.int64()).view(NS)  # noqa: E731
    if data_type == "trades":
        side = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 3, n).astype(np.int8)), pa.array(S.TRADE_SIDES))
        return pa.table({"local_ts": ts(local), "exchange_ts": ts(exch),
                         "id": pa.array([str(i) for i in rng.integers(0, 10**12, n)]),
                         "price": rng.normal(100, 1, n), "amount": rng.exponential(1, n), "side": side})
    if data_type == "raw":
        payload = [b"" if i % 9 == 0 else f'{{"p":{i}}}'.encode() for i in range(n)]
        return pa.table({"local_ts": ts(local), "channel": pa.array(["depth"] * n),
                         "conn_id": pa.array(np.ones(n, np.uint32)), "payload": pa.array(payload, pa.binary())})
    if data_type == "events":
        kind = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 5, n).astype(np.int8)), pa.array(S.EVENT_KINDS))
        return pa.table({"local_ts": ts(local), "exchange_ts": ts(exch), "kind": kind,
                         "channel": pa.array(["depth"] * n), "conn_id": pa.array(np.ones(n, np.uint32)),
                         "detail": pa.array([f"e{i}" for i in range(n)])})
    levels = S.snapshot_levels(data_type)

    def lv() -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(100, 1, n * levels)), levels)

    return pa.table({"local_ts": ts(local), "exchange_ts": ts(exch), "bid_price": lv(), "bid_amount": lv(),
                     "ask_price": lv(), "ask_amount": lv()})


def _old_rel(data_type: str, symbol: str, h: int, ext: str = "parquet") -> str:
    t = datetime.fromtimestamp(h / 1e9, UTC)
    return f"exchange={EX}/type={data_type}/date={t:%Y-%m-%d}/symbol={symbol}/{t:%H}.{ext}"


def write_old_archive(root: Path, hours: int = 3, rows: int = 200) -> dict[tuple[str, str], pa.Table]:
    """An archive in the first layout, written explicitly in its format. Returns every
    (data type, symbol)'s rows in arrival order (what the migrated tables must hold)."""
    rng = np.random.default_rng(5)
    want: dict[tuple[str, str], list[pa.Table]] = {}
    types = {"trades": ("BTCUSDT", "ETHUSDT"), "book_snapshot_5": ("BTCUSDT",), "raw": ("BTCUSDT", "_"),
             "events": ("_",)}
    for dt, symbols in types.items():
        for sym in symbols:
            for k in range(hours):
                h = H0 + k * HOUR
                t = _old_table(dt, rng, h, rows)
                p = root / _old_rel(dt, sym, h)
                p.parent.mkdir(parents=True, exist_ok=True)
                meta = {b"ticktape.schema_version": b"1", b"ticktape.journals": f"j{dt}{sym}{k}".encode(),
                        b"ticktape.host": b"old-host"}
                pq.write_table(t.replace_schema_metadata(meta), p, compression="zstd")
                want.setdefault((dt, sym), []).append(t)
    # an hour still open when the old capture stopped: its journal (Arrow IPC stream, journal id in the schema)
    h = H0 + hours * HOUR
    t = _old_table("trades", rng, h, 50)
    jp = root / ".journal" / _old_rel("trades", "BTCUSDT", h, "arrows")
    jp.parent.mkdir(parents=True)
    with pa.OSFile(str(jp), "wb") as f, pa.ipc.new_stream(f, t.schema.with_metadata({b"ticktape.journal_id": b"open1"})) as w:
        w.write_table(t)
    want[("trades", "BTCUSDT")].append(t)
    # a journal the old writer had already merged into its file (crash before unlinking it): no duplicate
    merged = want[("trades", "ETHUSDT")][0]
    jp2 = root / ".journal" / _old_rel("trades", "ETHUSDT", H0, "arrows")
    jp2.parent.mkdir(parents=True)
    with pa.OSFile(str(jp2), "wb") as f, pa.ipc.new_stream(
        f, merged.schema.with_metadata({b"ticktape.journal_id": b"jtradesETHUSDT0"})
    ) as w:
        w.write_table(merged.slice(0, 20))
    # a temp file of a finalize in progress: never data
    (root / _old_rel("trades", "BTCUSDT", H0)).with_name(".22.parquet.w0.tmp").write_bytes(b"half")
    return {k: pa.concat_tables(v) for k, v in want.items()}


def _expected(old: pa.Table, data_type: str) -> pa.Table:
    """The old rows in the new schema, computed here independently of the migrator."""
    local = old.column("local_ts").cast(pa.int64()).to_numpy()
    order = np.argsort(local, kind="stable")
    cols: dict[str, pa.Array] = {}
    for f in S.arrow_schema_for(data_type):
        if f.name == "local_ts_ns":
            cols[f.name] = pa.array(local)
        elif f.name == "local_ts":
            cols[f.name] = pa.array(local // 1000).cast(pa.timestamp("us", "UTC"))
        elif f.name == "exchange_ts":
            e = old.column("exchange_ts").cast(pa.int64()).to_numpy()
            cols[f.name] = pa.array(np.where(e == 0, 0, e // 1000), mask=e == 0).cast(pa.timestamp("us", "UTC"))
        else:
            cols[f.name] = old.column(f.name).combine_chunks()
    return pa.table(cols).take(pa.array(order))


def _check_migrated(root: Path, want: dict[tuple[str, str], pa.Table]) -> None:
    for (dt, sym), old in want.items():
        got = load(str(root), EX, dt, sym, "2025-01-05:00", "2025-01-07:00")
        exp = _expected(old, dt)
        assert got.num_rows == exp.num_rows, (dt, sym)
        for name in exp.column_names:
            assert got.column(name).equals(exp.column(name).cast(got.schema.field(name).type)), (dt, sym, name)
    assert not any(p.name.startswith("exchange=") for p in root.iterdir())  # old tree gone
    assert not list((root / ".journal").rglob("*.arrows"))
    left = [p for p in root.rglob("*") if p.is_file() and ".tmp" in p.parts]
    assert left == []


def test_migrate_converts_every_row_and_removes_the_old_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = tmp_path / "archive"
    want = write_old_archive(root)
    assert capture_main(["migrate", str(root)]) == 0
    out = capsys.readouterr().out
    assert "[1/" in out and "migrated 18 files and 1 journals" in out and "1 already migrated" in out
    _check_migrated(root, want)
    f = next((root / "trades").rglob("data.parquet"))
    md = pq.ParquetFile(f).schema_arrow.metadata
    assert md[b"ticktape.schema_version"] == b"2" and md[b"ticktape.host"] == b"old-host"
    # the tables read whole with an engine's defaults, timestamps as timestamps
    import duckdb

    rows = duckdb.sql(f"select typeof(local_ts), count(*) from read_parquet('{root}/trades/**/*.parquet') group by 1")
    assert rows.fetchall() == [("TIMESTAMP WITH TIME ZONE", 3 * 200 * 2 + 50)]
    # a second run finds nothing to do
    assert capture_main(["migrate", str(root), "-q"]) == 0
    assert "migrated 0 files and 0 journals" in capsys.readouterr().out
    _check_migrated(root, want)


def test_interrupted_after_a_write_then_rerun_has_no_duplicates(tmp_path: Path):
    """The worst moment: the new file is written and renamed in, the old one still there."""
    root = tmp_path / "archive"
    want = write_old_archive(root)

    class Crash(Exception):
        pass

    seen: list[str] = []

    def crash_on_fifth(rel: str) -> None:
        seen.append(rel)
        if len(seen) == 5:
            raise Crash(rel)

    with pytest.raises(Crash):
        migrate_archive(str(root), after_write=crash_on_fifth)
    assert (root / seen[-1]).exists()  # old file of the crashed step still there, its new file too
    report = migrate_archive(str(root))
    assert report.failed == [] and report.already >= 2  # the crashed one (+ the merged journal)
    _check_migrated(root, want)


def test_killed_process_then_rerun_finishes_without_duplicates(tmp_path: Path):
    root = tmp_path / "archive"
    want = write_old_archive(root, hours=12, rows=300)
    total = sum(1 for p in root.rglob("*.parquet") if not p.name.startswith("."))
    proc = subprocess.Popen([sys.executable, "-m", "ticktape.engine.cli", "migrate", str(root)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    done = 0
    while done < 5 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("["):
            done += 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    left = sum(1 for p in root.rglob("*.parquet") if not p.name.startswith(".") and "exchange=" in p.parts[len(root.parts)])
    assert 0 < left < total, "the kill should land midway"
    p = subprocess.run([sys.executable, "-m", "ticktape.engine.cli", "migrate", str(root), "-q"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    _check_migrated(root, want)


def test_bad_archive_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert capture_main(["migrate", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a directory" in err


def test_refused_while_a_capture_holds_the_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from ticktape.archive.lock import ArchiveLock

    root = tmp_path / "archive"
    write_old_archive(root, hours=1, rows=10)
    with ArchiveLock(str(root), "capture run"):
        assert capture_main(["migrate", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use by pid" in err and "capture run" in err
    assert any(p.name.startswith("exchange=") for p in root.iterdir())  # untouched
