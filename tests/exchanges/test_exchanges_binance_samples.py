"""binance-futures and binance-delivery (COIN-M) decoding and book sync on real recorded
traffic (cryptofeed v2, 2021): one protocol family, the same checks on both recordings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from recorded_frames import SAMPLES, cryptofeed_frames, cryptofeed_http

from ticktape.ipc.schemas import BOOK_ASK, BOOK_BID, SIDE_BUY, SIDE_SELL

WS = SAMPLES / "binance_futures/cryptofeed_v2_BINANCE_FUTURES.ws.1.0"
HTTP = SAMPLES / "binance_futures/cryptofeed_v2_BINANCE_FUTURES.http.0.0"
SYMBOLS = ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"]


@dataclass(frozen=True)
class Recording:
    exchange: str
    ws: Path
    http: Path
    symbols: list[str]
    frames: int  # received frames in the file
    trades: int  # aggTrade frames of those symbols


RECORDINGS = [
    Recording("binance-futures", WS, HTTP, SYMBOLS, 1535, 91),
    Recording("binance-delivery", SAMPLES / "binance_delivery/cryptofeed_v2_BINANCE_DELIVERY.ws.1.0",
              SAMPLES / "binance_delivery/cryptofeed_v2_BINANCE_DELIVERY.http.0.0",
              ["BCHUSD_PERP", "LINKUSD_PERP", "BCHUSD_210924", "ETCUSD_PERP", "ETHUSD_210924", "XRPUSD_PERP",
               "BTCUSD_211231", "TRXUSD_PERP", "LINKUSD_211231", "EOSUSD_PERP"], 4371, 51),
]
each_recording = pytest.mark.parametrize("rec", RECORDINGS, ids=[r.exchange for r in RECORDINGS])


def depth_snapshots(rec: Recording) -> list[tuple[str, int, bytes]]:
    return [s for s in cryptofeed_http(rec.http) if "/v1/depth?" in s[0]]


def replay(rig, frames, snapshots):
    """Interleave ws frames and REST snapshots by receive time, as they happened."""
    events = [(ts, 0, f) for ts, f in frames] + [(ts, 1, (url, body)) for url, ts, body in snapshots]
    events.sort(key=lambda e: (e[0], e[1]))
    for ts, kind, item in events:
        if kind == 0:
            rig.frame(item, ts)
        else:
            url, body = item
            sym = url.split("symbol=")[1].split("&")[0]
            rig.feed.on_snapshot(rig.spec.symbol_id(sym), ts, body)


def reference_books(frames, snapshots):
    """Independent book build: snapshot, then diffs with u >= lastUpdateId, checking pu."""
    books = {}
    for url, _, body in snapshots:
        sym = url.split("symbol=")[1].split("&")[0]
        snap = json.loads(body)
        book = {"b": {float(p): float(q) for p, q in snap["bids"]}, "a": {float(p): float(q) for p, q in snap["asks"]}}
        last = None
        for _, f in frames:
            msg = json.loads(f)
            d = msg.get("data", {})
            if d.get("e") != "depthUpdate" or d["s"] != sym or d["u"] < snap["lastUpdateId"]:
                continue
            if last is None:
                assert d["U"] <= snap["lastUpdateId"] <= d["u"]
            else:
                assert d["pu"] == last
            last = d["u"]
            for side, key in (("b", "b"), ("a", "a")):
                for p, q in d[key]:
                    if float(q) == 0:
                        book[side].pop(float(p), None)
                    else:
                        book[side][float(p)] = float(q)
        books[sym] = book
    return books


def rebuild(rows, sym_id):
    book = {"b": {}, "a": {}}
    in_snapshot = False
    for r in rows[rows["symbol"] == sym_id]:
        if r["is_snapshot"] and not in_snapshot:
            book = {"b": {}, "a": {}}
        in_snapshot = bool(r["is_snapshot"])
        side = book["b"] if r["side"] == BOOK_BID else book["a"]
        if r["amount"] == 0:
            side.pop(float(r["price"]), None)
        else:
            side[float(r["price"])] = float(r["amount"])
    return book


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure_python"])
@each_recording
def test_every_frame_decodes_and_books_sync(rig, rec, compiled):
    # diffs before their snapshot are buffered as checked level text and parsed when applied
    r = rig(rec.exchange, symbols=rec.symbols, channels=["trades", "book_change"], trade_stream="aggTrade",
            compiled=compiled)
    frames = cryptofeed_frames(rec.ws)
    snapshots = depth_snapshots(rec)
    assert len(frames) == rec.frames and len(snapshots) == len(rec.symbols)
    replay(r, frames, snapshots)

    assert r.feed.stat("malformed") == 0
    for sym in rec.symbols:
        sid = r.spec.symbol_id(sym)
        assert r.feed.sync[sid].state == 1, sym  # synced
        assert r.feed.stat("gaps", sid) == 0
    rows = r.records("book_change")
    ref = reference_books(frames, snapshots)
    for sym in rec.symbols:
        got = rebuild(rows, r.spec.symbol_id(sym))
        assert got == ref[sym], sym
    # snapshot rows come first per symbol and the book's local time never goes back
    for sym in rec.symbols:
        sub = rows[rows["symbol"] == r.spec.symbol_id(sym)]
        assert sub["is_snapshot"][0] == 1
        assert np.all(np.diff(sub["local_ts"]) >= 0)
    # sides and a removed level exist (amount 0)
    assert set(np.unique(rows["side"])) == {BOOK_BID, BOOK_ASK}
    assert (rows["amount"] == 0).any()


@each_recording
def test_trades_match_the_frames(rig, rec):
    r = rig(rec.exchange, symbols=rec.symbols, channels=["trades"], trade_stream="aggTrade")
    frames = cryptofeed_frames(rec.ws)
    for ts, f in frames:
        r.frame(f, ts)
    trades = r.records("trades")
    expected = []
    for ts, f in frames:
        d = json.loads(f)["data"]
        if d.get("e") == "aggTrade":
            expected.append((ts, d["T"] * 10**6, d["s"], str(d["a"]), float(d["p"]), float(d["q"]), SIDE_SELL if d["m"] else SIDE_BUY))
    got = [
        (int(t["local_ts"]), int(t["exchange_ts"]), r.spec.symbols[t["symbol"]], t["id"].decode(), float(t["price"]), float(t["amount"]), int(t["side"]))
        for t in trades
    ]
    assert got == expected and len(got) == rec.trades


@each_recording
def test_raw_keeps_every_frame_and_the_rest_snapshots(rig, rec):
    r = rig(rec.exchange, symbols=rec.symbols, channels=["trades", "book_change"], trade_stream="aggTrade")
    frames = cryptofeed_frames(rec.ws)
    snapshots = depth_snapshots(rec)
    replay(r, frames, snapshots)
    raw = r.raw()
    ws_rows = [x for x in raw if x[1] != "depthSnapshot"]
    assert [(ts, p) for ts, _, _, _, p in ws_rows] == frames  # every frame, byte-exact, in order
    chans = {x[1] for x in ws_rows}
    assert chans == {"aggTrade", "depth", ""}  # kline/bookTicker (not subscribed) under channel ""
    snaps = [x for x in raw if x[1] == "depthSnapshot"]
    assert len(snaps) == len(rec.symbols)
    for (_, ts, body), row in zip(snapshots, snaps, strict=True):
        msg = json.loads(row[4])
        assert row[0] == ts and msg["generated"] is True and msg["stream"].endswith("@depthSnapshot")
        assert json.dumps(msg["data"]) == json.dumps(json.loads(body))


@each_recording
def test_book_tickers_match_the_frames(rig, rec):
    """Every bookTicker frame of a subscribed symbol is one book_ticker row under that symbol
    (COIN-M contract symbols like ``BCHUSD_PERP`` included), nothing under ``_``."""
    r = rig(rec.exchange, symbols=rec.symbols, channels=["book_ticker"])
    frames = cryptofeed_frames(rec.ws)
    for ts, f in frames:
        r.frame(f, ts)
    expected = []
    for ts, f in frames:
        d = json.loads(f).get("data", {})
        if d.get("e") == "bookTicker" and d["s"] in rec.symbols:
            expected.append((ts, d["E"] * 10**6, d["s"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"])))
    got = [(int(t["local_ts"]), int(t["exchange_ts"]), r.spec.symbols[t["symbol"]], float(t["bid_price"]),
            float(t["bid_amount"]), float(t["ask_price"]), float(t["ask_amount"])) for t in r.records("book_ticker")]
    assert got == expected and len(got) > 100
    raw = [x for x in r.raw() if x[1] == "bookTicker"]
    assert len(raw) == len(expected) and all(x[2] != "_" for x in raw)
    assert r.feed.stat("malformed") == 0 and r.feed.stat("duplicates") == 0


def test_gap_then_resync_from_a_new_snapshot_gives_the_right_book(rig):
    """Drop one diff after sync: gap event, resync event, book rows stop until a new
    snapshot bridges the buffer; the rebuilt book then equals the reference again."""
    r = rig("binance-futures", symbols=["SUSHIUSDT"], channels=["book_change"])
    frames = [(ts, f) for ts, f in cryptofeed_frames(WS) if b"sushiusdt@depth" in f]
    snap = next(s for s in cryptofeed_http(HTTP) if "SUSHIUSDT" in s[0])
    L = json.loads(snap[2])["lastUpdateId"]
    diffs = [json.loads(f)["data"] for _, f in frames]
    first = next(i for i, d in enumerate(diffs) if d["u"] >= L)
    drop = first + 5
    k = drop + 4  # the new snapshot is taken at event k's u and arrives after event k + 1
    sid = r.spec.symbol_id("SUSHIUSDT")

    # reference book after event k, built independently from the full stream
    book = {"b": {}, "a": {}}
    s0 = json.loads(snap[2])
    book["b"] = {float(p): float(q) for p, q in s0["bids"]}
    book["a"] = {float(p): float(q) for p, q in s0["asks"]}
    for d in diffs[first : k + 1]:
        for side in ("b", "a"):
            for p, q in d[side]:
                (book[side].pop(float(p), None) if float(q) == 0 else book[side].__setitem__(float(p), float(q)))
    body = json.dumps({"lastUpdateId": diffs[k]["u"], "E": 1, "T": 1,
                       "bids": [[str(p), str(q)] for p, q in book["b"].items()],
                       "asks": [[str(p), str(q)] for p, q in book["a"].items()]}).encode()

    delivered = False
    for i, (ts, f) in enumerate(frames):
        if i == first:
            r.feed.on_snapshot(sid, ts - 1, snap[2])
        if i == drop:
            continue
        r.frame(f, ts)
        if i == k + 1 and not delivered:
            assert r.feed.sync[sid].state == 0 and r.feed.sync[sid].fetching  # resyncing, snapshot requested
            r.feed.on_snapshot(sid, ts + 1, body)
            delivered = True
    kinds = [k_ for k_, _, _ in r.events()]
    assert kinds == ["gap", "resync", "resync"]  # detected, resync started, synced again
    assert r.feed.stat("gaps", sid) == 1 and r.feed.stat("resyncs", sid) == 1
    assert r.feed.sync[sid].state == 1
    rows = r.records("book_change")
    assert rebuild(rows, sid) == reference_books(frames, [snap])["SUSHIUSDT"]
    # two snapshot groups: the initial one and the resync
    starts = np.flatnonzero(np.diff(np.r_[0, rows["is_snapshot"]]) == 1)
    assert len(starts) == 2


def test_malformed_diff_is_kept_raw_and_resyncs(rig):
    r = rig("binance-futures", symbols=["SUSHIUSDT"], channels=["book_change"])
    frames = [(ts, f) for ts, f in cryptofeed_frames(WS) if b"sushiusdt@depth" in f]
    snap = next(s for s in cryptofeed_http(HTTP) if "SUSHIUSDT" in s[0])
    replay(r, frames[:10], [snap])
    sid = r.spec.symbol_id("SUSHIUSDT")
    assert r.feed.sync[sid].state == 1
    bad = b'{"stream":"sushiusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"U":"x"}}'
    r.frame(bad, frames[10][0])
    assert r.feed.stat("malformed", sid) == 1 and r.feed.sync[sid].state == 0
    assert [k for k, _, _ in r.events()] == ["malformed", "resync"]
    assert r.raw()[-1][4] == bad


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure_python"])
def test_malformed_level_array_is_kept_raw_and_resyncs(rig, compiled):
    """A diff whose ids chain but whose level array is not levels: none of its levels reach
    book_change; it is counted malformed, kept raw, and the book resyncs, with the C level
    parser and with msgspec's (pure Python)."""
    r = rig("binance-futures", symbols=["SUSHIUSDT"], channels=["book_change"], compiled=compiled)
    frames = [(ts, f) for ts, f in cryptofeed_frames(WS) if b"sushiusdt@depth" in f]
    snap = next(s for s in cryptofeed_http(HTTP) if "SUSHIUSDT" in s[0])
    replay(r, frames[:10], [snap])
    sid = r.spec.symbol_id("SUSHIUSDT")
    assert r.feed.sync[sid].state == 1
    rows = len(r.records("book_change"))
    ts, good = frames[10]
    bad = good.replace(b'"a":[', b'"a":[["1.5"],', 1)
    assert bad != good
    r.frame(bad, ts)
    assert r.feed.stat("malformed", sid) == 1 and r.feed.sync[sid].state == 0
    assert [k for k, _, _ in r.events()] == ["malformed", "resync"]
    assert r.raw()[-1][4] == bad and len(r.records("book_change")) == rows


