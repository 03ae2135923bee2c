"""Tardis CSV interchange for the ticker tables (book_ticker, derivative_ticker, liquidations),
and one-line errors for inputs that are not Tardis files."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ticktape.archive.export import export
from ticktape.archive.import_ import import_path, write_records
from ticktape.archive.loaders import load
from ticktape.archive.lock import ArchiveLock
from ticktape.engine.settings import ArchiveConfig
from ticktape.ipc import schemas as S

T0 = 1_736_186_400_000_000_000  # 2025-01-06T18:00Z
RANGE = ("2025-01-06", "2025-01-08")


def _write(root: Path, table: str, rec: np.ndarray) -> None:
    batch = S.fixed_batch_to_arrow(table, rec)
    write_records(str(root), "binance-futures", table, "BTCUSDT", batch, rec["local_ts"], "test", ArchiveConfig())


def _archive(root: Path) -> None:
    n = 50
    local = T0 + np.arange(n, dtype=np.int64) * 3_000_000_017 + 123  # crosses hours; sub-µs digits
    dt = np.zeros(n, S.dtype_for("derivative_ticker"))
    dt["local_ts"], dt["exchange_ts"] = local, local - 5_000_000
    dt["funding_timestamp"] = np.where(np.arange(n) % 7 == 0, 0, T0 + 8 * 3_600_000_000_000)
    for i, c in enumerate(("last_price", "mark_price", "index_price", "funding_rate", "predicted_funding_rate",
                           "open_interest")):
        v = 100.0 + i + np.arange(n) * 0.25
        v[(np.arange(n) + i) % 5 == 0] = np.nan  # "the venue gives none"
        dt[c] = v
    _write(root, "derivative_ticker", dt)
    lq = np.zeros(n, S.dtype_for("liquidations"))
    lq["local_ts"], lq["exchange_ts"] = local, local - 1_000_000
    lq["side"] = np.arange(n) % 3
    lq["price"], lq["amount"] = 95_000.5 + np.arange(n), 0.001 * (1 + np.arange(n))
    lq["id"] = [b"" if i % 4 == 0 else f"L{i}".encode() for i in range(n)]
    _write(root, "liquidations", lq)
    bt = np.zeros(n, S.dtype_for("book_ticker"))
    bt["local_ts"], bt["exchange_ts"] = local, local - 2_000_000
    bt["bid_price"], bt["ask_price"] = 95_000.0 + np.arange(n), 95_000.1 + np.arange(n)
    bt["bid_amount"], bt["ask_amount"] = 1.5, np.where(np.arange(n) % 9 == 0, np.nan, 2.5)
    _write(root, "book_ticker", bt)


def _us_table(root: Path, table: str) -> pa.Table:
    t = load(str(root), "binance-futures", table, "BTCUSDT", *RANGE)
    cols = {}
    for name in t.column_names:
        c = t.column(name).combine_chunks()
        if pa.types.is_timestamp(c.type):
            v = c.cast(pa.int64())
            cols[name] = pa.compute.divide(v, 1000) if c.type.unit == "ns" else v
        elif name != "local_ts_ns":
            cols[name] = c.cast(pa.string()) if pa.types.is_dictionary(c.type) else c
    return pa.table(cols)


def test_ticker_tables_export_with_tardis_columns_and_import_back(tmp_path: Path) -> None:
    src, out, back = tmp_path / "src", tmp_path / "out", tmp_path / "back"
    _archive(src)
    done = export(str(src), str(out), "binance-futures", *RANGE)
    got = {x.dataset: x for x in done}
    assert set(got) == {"derivative_ticker", "liquidations", "book_ticker"}
    with gzip.open(got["derivative_ticker"].path, "rt") as f:
        head, first = f.readline().strip(), f.readline().strip()
    assert head == ("exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,"
                    "predicted_funding_rate,open_interest,last_price,index_price,mark_price")
    assert first.startswith("binance-futures,BTCUSDT,1736186399995000,1736186400000000,,")  # no funding time: empty
    with gzip.open(got["liquidations"].path, "rt") as f:
        assert f.readline().strip() == "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"
        assert f.readline().split(",")[4:6] == ["", "unknown"]
    with gzip.open(got["book_ticker"].path, "rt") as f:
        assert f.readline().strip() == "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount"
        assert f.readline().strip().split(",")[4] == ""  # NaN amount -> empty field
    for x in done:
        import_path(str(back), x.path)
    for table in ("derivative_ticker", "liquidations", "book_ticker"):
        a, b = _us_table(src, table), _us_table(back, table)
        assert a.num_rows == 50 and b.equals(a), table


def test_import_refuses_what_is_not_tardis_in_one_line(tmp_path: Path, capture_cmd: list[str]) -> None:
    bad = tmp_path / "binance-futures_trades_2025-01-06_BTCUSDT.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("time,price\n1,2\n")
    ndjson = tmp_path / "frames.ndjson"
    ndjson.write_text('{"localTimestamp":"2025-01-06T18:00:00.0000000Z","message":{"e":"x"}}\n')
    for args in ([str(bad)], [str(ndjson)], [str(tmp_path / "missing.csv.gz")], [str(ndjson), "--exchange", "Bad Ex"]):
        proc = subprocess.run([*capture_cmd, "import", str(tmp_path / "arc"), *args], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    good = tmp_path / "frames.ndjson"
    with ArchiveLock(str(tmp_path / "arc"), "capture run"):  # a capture on the same root
        proc = subprocess.run([*capture_cmd, "import", str(tmp_path / "arc"), str(good), "--exchange", "binance-futures"],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "in use by pid" in proc.stderr, proc.stderr


def test_ndjson_lines_that_are_not_frames_are_counted_and_marked(tmp_path: Path) -> None:
    f = tmp_path / "cache.ndjson"
    f.write_bytes(
        b'2025-01-06T18:00:00.1000000Z {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT"}}\n'
        b"garbage without a time\n"
        b"\n"
        b'2025-01-06T18:00:01.2000000Z {"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT"}}\n'
    )
    res = import_path(str(tmp_path / "arc"), str(f), "binance-futures")
    assert res.rows == {"raw": 2, "events": 2} and res.skipped == 2
    ev = load(str(tmp_path / "arc"), "binance-futures", "events", "_", *RANGE)
    assert sorted(ev.column("kind").cast(pa.string()).to_pylist()) == ["disconnect", "malformed"]
    raw = load(str(tmp_path / "arc"), "binance-futures", "raw", "BTCUSDT", *RANGE)
    assert raw.column("channel").to_pylist() == ["aggTrade", "aggTrade"]
    assert S.local_ns(raw).tolist()[1] % 1_000_000_000 == 200_000_000


def test_big_inputs_are_read_in_chunks_with_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are read a block / a chunk of lines at a time and written an hour at a time; rows out
    of time order (a later chunk going back to an earlier hour) still land, none lost or doubled."""
    from ticktape.archive import import_ as imp

    n = 5000
    local_us = 1_736_186_400_000_000 + np.arange(n, dtype=np.int64) * 2_000_000  # 2 s apart: ~2.8 hours
    local_us[4000:4010] -= 3_600_000_000  # ten rows back in the first hour, near the end of the file
    csv = tmp_path / "binance-futures_trades_2025-01-06_BTCUSDT.csv.gz"
    with gzip.open(csv, "wt") as f:
        f.write("exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n")
        for i, t in enumerate(local_us.tolist()):
            f.write(f"binance-futures,BTCUSDT,{t - 1000},{t},{i},{'buy' if i % 2 else 'sell'},{100 + i * 0.5},{i % 7 + 1}\n")
    nd = tmp_path / "frames.ndjson"
    with open(nd, "w") as f:
        for i, t in enumerate(local_us.tolist()):
            iso = (np.datetime64(int(t), "us").astype(str)) + "Z"
            f.write(f'{iso} {{"stream":"btcusdt@aggTrade","data":{{"e":"aggTrade","s":"BTCUSDT","a":{i}}}}}\n')
    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    import_path(str(whole), str(csv))
    import_path(str(whole), str(nd), "binance-futures")
    monkeypatch.setattr(imp, "CSV_BLOCK", 4096)
    monkeypatch.setattr(imp, "NDJSON_CHUNK", 333)
    res = [import_path(str(chunked), str(csv)), import_path(str(chunked), str(nd), "binance-futures")]
    assert res[0].rows == {"trades": n} and res[1].rows == {"raw": n}
    for table in ("trades", "raw"):
        a = load(str(whole), "binance-futures", table, "BTCUSDT", *RANGE)
        b = load(str(chunked), "binance-futures", table, "BTCUSDT", *RANGE)
        assert a.num_rows == b.num_rows == n
        key = "id" if table == "trades" else "payload"
        assert sorted(a.column(key).to_pylist()) == sorted(b.column(key).to_pylist())
        assert S.local_ns(b).tolist() == sorted(S.local_ns(b).tolist())
    # and again: nothing added
    again = [import_path(str(chunked), str(csv)), import_path(str(chunked), str(nd), "binance-futures")]
    assert sum(sum(r.rows.values()) for r in again) == 0
