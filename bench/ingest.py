"""Ingest CPU cost per frame, decode to ring (no socket): the exact path the picows listener calls.

Pre-built frames go through ``Feed.frame(listener, ts, memoryview)`` into real
shared-memory rings (raw capture on, as by default); next to each figure is
the msgspec decode alone (envelope + typed decoder) of the same frames.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ticktape.engine.config import ExchangeConfig
from ticktape.exchanges import registry
from ticktape.exchanges.binance_futures import AggTrade, BinanceFutures, Depth
from ticktape.exchanges.binance_futures import Envelope as BEnv
from ticktape.exchanges.binance_spot import FEED as BinanceSpot
from ticktape.exchanges.binance_tickers import BookTicker
from ticktape.exchanges.bitmex import Bitmex
from ticktape.exchanges.bitmex import Envelope as XEnv
from ticktape.exchanges.bitmex import Level as XLevel
from ticktape.exchanges.bitmex import Trade as XTrade
from ticktape.exchanges.book import SyncState
from ticktape.exchanges.bybit import Book, Bybit
from ticktape.exchanges.bybit import Envelope as YEnv
from ticktape.exchanges.connection import Link, Listener
from ticktape.exchanges.deribit import Book as DBook
from ticktape.exchanges.deribit import Deribit
from ticktape.exchanges.deribit import Params as DParams
from ticktape.exchanges.deribit import Trade as DTrade
from ticktape.exchanges.feed import Feed
from ticktape.exchanges.hyperliquid import Envelope as HEnv
from ticktape.exchanges.hyperliquid import Hyperliquid, L2Book
from ticktape.exchanges.hyperliquid_tickers import Bbo
from ticktape.exchanges.okx import BookData as OBook
from ticktape.exchanges.okx import Envelope as OEnv
from ticktape.exchanges.okx import Okx
from ticktape.exchanges.okx import Trade as OTrade
from ticktape.exchanges.okx_book import Levels as OLevels
from ticktape.ipc import ringset
from ticktape.ipc.outbox import Outbox

T0 = 1_700_000_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=20_000, help="frames per run and kind")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median reported)")
    parser.add_argument("--no-raw", action="store_true", help="raw capture off")
    parser.add_argument("--wall", action="store_true",
                        help="wall-clock time instead of this thread's CPU time (counts other processes' slices too)")


def _levels(n: int, base: float, step: float, i: int) -> list[list[str]]:
    return [[f"{base + step * k:.1f}", f"{0.001 * ((i + k) % 997 + 1):.3f}"] for k in range(n)]


def frames_binance_agg(n: int) -> list[bytes]:
    return [
        json.dumps(
            {"stream": "btcusdt@aggTrade", "data": {"e": "aggTrade", "E": T0 + i, "a": 10_000_000 + i, "s": "BTCUSDT",
             "p": f"{60000 + (i % 500) * 0.1:.1f}", "q": f"{0.001 * (i % 900 + 1):.3f}", "f": 5 * i, "l": 5 * i + 2,
             "T": T0 + i, "m": bool(i & 1)}},
            separators=(",", ":"),
        ).encode()
        for i in range(n)
    ]


def frames_binance_depth(n: int, levels: int, stream: str, start_u: int, spot: bool = False) -> list[bytes]:
    """USD-M depthUpdate frames; ``spot``: spot's shape (no ``T``, no ``pu``: ``U`` = previous ``u`` + 1)."""
    out = []
    for i in range(n):
        u = start_u + 1 + i * 3
        data: dict[str, Any] = {"e": "depthUpdate", "E": T0 + i, "T": T0 + i, "s": "BTCUSDT", "U": u - 2, "u": u,
                                "pu": u - 3, "b": _levels(levels, 60000.0, -0.1, i), "a": _levels(levels, 60000.1, 0.1, i)}
        if spot:
            del data["T"], data["pu"]
        out.append(json.dumps({"stream": stream, "data": data}, separators=(",", ":")).encode())
    return out


