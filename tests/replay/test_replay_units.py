"""Pure functions of the replay package: timestamp text, number text, subscribe parsing, merge order."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from replay_helpers import tardis_ts

from ticktape.replay import fmt
from ticktape.replay.merge import Chunk, merge
from ticktape.replay.subscribe import SubscribeError, parse

NS_2000, NS_2100 = 946_684_800_000_000_000, 4_102_444_800_000_000_000


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(NS_2000, NS_2100), min_size=1, max_size=50), st.booleans())
def test_timestamp_text_matches_reference(values: list[int], sort: bool) -> None:
    ts = np.array(sorted(values) if sort else values, np.int64)
    assert [b.decode() for b in fmt.ts_strings(ts).to_pylist()] == [tardis_ts(int(t)) for t in ts]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=30))
def test_numbers_round_trip_through_json(values: list[float]) -> None:
    text = fmt.numbers(np.array(values, np.float64)).to_pylist()
    assert [json.loads(t, parse_int=float) for t in text] == values


def test_numbers_written_as_javascript_writes_them() -> None:
    vals = [6.0, 0.00001, 1e-7, 1e21, 1e16, 123456789012.5, 0.1 + 0.2, 1.5e-6, 4.555693385655574e16]
    want = [b"6", b"0.00001", b"1e-7", b"1e+21", b"10000000000000000", b"123456789012.5", b"0.30000000000000004",
            b"0.0000015", b"45556933856555740"]
    assert fmt.numbers(np.array(vals)).to_pylist() == want


def test_non_finite_numbers_are_null() -> None:
    assert fmt.numbers(np.array([1.5, np.nan, np.inf])).to_pylist() == [b"1.5", b"null", b"null"]


def test_json_strings_escape() -> None:
    vals = ["12345", 'a"b', "back\\slash", "tab\t"]
    out = fmt.json_strings(pa.array(vals)).to_pylist()
    assert [json.loads(o) for o in out] == vals


@pytest.mark.parametrize(("msg", "pairs"), [
    ({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade", "ethusdt@depth@100ms", "solusdt@depth20@100ms"], "id": 1},
     [("aggTrade", "BTCUSDT"), ("depth", "ETHUSDT"), ("depthSnapshot", "ETHUSDT"), ("depth20", "SOLUSDT")]),
    ({"op": "subscribe", "args": ["publicTrade.BTCUSDT", "orderbook.50.ETHUSDT"]},
     [("publicTrade", "BTCUSDT"), ("orderbook.50", "ETHUSDT")]),
    ({"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC"}}, [("l2Book", "BTC")]),
    ({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"},
                                  {"channel": "liquidation-orders", "instType": "SWAP"},
                                  {"channel": "index-tickers", "instId": "BTC-USDT"}]},
     [("books", "BTC-USDT"), ("liquidation-orders", "*"), ("index-tickers", "BTC-USDT-SWAP")]),
    ({"op": "subscribe", "args": ["orderBookL2:XBTUSD", "trade:XBTZ26"]}, [("orderBookL2", "XBTUSD"), ("trade", "XBTZ26")]),
    ({"op": "subscribe", "args": "quote:ETHUSD"}, [("quote", "ETHUSD")]),
])
def test_subscribe_messages(msg: dict[str, object], pairs: list[tuple[str, str]]) -> None:
    assert parse(json.dumps(msg)) == pairs


@pytest.mark.parametrize("bad", ["not json", "[1]", '{"method": "SUBSCRIBE", "params": [3]}', '{"op": "unsubscribe"}',
                                 '{"op": "subscribe", "args": [{"channel": "books"}]}'])
def test_bad_subscribe_messages(bad: str) -> None:
    with pytest.raises(SubscribeError):
        parse(bad)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), max_size=40), min_size=1, max_size=5), st.integers(1, 7))
def test_merge_orders_everything_stably(streams: list[list[int]], chunk: int) -> None:
    def source(i: int, ts: list[int]):  # type: ignore[no-untyped-def]
        ts = sorted(ts)
        for k in range(0, len(ts), chunk):
            part = np.array(ts[k : k + chunk], np.int64)
            yield Chunk(part, pa.array([f"{i}:{t}:{k + j}".encode() for j, t in enumerate(part)], pa.binary()))

    got = [c for c in merge([source(i, s) for i, s in enumerate(streams)], ahead=False)]
    lines = [x.decode() for c in got for x in c.lines.to_pylist()]
    keys = [(int(x.split(":")[1]), int(x.split(":")[0])) for x in lines]
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)
    assert sorted(lines) == sorted(f"{i}:{t}:{j}" for i, s in enumerate(streams) for j, t in enumerate(sorted(s)))
    # within one source the order is kept
    for i in range(len(streams)):
        mine = [int(x.split(":")[2]) for x in lines if x.startswith(f"{i}:")]
        assert mine == sorted(mine)


def test_trade_bar_keeps_the_closing_trade_arrival_to_the_microsecond() -> None:
    """A bar's localTimestamp is its closing trade's arrival as the trade line writes it: ns since 1970 do not
    fit a float64 exactly (256 ns steps), which once turned ...489033063 into ...489032 µs."""
    from ticktape.replay.bars import BarBuilder
    from ticktape.replay.options import Bar
    from ticktape.replay.sources import internal_batch

    local = np.array([1_796_024_863_489_033_063, 1_796_024_863_489_033_999], np.int64)
    disk = pa.RecordBatch.from_pydict({
        "local_ts_ns": pa.array(local, pa.int64()),
        "exchange_ts": pa.array((local // 1000).tolist(), pa.timestamp("us", "UTC")),
        "side": pa.array(["buy", "sell"]).dictionary_encode(),
        "price": pa.array([1.0, 2.0]), "amount": pa.array([0.5, 0.5])})
    chunk = BarBuilder(Bar("trade_bar_1ticks", "tick", 1), "BTC", "x").feed(internal_batch(disk))
    assert chunk is not None
    stamps = [json.loads(line)["localTimestamp"] for line in chunk.lines.to_pylist()]
    assert stamps == [tardis_ts(int(t))[:26] + "Z" for t in local] == ["2026-11-30T07:47:43.489033Z"] * 2
    assert chunk.ts.tolist() == local.tolist()
