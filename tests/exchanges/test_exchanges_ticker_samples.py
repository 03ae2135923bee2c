"""book_ticker, derivative_ticker and liquidations from real recorded frames (Binance
USD-M bookTicker, Bybit v5 orderbook.1) and the Tardis exemplars (markPrice,
openInterest, forceOrder, Bybit tickers/allLiquidation, Hyperliquid bbo/activeAssetCtx):
every field against an independent reading of the JSON, raw kept byte for byte."""

from __future__ import annotations

import json
import math

from recorded_frames import SAMPLES, cryptofeed_frames

from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL

BF_WS = SAMPLES / "binance_futures/cryptofeed_v2_BINANCE_FUTURES.ws.1.0"
BF_TARDIS = SAMPLES / "binance_futures/tardis_node_mappers_test_binance_futures.jsonl"
BY_WS = [SAMPLES / "bybit/cryptofeed_v2_v5_BYBIT.ws.1.0", SAMPLES / "bybit/cryptofeed_v2_v5_BYBIT.ws.2.0"]
BY_TARDIS = SAMPLES / "bybit/tardis_node_mappers_test_bybit_v5.jsonl"
HL_TARDIS = SAMPLES / "hyperliquid/tardis_node_mappers_test_hyperliquid.jsonl"
NAN = math.nan


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def rows_of(r, dt: str, fields: list[str]) -> list[tuple]:
    rec = r.records(dt)
    return [(r.spec.symbols[int(x["symbol"])], int(x["local_ts"]), int(x["exchange_ts"]), *(x[f].item() for f in fields))
            for x in rec]


