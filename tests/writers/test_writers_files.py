"""Finalized files: hour split, late-record merge, declared schema, zstd, DuckDB,
symbol ``_`` rows, empty raw payloads, torn journal tails."""

from __future__ import annotations

import glob
import os

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from writers_procs import journals_left, make_trades, read_type

from ticktape.archive.layout import HOUR_NS
from ticktape.engine.cli import main as capture_main
from ticktape.engine.config import ArchiveConfig
from ticktape.ipc import ringset
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.schemas import TRADES_SCHEMA, arrow_schema_for
from ticktape.writers.finalize import finalize_batches
from ticktape.writers.journal import read_journal
from ticktape.writers.writer import Writer

H0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00Z


@pytest.fixture
def capture(tmp_path):
    spec = ringset.make_spec(
        "bybit", ["BTCUSDT", "ETHUSDT"], ["publicTrade.BTCUSDT"], ["trades", "raw"],
        record_capacity=1 << 12, raw_index_capacity=1 << 10, raw_arena_bytes=1 << 20,
    )
    rings = ringset.create(spec)
    archive = ArchiveConfig(root=str(tmp_path / "a"), flush_interval=0.1, finalize_grace=5.0)
    yield spec, rings, archive
    ringset.close(rings)


def test_hour_split_late_merge_and_readback(capture, caplog) -> None:
    spec, rings, archive = capture
    trades = rings["trades"]
    assert isinstance(trades, RecordRing)
    # 1000 trades straddling 00:00 -> 01:00 (base puts half in each hour)
    arr = make_trades(0, 1000, H0 + HOUR_NS - 500 * 1000, 2)
    trades.push_array(arr)
    ob = Outbox(spec, rings)
    ob.event(H0 + 5, "disconnect", conn_id=3, detail="closed by peer")
    ob.raw(H0 + 5, b"", 3, 0, 0)  # the disconnect marker: empty payload, symbol _
    ob.raw(H0 + 6, b'{"a":1}', 3, 1, 1)
    w = Writer([spec], archive, host="h1")
    caplog.set_level("INFO", logger="ticktape.writer")
    assert w.drain_once() == 1003
    # hour 00 is due 5 s after 01:00, hour 01 is not
    assert w.finalize_due(now=(H0 + HOUR_NS) / 1e9 + 4.0) == 0
    assert w.finalize_due(now=(H0 + HOUR_NS) / 1e9 + 5.0) == 5  # trades x2 symbols, events, raw x2 symbols
    # late records for the finalized hour 00 are merged, not lost
    late = make_trades(5000, 4, H0 + 10, 2)
    trades.push_array(late)
    assert w.drain_once() == 4
    w.close()
    assert journals_left(archive.root) == []
    writes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("WRITE ")]
    assert any("symbol=BTCUSDT/date=2026-01-01/hour=00/data.parquet records: 252 size:" in m for m in writes)

    root = archive.root
    f00 = f"{root}/trades/exchange=bybit/symbol=BTCUSDT/date=2026-01-01/hour=00/data.parquet"
    f01 = f"{root}/trades/exchange=bybit/symbol=BTCUSDT/date=2026-01-01/hour=01/data.parquet"
    t00, t01 = pq.read_table(f00), pq.read_table(f01)
    assert t00.schema.remove_metadata() == TRADES_SCHEMA
    ts = t00.column("local_ts_ns").to_numpy()
    assert np.all(np.diff(ts) >= 0) and ts.max() < H0 + HOUR_NS
    assert t01.column("local_ts_ns").to_numpy().min() >= H0 + HOUR_NS
    # µs timestamps are the ns arrival time floored; exchange_ts 0 ("none") is null
    assert np.array_equal(t00.column("local_ts").cast("int64").to_numpy(), ts // 1000)
    assert t00.num_rows == 250 + 2 and t01.num_rows == 250
    md = pq.ParquetFile(f00).metadata
    assert md.metadata[b"ticktape.host"] == b"h1" and md.metadata[b"ticktape.symbol"] == b"BTCUSDT"
    assert len(md.metadata[b"ticktape.journals"].split(b",")) == 2
    for rg in range(md.num_row_groups):
        for c in range(md.num_columns):
            assert md.row_group(rg).column(c).compression == "ZSTD"
    ids = sorted(int(x) for x in read_type(root, "trades").column("id").to_pylist())
    assert ids == [*range(1000), *range(5000, 5004)]

    events = pq.read_table(f"{root}/events/exchange=bybit/symbol=_/date=2026-01-01/hour=00/data.parquet")
    assert events.column("kind").to_pylist() == ["disconnect"]
    assert events.column("detail").to_pylist() == ["closed by peer"]
    assert events.column("exchange_ts").to_pylist() == [None]
    raw_ = pq.read_table(f"{root}/raw/exchange=bybit/symbol=_/date=2026-01-01/hour=00/data.parquet")
    assert raw_.column("payload").to_pylist() == [b""]
    assert raw_.schema.remove_metadata() == arrow_schema_for("raw")

    con = duckdb.connect()
    rows = con.sql(
        f"select symbol, hour::int, epoch_us(local_ts) * 1000 // {HOUR_NS} - {H0 // HOUR_NS} h, count(*)"
        f" from read_parquet('{root}/trades/**/*.parquet') group by all order by all"
    ).fetchall()
    assert rows == [("BTCUSDT", 0, 0, 252), ("BTCUSDT", 1, 1, 250), ("ETHUSDT", 0, 0, 252), ("ETHUSDT", 1, 1, 250)]
    tables = {t: con.sql(f"select count(*) from read_parquet('{root}/{t}/**/*.parquet')").fetchall()
              for t in ("trades", "events", "raw")}
    assert tables == {"trades": [(1004,)], "events": [(1,)], "raw": [(2,)]}


def test_finalize_twice_is_idempotent(tmp_path) -> None:
    from ticktape.archive.layout import FileKey, hour_of_ns
    from ticktape.ipc.schemas import fixed_batch_to_arrow

    archive = ArchiveConfig(root=str(tmp_path))
    key = FileKey("bybit", "trades", "BTCUSDT", hour_of_ns(H0))
    rb = fixed_batch_to_arrow("trades", make_trades(0, 10, H0, 1))
    assert finalize_batches(str(tmp_path), key, [rb], "j1", archive, "h") is not None
    assert finalize_batches(str(tmp_path), key, [rb], "j1", archive, "h") is None  # crash-replay: no duplicate
    assert pq.read_table(os.path.join(str(tmp_path), key.relpath())).num_rows == 10


def test_torn_journal_tail_is_cut_by_capture_recover(capture, capsys) -> None:
    spec, rings, archive = capture
    trades = rings["trades"]
    assert isinstance(trades, RecordRing)
    w = Writer([spec], archive)
    for k in range(3):
        trades.push_array(make_trades(k * 100, 100, H0, 1))
        assert w.drain_once() == 100
    w.close(finalize_all=False)  # as if the machine died: journals stay
    (journal,) = journals_left(archive.root)
    size = os.path.getsize(journal)
    with open(journal, "r+b") as f:  # a crash in the middle of the 3rd batch
        f.truncate(size - 37)
    assert read_journal(journal).records == 200
    stale = os.path.join(archive.root, ".tmp", "trades,exchange=bybit,symbol=BTCUSDT,date=2026-01-01,hour=00,data.w0.tmp")
    os.makedirs(os.path.dirname(stale), exist_ok=True)
    open(stale, "wb").close()  # a crash mid-finalize leaves this
    assert capture_main(["recover", archive.root]) == 0
    assert "recovered 1 journals, 200 records" in capsys.readouterr().out
    assert journals_left(archive.root) == []
    assert not os.path.exists(stale)
    (f,) = glob.glob(f"{archive.root}/**/*.parquet", recursive=True)
    ids = [int(x) for x in pq.read_table(f).column("id").to_pylist()]
    assert ids == list(range(200))


def test_cycle_converted_in_pieces_keeps_every_row(capture, monkeypatch) -> None:
    """A cycle is journaled in pieces (``CHUNK_ROWS``/``CHUNK_FRAMES``, made tiny here): pieces
    that cut a wrapped ring view, an hour boundary, two symbols and raw payloads of odd sizes
    (alignment gaps in the arena) still give every row and payload once, in order."""
    from ticktape.writers import writer as wmod

    monkeypatch.setattr(wmod, "CHUNK_ROWS", 7)
    monkeypatch.setattr(wmod, "CHUNK_FRAMES", 5)
    spec, rings, archive = capture
    trades = rings["trades"]
    assert isinstance(trades, RecordRing)
    ob = Outbox(spec, rings)
    w = Writer([spec], archive, host="h1")
    payloads: dict[int, list[bytes]] = {1: [], 2: []}
    n = 0
    for rnd in range(3):  # 3 x 1500 trades through a 4096-record ring: the last view wraps
        batch = make_trades(rnd * 1500, 1500, H0 + HOUR_NS - 2000 * 1000 + rnd * 1500 * 1000, 2)
        k = trades.push_array(batch)  # up to the ring's end: the rest goes in from its start
        assert k + trades.push_array(batch[k:]) == 1500
        for i in range(101):
            p = bytes([65 + i % 26]) * (1 + (i * 37 + rnd) % 300)
            sym = 1 + i % 2
            ob.raw(H0 + HOUR_NS - 1000 + rnd * 1000 + i, p, 1, sym, 1)
            payloads[sym].append(p)
        n += w.drain_once()
    assert n == 3 * (1500 + 101)
    w.close(finalize_all=True)
    got = read_type(archive.root, "trades")
    ids = sorted(int(x) for x in got.column("id").to_pylist())
    assert ids == list(range(4500))
    for sym, name in ((1, "BTCUSDT"), (2, "ETHUSDT")):
        files = sorted(glob.glob(f"{archive.root}/raw/exchange=bybit/symbol={name}/**/data.parquet", recursive=True))
        assert len(files) == 2  # both hours
        assert [p for f in files for p in pq.read_table(f).column("payload").to_pylist()] == payloads[sym]
