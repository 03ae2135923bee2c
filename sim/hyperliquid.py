"""hyperliquid protocol: ``/ws``, ``{"method":"subscribe","subscription":{...}}``
with ``subscriptionResponse`` acks, ``l2Book`` full snapshots (20 levels a
side) and ``trades`` (with ``tid``/``hash``/``users``), ``{"method":"ping"}``
-> ``{"channel":"pong"}``. A trades subscription first gets the recent trades
again (the real service re-sends them, so clients dedupe by ``tid``).
"""

from __future__ import annotations

import random
import re
import time
from collections import deque
from typing import Any

import msgspec

from ticktape.sim import instruments
from ticktape.sim.conn import Conn
from ticktape.sim.market import BookEvent, Market, Trade, render_levels
from ticktape.sim.venue import Venue

LEVELS = 20
RECENT = 10
MAX_SUBS = 1000
CTX_INTERVAL_S = 1.0  # activeAssetCtx pushes
TYPES = ("l2Book", "trades", "bbo", "activeAssetCtx")


class _State:
    __slots__ = ("recent", "rng", "tid", "users")

    def __init__(self, m: Market, base: int) -> None:
        self.rng = random.Random(m.rng.getrandbits(64) ^ 0x4C)
        # tids start at the run's clock base (``Simulator.id_base``, < 2**50): no repeat across runs
        self.tid = base * 2 + self.rng.randrange(1_000_000)
        self.recent: deque[tuple[bytes, int]] = deque(maxlen=RECENT)
        self.users = [f"0x{self.rng.getrandbits(160):040x}" for _ in range(16)]