def frames_bybit_delta(n: int, levels: int) -> list[bytes]:
    return [
        json.dumps(
            {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": T0 + i,
             "data": {"s": "BTCUSDT", "b": _levels(levels, 60000.0, -0.1, i), "a": _levels(levels, 60000.1, 0.1, i),
                      "u": 2 + i, "seq": 10 * i}, "cts": T0 + i},
            separators=(",", ":"),
        ).encode()
        for i in range(n)
    ]


def frames_hl_book(n: int) -> list[bytes]:
    def lv(base: float, step: float, i: int) -> list[dict[str, Any]]:
        return [{"px": f"{base + step * k:.1f}", "sz": f"{0.01 * ((i + k) % 97 + 1):.2f}", "n": k % 5 + 1} for k in range(20)]

    return [
        json.dumps({"channel": "l2Book", "data": {"coin": "BTC", "time": T0 + i, "levels": [lv(60000, -1, i), lv(60001, 1, i)]}},
                   separators=(",", ":")).encode()
        for i in range(n)
    ]


def frames_binance_book_ticker(n: int) -> list[bytes]:
    """The real shape (samples/binance_futures bookTicker), prices moving."""
    return [
        b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":%d,"s":"BTCUSDT","b":"%.1f","B":"%.3f",'
        b'"a":"%.1f","A":"%.3f","T":%d,"E":%d}}' % (
            600_000_000 + i, 60000 + (i % 500) * 0.1, 0.001 * (i % 900 + 1), 60000.1 + (i % 500) * 0.1,
            0.001 * (i % 700 + 1), T0 + i, T0 + i + 3)
        for i in range(n)
    ]


def frames_bybit_tickers(n: int) -> list[bytes]:
    """Bybit linear ``tickers`` deltas: 2-4 changed fields each (bid/ask, mark, open interest)."""
    out = []
    for i in range(n):
        d: dict[str, str] = {"symbol": "BTCUSDT", "bid1Price": f"{60000 + i % 50 * 0.1:.1f}", "bid1Size": f"{1 + i % 9}"}
        if i % 3 == 0:
            d["markPrice"] = f"{60000.05 + i % 70 * 0.1:.2f}"
        if i % 5 == 0:
            d["openInterest"] = f"{50000 + i % 400}.123"
        out.append(json.dumps({"topic": "tickers.BTCUSDT", "type": "delta", "data": d, "cs": 10 + i, "ts": T0 + i},
                              separators=(",", ":")).encode())
    return out


def frames_hl_bbo(n: int) -> list[bytes]:
    return [
        b'{"channel":"bbo","data":{"coin":"BTC","time":%d,"bbo":[{"px":"%.1f","sz":"%.5f","n":3},'
        b'{"px":"%.1f","sz":"%.5f","n":2}]}}' % (T0 + i, 97000 + i % 300, 0.1 + i % 17, 97001 + i % 300, 0.2 + i % 13)
        for i in range(n)
    ]


def _deribit(channel: str, data: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}},
                      separators=(",", ":")).encode()


def frames_deribit_book(n: int, levels: int) -> list[bytes]:
    def lv(base: float, step: float, i: int) -> list[list[Any]]:
        return [["change", round(base + step * k, 1), float(1 + (i + k) % 7)] for k in range(levels)]

    return [_deribit("book.BTC-PERPETUAL.100ms", {
        "type": "change", "timestamp": T0 + i, "prev_change_id": 100 + 3 * i, "instrument_name": "BTC-PERPETUAL",
        "change_id": 103 + 3 * i, "bids": lv(60000.0, -0.5, i), "asks": lv(60000.5, 0.5, i)}) for i in range(n)]


def frames_deribit_trades(n: int) -> list[bytes]:
    return [_deribit("trades.BTC-PERPETUAL.100ms", [{
        "trade_seq": i, "trade_id": str(1_000_000 + i), "timestamp": T0 + i, "tick_direction": 0, "price": 60000.5,
        "mark_price": 60000.1, "instrument_name": "BTC-PERPETUAL", "index_price": 60001.2, "direction": "buy",
        "amount": 10.0}]) for i in range(n)]


