"""Real OKX traffic (cryptofeed v2, 2022: spot BTC-USDT, swap UNI-USD-SWAP and a future on one
connection) replayed by the simulator over websockets into ``capture run`` (okex and okex-swap):
raw byte for byte on disk, trades one for one, and final books equal to a rebuild in this test
that checks every recorded checksum with its own CRC32 (no connector code). Then the book rules
on hand-made frames of the real shapes."""

from __future__ import annotations

import json
import zlib

import pytest
from feeds_run_helpers import CaptureRun, archived_book
from recorded_frames import SAMPLES, cryptofeed_frames

from ticktape.sim.thread import SimulatorThread

WS = SAMPLES / "okx/cryptofeed_v2_OKX.ws.1.0"
IDS = {"okex": "BTC-USDT", "okex-swap": "UNI-USD-SWAP"}


def recorded(channel: str, inst: str) -> list[bytes]:
    out = []
    for _, f in cryptofeed_frames(WS):
        m = json.loads(f)
        if "data" in m and m.get("arg") == {"channel": channel, "instId": inst}:
            out.append(f)
    return out


def crc(levels: list[str]) -> int:
    c = zlib.crc32(":".join(levels).encode())
    return c - 2**32 if c >= 2**31 else c


def reference_book(frames: list[bytes]) -> tuple[dict[str, dict[float, float]], int]:
    """Book after every frame, each frame's checksum verified against it; (book, checksums checked)."""
    book: dict[str, dict[float, tuple[str, str]]] = {"b": {}, "a": {}}
    checked = 0
    for f in frames:
        m = json.loads(f)
        d = m["data"][0]
        if m["action"] == "snapshot":
            book = {"b": {}, "a": {}}
        for side, key in (("b", "bids"), ("a", "asks")):
            for p, s, *_ in d[key]:
                if float(s) == 0:
                    book[side].pop(float(p), None)
                else:
                    book[side][float(p)] = (p, s)
        bids = [book["b"][p] for p in sorted(book["b"], reverse=True)[:25]]
        asks = [book["a"][p] for p in sorted(book["a"])[:25]]
        parts = []
        for i in range(max(len(bids), len(asks))):
            parts += [f"{p}:{s}" for p, s in (bids[i : i + 1] + asks[i : i + 1])]
        assert crc(parts) == d["checksum"], "the recording's own checksum"
        checked += 1
    return {k: {p: float(s) for p, (_, s) in v.items()} for k, v in book.items()}, checked


@pytest.mark.slow
def test_okx_recording_through_capture_run_raw_trades_and_checksummed_books(tmp_path):
    """The simulator replays the recording to ``capture run`` (okex + okex-swap); the archive on disk
    holds every frame byte for byte, every trade, and the books every recorded checksum vouches for."""
    want_frames = sum(len(recorded(c, sym)) for sym in IDS.values() for c in ("books", "trades", "tickers"))
    with SimulatorThread(list(IDS), replay=WS, replay_speed=0) as sim:
        run = CaptureRun(tmp_path, sim, {ex: {"symbols": [sym], "channels": ["trades", "book_change", "book_ticker"]}
                                         for ex, sym in IDS.items()}, raw=True)
        try:
            run.until(lambda m: sim.call(lambda s: s.replayer.done.is_set()), what="the replay played")
            run.until(lambda m: sum(v for (n, lb), v in m.items() if n == "ticktape_feed_messages_total"
                                    and ("symbol", "_") not in lb) >= want_frames, what=f"{want_frames} frames counted")
            assert run.stop() == 0, run.output()[-3000:]
        finally:
            run.kill()
    for ex, sym in IDS.items():
        books, trades = recorded("books", sym), recorded("trades", sym)
        assert len(books) > 90 and trades
        # raw: every recorded frame of the subscribed channels, byte for byte, under Tardis's names
        raw = run.load(ex, "raw", sym).to_pylist()
        tickers = recorded("tickers", sym)
        for channel, want in (("books", books), ("trades", trades), ("tickers", tickers)):
            assert [r["payload"] for r in raw if str(r["channel"]) == channel and r["payload"]] == want, (ex, channel)
        # trades one for one
        want_t = [t for f in trades for t in json.loads(f)["data"]]
        got_t = run.load(ex, "trades", sym).to_pylist()
        assert [(r["id"], r["price"], r["amount"], str(r["side"])) for r in got_t] == [
            (t["tradeId"], float(t["px"]), float(t["sz"]), t["side"]) for t in want_t], ex
        # book_ticker: one row per tickers frame, its best bid and ask
        bt = run.load(ex, "book_ticker", sym).to_pylist()
        assert [(r["bid_price"], r["bid_amount"], r["ask_price"], r["ask_amount"]) for r in bt] == [
            (float(t["bidPx"]), float(t["bidSz"]), float(t["askPx"]), float(t["askSz"]))
            for f in tickers for t in json.loads(f)["data"]], ex
        # books: every message applied and checksum-verified by the connector (no event), the final book
        # equal to this test's own rebuild, in which every recorded checksum was checked too
        want_book, checked = reference_book(books)
        assert checked == len(books)
        assert archived_book(run, ex, sym) == {"bid": want_book["b"], "ask": want_book["a"]}, ex
        events = run.events(ex, sym)
        kinds = [str(e["kind"]) for e in events]
        assert not {"gap", "checksum", "resync", "malformed", "duplicate", "subscribe_error"} & set(kinds), kinds
        assert not any("checksum 0" in str(e["detail"]) for e in events)  # every update carried one, and it matched


