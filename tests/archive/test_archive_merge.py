"""``capture merge`` on small hand-made captures: which rows it keeps, where it splices the
book, what it reports, that a rerun (and another worker count) writes identical files,
and one-line errors for bad arguments."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ticktape.archive import merge_run as R
from ticktape.archive.layout import FileKey, hour_of_ns
from ticktape.engine import cli
from ticktape.ipc.schemas import LOCAL_TS_NS

EX, SYM = "binance-futures", "BTCUSDT"
HOUR = datetime(2025, 1, 5, 22, tzinfo=UTC)
T0 = int(HOUR.timestamp()) * 10**9
MS = 10**6


def ts_table(rows: list[dict], data_type: str) -> pa.Table:
    from ticktape.ipc.schemas import arrow_schema_for

    schema = arrow_schema_for(data_type)
    for r in rows:
        r["local_ts"] = r[LOCAL_TS_NS]
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    arrays = []
    for f in schema:
        if pa.types.is_timestamp(f.type):
            us = [None if v is None else v // 1000 for v in cols[f.name]]  # given in ns
            arrays.append(pa.array(us, pa.int64()).cast(f.type))
        elif pa.types.is_dictionary(f.type):
            arrays.append(pa.array(cols[f.name], pa.string()).cast(f.type))
        else:
            arrays.append(pa.array(cols[f.name], f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def venue(n: int = 100) -> list[list[tuple[str, float, float]]]:
    """The venue's book updates: update k sets one bid and one ask level."""
    return [[("bid", 100.0 - (k % 7), float(k % 5)), ("ask", 101.0 + (k % 6), float(k % 3 + 1))] for k in range(1, n + 1)]


def book_at(updates: list[list[tuple[str, float, float]]], k: int) -> dict[str, dict[float, float]]:
    book: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    for upd in updates[:k]:
        for side, p, q in upd:
            if q == 0:
                book[side].pop(p, None)
            else:
                book[side][p] = q
    return book


def capture(root: Path, pieces: list[tuple[int, int]], breaks: list[int], lag: int, trades: range,
            t0: int = T0, book: bool = True) -> None:
    """A source that held updates a..b (a snapshot at a-1's state first) of each piece, a disconnect at
    each ``breaks`` update number (just after it), arrival ``lag`` ns after the venue's time (update k
    at ``t0`` + k * 10 ms); each row in the file of its arrival hour."""
    T0 = t0  # the venue clock of this capture
    ups = venue()
    rows, raw, events = [], [], []
    for a, b in pieces:
        at = T0 + a * 10 * MS + lag - MS
        for side, levels in book_at(ups, a - 1).items():
            rows += [{"exchange_ts": T0 + a * 10 * MS, "is_snapshot": True, "side": side, "price": p, "amount": q,
                      LOCAL_TS_NS: at} for p, q in sorted(levels.items())]
        events.append({"kind": "resync", "channel": "depth", "conn_id": 0, "detail": f"synced at u={a}",
                       "exchange_ts": None, LOCAL_TS_NS: at})
        for k in range(a, b + 1):
            t = T0 + k * 10 * MS + lag
            rows += [{"exchange_ts": T0 + k * 10 * MS, "is_snapshot": False, "side": s, "price": p, "amount": q,
                      LOCAL_TS_NS: t} for s, p, q in ups[k - 1]]
            raw.append({"channel": "depth", "conn_id": 1, LOCAL_TS_NS: t,
                        "payload": json.dumps({"stream": "btcusdt@depth", "data": {"u": k, "pu": k - 1}}).encode()})
    for k in breaks:
        t = T0 + k * 10 * MS + lag + MS
        for ch in ("depth", "trade"):
            events.append({"kind": "disconnect", "channel": ch, "conn_id": 1, "detail": "connection lost",
                           "exchange_ts": None, LOCAL_TS_NS: t})
            raw.append({"channel": ch, "conn_id": 1, LOCAL_TS_NS: t, "payload": b""})
    tr = [{"exchange_ts": T0 + i * 10 * MS, "id": str(i), "price": 100.0, "amount": 1.0, "side": "buy",
           LOCAL_TS_NS: T0 + i * 10 * MS + lag} for i in trades]
    for data_type, r in (("book_change", rows), ("raw", raw), ("events", events), ("trades", tr)):
        if data_type == "book_change" and not book:
            continue
        r.sort(key=lambda x: x[LOCAL_TS_NS])
        for hour in sorted({hour_of_ns(x[LOCAL_TS_NS]) for x in r}):
            part = [x for x in r if hour_of_ns(x[LOCAL_TS_NS]) == hour]
            R.write(str(root), FileKey(EX, data_type, SYM, hour), ts_table(part, data_type), ["test"])