def _okx_levels(levels: list[tuple[str, str]]) -> bytes:
    return b",".join(b'["%s","%s","0","%d"]' % (p.encode(), s.encode(), 1 + i % 5) for i, (p, s) in enumerate(levels))


def frames_okx_books(n: int, levels: int) -> tuple[bytes, list[bytes]]:
    """A 400-level snapshot (seqId 1000) and ``n`` updates of ``levels`` bids and asks near the touch,
    each with OKX's checksum of the book after it and ``prevSeqId`` chained: the connector verifies all."""
    bids = [(f"{60000 - 0.1 * (k + 1):.1f}", f"{1 + k % 7}.{k % 10}") for k in range(400)]
    asks = [(f"{60000 + 0.1 * k:.1f}", f"{2 + k % 5}.{k % 10}") for k in range(400)]
    book = OLevels()
    book.apply(bids, asks)
    head = b'{"arg":{"channel":"books","instId":"BTC-USDT-SWAP"},'
    snap = head + b'"action":"snapshot","data":[{"asks":[%s],"bids":[%s],"ts":"1700000000000","checksum":%d,' \
        b'"prevSeqId":-1,"seqId":1000}]}' % (_okx_levels(asks), _okx_levels(bids), book.checksum())
    out = []
    for i in range(n):
        ub = [(bids[(i + k) % 20][0], f"{1 + (i + k) % 9}.{k}") for k in range(levels)]
        ua = [(asks[(i + k) % 20][0], f"{1 + (i + k) % 8}.{k}") for k in range(levels)]
        book.apply(ub, ua)
        out.append(head + b'"action":"update","data":[{"asks":[%s],"bids":[%s],"ts":"%d","checksum":%d,'
                   b'"prevSeqId":%d,"seqId":%d}]}' % (_okx_levels(ua), _okx_levels(ub), 1700000000001 + i,
                                                     book.checksum(), 1000 + i, 1001 + i))
    return snap, out


def frames_okx_trades(n: int) -> list[bytes]:
    return [(b'{"arg":{"channel":"trades","instId":"BTC-USDT-SWAP"},"data":[{"instId":"BTC-USDT-SWAP","tradeId":"%d",'
             b'"px":"60000.1","sz":"12","side":"buy","ts":"1700000000000"}]}') % (100000 + i) for i in range(n)]


def _bitmex_level(k: int, i: int) -> dict[str, Any]:
    return {"symbol": "XBTUSD", "id": 8_799_400_000 + k, "side": "Sell" if k % 2 else "Buy",
            "size": 100 * ((i + k) % 997 + 1), "price": 60000 + 0.5 * k, "timestamp": "2023-11-14T22:13:20.123Z"}


def frames_bitmex_book(n: int, levels: int) -> list[bytes]:
    """``orderBookL2`` updates of ``levels`` known ids (price and timestamp on every item, as BitMEX sends)."""
    return [json.dumps({"table": "orderBookL2", "action": "update", "data": [_bitmex_level(k, i) for k in range(levels)]},
                       separators=(",", ":")).encode() for i in range(n)]


def bitmex_partial(levels: int) -> bytes:
    return json.dumps({"table": "orderBookL2", "action": "partial", "keys": ["symbol", "id", "side"],
                       "filter": {"symbol": "XBTUSD"}, "data": [_bitmex_level(k, 0) for k in range(levels)]},
                      separators=(",", ":")).encode()


def frames_bitmex_trades(n: int) -> list[bytes]:
    return [json.dumps({"table": "trade", "action": "insert", "data": [{
        "timestamp": "2023-11-14T22:13:20.123Z", "symbol": "XBTUSD", "side": "Buy" if i & 1 else "Sell",
        "size": 100 * (i % 90 + 1), "price": 60000 + (i % 500) * 0.5, "tickDirection": "ZeroPlusTick",
        "trdMatchID": f"00000000-0000-4000-8000-{i:012d}", "grossValue": 166600, "homeNotional": 0.001666,
        "foreignNotional": 100}]}, separators=(",", ":")).encode() for i in range(n)]


