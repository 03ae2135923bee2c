"""The compiled gather (merge reordering, book_change and trade lines from their pieces) equals pyarrow's
concat + take + regroup byte for byte: on sliced parts, empty values, empty groups; it refuses pieces
outside their parts before copying anything and hands over to pyarrow past the size limit. book_change
and trade lines built through it read as the JSON they stand for (padding, escapes, big numbers)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pytest

from ticktape.ipc import fastpack
from ticktape.replay import fmt, levels, trade

compiled = pytest.mark.skipif(fastpack.gather_values is None, reason="the C packer was not built here")


def _parts() -> list[pa.Array]:
    a = pa.array([b"zero", b"", b"two", b"three", b"x" * 300], pa.binary()).slice(1, 4)  # non-zero offset
    return [a, pa.array([b"A", b"BB"], pa.binary()), pa.array([], pa.binary())]


def _both(*args: object, monkeypatch: pytest.MonkeyPatch) -> tuple[pa.Array, pa.Array]:
    fast = fmt.gather(*args)  # type: ignore[arg-type]
    with monkeypatch.context() as m:
        m.setattr(fastpack, "gather_values", None)
        slow = fmt.gather(*args)  # type: ignore[arg-type]
    return fast, slow


@compiled
@pytest.mark.parametrize("bounds", [None, [0, 3, 3, 7], [0, 7], [0, 0, 7, 7]])
def test_gather_equals_concat_take_regroup(bounds: list[int] | None, monkeypatch: pytest.MonkeyPatch) -> None:
    part = np.array([0, 1, 0, 0, 1, 0, 0], np.int32)
    row = np.array([3, 1, 0, 1, 0, 2, 0], np.int64)
    b = None if bounds is None else np.array(bounds, np.int64)
    fast, slow = _both(_parts(), part, row, b, monkeypatch=monkeypatch)
    fast.validate(full=True)
    assert fast.to_pylist() == slow.to_pylist()
    flat = [b"x" * 300, b"BB", b"", b"two", b"A", b"three", b""]
    if bounds is None:
        assert fast.to_pylist() == flat
    else:
        assert fast.to_pylist() == [b"".join(flat[i:j]) for i, j in itertools.pairwise(bounds)]


@compiled
def test_gather_refuses_a_piece_outside_its_part_and_falls_back_past_the_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="outside its part"):
        fmt.gather(_parts(), np.array([0, 1], np.int32), np.array([0, 2], np.int64))
    with pytest.raises(ValueError, match="outside its part"):
        fmt.gather(_parts(), np.array([3], np.int32), np.array([0], np.int64))
    with pytest.raises(ValueError, match="bounds"):
        fmt.gather(_parts(), np.array([0], np.int32), np.array([0], np.int64), np.array([0, 2], np.int64))
    calls = []
    real = fastpack.gather_values
    monkeypatch.setattr(fastpack, "gather_values", lambda *a: calls.append(real(*a)) or calls[-1])
    monkeypatch.setattr(fmt, "JOIN_MAX_BYTES", 2)
    out = fmt.gather(_parts(), np.array([0, 1], np.int32), np.array([1, 1], np.int64), np.array([0, 2], np.int64))
    assert out.to_pylist() == [b"twoBB"] and calls == [None]


def _book_lines() -> pa.Array:
    heads = pa.array([b'{"m":0,"bids":[', b'{"m":1,"bids":[', b'{"m":2,"bids":['], pa.binary())
    trailers = pa.array([b"]}", b"]}", b"]}"], pa.binary())
    # message 1 has no levels; message 2's rows come asks first (sorted by side inside assemble)
    msg = np.array([0, 0, 0, 2, 2, 2], np.int64)
    is_ask = np.array([False, False, True, True, False, True])
    price = np.array([100.5, np.nan, 101.0, 2e11, -0.0, 2e11])
    amount = np.array([1.0, 2.0, 0.0, 3.5, np.inf, 3.5])
    return levels.assemble(heads, trailers, msg, is_ask, price, amount)


@compiled
def test_book_change_lines_from_pieces_equal_the_pyarrow_path(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _book_lines()
    with monkeypatch.context() as m:
        m.setattr(fastpack, "gather_values", None)
        slow = _book_lines()
    assert fast.to_pylist() == slow.to_pylist()


def test_book_change_lines_read_as_their_levels() -> None:
    lines = [json.loads(x) for x in _book_lines().to_pylist()]
    assert lines[0] == {"m": 0, "bids": [{"price": 100.5, "amount": 1.0}, {}], "asks": [{"price": 101, "amount": 0}]}
    assert lines[1] == {"m": 1, "bids": [], "asks": []}
    assert lines[2] == {"m": 2, "bids": [{"price": 0, "amount": None}],
                        "asks": [{"price": 200000000000, "amount": 3.5}, {"price": 200000000000, "amount": 3.5}]}
    assert b'"price":200000000000,' in _book_lines()[2].as_py() and b'"price":-0,' in _book_lines()[2].as_py()


def _trades(ids: list[str]) -> pa.RecordBatch:
    n = len(ids)
    return pa.RecordBatch.from_arrays(
        [pa.array(np.arange(n, dtype=np.int64) * 1000 + 1_700_000_000_000_000_000).view(pa.timestamp("ns")),
         pa.array(np.zeros(n, np.int64)).view(pa.timestamp("ns")),
         pa.array(ids, pa.string()), pa.array([1.5, 2e11, 1.5][:n]), pa.array([0.1, 0.1, 3.0][:n]),
         pa.array(["buy", "sell", "unknown"][:n])],
        names=["local_ts", "exchange_ts", "id", "price", "amount", "side"])


@pytest.mark.parametrize("ids", [["1", "2", "3"], ['a"b', "c\\d", "e\nf"]])
def test_trade_lines_from_pieces_equal_the_pyarrow_path(ids: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fast = trade.trade_lines(_trades(ids), "BTCUSDT", "binance-futures").lines
    with monkeypatch.context() as m:
        m.setattr(fastpack, "gather_values", None)
        slow = trade.trade_lines(_trades(ids), "BTCUSDT", "binance-futures").lines
    assert fast.to_pylist() == slow.to_pylist()
    msgs = [json.loads(x) for x in fast.to_pylist()]
    assert [m["id"] for m in msgs] == ids
    assert [m["price"] for m in msgs] == [1.5, 2e11, 1.5] and [m["side"] for m in msgs] == ["buy", "sell", "unknown"]
    assert msgs[0]["timestamp"] == "2023-11-14T22:13:20.000Z" and msgs[1]["localTimestamp"] == "2023-11-14T22:13:20.000001Z"


# --- raw replay's lines: head + frame + end in merge order (a marker for an empty frame) ----------
framed = pytest.mark.skipif(fastpack.gather_framed is None, reason="the C packer was not built here")


def _framed_parts() -> tuple[list[pa.Array], list[pa.Array]]:
    bodies = [pa.array([b"skip", b'{"a":1}', b"", b"y" * 300], pa.binary()).slice(1, 3),  # non-zero offset
              pa.array([b'{"b":2}', b""], pa.binary())]
    heads = [pa.array([b"H0-", b"H1-", b"H2-", b"H3-"], pa.binary()).slice(1, 3), pa.array([b"h0:", b"h1:"], pa.binary())]
    return bodies, heads


@framed
def test_gather_framed_equals_join_then_gather_with_markers_and_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    bodies, heads = _framed_parts()
    part = np.array([1, 0, 0, 1, 0], np.int32)
    row = np.array([0, 0, 1, 1, 2], np.int64)
    fast = fmt.gather_framed(bodies, heads, part, row, b"}\n", b"\n")
    with monkeypatch.context() as m:
        m.setattr(fastpack, "gather_framed", None)
        slow = fmt.gather_framed(bodies, heads, part, row, b"}\n", b"\n")
    fast.validate(full=True)
    assert fast.equals(slow)
    assert fast.to_pylist() == [b'h0:{"b":2}}\n', b'H1-{"a":1}}\n', b"\n", b"\n", b"H3-" + b"y" * 300 + b"}\n"]


@framed
def test_gather_framed_refuses_bad_input_before_copying_and_falls_back_past_the_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    bodies, heads = _framed_parts()
    with pytest.raises(ValueError, match="outside its part"):
        fmt.gather_framed(bodies, heads, np.array([1], np.int32), np.array([2], np.int64), b"}\n", b"\n")
    with pytest.raises(ValueError, match="differ in length"):
        fastpack.gather_framed(fmt._specs(bodies), fmt._specs([heads[1], heads[1]]), np.zeros(1, np.int32),
                               np.zeros(1, np.int64), b"}\n", b"\n", fmt.JOIN_MAX_BYTES)
    assert fastpack.gather_framed(fmt._specs(bodies), fmt._specs(heads), np.zeros(1, np.int32),
                                  np.zeros(1, np.int64), b"}\n", b"\n", 5) is None  # past the limit: the caller's pyarrow