class Hyperliquid(Venue):
    exchange = "hyperliquid"
    ws_paths = ("/ws",)
    symbol_re = re.compile(r"[A-Za-z0-9]{1,20}|@[0-9]{1,6}")  # coins (kPEPE) and spot pairs (@107)
    default_listed = (*instruments.HL_PERPS, *instruments.HL_SPOT)
    replay_shape = "coin"
    recorded_urls = (re.compile(r"//api[^/]*\.hyperliquid(-testnet)?\.xyz"),)

    def replay_names(self, conn: Conn) -> list[str]:
        """Recorded frames are keyed ``<channel>:<coin>`` (a subscription's type and coin)."""
        return [f"{ch}:{coin}" for ch, coin in conn.state.get("subs", {})]

    def post(self, path: str, body: bytes) -> tuple[int, bytes] | None:
        """``POST /info``: ``meta`` (perps) and ``spotMeta`` (spot pairs) of the listed symbols."""
        if path != "/info":
            return None
        names = self.listed()
        spot = [n for n in names if n.startswith("@") or "/" in n]
        return instruments.hyperliquid_info([n for n in names if n not in spot], spot, body)

    def __init__(self, *a: Any, **kw: Any) -> None:
        self.st: dict[str, _State] = {}
        self.next_ctx: dict[str, float] = {}
        self.last_book_ms: dict[str, int] = {}
        super().__init__(*a, **kw)

    def new_market(self, m: Market) -> None:
        self.st[m.symbol] = _State(m, self.sim.id_base)

    def message(self, conn: Conn, msg: bytes) -> None:
        try:
            req = msgspec.json.decode(msg)
        except msgspec.DecodeError:
            req = None
        if not isinstance(req, dict):
            conn.send_control(b'{"channel":"error","data":"Error parsing JSON into valid websocket request: ' + _esc(msg) + b'"}')
            return
        method = req.get("method")
        if method == "ping":
            conn.send_control(b'{"channel":"pong"}')
            return
        if method not in ("subscribe", "unsubscribe"):
            conn.send_control(b'{"channel":"error","data":"Error parsing JSON into valid websocket request: ' + _esc(msg) + b'"}')
            return
        sub = req.get("subscription")
        typ = sub.get("type") if isinstance(sub, dict) else None
        coin = sub.get("coin") if isinstance(sub, dict) else None
        if typ not in TYPES or not isinstance(coin, str) or not self.valid_symbol(coin) \
                or (method == "subscribe" and self.sim.take_fault(self.exchange, "subscribe_error", conn.id)):
            conn.send_control(b'{"channel":"error","data":"Invalid subscription ' + _esc(msgspec.json.encode(sub)) + b'"}')
            return
        assert isinstance(sub, dict)
        key = (typ, coin)
        subs = conn.state.setdefault("subs", {})
        if method == "subscribe" and len(subs) >= MAX_SUBS:
            conn.send_control(b'{"channel":"error","data":"Too many subscriptions: ' + _esc(msgspec.json.encode(sub)) + b'"}')
            return
        if method == "subscribe" and key in subs:
            conn.send_control(b'{"channel":"error","data":"Already subscribed: ' + _esc(msgspec.json.encode(sub)) + b'"}')
            return
        if method == "unsubscribe" and key not in subs:
            conn.send_control(b'{"channel":"error","data":"Already unsubscribed: ' + _esc(msgspec.json.encode(sub)) + b'"}')
            return
        conn.send_control(msgspec.json.encode({"channel": "subscriptionResponse", "data": {"method": method, "subscription": sub}}))
        if method == "unsubscribe":
            self.unsubscribe(conn, typ, coin)
            return
        self.subscribe(conn, typ, coin, typ)
        if self.replay is not None:
            return
        m = self.market(coin)
        if typ == "l2Book":
            conn.send("l2Book", coin, self._book(m, self._book_ms(coin)), (), m.n - 1)
        elif typ == "bbo":
            conn.send("bbo", coin, self._bbo(m, time.time_ns() // 1_000_000), (), m.n - 1)
        elif typ == "activeAssetCtx":
            self.next_ctx.setdefault(coin, time.monotonic() + CTX_INTERVAL_S)
            conn.send("activeAssetCtx", coin, self._ctx(m), (), m.n - 1)
        else:
            recent = list(self.st[coin].recent)
            if recent:
                data = b'{"channel":"trades","data":[%s]}' % b",".join(r for r, _ in recent)
                conn.send("trades", coin, data, tuple(t for _, t in recent), m.n - 1)

    def _book_ms(self, coin: str) -> int:
        """l2Book ``time``: the wall clock, but rising per coin (a book is one block's: two different
        books never share a time, and clients drop a repeated time as a duplicate)."""
        t = max(time.time_ns() // 1_000_000, self.last_book_ms.get(coin, 0) + 1)
        self.last_book_ms[coin] = t
        return t

    def _bbo(self, m: Market, now: int) -> bytes:
        bids, asks = m.top(1)
        b = _levels(m, bids) or b"null"
        a = _levels(m, asks) or b"null"
        return b'{"channel":"bbo","data":{"coin":"%s","time":%d,"bbo":[%s,%s]}}' % (m.symbol.encode(), now, b, a)

    def _ctx(self, m: Market) -> bytes:
        d = self.deriv(m)
        dec = m.spec.px_dec + 1
        mid = d.mid()
        ctx = (b'{"funding":"%s","openInterest":"%s","prevDayPx":"%s","dayNtlVlm":"%s","premium":"%s",'
               b'"oraclePx":"%s","markPx":"%s","midPx":"%s","impactPxs":["%s","%s"],"dayBaseVlm":"%s"}') % (
            _num(f"{d.funding():.8f}").encode(), _num(d.open_interest()).encode(),
            _num(m.spec.px(m.spec.base_ticks)).encode(), _num(f"{d.oi_lots * 7.5:.2f}").encode(),
            _num(f"{d.premium:.8f}").encode(), _num(f"{d.index():.{dec}f}").encode(),
            _num(f"{d.mark():.{dec}f}").encode(), _num(f"{mid:.{dec}f}").encode(),
            _num(m.spec.px(m.bb)).encode(), _num(m.spec.px(m.ba)).encode(), _num(d.open_interest()).encode())
        return b'{"channel":"activeAssetCtx","data":{"coin":"%s","ctx":%s}}' % (m.symbol.encode(), ctx)

    def pump(self, now: float) -> None:
        """activeAssetCtx once a second per subscribed coin (the whole context each time)."""
        for coin, due in list(self.next_ctx.items()):
            if now < due:
                continue
            subs = self.subscribers("activeAssetCtx", coin)
            if not subs:
                del self.next_ctx[coin]
                continue
            self.next_ctx[coin] = max(due + CTX_INTERVAL_S, now)
            m = self.markets[coin]
            self.deriv(m).step()
            data = self._ctx(m)
            for conn in list(subs):
                conn.send("activeAssetCtx", coin, data, (), m.n - 1)

    def _book(self, m: Market, now: int) -> bytes:
        bids, asks = m.top(LEVELS)
        return b'{"channel":"l2Book","data":{"coin":"%s","time":%d,"levels":[[%s],[%s]]}}' % (
            m.symbol.encode(), now, _levels(m, bids), _levels(m, asks))

    def publish(self, m: Market, ev: Trade | BookEvent) -> None:
        sym = m.symbol
        now = time.time_ns() // 1_000_000
        if isinstance(ev, Trade):
            st = self.st[sym]
            r = st.rng
            h = b"0x%064x" % r.getrandbits(256)
            items = []
            tids = []
            p = _num(m.spec.px(ev.px)).encode()
            for q in ev.fills:
                st.tid += 1 + r.randrange(3)
                tid = st.tid
                buyer, seller = r.sample(st.users, 2)
                item = b'{"coin":"%s","side":"%s","px":"%s","sz":"%s","time":%d,"hash":"%s","tid":%d,"users":["%s","%s"]}' % (
                    sym.encode(), b"B" if ev.buy else b"A", p, _num(m.spec.qty(q)).encode(), now, h, tid, buyer.encode(), seller.encode())
                items.append(item)
                tids.append(tid)
                st.recent.append((item, tid))
            subs = self.subscribers("trades", sym)
            if subs:
                data = b'{"channel":"trades","data":[%s]}' % b",".join(items)
                for conn in list(subs):
                    conn.send("trades", sym, data, tuple(tids), ev.n)
            return
        subs = self.subscribers("l2Book", sym)
        if subs:
            bt = self._book_ms(sym)
            data = self._book(m, bt)
            for conn in list(subs):
                conn.send("l2Book", sym, data, (bt,), ev.n)
        subs = self.subscribers("bbo", sym)
        if subs and self.deriv(m).top_changed():
            data = self._bbo(m, now)
            for conn in list(subs):
                conn.send("bbo", sym, data, (now,), ev.n)


def _levels(m: Market, levels: list[tuple[int, int]]) -> bytes:
    return render_levels(m, levels, _level)


def _level(p: str, q: str, lots: int) -> bytes:
    return f'{{"px":"{_num(p)}","sz":"{_num(q)}","n":{1 + lots % 7}}}'.encode()


def _num(s: str) -> str:
    """Hyperliquid's decimal strings carry no trailing zeros but keep one decimal ("69997.0", "10.5")."""
    if "." not in s:
        return s
    s = s.rstrip("0")
    return s + "0" if s.endswith(".") else s


def _esc(b: bytes) -> bytes:
    return msgspec.json.encode(b.decode("utf-8", "replace"))[1:-1]