def _book(action, seq, prev, bids=(("100.0", "1"),), asks=(("101.0", "2"),), checksum=None, inst="BTC-USDT"):
    bl = [[p, s, "0", "1"] for p, s in bids]
    al = [[p, s, "0", "1"] for p, s in asks]
    d = {"asks": al, "bids": bl, "ts": str(1_700_000_000_000 + seq), "checksum": 0, "prevSeqId": prev, "seqId": seq}
    return d, {"arg": {"channel": "books", "instId": inst}, "action": action, "data": [d]}


def test_seqid_chain_duplicates_gaps_checksum_zero_and_errors(rig):
    """Unit rules on hand-made frames (real shapes): prevSeqId chain, a repeat is a duplicate, a jump a
    gap + resync, checksum 0 (OKX since 2026-06-23) one info event, an error names its instId."""
    r = rig("okex", symbols=["BTC-USDT", "ETH-USDT"], channels=["book_change"])
    sid = r.spec.symbol_id("BTC-USDT")
    frames = [_book("snapshot", 10, -1, bids=(("99.0", "5"), ("98.5", "1")))[1],
              _book("update", 12, 10)[1],
              _book("update", 12, 10)[1],  # the same again: duplicate
              _book("update", 12, 12, bids=(), asks=())[1],  # no change: seqId repeats, still chained
              _book("update", 20, 15)[1]]  # 15 != 12: gap
    for i, f in enumerate(frames):
        r.frame(json.dumps(f, separators=(",", ":")).encode(), i + 1)
    r.frame(b'{"event":"error","code":"60018","msg":"Wrong URL or channel:books,instId:ETH-USDT doesn\'t exist."}', 6)
    r.frame(b"pong", 7)
    r.frame(b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["x"', 8)
    ev = r.events()
    assert [(k, s) for k, s, _ in ev] == [("info", "BTC-USDT"), ("gap", "BTC-USDT"), ("resync", "BTC-USDT"),
                                          ("subscribe_error", "ETH-USDT"), ("malformed", "BTC-USDT"),
                                          ("duplicate", "BTC-USDT")], ev
    assert "prevSeqId 15 != previous seqId 12" in ev[1][2]
    assert r.feed.stat("gaps", sid) == 1 and r.feed.stat("subscribe_errors", r.spec.symbol_id("ETH-USDT")) == 1
    rows = r.records("book_change")
    assert [(int(x["local_ts"]), int(x["is_snapshot"])) for x in rows] == [(1, 1), (1, 1), (1, 1), (2, 0), (2, 0)]
    raw = r.raw()
    assert len(raw) == 8 and raw[6][1:3] == ("", "_") and raw[6][4] == b"pong"  # every frame kept


def test_checksum_mismatch_is_an_event_and_a_resync(rig):
    r = rig("okex-swap", symbols=["BTC-USDT-SWAP"], channels=["book_change"])
    d, snap = _book("snapshot", 10, -1, inst="BTC-USDT-SWAP")
    d["checksum"] = crc(["100.0:1", "101.0:2"])
    r.frame(json.dumps(snap).encode(), 1)
    d, upd = _book("update", 11, 10, bids=(("100.5", "3"),), asks=(), inst="BTC-USDT-SWAP")
    d["checksum"] = crc(["100.0:1", "101.0:2", "100.5:3"])  # not our book's (100.5 is the best bid)
    r.frame(json.dumps(upd).encode(), 2)
    ev = r.events()
    assert [k for k, _, _ in ev] == ["checksum", "resync"], ev
    rows = r.records("book_change")
    assert len(rows) == 2  # the unverified update wrote no rows; the snapshot stands until the new one
