"""OKX v5 public protocol (``okex`` spot, ``okex-swap`` perpetual swaps): ``/ws/v5/public``,
``{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"}]}`` acked per arg
as ``{"event":"subscribe","arg":{…}}``, errors ``{"event":"error","code":"60018",…}``,
the text ``ping`` answered ``pong``.

``books``: a subscriber first gets the ``snapshot`` action (up to 400 levels a
side, ``prevSeqId`` -1), then one ``update`` per book event with the levels
that changed (size "0" removes), ``prevSeqId`` = the previous ``seqId`` and
the CRC32 ``checksum`` of the top 25 levels after it (``exchanges.okx_book``
documents the algorithm; the frames are checked by that code's independent
twin in the tests). Levels are ``[price, size, "0", orders]`` as OKX sends
them. ``trades``: one entry per taker order (OKX aggregates its fills), ids
rising. Swaps only: ``mark-price`` (0.2 s), ``open-interest`` and
``funding-rate`` and ``index-tickers`` (1 s, shorter than OKX's 3 s / 30-90 s so a demo
shows them), ``tickers`` (both ids: after each trade and each change of the best bid/ask),
``liquidation-orders`` by ``instType`` (every swap's forced orders).

Both ids speak on one path (as at OKX); a connection belongs to the venue of
its first subscription (``okex`` or ``okex-swap`` by the instId's shape), the
other type on the same connection is refused: ticktape's connectors keep
them apart, one connection set per id.
"""

from __future__ import annotations

import heapq
import random
import re
import time
import zlib
from typing import Any

import msgspec

from ticktape.sim import instruments
from ticktape.sim.conn import Conn
from ticktape.sim.market import BookEvent, Market, Trade, render_levels
from ticktape.sim.venue import Venue

BOOK_LEVELS = 400
CHECKSUM_LEVELS = 25
MARK_INTERVAL_S = 0.2
SLOW_INTERVAL_S = 1.0  # funding-rate and open-interest
PATH = "/ws/v5/public"
BUSINESS = "/ws/v5/business"  # trades-all (one push per fill) lives there, as at OKX


class _State:
    __slots__ = ("asks", "bids", "high", "last_px", "last_sz", "low", "next_mark", "next_slow", "open", "rng", "seq",
                 "tid", "top", "view_on", "vol")

    def __init__(self, m: Market, base: int) -> None:
        self.rng = random.Random(m.rng.getrandbits(64) ^ 0x0C5)
        self.seq = base + self.rng.randrange(1_000_000_000)  # seqIds start at the run's clock base
        self.tid = base // 10 + self.rng.randrange(1_000_000)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.view_on = False  # the published top-400 view is live (someone subscribed books)
        self.next_mark = 0.0
        self.next_slow = 0.0
        self.last_px = self.last_sz = self.open = self.high = self.low = 0  # tickers: ticks, lots
        self.vol = 0
        self.top: tuple[int, int, int, int] = (0, 0, 0, 0)  # best bid, size, best ask, size last pushed