def eq_rows(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(w) and all(same(a, b) if isinstance(a, float) else a == b for a, b in zip(g, w, strict=True)), (g, w)


BT = ["bid_price", "bid_amount", "ask_price", "ask_amount"]
DT = ["last_price", "mark_price", "index_price", "funding_rate", "funding_timestamp", "predicted_funding_rate",
      "open_interest"]


def test_binance_real_book_ticker_frames(rig) -> None:
    frames = [(ts, f) for ts, f in cryptofeed_frames(BF_WS) if b"@bookTicker" in f]
    assert len(frames) > 500
    syms = sorted({json.loads(f)["data"]["s"] for _, f in frames})
    r = rig("binance-futures", symbols=syms, channels=["book_ticker"])
    for ts, f in frames:
        r.frame(f, ts)
    want = []
    for ts, f in frames:
        d = json.loads(f)["data"]
        want.append((d["s"], ts, d["E"] * 10**6, float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"])))
    eq_rows(rows_of(r, "book_ticker", BT), want)
    assert r.feed.stat("malformed") == 0 and r.feed.stat("duplicates") == 0
    assert [(x[1], x[4]) for x in r.raw()] == [("bookTicker", f) for _, f in frames]


def test_binance_tardis_exemplars_mark_open_interest_force_order(rig) -> None:
    lines = [json.loads(x) for x in BF_TARDIS.read_bytes().splitlines()]
    r = rig("binance-futures", symbols=["BTCUSDT", "BTCBUSD_210129"],
            channels=["book_ticker", "derivative_ticker", "liquidations"])
    sid = r.spec.symbol_id("BTCUSDT")
    want_dt, want_liq, want_bt = [], [], []
    state = {"BTCUSDT": [NAN, NAN, NAN, 0, NAN], "BTCBUSD_210129": [NAN, NAN, NAN, 0, NAN]}
    for i, m in enumerate(lines):
        stream = m.get("stream", "")
        ts = 1_000 + i
        sym = stream.split("@")[0].upper()
        d = m.get("data", {})
        if "@markPrice" in stream:
            r.frame(json.dumps(m).encode(), ts)
            st = state[sym]
            st[0] = float(d["p"])
            st[1] = float(d["i"]) if "i" in d else NAN
            if d["r"] != "" and d["T"] != 0:
                st[2], st[3] = float(d["r"]), d["T"] * 10**6
            want_dt.append((sym, ts, d["E"] * 10**6, NAN, st[0], st[1], st[2], st[3], NAN, st[4]))
        elif stream.endswith("@openInterest"):
            body = json.dumps(d).encode()
            assert r.feed.tickers.on_open_interest(ts, sid, body)
            st = state[sym]
            st[4] = float(d["openInterest"])
            want_dt.append((sym, ts, d.get("time", 0) * 10**6, NAN, st[0], st[1], st[2], st[3], NAN, st[4]))
            raw = r.raw()[-1]
            assert raw[1] == "openInterest" and json.loads(raw[4]) == m  # Tardis's generated frame shape
        elif stream.endswith("@forceOrder"):
            r.frame(json.dumps(m).encode(), ts)
            o = d["o"]
            want_liq.append((sym, ts, o["T"] * 10**6, "", float(o["p"]), float(o["z"]),
                             SIDE_SELL if o["S"] == "SELL" else SIDE_BUY))
        elif stream.endswith("@bookTicker"):
            r.frame(json.dumps(m).encode(), ts)
            want_bt.append((sym, ts, d["E"] * 10**6, float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"])))
    assert len(want_dt) == 4 and len(want_liq) == 1 and len(want_bt) == 1
    eq_rows(rows_of(r, "derivative_ticker", DT), want_dt)
    liq = [(s, lt, et, i.decode(), p, a, sd) for s, lt, et, i, p, a, sd in rows_of(r, "liquidations", ["id", "price", "amount", "side"])]
    eq_rows(liq, want_liq)
    eq_rows(rows_of(r, "book_ticker", BT), want_bt)
    assert r.feed.stat("malformed") == 0


def test_bybit_real_orderbook1_as_book_ticker(rig) -> None:
    for path in BY_WS:
        frames = [(ts, f) for ts, f in cryptofeed_frames(path) if b'"topic":"orderbook.1.' in f]
        syms = sorted({json.loads(f)["data"]["s"] for _, f in frames})
        r = rig("bybit", symbols=syms, channels=["book_ticker"])
        for ts, f in cryptofeed_frames(path):
            r.frame(f, ts)
        want = []
        best: dict[str, list[float]] = {}
        for ts, f in frames:
            m = json.loads(f)
            d = m["data"]
            st = best.setdefault(d["s"], [NAN] * 4)
            if m["type"] == "snapshot":
                st[:] = [NAN] * 4
            for off, side in ((0, "b"), (2, "a")):
                for p, q in d[side]:
                    if float(q) != 0:
                        st[off], st[off + 1] = float(p), float(q)
            want.append((d["s"], ts, m["ts"] * 10**6, *st))
        eq_rows(rows_of(r, "book_ticker", BT), want)
        assert r.feed.stat("gaps") == 0 and r.feed.stat("malformed") == 0
        assert [x[4] for x in r.raw() if x[1] == "orderbook.1"] == [f for _, f in frames]


def test_bybit_tardis_exemplars_tickers_liquidations_orderbook1(rig) -> None:
    lines = BY_TARDIS.read_bytes().splitlines()
    msgs = [json.loads(x) for x in lines]
    r = rig("bybit", symbols=["BTCUSD", "BTCUSDU23", "BTCUSDT", "PIPPINUSDT"],
            channels=["book_ticker", "derivative_ticker", "liquidations"])
    for i, line in enumerate(lines):
        r.frame(line, 1_000 + i)
    full: dict[str, dict] = {}
    want_dt, want_liq, want_bt = [], [], []
    bbo: dict[str, list[float]] = {}
    for i, m in enumerate(msgs):
        topic = m.get("topic", "")
        ts = 1_000 + i
        if topic.startswith("tickers."):
            d = m["data"]
            full[d["symbol"]] = dict(d) if m["type"] == "snapshot" else {**full[d["symbol"]], **d}
            t = full[d["symbol"]]

            def num(k: str, t: dict = t) -> float:
                return float(t[k]) if t.get(k, "") != "" else NAN
            nft = t.get("nextFundingTime", "")
            want_dt.append((d["symbol"], ts, m["ts"] * 10**6, num("lastPrice"), num("markPrice"), num("indexPrice"),
                            num("fundingRate"), int(nft) * 10**6 if nft else 0, NAN, num("openInterest")))
        elif topic.startswith("allLiquidation."):
            for x in m["data"]:
                want_liq.append((x["s"], ts, x["T"] * 10**6, "", float(x["p"]), float(x["v"]),
                                 SIDE_SELL if x["S"] == "Buy" else SIDE_BUY))
        elif topic == "orderbook.1.BTCUSDT":
            d = m["data"]
            st = bbo.setdefault(d["s"], [NAN] * 4)
            if m["type"] == "snapshot":
                st[:] = [NAN] * 4
            elif d["u"] != 7003306:  # the third exemplar is from another day: its u is lower
                continue
            for off, side in ((0, "b"), (2, "a")):
                for p, q in d[side]:
                    if float(q) != 0:
                        st[off], st[off + 1] = float(p), float(q)
            want_bt.append((d["s"], ts, m["ts"] * 10**6, *st))
    assert len(want_dt) == 5 and len(want_liq) == 1 and len(want_bt) == 2
    eq_rows(rows_of(r, "derivative_ticker", DT), want_dt)
    liq = [(s, lt, et, i.decode(), p, a, sd) for s, lt, et, i, p, a, sd in rows_of(r, "liquidations", ["id", "price", "amount", "side"])]
    eq_rows(liq, want_liq)
    eq_rows(rows_of(r, "book_ticker", BT), want_bt)
    # the third orderbook.1 exemplar (another day) has a lower u: a duplicate, counted and marked, not applied
    assert r.feed.stat("duplicates", r.spec.symbol_id("BTCUSDT")) == 1
    assert [e for e in r.events() if e[0] == "duplicate"] == [("duplicate", "BTCUSDT", "1 duplicate orderbook updates dropped (1188472)")]
    assert r.feed.stat("malformed") == 0


def test_hyperliquid_tardis_exemplars_bbo_and_asset_ctx(rig) -> None:
    lines = [x for x in HL_TARDIS.read_bytes().splitlines() if b'"channel":"bbo"' in x or b'"activeAssetCtx"' in x]
    r = rig("hyperliquid", symbols=["BTC", "@162", "MOODENG"], channels=["book_ticker", "derivative_ticker"])
    for i, line in enumerate(lines):
        r.frame(line, 1_000 + i)
    want_bt, want_dt = [], []
    for i, line in enumerate(lines):
        m = json.loads(line)
        d = m["data"]
        if m["channel"] == "bbo":
            lv = d["bbo"] + [None] * (2 - len(d["bbo"]))
            b, a = lv
            want_bt.append((d["coin"], 1_000 + i, d["time"] * 10**6,
                            float(b["px"]) if b else NAN, float(b["sz"]) if b else NAN,
                            float(a["px"]) if a else NAN, float(a["sz"]) if a else NAN))
        else:
            c = d["ctx"]
            want_dt.append((d["coin"], 1_000 + i, 0, NAN, float(c["markPx"]), float(c["oraclePx"]), float(c["funding"]),
                            0, NAN, float(c["openInterest"])))
    assert len(want_bt) == 2 and len(want_dt) == 1
    eq_rows(rows_of(r, "book_ticker", BT), want_bt)
    eq_rows(rows_of(r, "derivative_ticker", DT), want_dt)
    assert [x[4] for x in r.raw()] == lines
    assert r.feed.stat("malformed") == 0


def test_bybit_orderbook1_shared_by_book_change_and_book_ticker(rig) -> None:
    """book_change at depth 1 and book_ticker read the same topic: one subscription, both tables."""
    frames = [(ts, f) for ts, f in cryptofeed_frames(BY_WS[0]) if b'"topic":"orderbook.1.' in f]
    syms = sorted({json.loads(f)["data"]["s"] for _, f in frames})
    r = rig("bybit", symbols=syms, channels=["book_change", "book_ticker"], depth=1)
    topics = [t[0] for t in r.feed.topics]
    assert len(topics) == len(set(topics)) == len(syms)  # orderbook.1.<s> subscribed once per symbol
    for ts, f in frames:
        r.frame(f, ts)
    assert len(r.records("book_ticker")) == len(frames)
    rows = r.records("book_change")
    want = sum(len(json.loads(f)["data"]["b"]) + len(json.loads(f)["data"]["a"]) for _, f in frames)
    assert len(rows) == want
    assert [x[4] for x in r.raw()] == [f for _, f in frames]  # each frame kept once