class _DEnv(msgspec.Struct):
    """A deribit notification with its body left raw (``data`` as the other envelopes have it)."""

    params: DParams

    @property
    def data(self) -> msgspec.Raw:
        return self.params.data


def _pow2(n: int) -> int:
    return 1 << max(12, (n - 1).bit_length())


class _Rig:
    """Rings sized to one run, so after the warm-up run every page is mapped (steady state,
    as in a long capture where the rings have wrapped)."""

    def __init__(self, cls: type[Feed], exchange: str, raw: bool, n_frames: int, rows: int = 1, frame_bytes: int = 1600,
                 **cfg: Any) -> None:
        self.cfg = ExchangeConfig(**cfg)
        self.spec = ringset.make_spec(
            exchange, self.cfg.symbols, registry.raw_channels(exchange, self.cfg),
            registry.data_types(exchange, self.cfg, raw), record_capacity=_pow2(n_frames * rows + 16),
            raw_index_capacity=_pow2(n_frames + 16), raw_arena_bytes=_pow2(n_frames * (frame_bytes + 8)),
        )
        self.rings = ringset.create(self.spec)
        self.feed = cls(self.spec, self.cfg, Outbox(self.spec, self.rings), None, {"manual_snapshots": True})
        # the connection the feed itself plans for these streams (its fast-path decoder included)
        self.listener = Listener(Link(self.feed, self.feed.plans()[0], self.feed.timing), 1)

    def drain(self) -> None:
        for ring in self.rings.values():
            if hasattr(ring, "index"):
                ring.commit(ring.index.write_seq)  # type: ignore[union-attr]
            else:
                ring.commit(ring.write_seq)  # type: ignore[union-attr]

    def close(self) -> None:
        ringset.close(self.rings)


#: the clock of every figure: this thread's CPU time (the issue's "CPU cost per message";
#: on a shared machine wall time also counts the slices other processes got), or wall time
_CLOCK: list[Callable[[], int]] = [time.thread_time_ns]


def _time(fn: Callable[[], None], n: int, runs: int, reset: Callable[[], None]) -> float:
    out = []
    clock = _CLOCK[0]
    for _ in range(2):  # warm-up: the rings (sized to about one run) wrap, so every page is mapped
        reset()
        fn()
    for _ in range(runs):
        reset()
        t = clock()
        fn()
        out.append((clock() - t) / n / 1000)
    return statistics.median(out)


def _ingest(rig: _Rig, frames: list[bytes]) -> Callable[[], None]:
    """picows frames (built by picows' own test helper) into the listener's ``on_ws_frame``:
    receive time, payload view, decode, normalize, rings, exactly as on a socket."""
    from picows import WSMsgType
    from picows.picows import _make_test_ws_frame

    ws_frames = [_make_test_ws_frame(WSMsgType.TEXT, f, True, False) for f in frames]
    on_ws_frame = rig.listener.on_ws_frame

    def go() -> None:
        for f in ws_frames:
            on_ws_frame(None, f)  # type: ignore[arg-type]  # the transport is not used

    return go


def _decode(env_t: type, data_t: Any, frames: list[bytes]) -> Callable[[], None]:
    env: msgspec.json.Decoder[Any] = msgspec.json.Decoder(env_t)
    dec = msgspec.json.Decoder(data_t, strict=False)

    def go() -> None:
        for f in frames:
            dec.decode(env.decode(f).data)

    return go


def _decode_one(dec: msgspec.json.Decoder[Any], frames: list[bytes]) -> Callable[[], None]:
    def go() -> None:
        for f in frames:
            dec.decode(f)

    return go