class Okx(Venue):
    exchange = "okex"
    ws_paths = (PATH, BUSINESS)
    replay_shape = "arg"
    #: spot and swaps share the real path: a recorded frame's instId picks the id (``sim.replay``)
    recorded_urls = (re.compile(r"//ws[a-z]*\.okx\.com(:\d+)?/ws/v5/public"),)
    inst_type = "SPOT"
    symbol_re = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{2,10}")
    default_listed = tuple(f"{c}-USDT" for c in instruments.COINS)
    channels: tuple[str, ...] = ("books", "trades", "trades-all", "tickers")

    def __init__(self, *a: Any, **kw: Any) -> None:
        self.st: dict[str, _State] = {}
        super().__init__(*a, **kw)

    def new_market(self, m: Market) -> None:
        self.st[m.symbol] = _State(m, self.sim.id_base)

    # -- REST -------------------------------------------------------------------------
    def rest(self, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path != "/api/v5/public/instruments" or query.get("instType") != self.inst_type:
            return None
        return 200, instruments.okx_instruments(self.listed(), self.inst_type)

    # -- subscriptions ---------------------------------------------------------------------
    def _sibling(self, arg: dict[str, Any]) -> Venue | None:
        """The OKX venue of the other instrument type when ``arg`` names one of its instruments."""
        inst = arg.get("instId") or arg.get("instType") or ""
        if not isinstance(inst, str) or inst == self.inst_type or self.symbol_re.fullmatch(inst):
            return None
        for v in self.sim.venues.values():
            if isinstance(v, Okx) and v is not self and (inst == v.inst_type or v.symbol_re.fullmatch(inst)):
                return v
        return None

    def _error(self, conn: Conn, code: str, msg: str) -> None:
        conn.send_control(msgspec.json.encode({"event": "error", "code": code, "msg": msg}))

    def message(self, conn: Conn, msg: bytes) -> None:
        if msg == b"ping":
            conn.send_control(b"pong")
            return
        try:
            req = msgspec.json.decode(msg)
        except msgspec.DecodeError:
            req = None
        if not isinstance(req, dict) or req.get("op") not in ("subscribe", "unsubscribe"):
            self._error(conn, "60012", f"Invalid request: {msg[:200].decode('utf-8', 'replace')}")
            return
        op = req["op"]
        args = req.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, dict) for a in args):
            self._error(conn, "60012", f"Invalid request: {msg[:200].decode('utf-8', 'replace')}")
            return
        if not conn.state.get("subs"):  # a fresh connection belongs to the type of its first subscription
            sib = self._sibling(args[0])
            if sib is not None:
                self.conns.pop(conn.id, None)
                sib.conns[conn.id] = conn
                conn.venue = sib
                sib.message(conn, msg)
                return
        for a in args:
            self._one(conn, op, a)

    def _one(self, conn: Conn, op: str, a: dict[str, Any]) -> None:
        ch = a.get("channel")
        inst = a.get("instId")
        arg = {"channel": ch, "instId": inst} if inst is not None else {"channel": ch, "instType": a.get("instType")}
        if ch == "liquidation-orders" and "liquidation-orders" in self.channels:
            if a.get("instType") != self.inst_type:
                self._error(conn, "60018", f"Wrong URL or channel:{ch},instType:{a.get('instType')} doesn't exist. "
                            "Please use the correct URL, channel and parameters referring to API document.")
                return
            sym = self.inst_type
        elif ch not in self.channels or (ch == "trades-all") != (conn.path == BUSINESS) or not isinstance(inst, str) \
                or not self.valid_symbol(
                f"{inst}-SWAP" if ch == "index-tickers" else inst) or (
                op == "subscribe" and self.sim.take_fault(self.exchange, "subscribe_error", conn.id)):
            self._error(conn, "60018", f"Wrong URL or channel:{ch},instId:{inst} doesn't exist. "
                        "Please use the correct URL, channel and parameters referring to API document.")
            return
        else:
            sym = inst
        conn.send_control(msgspec.json.encode({"event": op, "arg": arg}))
        if op == "unsubscribe":
            self.unsubscribe(conn, ch, sym)
            return
        self.subscribe(conn, ch, sym, f"{ch}:{sym}")
        if self.replay is None and ch == "books":
            self._snapshot(conn, self.market(sym))
        elif self.replay is None and ch == "tickers":
            self._ticker(self.market(sym), time.time_ns() // 1_000_000, conn)
        elif self.replay is None and ch != "liquidation-orders":
            self.market(f"{sym}-SWAP" if ch == "index-tickers" else sym)

    # -- books -------------------------------------------------------------------------------
    def _snapshot(self, conn: Conn, m: Market) -> None:
        st = self.st[m.symbol]
        if not st.view_on:
            bids, asks = m.top(BOOK_LEVELS)
            st.bids, st.asks = dict(bids), dict(asks)
            st.view_on = True
        bids = sorted(st.bids.items(), reverse=True)
        asks = sorted(st.asks.items())
        data = _book_frame(m, "snapshot", asks, bids, time.time_ns() // 1_000_000, _checksum(m, st), -1, st.seq)
        conn.send("books", m.symbol, data, (st.seq, -1), m.n - 1)

    def publish(self, m: Market, ev: Trade | BookEvent) -> None:
        sym = m.symbol
        st = self.st[sym]
        now = time.time_ns() // 1_000_000
        if isinstance(ev, Trade):
            subs = self.subscribers("trades", sym)
            st.tid += len(ev.fills)
            if subs:
                data = b'{"arg":{"channel":"trades","instId":"%s"},"data":[{"instId":"%s","tradeId":"%d","px":"%s","sz":"%s","side":"%s","ts":"%d"}]}' % (
                    sym.encode(), sym.encode(), st.tid, m.spec.px(ev.px).encode(), m.spec.qty(sum(ev.fills)).encode(),
                    b"buy" if ev.buy else b"sell", now - 1)
                for conn in list(subs):
                    conn.send("trades", sym, data, (str(st.tid),), ev.n)
            subs_all = self.subscribers("trades-all", sym)
            if subs_all:  # one push per fill, ids rising to the taker order's last (the trades channel's id)
                first_id = st.tid - len(ev.fills) + 1
                for k, q in enumerate(ev.fills):
                    data = b'{"arg":{"channel":"trades-all","instId":"%s"},"data":[{"instId":"%s","tradeId":"%d","px":"%s","sz":"%s","side":"%s","ts":"%d"}]}' % (
                        sym.encode(), sym.encode(), first_id + k, m.spec.px(ev.px).encode(), m.spec.qty(q).encode(),
                        b"buy" if ev.buy else b"sell", now - 1)
                    for conn in list(subs_all):
                        conn.send("trades-all", sym, data, (str(first_id + k),), ev.n)
            st.last_px, st.last_sz = ev.px, sum(ev.fills)
            st.open = st.open or ev.px
            st.high, st.low = max(st.high, ev.px), min(st.low or ev.px, ev.px)
            st.vol += st.last_sz
            self._ticker(m, now, traded=True)
            return
        self._ticker(m, now)
        self.on_book_event(m, now)
        subs = self.subscribers("books", sym)
        if not subs:
            st.view_on = False
            return
        bids, asks = m.top(BOOK_LEVELS)
        nb, na = dict(bids), dict(asks)
        db, da = _diff(st.bids, nb), _diff(st.asks, na)
        st.bids, st.asks = nb, na
        if not db and not da:
            return
        prev = st.seq
        st.seq += 1 + st.rng.randrange(4)
        db.sort(reverse=True)
        da.sort()
        data = _book_frame(m, "update", da, db, now, _checksum(m, st), prev, st.seq)
        for conn in list(subs):
            conn.send("books", sym, data, (st.seq, prev), ev.n)

    def on_book_event(self, m: Market, now_ms: int) -> None:
        """Swaps: a liquidation when the touch moved sharply."""

    def _ticker(self, m: Market, now_ms: int, only: Conn | None = None, traded: bool = False) -> None:
        """``tickers``: after a trade or a change of the best bid/ask (to every subscriber), or the
        current one to a new subscriber (``only``)."""
        st = self.st[m.symbol]
        subs = [only] if only is not None else self.subscribers("tickers", m.symbol)
        if not subs:
            return
        bb, ba = m.best()
        top = (bb, m.bids.get(bb, 0), ba, m.asks.get(ba, 0))
        if only is None and not traded and top == st.top:
            return
        st.top = top
        px, qty = m.spec.px, m.spec.qty
        last = st.last_px or bb
        data = (b'{"arg":{"channel":"tickers","instId":"%s"},"data":[{"instType":"%s","instId":"%s","last":"%s",'
                b'"lastSz":"%s","askPx":"%s","askSz":"%s","bidPx":"%s","bidSz":"%s","open24h":"%s","high24h":"%s",'
                b'"low24h":"%s","sodUtc0":"%s","sodUtc8":"%s","volCcy24h":"%s","vol24h":"%s","ts":"%d"}]}') % (
            m.symbol.encode(), self.inst_type.encode(), m.symbol.encode(), px(last).encode(),
            qty(st.last_sz).encode(), px(ba).encode(), qty(top[3]).encode(), px(bb).encode(), qty(top[1]).encode(),
            px(st.open or last).encode(), px(max(st.high, last)).encode(), px(min(st.low or last, last)).encode(),
            px(st.open or last).encode(), px(st.open or last).encode(),
            f"{st.vol / 10**m.spec.qty_dec * last / 10**m.spec.px_dec:.2f}".encode(), qty(st.vol).encode(), now_ms)
        for conn in list(subs):
            conn.send("tickers", m.symbol, data, (now_ms,), m.n - 1)


class OkxSwap(Okx):
    exchange = "okex-swap"
    inst_type = "SWAP"
    symbol_re = re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{2,10}-SWAP")
    default_listed = tuple(f"{c}-USDT-SWAP" for c in instruments.COINS)
    channels = ("books", "trades", "trades-all", "tickers", "funding-rate", "mark-price", "open-interest", "index-tickers",
                "liquidation-orders")

    def on_book_event(self, m: Market, now_ms: int) -> None:
        liq = self.deriv(m).on_book()
        subs = self.subscribers("liquidation-orders", "SWAP")
        if liq is None or not subs:
            return
        sym = m.symbol.encode()
        fam = m.symbol.removesuffix("-SWAP").encode()
        # posSide: the liquidated position; side: the liquidation order's own side
        data = b'{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkLoss":"0","bkPx":"%s","ccy":"","posSide":"%s","side":"%s","sz":"%s","ts":"%d"}],"instFamily":"%s","instId":"%s","instType":"SWAP","uly":"%s"}]}' % (
            m.spec.px(liq.px).encode(), b"long" if liq.sell else b"short", b"sell" if liq.sell else b"buy",
            m.spec.qty(liq.lots).encode(), now_ms - 1, fam, sym, fam)
        for conn in list(subs):
            conn.send("liquidation-orders", m.symbol, data, (now_ms - 1,), m.n - 1)

    def pump(self, now: float) -> None:
        """Timed pushes: mark price every 0.2 s; open interest, funding rate and the index every 1 s."""
        ms = time.time_ns() // 1_000_000
        for sym, st in self.st.items():
            if now < st.next_mark:
                continue
            st.next_mark = now + MARK_INTERVAL_S
            m = self.markets[sym]
            d = self.deriv(m)
            d.step()
            s = sym.encode()
            dec = m.spec.px_dec
            uly = sym.removesuffix("-SWAP")
            frames = [("mark-price", sym, b'{"arg":{"channel":"mark-price","instId":"%s"},"data":[{"instId":"%s","instType":"SWAP","markPx":"%s","ts":"%d"}]}' % (
                s, s, f"{d.mark():.{dec}f}".encode(), ms))]
            if now >= st.next_slow:
                st.next_slow = now + SLOW_INTERVAL_S
                oi = d.oi_lots / 10**m.spec.qty_dec
                frames.append(("open-interest", sym, b'{"arg":{"channel":"open-interest","instId":"%s"},"data":[{"instId":"%s","instType":"SWAP","oi":"%s","oiCcy":"%s","oiUsd":"%s","ts":"%d"}]}' % (
                    s, s, d.open_interest().encode(), d.open_interest().encode(), f"{oi * d.mark():.2f}".encode(), ms)))
                frames.append(("funding-rate", sym, b'{"arg":{"channel":"funding-rate","instId":"%s"},"data":[{"formulaType":"noRate","fundingRate":"%s","fundingTime":"%d","impactValue":"","instId":"%s","instType":"SWAP","interestRate":"","maxFundingRate":"0.0075","method":"next_period","minFundingRate":"-0.0075","nextFundingRate":"%s","nextFundingTime":"%d","premium":"%s","settFundingRate":"%s","settState":"settled","ts":"%d"}]}' % (
                    s, f"{d.funding():.8f}".encode(), d.next_funding_ms(ms), s, f"{d.funding() * 0.9:.8f}".encode(),
                    d.next_funding_ms(ms) + 8 * 3_600_000,
                    f"{d.premium:.8f}".encode(), f"{d.funding():.8f}".encode(), ms)))
                idx = f"{d.index():.{dec}f}".encode()
                frames.append(("index-tickers", uly, b'{"arg":{"channel":"index-tickers","instId":"%s"},"data":[{"instId":"%s","idxPx":"%s","open24h":"%s","high24h":"%s","low24h":"%s","sodUtc0":"%s","sodUtc8":"%s","ts":"%d"}]}' % (
                    uly.encode(), uly.encode(), idx, idx, idx, idx, idx, idx, ms)))
            for ch, key, data in frames:
                for conn in list(self.subscribers(ch, key) or ()):
                    conn.send(ch, sym, data, (ms,), m.n - 1)


def _diff(old: dict[int, int], new: dict[int, int]) -> list[tuple[int, int]]:
    out = [(p, q) for p, q in new.items() if old.get(p) != q]
    out += [(p, 0) for p in old if p not in new]
    return out


def _checksum(m: Market, st: _State) -> int:
    """OKX's CRC32 of the published view's top 25 levels (bid:ask interleaved, price:size)."""
    px, qty = m.spec.px, m.spec.qty
    b = [f"{px(p)}:{qty(st.bids[p])}" for p in heapq.nlargest(CHECKSUM_LEVELS, st.bids)]
    a = [f"{px(p)}:{qty(st.asks[p])}" for p in heapq.nsmallest(CHECKSUM_LEVELS, st.asks)]
    parts = [x for i in range(max(len(b), len(a))) for x in (b[i:i + 1] + a[i:i + 1])]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _book_frame(m: Market, action: str, asks: list[tuple[int, int]], bids: list[tuple[int, int]], ts: int,
                checksum: int, prev: int, seq: int) -> bytes:
    return b'{"arg":{"channel":"books","instId":"%s"},"action":"%s","data":[{"asks":[%s],"bids":[%s],"ts":"%d","checksum":%d,"prevSeqId":%d,"seqId":%d}]}' % (
        m.symbol.encode(), action.encode(), render_levels(m, asks, _level), render_levels(m, bids, _level), ts,
        checksum, prev, seq)


def _level(p: str, q: str, lots: int) -> bytes:
    """``[price, size, "0" (deprecated liquidated orders), orders]``; a removed level is all zeros."""
    return f'["{p}","{q}","0","{1 + lots % 7}"]'.encode() if lots else f'["{p}","0","0","0"]'.encode()
