"""Every query engine reads a table directory of a real capture whole, with its defaults.

A ``capture run`` of the built-in simulator (three exchanges over real websockets)
fills the archive; an older day of fixture files is added to ``trades`` so a
date filter has files to prune. For DuckDB, Polars, pyarrow.dataset, pandas and
Spark: rows per (exchange, symbol) equal the files' own row counts, the schema
is the table's plus the partition columns, timestamps are timestamps, and a
date filter reads only that date's files (the engine's plan or file count says
so; in a copy whose other files are damaged, the filtered read still works).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from archive_samples import write_sample_archive
from demo_run import DemoCapture

import ticktape.archive
from ticktape.archive.layout import FileKey, scan_files
from ticktape.ipc.schemas import arrow_schema_for

OLD_DAY = dt.date(2025, 1, 5)
PARTITIONS = ["exchange", "symbol", "date", "hour"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def archive(demo_capture: DemoCapture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's real capture (simulator, three exchanges) plus one older day of trades."""
    root = tmp_path_factory.mktemp("engines") / "archive"
    shutil.copytree(demo_capture.root, root, symlinks=True)
    write_sample_archive(str(root), data_types=("trades",), symbols=("BTCUSDT",), start="2025-01-05:22",
                         hours=2, rows_per_hour=50)
    return root


def truth(root: Path, table: str) -> Counter[tuple[str, str]]:
    """Rows per (exchange, symbol) as the files themselves say (footers, no engine)."""
    out: Counter[tuple[str, str]] = Counter()
    for key, path in scan_files(str(root), table):
        out[(key.exchange, key.symbol)] += pq.ParquetFile(path).metadata.num_rows
    return out


def tables(root: Path) -> list[str]:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert {"trades", "book_change", "book_snapshot_20", "raw", "events"} <= set(names), names
    return names


def old_day_files(root: Path) -> int:
    return sum(1 for k, _ in scan_files(str(root), "trades") if k.hour.date() == OLD_DAY)


def damaged_copy(root: Path, tmp: Path) -> Path:
    """The trades table with every file outside OLD_DAY overwritten: reading one fails."""
    dst = tmp / "trades"
    shutil.copytree(root / "trades", dst)
    for key, path in scan_files(str(tmp), "trades"):
        if key.hour.date() != OLD_DAY:
            Path(path).write_bytes(b"PAR1 damaged: a pruned file is never opened PAR1")
    return dst


def test_archive_root_holds_only_tables_and_private_dirs(archive: Path):
    for p in archive.iterdir():
        assert p.name.startswith(".") or p.name in tables(archive), p  # private: .journal .state .tmp .capture.lock
    for t in tables(archive):
        for dirpath, _dirs, files in os.walk(archive / t):
            for f in files:
                rel = os.path.relpath(os.path.join(dirpath, f), archive)
                FileKey.from_relpath(rel)  # nothing but data files inside a table


def test_duckdb(archive: Path, tmp_path: Path):
    con = duckdb.connect()
    for t in tables(archive):
        src = f"read_parquet('{archive}/{t}/**/*.parquet')"
        got = Counter({(e, s): n for e, s, n in con.sql(f"select exchange, symbol, count(*) from {src} group by all").fetchall()})
        assert got == truth(archive, t), t
        types = {name: typ for name, typ, *_ in con.sql(f"describe select * from {src}").fetchall()}
        assert set(types) == set(arrow_schema_for(t).names) | set(PARTITIONS), t
        assert types["local_ts"] == "TIMESTAMP WITH TIME ZONE" and types["local_ts_ns"] == "BIGINT"
        assert t == "raw" or types["exchange_ts"] == "TIMESTAMP WITH TIME ZONE"
        assert types["date"] == "DATE"
    con.sql("PRAGMA enable_profiling='json'")
    plan = con.sql(f"explain analyze select count(*) from read_parquet('{archive}/trades/**/*.parquet') "
                   f"where date = DATE '{OLD_DAY}'").fetchall()[0][1]
    read = re.findall(r'"Total Files Read": "(\d+)"', plan)
    assert read == [str(old_day_files(archive))], plan[:2000]
    con.sql("PRAGMA disable_profiling")
    damaged = damaged_copy(archive, tmp_path)
    n = con.sql(f"select count(*) from read_parquet('{damaged}/**/*.parquet') where date = DATE '{OLD_DAY}'").fetchall()
    assert n == [(100,)]


def test_polars(archive: Path, tmp_path: Path):
    for t in tables(archive):
        lf = pl.scan_parquet(archive / t)
        schema = lf.collect_schema()
        assert set(schema.names()) == set(arrow_schema_for(t).names) | set(PARTITIONS), t
        assert schema["local_ts"] == pl.Datetime("us", "UTC") and schema["date"] == pl.Date
        assert schema["hour"].is_integer()
        rows = lf.group_by("exchange", "symbol").len().collect().rows()
        assert Counter({(e, s): n for e, s, n in rows}) == truth(archive, t), t
    q = pl.scan_parquet(archive / "trades").filter(pl.col("date") == OLD_DAY).select(pl.len())
    scan = next(line for line in q.explain().splitlines() if "SCAN" in line)
    assert scan.count("data.parquet") == old_day_files(archive) and scan.count(f"date={OLD_DAY}") == scan.count("data.parquet"), scan
    damaged = damaged_copy(archive, tmp_path)
    assert pl.scan_parquet(damaged).filter(pl.col("date") == OLD_DAY).select(pl.len()).collect().item() == 100


