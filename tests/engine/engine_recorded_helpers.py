"""Independent readers for the recorded-traffic end-to-end test: the recording
parsed with plain ``json`` and books rebuilt from it, and the archive read back
with pyarrow, so the test compares two computations that share no engine code."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

_RECV = re.compile(rb"^(\d+(?:\.\d+)?): (.*)$")
_HTTP = re.compile(rb"^(\S+) -> (\d+(?:\.\d+)?): (.*)$")

Book = dict[str, dict[float, float]]


def recorded_frames(path: Path) -> list[bytes]:
    """Received frames of a cryptofeed v2 ``*.ws.*`` file, in receive order, byte for byte."""
    return [m.group(2) for line in path.read_bytes().splitlines() if (m := _RECV.match(line))]


def recorded_rest(path: Path) -> dict[str, list[bytes]]:
    """``/fapi/v1/depth`` (USD-M) and ``/dapi/v1/depth`` (COIN-M) bodies by symbol, in file order."""
    out: dict[str, list[bytes]] = defaultdict(list)
    for line in path.read_bytes().splitlines():
        if (m := _HTTP.match(line)) and re.search(rb"/[fd]api/v1/depth\?", m.group(1)):
            sym = re.search(rb"symbol=([A-Z0-9_]+)", m.group(1))
            assert sym is not None
            out[sym.group(1).decode()].append(m.group(3))
    return out


def by_stream(frames: list[bytes], key: str) -> dict[str, list[bytes]]:
    """Data frames grouped by their ``stream`` (Binance) / ``topic`` (Bybit), order kept."""
    out: dict[str, list[bytes]] = defaultdict(list)
    for fr in frames:
        d = json.loads(fr)
        if isinstance(d, dict) and key in d:
            out[d[key]].append(fr)
    return out


def levels(rows: list[list[str]]) -> dict[float, float]:
    return {float(p): float(q) for p, q in rows}


def apply(book: Book, side: str, rows: list[list[str]]) -> None:
    for p, q in rows:
        if float(q) == 0.0:
            book[side].pop(float(p), None)
        else:
            book[side][float(p)] = float(q)


def binance_book(snapshot: bytes, diffs: list[bytes]) -> tuple[Book, int, list[int]]:
    """Book from a REST snapshot bridged into the diff stream (Binance futures rules).

    Returns the book, how many diffs were applied and the ``u`` of every diff
    whose ``pu`` breaks the chain (real gaps of the recording).
    """
    snap = json.loads(snapshot)
    last = snap["lastUpdateId"]
    book: Book = {"bid": levels(snap["bids"]), "ask": levels(snap["asks"])}
    applied = 0
    prev_u: int | None = None
    gaps: list[int] = []
    for fr in diffs:
        d = json.loads(fr)["data"]
        if d["u"] < last:
            continue
        if prev_u is None:
            assert d["U"] <= last <= d["u"], "recorded snapshot does not bridge"
        elif d["pu"] != prev_u:
            gaps.append(d["u"])
        prev_u = d["u"]
        apply(book, "bid", d["b"])
        apply(book, "ask", d["a"])
        applied += 1
    return book, applied, gaps


def bybit_book(frames: list[bytes]) -> tuple[Book, int]:
    """Book after every snapshot/delta of one Bybit topic; (book, snapshot count)."""
    book: Book = {"bid": {}, "ask": {}}
    snaps = 0
    for fr in frames:
        d = json.loads(fr)
        if d["type"] == "snapshot":
            book = {"bid": {}, "ask": {}}
            snaps += 1
        apply(book, "bid", d["data"]["b"])
        apply(book, "ask", d["data"]["a"])
    return book, snaps


def read(root: Path, exchange: str, data_type: str) -> pa.Table:
    """One exchange's data type from the archive, hive partitions as columns."""
    part = root / data_type / f"exchange={exchange}"
    if not part.is_dir():
        return pa.table({})
    return ds.dataset(part, format="parquet", partitioning="hive").to_table()


def rows_of(table: pa.Table, symbol: str, **eq: Any) -> list[dict[str, Any]]:
    """Rows of one symbol (plus equality filters) in stored order, which must already be local_ts order
    (a reader should not have to sort a symbol's file to see the stream as it arrived)."""
    if table.num_rows == 0:
        return []
    mask = np.asarray(table["symbol"].cast(pa.string()).to_numpy(zero_copy_only=False)) == symbol
    for col, val in eq.items():
        mask &= np.asarray(table[col].cast(pa.string()).to_numpy(zero_copy_only=False)) == val
    sub = table.filter(pa.array(mask))
    ts = sub["local_ts_ns"].to_numpy()
    assert (np.diff(ts) >= 0).all(), f"{symbol} {eq}: rows out of local_ts order on disk"
    return sub.to_pylist()


def book_from_rows(rows: list[dict[str, Any]]) -> tuple[Book, list[list[dict[str, Any]]]]:
    """Replay book_change rows as a user would: a run of is_snapshot rows with one
    (local_ts, exchange_ts) replaces the book. Returns the book and the snapshot groups."""
    book: Book = {"bid": {}, "ask": {}}
    groups: list[list[dict[str, Any]]] = []
    key = None
    for r in rows:
        k = (r["local_ts_ns"], r["exchange_ts"])
        if r["is_snapshot"]:
            if k != key:
                book = {"bid": {}, "ask": {}}
                groups.append([])
                key = k
            groups[-1].append(r)
        else:
            key = None
        side = str(r["side"])
        if r["amount"] == 0.0:
            book[side].pop(r["price"], None)
        else:
            book[side][r["price"]] = r["amount"]
    return book, groups