def merged_rows(root: Path, data_type: str, hours: tuple[datetime, ...] = (HOUR,)) -> pa.Table:
    parts = [R.read(R.Source("m", str(root)), FileKey(EX, data_type, SYM, h)) for h in hours]
    assert all(p is not None for p in parts)
    return pa.concat_tables([p for p in parts if p is not None])


def merged_book(root: Path, hours: tuple[datetime, ...] = (HOUR,)) -> dict[str, dict[float, float]]:
    t = merged_rows(root, "book_change", hours)
    book: dict[str, dict[float, float]] = {"bid": {}, "ask": {}}
    key = None
    for r in t.to_pylist():
        k = (r[LOCAL_TS_NS], r["exchange_ts"])
        if r["is_snapshot"] and k != key:
            book, key = {"bid": {}, "ask": {}}, k
        elif not r["is_snapshot"]:
            key = None
        if r["amount"] == 0:
            book[r["side"]].pop(r["price"], None)
        else:
            book[r["side"]][r["price"]] = r["amount"]
    return book


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = cli.main(["merge", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet")) if ".tmp" not in p.parts}


def test_merge_fills_each_hole_reports_it_and_reruns_identically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "source=host-a", tmp_path / "source=host-b"
    # A: 1..30, down, back at 50..100; B: 10..80 (fills A's hole), down, back at 90..100
    capture(a, [(1, 30), (50, 100)], [30], lag=200_000, trades=range(1, 101, 2))
    capture(b, [(10, 80), (90, 100)], [80], lag=300_000, trades=range(40, 121))
    rc, out, err = run(capsys, str(a), str(b), "--out", str(tmp_path / "m1"), "--format", "json", "--workers", "1")
    assert rc == 0, err
    rep = json.loads(out)
    assert [s["name"] for s in rep["sources"]] == ["host-a", "host-b"]
    assert merged_book(tmp_path / "m1") == book_at(venue(), 100)
    tr = rep["tables"]["trades"]
    assert tr["kept"] == {"host-a": 50, "host-b": 51} and tr["duplicates"] == 30  # odd 41..99 twice
    book = rep["tables"]["book_change"]
    # A's 30 + B's 31..80 + A's 81..100, two rows per update, A's first snapshot
    snap_rows = sum(len(v) for v in book_at(venue(), 0).values())
    assert book["kept"] == {"host-a": snap_rows + 2 * 30 + 2 * 20, "host-b": 2 * 50}
    assert (rep["totals"]["windows"], rep["totals"]["windows_filled"], rep["totals"]["windows_left"]) == (2, 2, 0)
    assert rep["holes"] == []
    m_raw = R.read(R.Source("m", str(tmp_path / "m1")), FileKey(EX, "raw", SYM, HOUR))
    assert m_raw is not None
    us = [json.loads(p)["data"]["u"] for p in m_raw.column("payload").to_pylist() if p]
    assert us == list(range(1, 101))  # every frame once, no marker: both holes were filled
    # a rerun, and another worker count, write the same bytes
    first = digests(tmp_path / "m1")
    assert run(capsys, str(a), str(b), "--out", str(tmp_path / "m1"), "--workers", "1")[0] == 0
    assert run(capsys, str(a), str(b), "--out", str(tmp_path / "m2"), "--workers", "2", "--format", "json")[0] == 0
    assert digests(tmp_path / "m1") == first == digests(tmp_path / "m2")
    assert set(first) == {f"{t}/exchange={EX}/symbol={SYM}/date=2025-01-05/hour=22/data.parquet"
                          for t in ("book_change", "raw", "events", "trades")}


def test_merge_keeps_a_disconnect_where_no_source_was_live(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    capture(a, [(1, 30), (50, 100)], [30], lag=200_000, trades=range(1, 10))
    capture(b, [(10, 40), (60, 100)], [40], lag=300_000, trades=range(5, 20))  # down 41..59; A down 31..49
    rc, out, err = run(capsys, str(a), str(b), "--out", str(tmp_path / "m"), "--format", "json")
    assert rc == 0, err
    rep = json.loads(out)
    assert merged_book(tmp_path / "m") == book_at(venue(), 100)
    assert (rep["totals"]["windows"], rep["totals"]["windows_filled"], rep["totals"]["windows_left"]) == (2, 0, 1)
    b_break = T0 + 40 * 10 * MS + 300_000 + MS
    assert [(h["source"], h["local_ts_ns"]) for h in rep["holes"]] == [("b", b_break)]
    ev = R.read(R.Source("m", str(tmp_path / "m")), FileKey(EX, "events", SYM, HOUR))
    assert ev is not None
    rows = ev.to_pylist()
    assert sorted((r["kind"], r["channel"]) for r in rows if r["kind"] == "disconnect") == [
        ("disconnect", "depth"), ("disconnect", "trade")]
    assert {r[LOCAL_TS_NS] for r in rows if r["kind"] == "disconnect"} == {b_break}
    assert any(r["kind"] == "resync" and r["detail"] == "synced at u=50" for r in rows)  # A's snapshot after the hole
    raw = R.read(R.Source("m", str(tmp_path / "m")), FileKey(EX, "raw", SYM, HOUR))
    assert raw is not None
    assert sorted(r[LOCAL_TS_NS] for r in raw.to_pylist() if r["payload"] == b"") == [b_break, b_break]


def test_merge_across_an_hour_boundary_keeps_each_update_once(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # update 70 reaches A 200 µs and B 300 µs after the venue's time: the hour ends between the two
    t0 = T0 + 3600 * 10**9 - 70 * 10 * MS - 250_000
    a, b = tmp_path / "a", tmp_path / "b"
    capture(a, [(1, 40), (45, 100)], [40], lag=200_000, trades=range(60, 100), t0=t0)
    capture(b, [(1, 100)], [], lag=300_000, trades=range(0, 80), t0=t0)  # trade 70 also straddles
    # B first: its copy of update 70 is in the later hour, A's in the earlier one
    rc, out, err = run(capsys, str(b), str(a), "--out", str(tmp_path / "m"), "--format", "json")
    assert rc == 0, err
    hours = (HOUR, HOUR + timedelta(hours=1))
    assert merged_book(tmp_path / "m", hours) == book_at(venue(), 100)
    book = merged_rows(tmp_path / "m", "book_change", hours)
    snap_rows = sum(len(v) for v in book_at(venue(), 0).values())
    assert book.num_rows == snap_rows + 2 * 100  # B's snapshot and every update once
    raw = merged_rows(tmp_path / "m", "raw", hours)
    assert sorted(json.loads(p)["data"]["u"] for p in raw.column("payload").to_pylist() if p) == list(range(1, 101))
    ts = raw.column(LOCAL_TS_NS).to_pylist()
    assert ts == sorted(ts)
    ids = merged_rows(tmp_path / "m", "trades", hours).column("id").to_pylist()
    assert sorted(ids, key=int) == [str(i) for i in range(100)]
    rep = json.loads(out)
    assert (rep["totals"]["windows"], rep["totals"]["windows_filled"], rep["totals"]["windows_left"]) == (1, 1, 0)


def test_merge_reads_a_sharded_source_and_runs_on_dask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    distributed = pytest.importorskip("distributed")
    a, b = tmp_path / "a", tmp_path / "b"
    capture(a, [(1, 30), (50, 100)], [30], lag=200_000, trades=range(1, 101, 2))
    capture(b, [(10, 80), (90, 100)], [80], lag=300_000, trades=range(40, 121))
    assert run(capsys, str(a), str(b), "--out", str(tmp_path / "m1"))[0] == 0
    # B as a sharded fleet writes it: tagged files, an hour's rows split over two of them
    for p in sorted(b.rglob("data.parquet")):
        t = pq.read_table(p, partitioning=None)
        half = t.num_rows // 2
        pq.write_table(t.slice(0, half), p.with_name("data-shard-1-of-2.parquet"))
        pq.write_table(t.slice(half), p.with_name("data-shard-2-of-2.parquet"))
        p.unlink()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        rc, _out, err = run(capsys, str(a), str(b), "--out", str(tmp_path / "m2"), "--dask", cluster.scheduler_address)
    assert rc == 0, err
    assert digests(tmp_path / "m2") == digests(tmp_path / "m1")


def test_merge_without_a_book_keeps_a_break_only_where_every_source_was_down(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    capture(a, [(1, 30), (50, 100)], [30], lag=200_000, trades=range(1, 31), book=False)  # frames 31..49 missed
    capture(b, [(1, 40), (60, 100)], [40], lag=300_000, trades=range(20, 41), book=False)  # frames 41..59 missed
    rc, out, err = run(capsys, str(a), str(b), "--out", str(tmp_path / "m"), "--format", "json")
    assert rc == 0, err
    ev = merged_rows(tmp_path / "m", "events").to_pylist()
    b_break = T0 + 40 * 10 * MS + 300_000 + MS
    assert {r[LOCAL_TS_NS] for r in ev if r["kind"] == "disconnect"} == {b_break}  # A's was filled by B
    assert [r[LOCAL_TS_NS] for r in ev if r["kind"] == "connect"] == [T0 + 50 * 10 * MS + 200_000]  # A back
    raw = merged_rows(tmp_path / "m", "raw").to_pylist()
    assert sorted({r[LOCAL_TS_NS] for r in raw if r["payload"] == b""}) == [b_break]
    assert sorted(json.loads(r["payload"])["data"]["u"] for r in raw if r["payload"]) == \
        [*range(1, 41), *range(50, 101)]
    rep = json.loads(out)
    assert (rep["totals"]["windows"], rep["totals"]["windows_filled"], rep["totals"]["windows_left"]) == (2, 1, 1)
    assert [(h["source"], h["local_ts_ns"]) for h in rep["holes"]] == [("b", b_break)]


def test_merge_a_snapshot_only_book_takes_every_frame_any_source_had(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # each update a full snapshot (as Hyperliquid's l2Book): two rows, the best bid and ask
    a, b = tmp_path / "a", tmp_path / "b"
    for root, pieces, brk, lag in ((a, [(1, 30), (50, 100)], [30], 200_000), (b, [(1, 40), (60, 100)], [40], 300_000)):
        capture(root, pieces, brk, lag=lag, trades=range(0), book=False)
        frames = [{"exchange_ts": T0 + k * 10 * MS, "is_snapshot": True, "side": side, "price": p, "amount": q,
                   LOCAL_TS_NS: T0 + k * 10 * MS + lag} for x, y in pieces for k in range(x, y + 1)
                  for side, p, q in venue()[k - 1]]
        R.write(str(root), FileKey(EX, "book_change", SYM, HOUR), ts_table(frames, "book_change"), ["test"])
    rc, out, err = run(capsys, str(a), str(b), "--out", str(tmp_path / "m"), "--format", "json")
    assert rc == 0, err
    book = merged_rows(tmp_path / "m", "book_change").to_pylist()
    got = sorted({int(pa.scalar(r["exchange_ts"]).cast(pa.int64()).as_py()) for r in book})
    assert got == [(T0 + k * 10 * MS) // 1000 for k in (*range(1, 41), *range(50, 101))]
    assert len(book) == 2 * len(got)  # each frame once
    ev = merged_rows(tmp_path / "m", "events").to_pylist()
    assert {r[LOCAL_TS_NS] for r in ev if r["kind"] == "disconnect"} == {T0 + 40 * 10 * MS + 300_000 + MS}
    rep = json.loads(out)
    assert (rep["totals"]["windows"], rep["totals"]["windows_filled"], rep["totals"]["windows_left"]) == (2, 1, 1)
    assert [(h["source"], h["local_ts_ns"]) for h in rep["holes"]] == [("b", T0 + 40 * 10 * MS + 300_000 + MS)]


@pytest.mark.parametrize(("args", "message"), [
    (["{a}"], "at least two sources"),
    (["{a}", "{tmp}/nope"], "nope: no such archive directory"),
    (["{a}", "{a}", "--from", "yesterday"], "bad time 'yesterday'"),
    (["{a}", "{a}", "--exchange", "Bad!"], "invalid exchange id"),
    (["{a}", "{a}", "--workers", "0"], "--workers 0 is out of range (allowed 1..256)"),
    (["{a}", "{a}"], "no archive files"),
])
def test_merge_bad_arguments_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  args: list[str], message: str) -> None:
    (tmp_path / "a").mkdir()
    argv = [x.format(a=tmp_path / "a", tmp=tmp_path) for x in args]
    rc, _out, err = run(capsys, *argv, "--out", str(tmp_path / "m"))
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_merge_reads_s3_sources_as_local_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              s3_endpoint: str, bucket: str) -> None:
    from ticktape.archive.s3 import sync_archive

    a, b = tmp_path / "source=host-a", tmp_path / "b"  # local twins of the sources: the same names
    capture(a, [(1, 30), (50, 100)], [30], lag=200_000, trades=range(1, 101, 2))
    capture(b, [(10, 80), (90, 100)], [80], lag=300_000, trades=range(40, 121))
    urls = [f"s3://{bucket}/ticks/source=host-a", f"s3://{bucket}/ticks/source=host-b"]
    for root, url in zip((a, b), urls, strict=True):
        assert sync_archive(str(root), url, endpoint_url=s3_endpoint).ok
    rc, out, err = run(capsys, urls[0], str(b), "--out", str(tmp_path / "m3"), "--endpoint-url", s3_endpoint,
                       "--format", "json")
    assert rc == 0, err
    assert [s["name"] for s in json.loads(out)["sources"]] == ["host-a", "b"]
    assert run(capsys, str(a), str(b), "--out", str(tmp_path / "m1"), "--format", "json")[0] == 0
    assert digests(tmp_path / "m3") == digests(tmp_path / "m1")  # the same files as from the local roots
    assert not (tmp_path / "m3" / ".tmp" / "merge-source-host-a").exists()  # the staged copy is gone
    rc, _out, err = run(capsys, f"s3://{bucket}/nothing-here", str(b), "--out", str(tmp_path / "m4"),
                        "--endpoint-url", s3_endpoint)
    assert rc == 2 and err.strip() == f"error: s3://{bucket}/nothing-here: no archive files", err