def test_pyarrow_dataset_defaults_and_typed_helper(archive: Path, tmp_path: Path):
    for t in tables(archive):
        d = ds.dataset(archive / t, partitioning="hive")  # defaults: date inferred as a string
        assert set(d.schema.names) == set(arrow_schema_for(t).names) | set(PARTITIONS), t
        assert d.schema.field("local_ts").type == pa.timestamp("us", "UTC")
        assert d.schema.field("hour").type == pa.int32() and d.schema.field("date").type == pa.string()
        typed = ticktape.archive.dataset(str(archive / t))  # the helper: date32, int8
        assert typed.schema.field("date").type == pa.date32() and typed.schema.field("hour").type == pa.int8()
        for dset in (d, typed):
            counts = dset.to_table(columns=["exchange", "symbol"]).group_by(["exchange", "symbol"]).aggregate([([], "count_all")])
            got = Counter({(r["exchange"], r["symbol"]): r["count_all"] for r in counts.to_pylist()})
            assert got == truth(archive, t), t
    typed = ticktape.archive.dataset(str(archive / "trades"))
    frags = list(typed.get_fragments(filter=ds.field("date") == OLD_DAY))
    assert len(frags) == old_day_files(archive) and all(f"date={OLD_DAY}" in f.path for f in frags)
    plain = ds.dataset(archive / "trades", partitioning="hive")
    assert len(list(plain.get_fragments(filter=ds.field("date") == str(OLD_DAY)))) == old_day_files(archive)
    damaged = damaged_copy(archive, tmp_path)
    assert ticktape.archive.dataset(str(damaged)).count_rows(filter=ds.field("date") == OLD_DAY) == 100


def test_pandas(archive: Path, tmp_path: Path):
    for t in tables(archive):
        df = pd.read_parquet(archive / t)
        assert set(df.columns) == set(arrow_schema_for(t).names) | set(PARTITIONS), t
        assert str(df["local_ts"].dtype) == "datetime64[us, UTC]", df.dtypes
        got = Counter({(str(e), str(s)): int(n) for (e, s), n in df.groupby(["exchange", "symbol"], observed=True).size().items()})
        assert got == truth(archive, t), t
    damaged = damaged_copy(archive, tmp_path)
    df = pd.read_parquet(damaged, filters=[("date", "=", str(OLD_DAY))])
    assert len(df) == 100 and set(df["date"].astype(str)) == {str(OLD_DAY)}


@pytest.fixture(scope="module")
def spark():
    pyspark = pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("no java on PATH (.ci/run installs a headless JRE)")
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("ticktape-tables")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1")
               .config("spark.sql.adaptive.enabled", "false")
               .config("spark.driver.memory", "512m")
               # a JVM that starts fast on a busy 2-core machine: C1 only (no C2 compiles competing for
               # the cores) and the serial GC; tiny tables, so peak throughput does not matter (~2x faster)
               .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
               .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    assert pyspark.__version__
    yield session
    session.stop()


def test_spark(archive: Path, spark):
    from pyspark.sql.types import DateType, IntegerType, LongType, TimestampType

    for t in tables(archive):
        df = spark.read.parquet(str(archive / t))
        fields = {f.name: f.dataType for f in df.schema.fields}
        assert set(fields) == set(arrow_schema_for(t).names) | set(PARTITIONS), t
        assert isinstance(fields["local_ts"], TimestampType) and isinstance(fields["local_ts_ns"], LongType)
        assert t == "raw" or isinstance(fields["exchange_ts"], TimestampType)
        assert isinstance(fields["date"], DateType) and isinstance(fields["hour"], IntegerType)
        got = Counter({(r["exchange"], r["symbol"]): r["count"] for r in df.groupBy("exchange", "symbol").count().collect()})
        assert got == truth(archive, t), t
    q = spark.read.parquet(str(archive / "trades")).where(f"date = date'{OLD_DAY}'")
    rows = q.collect()
    assert len(rows) == 100 and all(isinstance(r["local_ts"], dt.datetime) for r in rows)
    plan = q._jdf.queryExecution().executedPlan()
    scans = [plan.collectLeaves().apply(i) for i in range(plan.collectLeaves().size())]
    files = [int(s.metrics().apply("numFiles").value()) for s in scans if s.metrics().contains("numFiles")]
    assert files == [old_day_files(archive)], plan.toString()
    assert "PartitionFilters: [isnotnull(date" in plan.toString()
