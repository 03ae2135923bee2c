"""hyperliquid decoding on the recorded exemplars; trade dedup by tid."""

from __future__ import annotations

import json
import math
import re

from recorded_frames import SAMPLES

from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL

TARDIS = SAMPLES / "hyperliquid/tardis_node_mappers_test_hyperliquid.jsonl"


def test_exemplars(rig):
    r = rig("hyperliquid", symbols=["BTC", "FXS", "BANANA", "SHIA"], channels=["trades", "book_snapshot"], depth=20)
    lines = TARDIS.read_bytes().splitlines()
    for i, line in enumerate(lines):
        r.frame(line, 100 + i)
    assert r.feed.stat("malformed") == 0
    trades = r.records("trades")
    expected = []
    for line in lines:
        m = json.loads(line)
        if m["channel"] == "trades":
            for t in m["data"]:
                expected.append((t["coin"], str(t["tid"]), float(t["px"]), float(t["sz"]), SIDE_BUY if t["side"] == "B" else SIDE_SELL, t["time"] * 10**6))
    got = [(r.spec.symbols[t["symbol"]], t["id"].decode(), t["price"], t["amount"], t["side"], t["exchange_ts"]) for t in trades]
    assert got == expected and len(got) >= 5
    snaps = r.records("book_snapshot_20")
    assert len(snaps) == 2
    banana = snaps[snaps["symbol"] == r.spec.symbol_id("BANANA")][0]
    assert list(banana["bid_price"][:2]) == [59.8, 59.778] and list(banana["ask_amount"][:2]) == [2.9, 17.6]
    assert math.isnan(banana["bid_price"][2])
    shia = snaps[snaps["symbol"] == r.spec.symbol_id("SHIA")][0]
    assert all(math.isnan(x) for x in shia["bid_price"])
    raw = r.raw()
    assert [x[4] for x in raw] == lines
    assert {x[1] for x in raw} == {"trades", "l2Book", ""}


def test_trades_deduplicated_by_tid_across_reconnect(rig):
    r = rig("hyperliquid", symbols=["BTC"], channels=["trades"])
    def frame(tids):
        data = [{"coin": "BTC", "side": "A", "px": "100.5", "sz": "1", "time": 1730000000000 + t, "hash": "0x", "tid": t} for t in tids]
        return json.dumps({"channel": "trades", "data": data}).encode()
    r.frame(frame([1, 2, 3]), 1)
    r.frame(frame([4]), 2)
    r.frame(frame([2, 3, 4, 5]), 3)  # recent-trades snapshot after a resubscribe
    ids = [t["id"].decode() for t in r.records("trades")]
    assert ids == ["1", "2", "3", "4", "5"]
    assert r.feed.stat("duplicates", r.spec.symbol_id("BTC")) == 3
    assert [k for k, _, _ in r.events()] == ["duplicate"]
    assert len(r.raw()) == 3


def test_malformed_frames_are_counted_and_kept(rig):
    r = rig("hyperliquid", symbols=["BTC"], channels=["trades", "book_snapshot"])
    bad = [b'{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[[{"px":"abc"}]]}}', b"not json", b'{"channel":"trades","data":[{"coin":"BTC"}]}']
    for i, f in enumerate(bad):
        r.frame(f, i + 1)
    assert r.feed.stat("malformed") == 3
    assert [k for k, _, _ in r.events()] == ["malformed"] * 3
    assert [x[4] for x in r.raw()] == bad


def test_book_change_is_one_snapshot_group_per_l2book(rig):
    r = rig("hyperliquid", symbols=["BANANA"], channels=["book_change"], depth=20)
    line = next(x for x in TARDIS.read_bytes().splitlines() if b'"BANANA"' in x)
    later = re.sub(rb'"time":(\d+)', lambda m: b'"time":%d' % (int(m[1]) + 500), line, count=1)
    r.frame(line, 7)
    r.frame(later, 8)
    r.frame(later, 9)  # the same l2Book again: a duplicate, not a third group
    rows = r.records("book_change")
    assert len(rows) == 8 and rows["is_snapshot"].all()
    assert [float(x) for x in rows["price"][:4]] == [59.8, 59.778, 59.811, 59.832]
    assert [int(x) for x in rows["local_ts"]] == [7] * 4 + [8] * 4
    assert r.feed.stat("duplicates", r.spec.symbol_id("BANANA")) == 1


def test_a_restarted_process_still_drops_resent_trades(rig):
    """After a crash the new ingest process attaches the same rings: the tids already
    written are recovered from the trades ring, so the re-sent recent trades are not doubled."""
    from ticktape.exchanges.hyperliquid import Hyperliquid
    from ticktape.ipc.outbox import Outbox

    r = rig("hyperliquid", symbols=["BTC", "ETH"], channels=["trades"])

    def frame(coin, tids):
        data = [{"coin": coin, "side": "B", "px": "1.5", "sz": "1", "time": 1 + t, "hash": "0x", "tid": t} for t in tids]
        return json.dumps({"channel": "trades", "data": data}).encode()

    r.frame(frame("BTC", [10, 11, 12]), 1)
    r.frame(frame("ETH", [20, 21]), 2)
    r.records("trades")  # the writer consumed them; the slots still hold the records
    restarted = Hyperliquid(r.spec, r.feed.cfg, Outbox(r.spec, r.rings), None, {})
    restarted.frame(r.listener, 3, memoryview(frame("BTC", [11, 12, 13])))
    restarted.frame(r.listener, 4, memoryview(frame("ETH", [21, 22])))
    ids = [t["id"].decode() for t in r.records("trades")]
    assert ids == ["10", "11", "12", "20", "21", "13", "22"]