def run(args: argparse.Namespace) -> dict[str, Any]:
    n, runs, raw = args.frames, args.runs, not args.no_raw
    _CLOCK[0] = time.perf_counter_ns if getattr(args, "wall", False) else time.thread_time_ns
    fig: dict[str, Any] = {"frames_per_run": n, "runs": runs, "raw_capture": raw,
                           "clock": "wall" if getattr(args, "wall", False) else "thread_cpu"}
    cases: list[tuple[str, Callable[[], _Rig], Callable[[_Rig], list[bytes]], type, Any, int]] = [
        ("binance_aggTrade", lambda: _Rig(BinanceFutures, "binance-futures", raw, n, frame_bytes=180, symbols=["BTCUSDT"], channels=["trades"], trade_stream="aggTrade"),
         lambda r: frames_binance_agg(n), BEnv, AggTrade, 1),
        ("binance_depth20", lambda: _Rig(BinanceFutures, "binance-futures", raw, n, frame_bytes=960, symbols=["BTCUSDT"], channels=["book_snapshot"], depth=20),
         lambda r: frames_binance_depth(n, 20, "btcusdt@depth20@100ms", 0), BEnv, Depth, 1),
        ("binance_depth_diff_10x2", lambda: _Rig(BinanceFutures, "binance-futures", raw, n, rows=20, frame_bytes=560, symbols=["BTCUSDT"], channels=["book_change"]),
         lambda r: frames_binance_depth(n, 10, "btcusdt@depth@100ms", 1000), BEnv, Depth, 20),
        ("binance_spot_depth_diff_10x2", lambda: _Rig(BinanceSpot, "binance", raw, n, rows=20, frame_bytes=540, symbols=["BTCUSDT"], channels=["book_change"]),
         lambda r: frames_binance_depth(n, 10, "btcusdt@depth@100ms", 1000, spot=True), BEnv, Depth, 20),
        ("bybit_ob50_delta_5x2", lambda: _Rig(Bybit, "bybit", raw, n, rows=10, frame_bytes=350, symbols=["BTCUSDT"], channels=["book_change"], depth=50),
         lambda r: frames_bybit_delta(n, 5), YEnv, Book, 10),
        ("hyperliquid_l2Book", lambda: _Rig(Hyperliquid, "hyperliquid", raw, n, frame_bytes=1500, symbols=["BTC"], channels=["book_snapshot"], depth=20),
         lambda r: frames_hl_book(n), HEnv, L2Book, 1),
        ("binance_bookTicker", lambda: _Rig(BinanceFutures, "binance-futures", raw, n, frame_bytes=200, symbols=["BTCUSDT"], channels=["book_ticker"]),
         lambda r: frames_binance_book_ticker(n), BEnv, BookTicker, 1),
        ("bybit_tickers_delta", lambda: _Rig(Bybit, "bybit", raw, n, frame_bytes=250, symbols=["BTCUSDT"], channels=["derivative_ticker"]),
         lambda r: frames_bybit_tickers(n), YEnv, dict[str, Any], 1),
        ("hyperliquid_bbo", lambda: _Rig(Hyperliquid, "hyperliquid", raw, n, frame_bytes=200, symbols=["BTC"], channels=["book_ticker"]),
         lambda r: frames_hl_bbo(n), HEnv, Bbo, 1),
        ("deribit_book_change_5x2", lambda: _Rig(Deribit, "deribit", raw, n, rows=10, frame_bytes=480, symbols=["BTC-PERPETUAL"], channels=["book_change"]),
         lambda r: frames_deribit_book(n, 5), _DEnv, DBook, 10),
        ("deribit_trades", lambda: _Rig(Deribit, "deribit", raw, n, frame_bytes=320, symbols=["BTC-PERPETUAL"], channels=["trades"]),
         lambda r: frames_deribit_trades(n), _DEnv, list[DTrade], 1),
        ("okx_books_update_5x2", lambda: _Rig(Okx, "okex-swap", raw, n, rows=10, frame_bytes=420, symbols=["BTC-USDT-SWAP"], channels=["book_change"]),
         lambda r: frames_okx_books(n, 5)[1], OEnv, list[OBook], 10),
        ("okx_trades", lambda: _Rig(Okx, "okex-swap", raw, n, frame_bytes=200, symbols=["BTC-USDT-SWAP"], channels=["trades"]),
         lambda r: frames_okx_trades(n), OEnv, list[OTrade], 1),
        ("bitmex_orderBookL2_update_5", lambda: _Rig(Bitmex, "bitmex", raw, n, rows=5, frame_bytes=560, symbols=["XBTUSD"], channels=["book_change"]),
         lambda r: frames_bitmex_book(n, 5), XEnv, list[XLevel], 5),
        ("bitmex_trade", lambda: _Rig(Bitmex, "bitmex", raw, n, frame_bytes=320, symbols=["XBTUSD"], channels=["trades"]),
         lambda r: frames_bitmex_trades(n), XEnv, list[XTrade], 1),
    ]
    for name, make, build, env_t, data_t, _rows in cases:
        rig = make()
        try:
            frames = build(rig)
            resets: Callable[[], None] = rig.drain
            if name in ("binance_depth_diff_10x2", "binance_spot_depth_diff_10x2"):
                feed = rig.feed
                assert isinstance(feed, BinanceFutures)
                sym = rig.spec.symbol_id("BTCUSDT")

                def resets(feed: BinanceFutures = feed, rig: _Rig = rig, sym: int = sym) -> None:
                    st = feed.sync[sym]
                    st.reset()
                    st.state = SyncState.SYNCED
                    st.last_u = 1000 - 2  # frame 0 has pu = 998 (spot: U = 999): the chain continues
                    rig.drain()

            elif name == "bybit_ob50_delta_5x2":
                snap = b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[["59999.0","1"]],"a":[["60001.0","1"]],"u":1,"seq":1}}'

                def resets(rig: _Rig = rig, snap: bytes = snap) -> None:
                    rig.feed.frame(rig.listener, 1, memoryview(snap))
                    rig.drain()
            elif name == "bybit_tickers_delta":
                tsnap = (b'{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","lastPrice":"60000.0",'
                         b'"markPrice":"60000.05","indexPrice":"60000.1","openInterest":"50000.1","fundingRate":"0.0001",'
                         b'"nextFundingTime":"1700006400000","bid1Price":"59999.9","bid1Size":"1","ask1Price":"60000.1",'
                         b'"ask1Size":"2"},"cs":1,"ts":1}')

                def resets(rig: _Rig = rig, snap: bytes = tsnap) -> None:
                    rig.feed.frame(rig.listener, 1, memoryview(snap))
                    rig.drain()
            elif name == "deribit_book_change_5x2":
                dsnap = (b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.100ms",'
                         b'"data":{"type":"snapshot","timestamp":1,"instrument_name":"BTC-PERPETUAL","change_id":100,'
                         b'"bids":[],"asks":[]}}}')

                def resets(rig: _Rig = rig, snap: bytes = dsnap) -> None:
                    rig.feed.frame(rig.listener, 1, memoryview(snap))
                    rig.drain()
            elif name == "okx_books_update_5x2":
                osnap = frames_okx_books(0, 5)[0]

                def resets(rig: _Rig = rig, snap: bytes = osnap) -> None:
                    rig.feed.frame(rig.listener, 1, memoryview(snap))
                    rig.drain()
            elif name == "okx_trades":
                feed = rig.feed
                assert isinstance(feed, Okx)

                def resets(ofeed: Okx = feed, rig: _Rig = rig) -> None:
                    ofeed.seen_trades = [type(d)(d.cap) for d in ofeed.seen_trades]
                    rig.drain()
            elif name == "deribit_trades":
                feed = rig.feed
                assert isinstance(feed, Deribit)

                def resets(feed: Deribit = feed, rig: _Rig = rig) -> None:
                    feed.seen_trades = [type(d)(d.cap) for d in feed.seen_trades]
                    rig.drain()
            elif name == "bitmex_orderBookL2_update_5":

                def resets(rig: _Rig = rig, snap: bytes = bitmex_partial(5)) -> None:
                    rig.feed.frame(rig.listener, 1, memoryview(snap))
                    rig.drain()
            elif name == "bitmex_trade":
                feed = rig.feed
                assert isinstance(feed, Bitmex)

                def resets(feed: Bitmex = feed, rig: _Rig = rig) -> None:
                    feed.seen_trades = [type(d)(d.cap) for d in feed.seen_trades]
                    rig.drain()
            elif name == "binance_bookTicker":
                feed = rig.feed
                assert isinstance(feed, BinanceFutures)

                def resets(feed: BinanceFutures = feed, rig: _Rig = rig) -> None:
                    feed.tickers.last_bt = [-1] * len(feed.tickers.last_bt)
                    rig.drain()
            elif name.startswith("binance"):
                feed = rig.feed
                assert isinstance(feed, BinanceFutures)

                def resets(feed: BinanceFutures = feed, rig: _Rig = rig) -> None:
                    feed.last_trade[:] = [-1] * len(feed.last_trade)  # in place: a connection's handler holds the list
                    feed.last_partial[:] = [-1] * len(feed.last_partial)
                    rig.drain()

            fig[f"{name}_us"] = round(_time(_ingest(rig, frames), n, runs, resets), 3)
            fig[f"{name}_decode_only_us"] = round(_time(_decode(env_t, data_t, frames), n, runs, lambda: None), 3)
            fast = getattr(rig.feed, "_fast", {}).get(rig.listener.plan.tag) or getattr(rig.feed, "_book_frame", None)
            if fast is not None and name not in ("bybit_tickers_delta", "hyperliquid_bbo", "deribit_trades", "okx_trades",
                                                 "bitmex_trade"):  # the one-pass decoder used
                fig[f"{name}_decode_one_pass_us"] = round(_time(_decode_one(fast, frames), n, runs, lambda: None), 3)
            fig[f"{name}_bytes"] = sum(map(len, frames)) // len(frames)
            st = rig.feed
            fig[f"{name}_malformed"] = st.stat("malformed") + st.stat("gaps", 1)
        finally:
            rig.close()
    fig.update(_ipc_costs(n, runs))
    return fig


