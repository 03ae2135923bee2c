"""bybit v5 public protocol: linear (``bybit``, ``/v5/public/linear``) and spot
(``bybit-spot``, ``/v5/public/spot``, the ``BybitSpot`` dialect below); ``op``
subscribe / unsubscribe / ping, ``orderbook.{1,50,200,1000}.<sym>`` snapshot then
deltas, ``publicTrade.<sym>``; linear also ``tickers`` and ``allLiquidation``.

Spot differs where the real service does (the recording in ``../shared/samples/bybit``
and Bybit's v5 docs): acks ``{"success":true,"ret_msg":"subscribe","conn_id":..,"op":..}``
with ``req_id`` only when the request had one; pong ``ret_msg`` "pong" the same way;
at most 10 ``args`` per request; trade ids are numeric strings and trades carry no
tick direction ``L``; no tickers/liquidation streams; instruments ``category=spot``.

Each orderbook topic keeps the top-N view it last published; a book event
publishes the difference (levels that changed, entered, or left the top N as
size "0"), and ``u`` rises by one per published delta of that topic. ``seq``
is the market's cross sequence (rises on every book event, by more than 1).
"""

from __future__ import annotations

import random
import re
import time
import uuid
from typing import Any

import msgspec

from ticktape.sim import instruments
from ticktape.sim.conn import Conn
from ticktape.sim.market import BookEvent, Market, Trade, render_levels
from ticktape.sim.venue import Venue

DEPTHS = (1, 50, 200, 1000)
RESEND_DEPTH1 = 3.0  # orderbook.1 re-sends its snapshot (same u) after this long without change
MAX_ARGS_CHARS = 21_000
TICKERS_INTERVAL_S = 0.1  # linear tickers push every 100 ms (only the fields that changed)


class _Topic:
    __slots__ = ("asks", "bids", "depth", "last_pub", "u")

    def __init__(self, depth: int, u: int) -> None:
        self.depth = depth
        self.u = u
        self.last_pub = 0.0  # monotonic time of the last frame on this topic
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}


class _State:
    __slots__ = ("cs", "last_px", "next_ticker", "rng", "salt", "seq", "tick_dir", "ticker", "topics", "tseq")

    def __init__(self, m: Market, base: int) -> None:
        self.rng = random.Random(m.rng.getrandbits(64) ^ 0xB7B)
        # sequences start at the run's clock base (``Simulator.id_base``): no repeat across runs
        self.seq = 40 * base + self.rng.randrange(10_000_000_000)
        self.tseq = base + self.rng.randrange(1_000_000_000)
        self.salt = random.Random(base).getrandbits(128)  # trade ids (uuids) differ per run too
        self.topics: dict[int, _Topic] = {d: _Topic(d, base + self.rng.randrange(50_000_000)) for d in DEPTHS}
        self.last_px = 0
        self.tick_dir = "ZeroPlusTick"
        self.cs = self.seq  # tickers' cross sequence
        self.ticker: dict[str, str] | None = None  # the full ticker last published (tickers)
        self.next_ticker = 0.0


