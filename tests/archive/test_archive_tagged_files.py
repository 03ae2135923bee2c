"""Files tagged by the capture that wrote them (``data-<tag>.parquet``, the shards of a fleet)
live side by side in an hour directory; every reader takes their union: the loaders, the
local scan and inventory, the replay's series reader (one hour of several files merged in
local-time order), the data-quality report and a plain DuckDB glob."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from archive_samples import sample_table, write_file

import ticktape.archive
from ticktape.archive import loaders, report
from ticktape.archive.layout import FileKey, LayoutError, data_file_tag, scan_files
from ticktape.ipc import schemas as S
from ticktape.replay import inventory, sources

EX = "bybit"
H = datetime(2025, 1, 5, 22, tzinfo=UTC)
S1, S2 = "shard-1-of-2", "shard-2-of-2"


def test_the_tag_is_in_the_file_name_and_parsed_back() -> None:
    k = FileKey(EX, "trades", "BTCUSDT", H, S1)
    assert k.relpath() == f"trades/exchange={EX}/symbol=BTCUSDT/date=2025-01-05/hour=22/data-{S1}.parquet"
    assert FileKey.from_relpath(k.relpath()) == k and k.slot == k.with_tag("").slot
    assert FileKey.from_relpath(k.with_tag("").relpath()).tag == ""
    assert k.with_tag("").relpath().endswith("/hour=22/data.parquet")  # an untagged capture: as before
    for bad in ("-x", "a..b", "x" * 65, "a b"):
        with pytest.raises(LayoutError):
            FileKey(EX, "trades", "BTCUSDT", H, bad)
        with pytest.raises(LayoutError):
            FileKey.from_relpath(f"trades/exchange={EX}/symbol=BTCUSDT/date=2025-01-05/hour=22/data-{bad}.parquet")
    assert [data_file_tag(n) for n in ("data.parquet", f"data-{S2}.parquet", "data.parquet.tmp", "x.parquet")] == [
        "", S2, None, None]


def _events(key: FileKey, rows: list[tuple[int, str]]) -> pa.Table:
    local = np.array([ts for ts, _ in rows], np.int64)
    kind = pa.DictionaryArray.from_arrays(pa.array([S.EVENT_KINDS.index(k) for _, k in rows], pa.int8()),
                                          pa.array(S.EVENT_KINDS))
    cols = [kind, pa.array([""] * len(rows)), pa.array(np.ones(len(rows), np.uint32)), pa.array([""] * len(rows))]
    return S.table_from_ns("events", local, local, cols)


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """BTCUSDT trades of hour 22 written by both shards (the feed moved when the fleet changed),
    hour 23 by shard 2 only; ETHUSDT by shard 2, SOLUSDT by shard 1; each shard's connection events under symbol _."""
    for tag, seed in ((S1, 1), (S2, 2)):
        k = FileKey(EX, "trades", "BTCUSDT", H, tag)
        write_file(str(tmp_path), k, sample_table(k, 300, seed))
    for sym, hour in (("BTCUSDT", H + timedelta(hours=1)), ("ETHUSDT", H)):
        k = FileKey(EX, "trades", sym, hour, S2)
        write_file(str(tmp_path), k, sample_table(k, 200, 3))
    k = FileKey(EX, "trades", "SOLUSDT", H, S1)
    write_file(str(tmp_path), k, sample_table(k, 100, 4))
    h = H.timestamp() * 1e9
    m = 60 * 10**9
    # shard 2's connection dropped for 10 minutes; shard 1's stayed up
    write_file(str(tmp_path), FileKey(EX, "events", "_", H, S1), _events(FileKey(EX, "events", "_", H, S1),
                                                                        [(int(h) + m, "connect")]))
    k2 = FileKey(EX, "events", "_", H, S2)
    write_file(str(tmp_path), k2, _events(k2, [(int(h) + m, "connect"), (int(h) + 20 * m, "disconnect"),
                                               (int(h) + 30 * m, "connect")]))
    return tmp_path


def test_readers_take_the_union_of_an_hours_files(fleet: Path) -> None:
    root = str(fleet)
    parts = [sample_table(FileKey(EX, "trades", "BTCUSDT", H, t), 300, s) for t, s in ((S1, 1), (S2, 2))]
    parts.append(sample_table(FileKey(EX, "trades", "BTCUSDT", H + timedelta(hours=1), S2), 200, 3))
    want = pa.concat_tables(parts)
    got = loaders.load(root, EX, "trades", "BTCUSDT", "2025-01-05:22", "2025-01-05:23")
    ts = got["local_ts_ns"].to_numpy()
    assert got.num_rows == want.num_rows == 800 and bool(np.all(ts[1:] >= ts[:-1]))
    assert Counter(got["id"].to_pylist()) == Counter(want["id"].to_pylist())

    # the replay's series reader: the hour of two files merged in local-time order
    lo, hi = int(H.timestamp()) * 10**9, int(H.timestamp()) * 10**9 + 2 * 3600 * 10**9
    batches = list(sources.read_range(root, EX, "trades", "BTCUSDT", lo, hi, batch_rows=64))
    rts = np.concatenate([sources.ts_ns(b) for b in batches])
    assert len(rts) == 800 and bool(np.all(rts[1:] >= rts[:-1]))
    assert Counter(x for b in batches for x in b.column("id").to_pylist()) == Counter(want["id"].to_pylist())
    # two events files under symbol _ (one per shard) in one hour, merged the same way
    ev = list(sources.read_range(root, EX, "events", "_", lo, hi, ["local_ts", "kind"]))
    assert sum(len(b) for b in ev) == 4

    assert sorted(k.tag for k, _ in scan_files(root, "trades")) == [S1, S1, S2, S2, S2]
    series = {(s.data_type, s.symbol): s for s in loaders.list_archive(root)}
    assert series[("trades", "BTCUSDT")].files == 3
    local = {(s.data_type, s.symbol): (s.first_hour, s.last_hour) for s in inventory.list_local(root)}
    assert local[("trades", "BTCUSDT")] == (H, H + timedelta(hours=1)) and ("trades", "ETHUSDT") in local
    files = loaders.files_for_range(root, EX, "trades", "BTCUSDT,SOLUSDT", "2025-01-05:22", "2025-01-05:23")
    assert [Path(f).name for f in files] == [f"data-{S1}.parquet", f"data-{S2}.parquet", f"data-{S2}.parquet",
                                             f"data-{S1}.parquet"]
    assert ticktape.archive.dataset(f"{root}/trades").count_rows() == 1100
    assert duckdb.sql(f"select count(*) from read_parquet('{root}/trades/**/*.parquet')").fetchall() == [(1100,)]


def test_report_holds_a_shards_disconnect_against_its_own_feeds_only(fleet: Path) -> None:
    rep = report.build(str(fleet))
    feeds = {f.symbol: f for f in rep.feeds}
    h = int(H.timestamp()) * 10**9
    m = 60 * 10**9
    assert feeds["ETHUSDT"].outages == [(h + 20 * m, h + 30 * m)]  # shard 2's feed: its connection's hole
    assert feeds["SOLUSDT"].outages == []  # shard 1's feed: its connection stayed up