def test_malformed_level_array_while_awaiting_the_snapshot_is_not_buffered(rig):
    r = rig("binance-futures", symbols=["SUSHIUSDT"], channels=["book_change"])
    frames = [(ts, f) for ts, f in cryptofeed_frames(WS) if b"sushiusdt@depth" in f]
    sid = r.spec.symbol_id("SUSHIUSDT")
    ts, good = frames[0]
    bad = good.replace(b'"b":[', b'"b":[["x","1"],', 1)
    r.frame(bad, ts)
    assert r.feed.stat("malformed", sid) == 1 and r.feed.sync[sid].buffer == []
    assert r.raw()[-1][4] == bad


def test_a_full_diff_buffer_drops_its_oldest_eighth_at_once():
    from ticktape.exchanges.book import DROP_CHUNK, MAX_BUFFER, DiffSync

    @dataclass
    class D:
        U: int
        u: int
        E: int = 0

    st = DiffSync()
    assert all(st.push(i, D(i, i)) for i in range(MAX_BUFFER))
    assert st.push(MAX_BUFFER, D(MAX_BUFFER, MAX_BUFFER)) is False  # the first overflow: warn once
    assert st.lost == DROP_CHUNK + 1 and len(st.buffer) == MAX_BUFFER - DROP_CHUNK
    assert st.buffer[0][1].U == DROP_CHUNK + 1  # the oldest went, in order
    assert all(st.push(i, D(i, i)) for i in range(MAX_BUFFER + 1, MAX_BUFFER + 2 * DROP_CHUNK + 2))
    assert st.take_lost() == (2 * DROP_CHUNK + 2, 0, 2 * DROP_CHUNK + 1, 0)


def test_ring_full_book_drop_triggers_a_resync(rig):
    """A book record refused by a full ring (Outbox policy) makes the connector resync that book."""
    r = rig("binance-futures", symbols=["SUSHIUSDT"], channels=["book_change"], capacity=256)
    frames = [(ts, f) for ts, f in cryptofeed_frames(WS) if b"sushiusdt@depth" in f]
    snap = next(s for s in cryptofeed_http(HTTP) if "SUSHIUSDT" in s[0])
    sid = r.spec.symbol_id("SUSHIUSDT")
    replay(r, frames[:12], [snap])  # the snapshot alone has more levels than the ring holds
    r.feed.out.flush_pending()
    kinds = [k for k, _, _ in r.events()]
    assert "drop" in kinds and "resync" in kinds
    assert r.feed.sync[sid].state == 0 and r.feed.sync[sid].fetching  # waiting for a new snapshot
    assert r.rings["book_change"].dropped > 0