class Bybit(Venue):
    exchange = "bybit"
    ws_paths = ("/v5/public/linear",)
    category = "linear"
    resend_depth1 = RESEND_DEPTH1
    default_listed = instruments.LINEAR
    replay_shape = "topic"
    recorded_urls = (re.compile(r"/v5/public/linear\b"),)
    #: topics besides orderbook.N this category serves
    channels: tuple[str, ...] = ("publicTrade", "tickers", "allLiquidation")
    #: most ``args`` in one request (0: no count limit, only MAX_ARGS_CHARS)
    max_args = 0

    def rest(self, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path != "/v5/market/instruments-info":
            return None
        cat = query.get("category")
        if cat != self.category and any(getattr(v, "category", None) == cat for v in self.sim.venues.values()):
            return None  # the venue of that category answers
        return instruments.bybit_instruments(self.listed(), query, time.time_ns() // 1_000_000, self.category)

    def ack(self, conn: Conn, op: str, req_id: str | None, success: bool, ret_msg: str) -> bytes:
        """A reply to a request: linear's shape (``req_id`` always there, "" when not sent)."""
        return msgspec.json.encode(
            {"success": success, "ret_msg": ret_msg, "conn_id": conn.state["conn_id"], "req_id": req_id or "", "op": op})

    # -- replay aliases -------------------------------------------------------------------
    def replay_source(self, name: str, recorded: set[str]) -> str | None:
        """The topic itself, else (an ``orderbook.N`` topic, N > 1) the shallowest recorded deeper
        book of the symbol: its top N is exact. Never for depth 1 (a top-of-book stream)."""
        if name in recorded:
            return name
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "orderbook" or not parts[1].isdigit() or int(parts[1]) <= 1:
            return None
        deeper = [(int(k.split(".")[1]), k) for k in recorded
                  if k.startswith("orderbook.") and k.endswith("." + parts[2]) and k.count(".") == 2
                  and k.split(".")[1].isdigit() and int(k.split(".")[1]) > int(parts[1])]
        return min(deeper)[1] if deeper else None

    def replay_frame(self, conn: Conn, frame: bytes, key: str, name: str) -> bytes:
        """An aliased frame carries the subscriber's topic (the levels byte for byte)."""
        if name == key:
            return frame
        return frame.replace(b'"topic":"%s"' % key.encode(), b'"topic":"%s"' % name.encode(), 1)

    def __init__(self, *a: Any, **kw: Any) -> None:
        self.st: dict[str, _State] = {}
        super().__init__(*a, **kw)

    def new_market(self, m: Market) -> None:
        self.st[m.symbol] = _State(m, self.sim.id_base)

    def on_open(self, conn: Conn) -> None:
        conn.state["conn_id"] = str(uuid.UUID(int=random.Random(self.sim.seed * 7919 + conn.id).getrandbits(128), version=4))

    def topic_of(self, t: str) -> tuple[str, str] | None:
        parts = t.split(".")
        if self.replay is not None and len(parts) >= 2:
            return ".".join(parts[:-1]), parts[-1]
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1].isdigit() and int(parts[1]) in DEPTHS:
            return f"orderbook.{parts[1]}", parts[2]
        if len(parts) == 2 and parts[0] in self.channels:
            return parts[0], parts[1]
        return None

    def _reply(self, conn: Conn, op: str, req_id: str | None, success: bool, ret_msg: str) -> None:
        conn.send_control(self.ack(conn, op, req_id, success, ret_msg))

    def message(self, conn: Conn, msg: bytes) -> None:
        try:
            req = msgspec.json.decode(msg)
        except msgspec.DecodeError:
            req = None
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            conn.send_control(msgspec.json.encode(
                {"success": False, "ret_msg": "error:unmarshal failed, please check your message format", "conn_id": conn.state["conn_id"], "op": ""}))
            return
        op = req["op"]
        req_id = req.get("req_id")
        req_id = req_id if isinstance(req_id, str) or req_id is None else str(req_id)
        if op == "ping":
            self._reply(conn, "ping", req_id, True, "pong")
            return
        if op not in ("subscribe", "unsubscribe"):
            self._reply(conn, op, req_id, False, f"error:handler not found,op:{op}")
            return
        args = req.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            self._reply(conn, op, req_id, False, "error:args invalid")
            return
        if len(",".join(args)) > MAX_ARGS_CHARS:
            self._reply(conn, op, req_id, False, "error:args length exceeds 21000")
            return
        if self.max_args and len(args) > self.max_args:
            self._reply(conn, op, req_id, False, f"error:args size >{self.max_args}")
            return
        bad = [a for a in args if (t := self.topic_of(a)) is None or not self.valid_symbol(t[1])]
        if op == "subscribe" and (bad or self.sim.take_fault(self.exchange, "subscribe_error", conn.id)):
            self._reply(conn, op, req_id, False, f"Invalid symbol :[{bad[0] if bad else args[0]}]")
            return
        subs = conn.state.setdefault("subs", {})
        if op == "subscribe":
            dup = [a for a in args if (t := self.topic_of(a)) is not None and t in subs]
            if dup:
                self._reply(conn, op, req_id, False, f"error:already subscribed,topic:{dup[0]}")
                return
        self._reply(conn, op, req_id, True, self.ok_msg(op))
        for a in args:
            t = self.topic_of(a)
            if t is None:
                continue
            if op == "unsubscribe":
                self.unsubscribe(conn, *t)
                continue
            channel, sym = t
            m = self.market(sym) if self.replay is None else None
            self.subscribe(conn, channel, sym, a)
            if channel == "tickers" and m is not None:
                self._ticker_snapshot(conn, m)
            elif channel.startswith("orderbook.") and self.replay is None:
                assert m is not None
                self._snapshot(conn, m, int(channel.split(".")[1]))

    def ok_msg(self, op: str) -> str:
        return ""

    # -- frames ---------------------------------------------------------------------------
    def _snapshot(self, conn: Conn, m: Market, depth: int, fault: str = "") -> None:
        """A new subscriber gets the topic's current top N with the current ``u``."""
        st = self.st[m.symbol]
        tp = st.topics[depth]
        # with live subscribers the topic's view already equals the top N; without, it starts now
        bids, asks = m.top(depth)
        tp.bids, tp.asks = dict(bids), dict(asks)
        tp.last_pub = time.monotonic()
        now = time.time_ns() // 1_000_000
        data = b'{"topic":"orderbook.%d.%s","type":"snapshot","ts":%d,"data":{"s":"%s","b":[%s],"a":[%s],"u":%d,"seq":%d},"cts":%d}' % (
            depth, m.symbol.encode(), now, m.symbol.encode(), _levels(m, bids), _levels(m, asks), tp.u, st.seq, now - 3)
        conn.send(f"orderbook.{depth}", m.symbol, data, (tp.u, st.seq), m.n - 1, fault)

    # -- tickers -------------------------------------------------------------------------
    def _ticker_now(self, m: Market) -> dict[str, str]:
        """The full linear ticker as it stands (the venue's field names and strings)."""
        d = self.deriv(m)
        st = self.st[m.symbol]
        dec = m.spec.px_dec
        px, qty = m.spec.px, m.spec.qty
        bb, ba = m.best()
        last = st.last_px or bb
        oi = d.oi_lots / 10**m.spec.qty_dec
        return {
            "symbol": m.symbol,
            "tickDirection": st.tick_dir,
            "lastPrice": px(last),
            "markPrice": f"{d.mark():.{dec}f}",
            "indexPrice": f"{d.index():.{dec}f}",
            "openInterest": d.open_interest(),
            "openInterestValue": f"{oi * d.mark():.2f}",
            "nextFundingTime": str(d.next_funding_ms()),
            "fundingRate": f"{d.funding():.6f}",
            "bid1Price": px(bb),
            "bid1Size": qty(m.bids.get(bb, 0)),
            "ask1Price": px(ba),
            "ask1Size": qty(m.asks.get(ba, 0)),
        }

    def _ticker_snapshot(self, conn: Conn, m: Market) -> None:
        st = self.st[m.symbol]
        if st.ticker is None:
            st.ticker = self._ticker_now(m)
            st.next_ticker = time.monotonic() + TICKERS_INTERVAL_S
        st.cs += 1 + st.cs % 7
        now = time.time_ns() // 1_000_000
        data = b'{"topic":"tickers.%s","type":"snapshot","data":%s,"cs":%d,"ts":%d}' % (
            m.symbol.encode(), msgspec.json.encode(st.ticker), st.cs, now)
        conn.send("tickers", m.symbol, data, (st.cs,), m.n - 1)

    def pump(self, now: float) -> None:
        """Every 100 ms a ``tickers`` delta with the fields that changed (none changed: no frame)."""
        for sym, st in self.st.items():
            if st.ticker is None or now < st.next_ticker:
                continue
            st.next_ticker = max(st.next_ticker + TICKERS_INTERVAL_S, now)
            subs = self.subscribers("tickers", sym)
            if not subs:
                st.ticker = None  # nobody listens: the next subscriber starts from a fresh snapshot
                continue
            m = self.markets[sym]
            self.deriv(m).step()
            full = self._ticker_now(m)
            delta = {k: v for k, v in full.items() if st.ticker.get(k) != v}
            if not delta:
                continue
            st.ticker = full
            st.cs += 1 + st.cs % 7
            ms = time.time_ns() // 1_000_000
            data = b'{"topic":"tickers.%s","type":"delta","data":%s,"cs":%d,"ts":%d}' % (
                sym.encode(), msgspec.json.encode({"symbol": sym, **delta}), st.cs, ms)
            for conn in list(subs):
                conn.send("tickers", sym, data, (st.cs,), m.n - 1)

    def restart(self, symbol: str | None) -> None:
        for sym, st in self.st.items():
            if symbol is not None and sym != symbol:
                continue
            for depth, tp in st.topics.items():
                subs = self.subscribers(f"orderbook.{depth}", sym)
                tp.u = 1
                for conn in list(subs or ()):
                    self._snapshot(conn, self.markets[sym], depth, "restart")

    def tick(self, now: float) -> None:
        for sym, st in self.st.items():
            tp = st.topics[1]
            subs = self.subscribers("orderbook.1", sym)
            if subs and now - tp.last_pub >= self.resend_depth1:
                m = self.markets[sym]
                for conn in list(subs):
                    self._snapshot(conn, m, 1)

    def publish(self, m: Market, ev: Trade | BookEvent) -> None:
        sym = m.symbol
        st = self.st[sym]
        now = time.time_ns() // 1_000_000
        sb = sym.encode()
        px, qty = m.spec.px, m.spec.qty
        if isinstance(ev, Trade):
            subs = self.subscribers("publicTrade", sym)
            r = st.rng
            items = []
            ids = []
            p = ev.px
            tick = ("PlusTick" if p > st.last_px else "MinusTick" if p < st.last_px else "ZeroPlusTick")
            st.last_px = p
            st.tick_dir = tick
            for q in ev.fills:
                st.tseq += 1
                i = self.trade_id(st, r)
                ids.append(i)
                items.append(self.trade_item(now - 2, sb, ev.buy, qty(q).encode(), px(p).encode(), tick, i, st.tseq))
                tick = "ZeroPlusTick" if tick in ("PlusTick", "ZeroPlusTick") else "ZeroMinusTick"
            if subs:
                data = b'{"topic":"publicTrade.%s","type":"snapshot","ts":%d,"data":[%s]}' % (sb, now, b",".join(items))
                for conn in list(subs):
                    conn.send("publicTrade", sym, data, tuple(ids), ev.n)
            return
        st.seq += 1 + st.rng.randrange(30)
        liq = self.deriv(m).on_book()
        if liq is not None:
            subs = self.subscribers("allLiquidation", sym)
            if subs:
                # S is the liquidated position's side: a long ("Buy") is liquidated by a sell
                data = b'{"topic":"allLiquidation.%s","type":"snapshot","ts":%d,"data":[{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s"}]}' % (
                    sb, now, now - 1, sb, b"Buy" if liq.sell else b"Sell", qty(liq.lots).encode(), px(liq.px).encode())
                for conn in list(subs):
                    conn.send("allLiquidation", sym, data, (now - 1,), ev.n)
        for depth, tp in st.topics.items():
            channel = f"orderbook.{depth}"
            subs = self.subscribers(channel, sym)
            if not subs:
                continue
            bids, asks = m.top(depth)
            nb, na = dict(bids), dict(asks)
            db = _diff(tp.bids, nb)
            da = _diff(tp.asks, na)
            if not db and not da:
                continue
            tp.bids, tp.asks = nb, na
            tp.u += 1
            tp.last_pub = time.monotonic()
            data = b'{"topic":"orderbook.%d.%s","type":"delta","ts":%d,"data":{"s":"%s","b":[%s],"a":[%s],"u":%d,"seq":%d},"cts":%d}' % (
                depth, sb, now, sb, _levels(m, db), _levels(m, da), tp.u, st.seq, now - 3)
            for conn in list(subs):
                conn.send(channel, sym, data, (tp.u, st.seq), ev.n)


    def trade_id(self, st: _State, r: random.Random) -> str:
        return str(uuid.UUID(int=r.getrandbits(128) ^ st.salt, version=4))

    def trade_item(self, t: int, sb: bytes, buy: bool, v: bytes, p: bytes, tick: str, i: str, seq: int) -> bytes:
        return b'{"T":%d,"s":"%s","S":"%s","v":"%s","p":"%s","L":"%s","i":"%s","BT":false,"RPI":false,"seq":%d}' % (
            t, sb, b"Buy" if buy else b"Sell", v, p, tick.encode(), i.encode(), seq)


class BybitSpot(Bybit):
    """``bybit-spot``: v5 spot on its own path, in spot's dialect (see the module docstring)."""

    exchange = "bybit-spot"
    ws_paths = ("/v5/public/spot",)
    category = "spot"
    default_listed = instruments.SPOT
    recorded_urls = (re.compile(r"/v5/public/spot\b"),)
    channels = ("publicTrade",)
    max_args = 10

    def ack(self, conn: Conn, op: str, req_id: str | None, success: bool, ret_msg: str) -> bytes:
        out: dict[str, object] = {"success": success, "ret_msg": ret_msg, "conn_id": conn.state["conn_id"]}
        if req_id is not None:
            out["req_id"] = req_id
        out["op"] = op
        return msgspec.json.encode(out)

    def ok_msg(self, op: str) -> str:
        return op

    def trade_id(self, st: _State, r: random.Random) -> str:
        return str(2_290_000_000_000_000_000 + st.tseq)

    def trade_item(self, t: int, sb: bytes, buy: bool, v: bytes, p: bytes, tick: str, i: str, seq: int) -> bytes:
        return b'{"i":"%s","T":%d,"p":"%s","v":"%s","S":"%s","s":"%s","BT":false}' % (
            i.encode(), t, p, v, b"Buy" if buy else b"Sell", sb)


def _diff(old: dict[int, int], new: dict[int, int]) -> list[tuple[int, int]]:
    out = [(p, q) for p, q in new.items() if old.get(p) != q]
    out += [(p, 0) for p in old if p not in new]
    return out


def _levels(m: Market, levels: list[tuple[int, int]]) -> bytes:
    return render_levels(m, levels, _level)


def _level(p: str, q: str, lots: int) -> bytes:
    """Bybit writes a removed level's size as "0"."""
    return f'["{p}","{q if lots else "0"}"]'.encode()
