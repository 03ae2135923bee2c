"""Book rows around a Binance resync, on a small hand-made archive: by default tardis-dev's (the resync
snapshot left out, the raw diffs in its place, whatever the read batch size), with ``bookGaps: "resync"``
ticktape's; and trade bars placed right after the trade that closed them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from archive_samples import write_file

from ticktape.archive.layout import FileKey, hour_of_ns
from ticktape.ipc import schemas as S
from ticktape.replay import book_gaps, normalized
from ticktape.replay.options import Bar, NormalizedRequest, Range
from ticktape.replay.rows import BookRows, change_rows

EX, SYM = "binance-futures", "BTCUSDT"
T0 = 1_796_024_400_000_000_000  # 2026-11-30 07:40 UTC
MS = 1_000_000

# (local ms, is_snapshot, side, price, amount): a first snapshot, a diff, then (after a gap at 3 ms) the
# resync snapshot at 5 ms with the diff buffered from 4 ms merged at its time, then a diff again
BOOK = [(1, True, "bid", 100.0, 1.0), (1, True, "ask", 101.0, 1.0), (2, False, "bid", 100.0, 2.0),
        (5, True, "bid", 100.0, 5.0), (5, True, "ask", 101.0, 5.0), (5, True, "ask", 102.0, 1.0),
        (6, False, "bid", 99.0, 1.0)]


def _depth(u: int, pu: int, bids: list[list[str]], asks: list[list[str]], e_ms: int) -> bytes:
    data = {"e": "depthUpdate", "E": e_ms, "T": e_ms, "s": SYM, "U": u, "u": u, "pu": pu, "b": bids, "a": asks}
    return json.dumps({"stream": "btcusdt@depth@0ms", "data": data}).encode()


# the raw frames: every diff (the gap's at 3 and 4 ms too) and the REST snapshots
RAW: list[tuple[float, str, bytes]] = [(1, "depthSnapshot", b'{"stream":"btcusdt@depthSnapshot","generated":true,"data":{"lastUpdateId":10}}'),
       (2, "depth", _depth(11, 10, [["100.0", "2"]], [], 2)),
       (3, "depth", _depth(13, 12, [["100.0", "3"]], [], 3)),
       (3.5, "depth", b""),  # the marker of a drop, when there is one (a test's drops say so)
       (4, "depth", _depth(14, 13, [], [["102.0", "1"]], 4)),
       (5, "depthSnapshot", b'{"stream":"btcusdt@depthSnapshot","generated":true,"data":{"lastUpdateId":13}}'),
       (6, "depth", _depth(15, 14, [["99.0", "1"]], [], 6))]


def _archive(root: Path, raw: bool = True) -> None:
    local = np.array([T0 + r[0] * MS for r in BOOK], np.int64)
    side = pa.DictionaryArray.from_arrays(pa.array([S.BOOK_SIDES.index(r[2]) for r in BOOK], pa.int8()),
                                          pa.array(S.BOOK_SIDES))
    cols = [pa.array([r[1] for r in BOOK]), side, pa.array([r[3] for r in BOOK]), pa.array([r[4] for r in BOOK])]
    write_file(str(root), FileKey(EX, "book_change", SYM, hour_of_ns(T0)), S.table_from_ns("book_change", local, local, cols))
    if raw:
        rl = np.array([T0 + int(r[0] * MS) for r in RAW], np.int64)
        cols = [pa.array([r[1] for r in RAW]), pa.array(np.zeros(len(RAW), np.uint32)), pa.array([r[2] for r in RAW])]
        write_file(str(root), FileKey(EX, "raw", SYM, hour_of_ns(T0)), S.table_from_ns("raw", rl, None, cols))


def _rows(root: Path, batch_rows: int, drops: tuple[float, ...] = (), tardis: bool = True) -> list[tuple[int, bool, str, float, float]]:
    req = NormalizedRequest(EX, [SYM], Range(T0, T0 + 60_000 * MS), book_change=True, batch_rows=batch_rows)
    src = change_rows(str(root), req, SYM)
    if tardis:
        src = book_gaps.as_tardis(str(root), req, SYM, src, np.array([T0 + int(d * MS) for d in drops], np.int64))
    out = []
    for b in src:
        assert isinstance(b, BookRows)
        out += [(int((t - T0) // MS), bool(s), "ask" if a else "bid", float(p), float(q))
                for t, s, a, p, q in zip(b.local, b.is_snap, b.is_ask, b.price, b.amount, strict=True)]
    return out


TARDIS = [(1, True, "bid", 100.0, 1.0), (1, True, "ask", 101.0, 1.0), (2, False, "bid", 100.0, 2.0),
          (3, False, "bid", 100.0, 3.0), (4, False, "ask", 102.0, 1.0), (6, False, "bid", 99.0, 1.0)]


@pytest.mark.parametrize("batch_rows", [1, 2, 3, 100])
def test_a_resync_snapshot_is_replaced_by_the_raw_diffs(tmp_path: Path, batch_rows: int) -> None:
    _archive(tmp_path)
    assert _rows(tmp_path, batch_rows) == TARDIS
    assert _rows(tmp_path, batch_rows, tardis=False) == BOOK  # bookGaps "resync": the archive's own rows


@pytest.mark.parametrize("batch_rows", [1, 100])
def test_a_snapshot_after_a_drop_is_its_connection_first_and_stays(tmp_path: Path, batch_rows: int) -> None:
    """A drop at 3.5 ms (during the gap): the old connection's diff at 3 ms is tardis-dev's (its mapper had a
    snapshot), the one at 4 ms is buffered by the new mapper and merged into the snapshot at 5 ms as ours is."""
    _archive(tmp_path)
    assert _rows(tmp_path, batch_rows, drops=(3.5,)) == [*BOOK[:3], TARDIS[3], *BOOK[3:]]


def test_without_raw_frames_the_resynced_rows_stay(tmp_path: Path) -> None:
    _archive(tmp_path, raw=False)
    assert _rows(tmp_path, 2) == BOOK


def test_each_trade_bar_follows_the_trade_that_closed_it(tmp_path: Path) -> None:
    """Two frames of two trades each (one local time per frame): a 1-tick bar after every trade, not after
    the frame's last trade (tardis-dev passes each trade through, then computes from it)."""
    local = np.array([T0 + MS, T0 + MS, T0 + 2 * MS, T0 + 2 * MS], np.int64)
    side = pa.DictionaryArray.from_arrays(pa.array([1, 2, 1, 2], pa.int8()), pa.array(S.TRADE_SIDES))
    cols = [pa.array(["1", "2", "3", "4"]), pa.array([1.0, 2.0, 3.0, 4.0]), pa.array([0.5] * 4), side]
    write_file(str(tmp_path), FileKey(EX, "trades", SYM, hour_of_ns(T0)), S.table_from_ns("trades", local, local, cols))
    req = NormalizedRequest(EX, [SYM], Range(T0, T0 + 60_000 * MS), trade=True,
                            bars=[Bar("trade_bar_1ticks", "tick", 1), Bar("trade_bar_2ticks", "tick", 2)])
    lines = [json.loads(line) for c in normalized.trade_source(str(tmp_path), req, SYM) for line in c.lines.to_pylist()]
    assert [(m["type"], m.get("id") or m["name"], m.get("close")) for m in lines] == [
        ("trade", "1", None), ("trade_bar", "trade_bar_1ticks", 1),
        ("trade", "2", None), ("trade_bar", "trade_bar_1ticks", 2), ("trade_bar", "trade_bar_2ticks", 2),
        ("trade", "3", None), ("trade_bar", "trade_bar_1ticks", 3),
        ("trade", "4", None), ("trade_bar", "trade_bar_1ticks", 4), ("trade_bar", "trade_bar_2ticks", 4)]


