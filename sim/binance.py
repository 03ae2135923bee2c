"""The Binance family: binance-futures (Binance USD-M) protocol: ``/public/...`` and
``/market/...`` websockets (combined ``stream?streams=a/b`` and raw ``ws`` with
SUBSCRIBE), REST ``GET /fapi/v1/depth``; ``BinanceSpot`` (``binance``) and
``BinanceDelivery`` (``binance-delivery``, COIN-M) differ in class attributes and
frame shapes only (``sim/binance_dialects.py``).

Each book event is one diff frame whose changes carry consecutive-ish update
ids ``U..u`` (``pu`` = previous ``u``). A REST snapshot is taken *inside* the
last event's id range (the book with only its first half applied), as the real
service's snapshots fall inside a 100 ms diff, so the bridge rule
``U <= lastUpdateId <= u`` is exercised, not only the boundary case.
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
from ticktape.sim.market import ASK, BID, BookEvent, Market, Trade, render_levels
from ticktape.sim.venue import Venue

PUBLIC = "public"
MARKET = "market"
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
PARTIAL = {"depth5": 5, "depth10": 10, "depth20": 20}
SPEEDS = ("", "@100ms", "@250ms", "@500ms", "@0ms")
MAX_STREAMS = 1024
MAX_MSGS_PER_S = 10
STALE_BACK = 1000  # a stale snapshot is this many diffs old
#: diff depth push interval by stream suffix (no suffix: 250 ms); 0 = one frame per update
DEPTH_SPEED_S = {"": 0.25, "@0ms": 0.0, "@100ms": 0.1, "@250ms": 0.25, "@500ms": 0.5}
MARK_INTERVAL_S = {"@1s": 1.0, "": 3.0}
#: REST request weight per minute per IP and the weights of the endpoints served
WEIGHT_LIMIT = 2400
DEPTH_WEIGHT = {5: 2, 10: 2, 20: 2, 50: 2, 100: 5, 500: 10, 1000: 20}
OI_WEIGHT = 1


def channel_of(stream: str) -> tuple[str, str, str] | None:
    """``btcusdt@depth20@100ms`` -> (channel, SYMBOL, path kind) or None if not a stream we serve."""
    parts = stream.split("@")
    if len(parts) < 2 or not parts[0] or parts[0] != parts[0].lower():
        return None
    sym = parts[0].upper()
    rest = parts[1]
    speed = "@" + parts[2] if len(parts) > 2 else ""
    if len(parts) > 3:
        return None
    if rest == "aggTrade" and not speed:
        return "aggTrade", sym, MARKET
    if rest == "trade" and not speed:
        return "trade", sym, PUBLIC
    if rest == "bookTicker" and not speed:
        return "bookTicker", sym, PUBLIC
    if rest == "markPrice" and speed in MARK_INTERVAL_S:
        return "markPrice", sym, MARKET
    if rest == "forceOrder" and not speed:
        return "forceOrder", sym, MARKET
    if rest == "depth" and speed in SPEEDS:
        return "depth", sym, PUBLIC
    if rest in PARTIAL and speed in SPEEDS[:4]:
        return rest, sym, PUBLIC
    return None


class _Ids:
    __slots__ = ("agg", "first_id", "last_changes", "last_ids", "last_prev", "rng", "tid", "uid", "us")

    def __init__(self, m: Market, base: int) -> None:
        self.rng = random.Random(m.rng.getrandbits(64) ^ 0xB1A)
        # ids start at the run's clock base (``Simulator.id_base``): no repeat across runs
        self.uid = 4 * base + self.rng.randrange(1_000_000_000)
        self.last_ids: list[int] = [self.uid]
        self.first_id = self.uid  # U of the last diff
        self.last_changes: list[tuple[int, int, int]] = []
        self.last_prev: list[int] = []
        self.us: deque[tuple[int, int]] = deque(maxlen=STALE_BACK + 1)  # (event, u) of recent diffs
        self.agg = base + self.rng.randrange(100_000_000)
        self.tid = 2 * self.agg


class Binance(Venue):
    exchange = "binance-futures"
    ws_paths: tuple[str, ...] = ("/public/ws", "/public/stream", "/market/ws", "/market/stream")
    #: streams live under /public or /market only (USD-M since 2026-04); spot and COIN-M have one path
    split_paths = True
    depth_path = "/fapi/v1/depth"
    info_path = "/fapi/v1/exchangeInfo"
    oi_path = "/fapi/v1/openInterest"
    rest_paths: tuple[str, ...] = (depth_path,)
    #: channels this venue serves (spot: no markPrice / forceOrder)
    channels = frozenset({"aggTrade", "trade", "bookTicker", "markPrice", "forceOrder", "depth", *PARTIAL})
    #: diff depth push interval by stream suffix (no suffix: 250 ms); 0 = one frame per update
    depth_speed_s = DEPTH_SPEED_S
    max_streams = MAX_STREAMS
    max_msgs_per_s = MAX_MSGS_PER_S
    weight_limit = WEIGHT_LIMIT
    depth_weight = DEPTH_WEIGHT
    server_pings = True
    conn_age: float | None = 24 * 3600.0
    #: diffs carry pu (spot: no, and U == previous u + 1)
    has_pu = True
    replay_shape = "stream"
    recorded_urls = (re.compile(r"//fstream[^/]*\.binance\.com(:\d+)?/"),)

    def __init__(self, *a: Any, **kw: Any) -> None:
        self.ids: dict[str, _Ids] = {}
        #: open diff-depth windows per (symbol, speed suffix): [U, pu, u, changes, opened at, last event]
        self.windows: dict[tuple[str, str], list[Any]] = {}
        self.next_mark: dict[str, float] = {}
        #: (monotonic time, path, weight, 200 body or b"") of every REST request (tests check the budget)
        self.rest_log: deque[tuple[float, str, int, bytes]] = deque(maxlen=100_000)
        self._weights: deque[tuple[float, int]] = deque()
        super().__init__(*a, **kw)

    def new_market(self, m: Market) -> None:
        self.ids[m.symbol] = _Ids(m, self.sim.id_base)

    # -- connections --------------------------------------------------------------------
    def kind_of(self, path: str) -> tuple[str, bool, str]:
        """(public|market, or "" without split paths; combined?; single stream from /ws/<stream>)."""
        parts = path.removeprefix(self.ws_prefix).strip("/").split("/")
        kind = parts.pop(0) if self.split_paths and len(parts) > 1 else ""
        combined = bool(parts) and parts[0] == "stream"
        single = parts[1] if len(parts) > 1 and parts[0] == "ws" else ""
        return kind, combined, single

    def stream(self, name: str) -> tuple[str, str, str] | None:
        """``channel_of`` limited to what this venue serves (channels, depth speeds)."""
        ch = channel_of(name)
        if ch is None or ch[0] not in self.channels:
            return None
        if ch[0] == "depth" and name[name.index("@depth") + 6:] not in self.depth_speed_s:
            return None
        return ch

    def accept(self, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        _kind, combined, single = self.kind_of(path)
        names = [n for n in query.get("streams", "").split("/") if n] if combined else ([single] if single else [])
        if len(names) > self.max_streams:
            return 400, b'{"code":-1,"msg":"Too many streams."}'
        if names and self.sim.take_fault(self.exchange, "subscribe_error"):
            return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
        return None

    def on_open(self, conn: Conn) -> None:
        kind, combined, single = self.kind_of(conn.path)
        conn.state["kind"] = kind
        conn.state["combined"] = combined
        conn.state["msgs"] = [0.0, 0]
        names = [n for n in conn.query.get("streams", "").split("/") if n] if combined else ([single] if single else [])
        for n in names:
            self._sub(conn, n)

    # -- replay aliases -------------------------------------------------------------------
    def replay_source(self, name: str, recorded: set[str]) -> str | None:
        """The stream itself, else the same stream at another update speed (the fastest
        recorded): a ``@depth@0ms`` recording serves a ``@depth@100ms`` subscriber."""
        if name in recorded:
            return name
        base = _unspeeded(name)
        alts = [k for k in recorded if _unspeeded(k) == base]
        return min(alts, key=_speed_ms) if alts else None

    def replay_frame(self, conn: Conn, frame: bytes, key: str, name: str) -> bytes:
        """Raw ``/ws`` connections get the bare data; combined streams are labelled with the
        subscriber's stream name (as Binance labels them), the data byte for byte."""
        if not conn.state.get("combined", True):
            return _unwrap(frame)
        if name != key:
            return frame.replace(b'"stream":"%s"' % key.encode(), b'"stream":"%s"' % name.encode(), 1)
        return frame

    def _sub(self, conn: Conn, name: str) -> bool:
        if self.replay is not None:  # a recording may hold any stream (kline, markPrice, ...)
            parts = name.split("@")
            self.subscribe(conn, parts[1] if len(parts) > 1 else name, parts[0].upper(), name)
            return True
        ch = self.stream(name)
        if ch is None:
            return False
        channel, sym, kind = ch
        if not self.valid_symbol(sym):
            return True  # the real service accepts any name and sends nothing
        if self.split_paths and kind != conn.state["kind"]:
            self.sim.log_fault(self.exchange, "wrong_path", conn.id, f"{name} is served under /{kind}/, not {conn.path}")
            return True
        self.market(sym)
        self.subscribe(conn, channel, sym, name)
        return True

    def incoming(self, conn: Conn) -> bool:
        """Text, PING and PONG frames count: over 10 a second the real service drops the connection."""
        now = time.monotonic()
        win = conn.state["msgs"]
        if now - win[0] >= 1.0:
            win[0], win[1] = now, 0
        win[1] += 1
        if win[1] > self.max_msgs_per_s:
            self.sim.log_fault(self.exchange, "rate_limit", conn.id,
                               f"more than {self.max_msgs_per_s} incoming messages/s: dropped")
            conn.drop()
            return False
        return True

    def message(self, conn: Conn, msg: bytes) -> None:
        if not self.incoming(conn):
            return
        try:
            req = msgspec.json.decode(msg)
        except msgspec.DecodeError:
            conn.send_control(b'{"error":{"code":3,"msg":"Invalid JSON: expected value at line 1 column 1"},"id":null}')
            return
        if not isinstance(req, dict):
            conn.send_control(b'{"error":{"code":2,"msg":"Invalid request: expected an object"},"id":null}')
            return
        rid = req.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
            conn.send_control(b'{"error":{"code":2,"msg":"Invalid request: request ID must be an unsigned integer"},"id":null}')
            return
        method = req.get("method")
        params = req.get("params", [])
        if method == "LIST_SUBSCRIPTIONS":
            names = list(conn.state.get("subs", {}).values())
            conn.send_control(msgspec.json.encode({"result": names, "id": rid}))
            return
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            conn.send_control(msgspec.json.encode({"error": {"code": 2, "msg": f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"}, "id": rid}))
            return
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            conn.send_control(msgspec.json.encode({"error": {"code": 2, "msg": "Invalid request: params must be an array of strings"}, "id": rid}))
            return
        if method == "SUBSCRIBE":
            if self.sim.take_fault(self.exchange, "subscribe_error", conn.id):
                conn.send_control(msgspec.json.encode({"error": {"code": 2, "msg": "Invalid request: invalid stream name"}, "id": rid}))
                return
            bad = [p for p in params if self.stream(p) is None and self.replay is None]
            if bad:
                conn.send_control(msgspec.json.encode({"error": {"code": 2, "msg": f"Invalid request: invalid stream name `{bad[0]}`"}, "id": rid}))
                return
            if len(conn.state.get("subs", {})) + len(params) > self.max_streams:
                conn.send_control(msgspec.json.encode({"error": {"code": 2, "msg": f"Invalid request: too many streams (max {self.max_streams})"}, "id": rid}))
                return
            for p in params:
                self._sub(conn, p)
        else:
            for p in params:
                ch = channel_of(p)
                if ch is not None:
                    self.unsubscribe(conn, ch[0], ch[1])
        conn.send_control(b'{"result":null,"id":%d}' % rid)

    # -- frames ---------------------------------------------------------------------------
    def _fanout(self, subs: dict[Conn, str], channel: str, sym: str, data: bytes, ids: tuple[object, ...], n: int) -> None:
        for conn, name in list(subs.items()):
            if conn.state["combined"]:
                conn.send(channel, sym, b'{"stream":"%s","data":%s}' % (name.encode(), data), ids, n)
            else:
                conn.send(channel, sym, data, ids, n)

    def publish(self, m: Market, ev: Trade | BookEvent) -> None:
        sym = m.symbol
        st = self.ids[sym]
        now = time.time_ns() // 1_000_000
        px, qty = m.spec.px, m.spec.qty
        sb = sym.encode()
        if isinstance(ev, Trade):
            st.agg += 1
            f = st.tid + 1
            st.tid += len(ev.fills)
            t_ms = now - 1
            m_flag = b"false" if ev.buy else b"true"
            p = px(ev.px).encode()
            subs = self.subscribers("aggTrade", sym)
            if subs:
                data = self.agg_data(now, st.agg, sb, p, qty(sum(ev.fills)).encode(), f, st.tid, t_ms, m_flag)
                self._fanout(subs, "aggTrade", sym, data, (st.agg,), ev.n)
            subs = self.subscribers("trade", sym)
            if subs:
                for i, q in enumerate(ev.fills):
                    data = self.trade_data(now, t_ms, sb, f + i, p, qty(q).encode(), m_flag)
                    self._fanout(subs, "trade", sym, data, (f + i,), ev.n)
            return
        # book event: one update id per change
        pu = st.uid
        ids = []
        r = st.rng
        # U: the first update in the window (earlier updates of a level changed again are folded in)
        # (spot has no pu: its chain is U == previous u + 1, so nothing is folded in before U there)
        big_u = pu + 1 + (r.randrange(20) if self.has_pu else 0)
        uid = big_u + r.randrange(1, 4)
        for _ in ev.changes:
            uid += 1 + (r.randrange(40) if r.random() < 0.5 else 0)
            ids.append(uid)
        st.uid = uid
        st.first_id = big_u
        st.last_ids = ids
        st.last_changes = ev.changes
        st.last_prev = m.last_prev
        st.us.append((ev.n, uid))
        t_ms = now - 2
        subs = self.subscribers("depth", sym)
        if subs:
            self._depth(m, subs, ev, big_u, uid, pu, now, t_ms)
        for ch, n in PARTIAL.items():
            subs = self.subscribers(ch, sym)
            if subs:
                bids, asks = m.top(n)
                data = self.partial_data(now, t_ms, sb, big_u, uid, pu, _levels(m, bids), _levels(m, asks))
                self._fanout(subs, ch, sym, data, (big_u, uid, pu), ev.n)
        d = self.deriv(m)
        liq = d.on_book()
        if liq is not None:
            subs = self.subscribers("forceOrder", sym)
            if subs:
                lq = qty(liq.lots).encode()
                data = (b'{"e":"forceOrder","E":%d,"o":{"s":"%s"%s,"S":"%s","o":"LIMIT","f":"IOC","q":"%s","p":"%s",'
                        b'"ap":"%s","X":"FILLED","l":"%s","z":"%s","T":%d}}') % (
                    now, sb, self.pair_field(sb), b"SELL" if liq.sell else b"BUY", lq, px(liq.px).encode(),
                    px(liq.px).encode(), lq, lq, t_ms)
                self._fanout(subs, "forceOrder", sym, data, (t_ms,), ev.n)
        subs = self.subscribers("bookTicker", sym)
        if subs and d.top_changed():  # Binance pushes any change of the best price or size
            bb, ba = m.best()
            data = self.book_ticker_data(uid, sb, px(bb).encode(), qty(m.bids[bb]).encode(), px(ba).encode(),
                                         qty(m.asks[ba]).encode(), t_ms, now)
            self._fanout(subs, "bookTicker", sym, data, (uid,), ev.n)

    def _depth(self, m: Market, subs: dict[Conn, str], ev: BookEvent, big_u: int, uid: int, pu: int, now: int,
               t_ms: int) -> None:
        """One frame per update for ``@0ms``; other speeds fold the updates of their
        window into one frame (last size per level; U of the first, u of the last, pu
        = the previous frame's u), sent by ``pump`` when the window closes."""
        by_speed: dict[str, dict[Conn, str]] = {}
        for conn, name in subs.items():
            by_speed.setdefault(name[name.index("@depth") + 6:], {})[conn] = name
        px, qty = m.spec.px, m.spec.qty
        for speed, group in by_speed.items():
            if self.depth_speed_s.get(speed, 0.0) == 0.0:
                b = b",".join(b'["%s","%s"]' % (px(p).encode(), qty(q).encode()) for s, p, q in ev.changes if s == BID)
                a = b",".join(b'["%s","%s"]' % (px(p).encode(), qty(q).encode()) for s, p, q in ev.changes if s == ASK)
                data = self.depth_data(now, t_ms, m.symbol.encode(), big_u, uid, pu, b, a)
                self._fanout(group, "depth", m.symbol, data, (big_u, uid, pu), ev.n)
                continue
            w = self.windows.get((m.symbol, speed))
            if w is None:
                w = self.windows[(m.symbol, speed)] = [big_u, pu, uid, {}, time.monotonic(), ev.n]
            w[2] = uid
            w[5] = ev.n
            for side, p, q in ev.changes:
                w[3][(side, p)] = q

    def pending(self) -> bool:
        return bool(self.windows)

    def pump(self, now: float) -> None:
        """Close due diff-depth windows; push markPrice on its 1 s (or 3 s) schedule."""
        for key in [k for k, w in self.windows.items() if now - w[4] >= self.depth_speed_s[k[1]]]:
            sym, speed = key
            big_u, pu, uid, changes, _, n = self.windows.pop(key)
            subs = self.subscribers("depth", sym)
            group = {c: name for c, name in (subs or {}).items() if name.endswith("@depth" + speed)}
            if not group:
                continue
            m = self.markets[sym]
            px, qty = m.spec.px, m.spec.qty
            b = b",".join(b'["%s","%s"]' % (px(p).encode(), qty(q).encode()) for (s, p), q in changes.items() if s == BID)
            a = b",".join(b'["%s","%s"]' % (px(p).encode(), qty(q).encode()) for (s, p), q in changes.items() if s == ASK)
            ms = time.time_ns() // 1_000_000
            data = self.depth_data(ms, ms - 2, sym.encode(), big_u, uid, pu, b, a)
            self._fanout(group, "depth", sym, data, (big_u, uid, pu), n)
        for sym, m in self.markets.items():
            subs = self.subscribers("markPrice", sym)
            if not subs:
                continue
            due = self.next_mark.get(sym)
            if due is None:
                due = self.next_mark[sym] = now
            if now < due:
                continue
            self.next_mark[sym] = due + 1.0 if now - due < 1.0 else now + 1.0
            d = self.deriv(m)
            d.step()
            ms = time.time_ns() // 1_000_000
            data = self.mark_data(ms, sym.encode(), d.mark(), d.index(), d.funding(), d.next_funding_ms(ms))
            self._fanout(subs, "markPrice", sym, data, (ms,), m.n - 1)

    # -- REST -----------------------------------------------------------------------------
    def _weigh(self, path: str, weight: int) -> bool:
        """Count a request against the per-minute IP weight; False once over the limit."""
        now = time.monotonic()
        w = self._weights
        w.append((now, weight))
        while w and now - w[0][0] >= 60.0:
            w.popleft()
        return sum(x for _, x in w) <= self.weight_limit

    default_listed = instruments.LINEAR

    def rest(self, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path == self.info_path:
            return 200, self.exchange_info(self.listed(), time.time_ns() // 1_000_000)
        return self.rest_market(path, query)

    def exchange_info(self, symbols: list[str], now_ms: int) -> bytes:
        return instruments.binance_exchange_info(symbols, now_ms)

    def rest_market(self, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path == self.oi_path and self.oi_path and self.replay is None:
            return self.open_interest(query)
        if path != self.depth_path:
            return None
        if self.replay is not None:
            return self.replay.rest(path, query)
        try:
            weight = self.depth_weight.get(int(query.get("limit", "500")), 20)
        except ValueError:
            weight = 20
        self.rest_log.append((time.monotonic(), path, weight, b""))
        if not self._weigh(path, weight):
            return 429, self.too_many()
        sym = query.get("symbol", "")
        if not sym:
            return 400, b'{"code":-1102,"msg":"Mandatory parameter \'symbol\' was not sent, was empty/null, or malformed."}'
        if not self.valid_symbol(sym):
            return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
        try:
            limit = int(query.get("limit", "500"))
        except ValueError:
            limit = -1
        if limit not in DEPTH_LIMITS:
            return 400, b'{"code":-1130,"msg":"Data sent for parameter \'limit\' is not valid."}'
        if self.sim.take_fault(self.exchange, "rest_error"):
            return 503, b'{"code":-1001,"msg":"Internal error; unable to process your request. Please try again."}'
        m = self.market(sym)
        body = None
        if self.sim.take_fault(self.exchange, "rest_stale"):
            body = self.stale_snapshot(m, limit)
        if body is None:
            body = self.snapshot(m, limit)
        late = self.sim.take(self.exchange, "rest_delay")
        if late is not None:  # taken now, answered ``seconds`` later
            return 307, self.sim.hold_answer(self.exchange, 200, body, late.seconds, late.frames).encode()
        return 200, body

    def open_interest(self, query: dict[str, str]) -> tuple[int, bytes]:
        """``GET /fapi/v1/openInterest?symbol=``: weight 1; the rest_error fault applies."""
        status, body = self._open_interest(query)
        self.rest_log.append((time.monotonic(), self.oi_path, OI_WEIGHT, body if status == 200 else b""))
        return status, body

    def _open_interest(self, query: dict[str, str]) -> tuple[int, bytes]:
        if not self._weigh(self.oi_path, OI_WEIGHT):
            return 429, self.too_many()
        sym = query.get("symbol", "")
        if not sym:
            return 400, b'{"code":-1102,"msg":"Mandatory parameter \'symbol\' was not sent, was empty/null, or malformed."}'
        if not self.valid_symbol(sym):
            return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
        if self.sim.take_fault(self.exchange, "rest_error"):
            return 503, b'{"code":-1001,"msg":"Internal error; unable to process your request. Please try again."}'
        d = self.deriv(self.market(sym))
        return 200, self.oi_body(sym.encode(), d.open_interest().encode(), time.time_ns() // 1_000_000)

    def stale_snapshot(self, m: Market, limit: int) -> bytes | None:
        """The book as it was ``STALE_BACK`` diffs ago (as a lagging REST replica serves it):
        a client whose buffer starts later cannot bridge it and must fetch again."""
        st = self.ids[m.symbol]
        if len(st.us) < 2 or m.history_limit <= 0:
            return None
        n, u = st.us[0]
        bids, asks = m.book_at(n)
        now = time.time_ns() // 1_000_000
        bp = sorted(bids, reverse=True)[:limit]
        ap = sorted(asks)[:limit]
        return self.snapshot_body(u, now, m.symbol.encode(), _levels(m, [(p, bids[p]) for p in bp]),
                                  _levels(m, [(p, asks[p]) for p in ap]))

    def snapshot(self, m: Market, limit: int) -> bytes:
        """The book at an update id inside the last book event (its first half applied)."""
        st = self.ids[m.symbol]
        bids, asks = dict(m.bids), dict(m.asks)
        last_id = st.uid
        ch = st.last_changes
        if ch and len(ch) == len(st.last_prev) == len(st.last_ids):
            keep = len(ch) // 2  # changes [0, keep) applied, the rest reverted
            for (side, p, _), prev in list(zip(ch, st.last_prev, strict=True))[keep:]:
                book = asks if side == ASK else bids
                if prev:
                    book[p] = prev
                else:
                    book.pop(p, None)
            last_id = st.last_ids[keep - 1] if keep else st.first_id
        now = time.time_ns() // 1_000_000
        bp = sorted(bids, reverse=True)[:limit]
        ap = sorted(asks)[:limit]
        return self.snapshot_body(last_id, now, m.symbol.encode(), _levels(m, [(p, bids[p]) for p in bp]),
                                  _levels(m, [(p, asks[p]) for p in ap]))

    # -- frame shapes (USD-M here; spot and COIN-M override: sim/binance_dialects.py) -------
    def too_many(self) -> bytes:
        return (b'{"code":-1003,"msg":"Too many requests; current limit of IP is %d requests per minute."}'
                % self.weight_limit)

    def pair_field(self, sb: bytes) -> bytes:
        """COIN-M frames name the contract's pair after the symbol (``"ps":"BTCUSD"``)."""
        return b""

    def depth_data(self, e_ms: int, t_ms: int, sb: bytes, big_u: int, uid: int, pu: int, b: bytes, a: bytes) -> bytes:
        return b'{"e":"depthUpdate","E":%d,"T":%d,"s":"%s"%s,"U":%d,"u":%d,"pu":%d,"b":[%s],"a":[%s]}' % (
            e_ms, t_ms, sb, self.pair_field(sb), big_u, uid, pu, b, a)

    def partial_data(self, e_ms: int, t_ms: int, sb: bytes, big_u: int, uid: int, pu: int, b: bytes,
                     a: bytes) -> bytes:
        return self.depth_data(e_ms, t_ms, sb, big_u, uid, pu, b, a)

    def trade_data(self, e_ms: int, t_ms: int, sb: bytes, tid: int, p: bytes, q: bytes, m_flag: bytes) -> bytes:
        return b'{"e":"trade","E":%d,"T":%d,"s":"%s","t":%d,"p":"%s","q":"%s","X":"MARKET","m":%s}' % (
            e_ms, t_ms, sb, tid, p, q, m_flag)

    def agg_data(self, e_ms: int, agg: int, sb: bytes, p: bytes, q: bytes, first: int, last: int, t_ms: int,
                 m_flag: bytes) -> bytes:
        return b'{"e":"aggTrade","E":%d,"a":%d,"s":"%s","p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s}' % (
            e_ms, agg, sb, p, q, first, last, t_ms, m_flag)

    def book_ticker_data(self, uid: int, sb: bytes, b: bytes, bq: bytes, a: bytes, aq: bytes, t_ms: int,
                         e_ms: int) -> bytes:
        return b'{"e":"bookTicker","u":%d,"s":"%s","b":"%s","B":"%s","a":"%s","A":"%s","T":%d,"E":%d}' % (
            uid, sb, b, bq, a, aq, t_ms, e_ms)

    def mark_data(self, e_ms: int, sb: bytes, mark: float, index: float, funding: float, next_ms: int) -> bytes:
        return b'{"e":"markPriceUpdate","E":%d,"s":"%s","p":"%.8f","P":"%.8f","i":"%.8f","r":"%.8f","T":%d}' % (
            e_ms, sb, mark, mark, index, funding, next_ms)

    def oi_body(self, sb: bytes, oi: bytes, now_ms: int) -> bytes:
        return b'{"symbol":"%s","openInterest":"%s","time":%d}' % (sb, oi, now_ms)

    def snapshot_body(self, last_id: int, now_ms: int, sb: bytes, bids: bytes, asks: bytes) -> bytes:
        return b'{"lastUpdateId":%d,"E":%d,"T":%d,"bids":[%s],"asks":[%s]}' % (last_id, now_ms, now_ms - 3, bids, asks)

    def update_id(self, ids: tuple[object, ...]) -> object:
        """A depth frame's ``u`` among its ids ``(U, u, pu)``."""
        return ids[1] if len(ids) == 3 else (ids[0] if ids else None)


_SPEED_RE = re.compile(r"\d+m?s")


def _unspeeded(stream: str) -> str:
    """``btcusdt@depth@100ms`` -> ``btcusdt@depth`` (``markPrice@1s`` -> ``markPrice``)."""
    parts = stream.split("@")
    return "@".join(parts[:2]) if len(parts) == 3 and _SPEED_RE.fullmatch(parts[2]) else stream


def _speed_ms(stream: str) -> float:
    parts = stream.split("@")
    if len(parts) < 3:
        return 250.0 if len(parts) == 2 and parts[1] == "depth" else 3000.0
    sp = parts[2]
    return float(sp[:-2]) if sp.endswith("ms") else float(sp[:-1]) * 1000


def _unwrap(frame: bytes) -> bytes:
    """``{"stream":..,"data":X}`` -> ``X`` without re-encoding."""
    i = frame.find(b'"data":')
    return frame[i + 7 : frame.rfind(b"}")] if i >= 0 else frame


def _levels(m: Market, levels: list[tuple[int, int]]) -> bytes:
    return render_levels(m, levels, _level)


def _level(p: str, q: str, lots: int) -> bytes:
    return f'["{p}","{q}"]'.encode()