def _ipc_costs(n: int, runs: int) -> dict[str, float]:
    """Where the time goes: the Outbox pushes alone (ipc), per record, same run."""
    rig = _Rig(BinanceFutures, "binance-futures", True, n, rows=1, frame_bytes=180, symbols=["BTCUSDT"],
               channels=["trades", "book_change"])
    try:
        out = rig.feed.out
        frame = frames_binance_agg(1)[0]

        def trades() -> None:
            for i in range(n):
                out.trade(i, i, 1, b"123456789", 1.5, 2.5, 1)

        def raws() -> None:
            for i in range(n):
                out.raw(i, frame, 1, 1, 1)

        def books() -> None:
            for i in range(n):
                out.book_change(i, i, 1, False, 0, 1.5, 2.5)

        def trades_fast() -> None:
            push = out.trade_fast
            for i in range(n):
                push(i, i, 1, b"123456789", 1.5, 2.5, 1)

        def raws_fast() -> None:
            push = out.raw_fast
            for i in range(n):
                push(i, frame, 1, 1, 1)

        trade_frame = out.trade_frame_pusher()

        def trade_frames() -> None:  # the aggTrade connection's one call: trade row + raw frame
            for i in range(n):
                trade_frame(i, i, 1, 123456789 + i, 1.5, 2.5, 1, frame, 1, 1)

        levels = [(1.5 + k, 2.5) for k in range(10)]

        def books_batched() -> None:  # n rows, 10 a call
            push = out.book_levels
            for i in range(n // 10):
                push(i, i, 1, False, 0, levels)

        return {
            "outbox_trade_push_us": round(_time(trades, n, runs, rig.drain), 3),
            "outbox_trade_fast_push_us": round(_time(trades_fast, n, runs, rig.drain), 3),
            "outbox_raw_push_170B_us": round(_time(raws, n, runs, rig.drain), 3),
            "outbox_raw_fast_push_170B_us": round(_time(raws_fast, n, runs, rig.drain), 3),
            "outbox_trade_frame_push_170B_us": round(_time(trade_frames, n, runs, rig.drain), 3),
            "outbox_book_change_push_us": round(_time(books, n, runs, rig.drain), 3),
            "outbox_book_levels_per_row_us": round(_time(books_batched, n, runs, rig.drain), 3),
        }
    finally:
        rig.close()