def test_bybit_keeps_its_resync_snapshot_after_the_deltas_it_was_awaited_through(tmp_path: Path) -> None:
    """Bybit's mapper maps every orderbook.50 frame as it is: the resubscribe's snapshot stays, and the
    deltas between the gap and it (ticktape's connector skips them) come first."""
    ex = "bybit"

    def frame(kind: str, u: int, bids: list[list[str]], ms: int) -> bytes:
        return json.dumps({"topic": f"orderbook.50.{SYM}", "type": kind, "ts": ms,
                           "data": {"s": SYM, "b": bids, "a": [], "u": u, "seq": u}}).encode()

    book = [(1, True, 100.0, 1.0), (2, False, 100.0, 2.0), (5, True, 100.0, 5.0), (6, False, 99.0, 1.0)]
    local = np.array([T0 + r[0] * MS for r in book], np.int64)
    side = pa.DictionaryArray.from_arrays(pa.array([0] * len(book), pa.int8()), pa.array(S.BOOK_SIDES))
    cols = [pa.array([r[1] for r in book]), side, pa.array([r[2] for r in book]), pa.array([r[3] for r in book])]
    write_file(str(tmp_path), FileKey(ex, "book_change", SYM, hour_of_ns(T0)), S.table_from_ns("book_change", local, local, cols))
    raw = [(1, frame("snapshot", 10, [["100", "1"]], 1)), (2, frame("delta", 11, [["100", "2"]], 2)),
           (3, frame("delta", 13, [["100", "3"]], 3)), (4, frame("delta", 14, [["101", "1"]], 4)),
           (5, frame("snapshot", 14, [["100", "5"]], 5)), (6, frame("delta", 15, [["99", "1"]], 6))]
    rl = np.array([T0 + r[0] * MS for r in raw], np.int64)
    cols = [pa.array(["orderbook.50"] * len(raw)), pa.array(np.zeros(len(raw), np.uint32)), pa.array([r[1] for r in raw])]
    write_file(str(tmp_path), FileKey(ex, "raw", SYM, hour_of_ns(T0)), S.table_from_ns("raw", rl, None, cols))
    ev = np.array([T0 + 3 * MS], np.int64)
    cols = [pa.DictionaryArray.from_arrays(pa.array([S.EVENT_KINDS.index("resync")], pa.int8()), pa.array(S.EVENT_KINDS)),
            pa.array(["orderbook.50"]), pa.array(np.zeros(1, np.uint32)), pa.array(["gap: resubscribing"])]
    write_file(str(tmp_path), FileKey(ex, "events", SYM, hour_of_ns(T0)), S.table_from_ns("events", ev, ev, cols))
    req = NormalizedRequest(ex, [SYM], Range(T0, T0 + 60_000 * MS), book_change=True, batch_rows=2)
    got = [(int((t - T0) // MS), bool(s), float(p), float(q)) for b in
           book_gaps.as_tardis(str(tmp_path), req, SYM, change_rows(str(tmp_path), req, SYM), np.zeros(0, np.int64))
           for t, s, p, q in zip(b.local, b.is_snap, b.price, b.amount, strict=True)]
    assert got == [book[0], book[1], (3, False, 100.0, 3.0), (4, False, 101.0, 1.0), book[2], book[3]]


def test_bitmex_levels_are_priced_as_tardis_dev_prices_them() -> None:
    """An item's own price, else its id's from an insert earlier in the stretch; an unpriced level of an id
    not seen is left out, a delete's amount is 0 (tardis-dev's ``_idToPriceLevelMap``, ``item.size || 0``)."""
    def frame(action: str, items: list[dict[str, object]]) -> bytes:
        return json.dumps({"table": "orderBookL2", "action": action, "data": [
            {"symbol": "XBTUSD", "timestamp": "2026-11-30T07:40:00.005Z", **i} for i in items]}).encode()

    decode = book_gaps.VENUES["bitmex"][1]
    got = decode([frame("insert", [{"id": 1, "side": "Buy", "size": 5, "price": 100.5}]),
                  frame("update", [{"id": 1, "side": "Buy", "size": 7}, {"id": 2, "side": "Sell", "size": 1}]),
                  frame("delete", [{"id": 1, "side": "Buy"}, {"id": 3, "side": "Sell", "price": 101.0}]),
                  frame("update", [{"id": 1, "side": "Buy", "size": 2}]), b'{"table":"orderBookL2"'])
    ts = T0 + 5 * MS
    assert got == [(ts, False, [(100.5, 5.0)], []), (ts, False, [(100.5, 7.0)], []),
                   (ts, False, [(100.5, 0.0)], [(101.0, 0.0)]), (ts, False, [], []), None]
