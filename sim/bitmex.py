"""bitmex protocol: ``/realtime``, ``{"op":"subscribe","args":["orderBookL2:XBTUSD"]}``
acks ``{"success":true,"subscribe":…,"request":…}``, errors ``{"status":400,"error":…}``,
text ``ping`` -> ``pong``, a welcome frame on connect.

Each subscription gets the table's ``partial`` first (shapes as recorded: keys,
types, filter). ``orderBookL2`` is the whole book keyed by level id, the id a
function of the price (``10**8 * index - price / tick``, as BitMEX numbers
them; XBTUSD ``8800000000 - price * 100``), every item with its price and
timestamp as BitMEX sends today; a market event becomes one ``delete``,
``insert`` and ``update`` frame per action it holds, in that order (a level
leaves before another rests at its price: the book is never locked). ``trade`` inserts, ``quote`` on every change of the touch, ``instrument``
updates of the fields that changed every ``INSTRUMENT_INTERVAL_S``,
``liquidation`` inserts on a sharp move (``sim.derivs``).

A ``gap`` fault on ``orderBookL2`` withholds the next frame that inserts a level
at the touch (``fault_applies``): BitMEX has no sequence number, so only a later
message about that level (its update or delete) can show the client what it
missed, and a level at the touch is changed again within a few events.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from ticktape.sim.conn import Conn
from ticktape.sim.faults import Fault
from ticktape.sim.market import ASK, BookEvent, Market, Trade
from ticktape.sim.venue import Venue

TABLES = ("orderBookL2", "trade", "quote", "instrument", "liquidation")
INSTRUMENT_INTERVAL_S = 0.5
#: the default instrument list (a replay adds the recording's symbols)
LISTED = ("XBTUSD", "ETHUSD", "SOLUSD", "XRPUSD", "DOGEUSD", "XBTUSDT", "ETHUSDT", "SOLUSDT", "LINKUSDT", "XBTZ26")
WELCOME = b'{"info":"Welcome to the BitMEX Realtime API.","version":"2.0.0","timestamp":"%s","docs":"https://www.bitmex.com/app/wsAPI","limit":{"remaining":39}}'
_BOOK_PARTIAL = (b'{"table":"orderBookL2","action":"partial","keys":["symbol","id","side"],"types":{"symbol":"symbol",'
                 b'"id":"long","side":"symbol","size":"long","price":"float","timestamp":"timestamp"},"foreignKeys":'
                 b'{"symbol":"instrument","side":"side"},"attributes":{"symbol":"grouped"},"filter":{"symbol":"%s"},'
                 b'"data":[%s]}')
_TRADE_PARTIAL = (b'{"table":"trade","action":"partial","keys":[],"types":{"timestamp":"timestamp","symbol":"symbol",'
                  b'"side":"symbol","size":"long","price":"float","tickDirection":"symbol","trdMatchID":"guid",'
                  b'"grossValue":"long","homeNotional":"float","foreignNotional":"float"},"foreignKeys":{"symbol":'
                  b'"instrument","side":"side"},"attributes":{"timestamp":"sorted","symbol":"grouped"},"filter":'
                  b'{"symbol":"%s"},"data":[%s]}')
_QUOTE_PARTIAL = (b'{"table":"quote","action":"partial","keys":[],"types":{"timestamp":"timestamp","symbol":"symbol",'
                  b'"bidSize":"long","bidPrice":"float","askPrice":"float","askSize":"long"},"foreignKeys":{"symbol":'
                  b'"instrument"},"attributes":{"timestamp":"sorted","symbol":"grouped"},"filter":{"symbol":"%s"},'
                  b'"data":[%s]}')
_INSTRUMENT_PARTIAL = (b'{"table":"instrument","action":"partial","keys":["symbol"],"types":{"symbol":"symbol"},'
                       b'"foreignKeys":{"inverseLeg":"instrument","sellLeg":"instrument","buyLeg":"instrument"},'
                       b'"attributes":{"symbol":"unique"},"filter":{"symbol":"%s"},"data":[%s]}')
_LIQ_PARTIAL = (b'{"table":"liquidation","action":"partial","keys":["orderID"],"types":{"orderID":"guid","symbol":'
                b'"symbol","side":"symbol","price":"float","leavesQty":"long"},"foreignKeys":{"symbol":"instrument",'
                b'"side":"side"},"attributes":{"orderID":"grouped"},"filter":{"symbol":"%s"},"data":[]}')


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def num(text: str) -> str:
    """A decimal text as BitMEX writes a JSON number (no trailing zeros: 97000.5, 3500)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


class _State:
    __slots__ = ("index", "instrument", "last_px", "last_trade", "next_instrument", "rng", "salt", "tick_dir")

    def __init__(self, m: Market, base: int) -> None:
        self.rng = random.Random(m.rng.getrandbits(64) ^ 0xB17)
        self.salt = random.Random(base).getrandbits(128)  # trade ids differ per run
        h = int.from_bytes(hashlib.blake2b(m.symbol.encode(), digest_size=2).digest(), "big")
        self.index = 88 if m.symbol == "XBTUSD" else 10 + h % 80
        self.last_trade = b""
        self.last_px = 0  # last trade price (ticks)
        self.tick_dir = "ZeroPlusTick"
        self.instrument: dict[str, Any] | None = None  # the instrument last published
        self.next_instrument = 0.0


class Bitmex(Venue):
    exchange = "bitmex"
    ws_paths = ("/realtime",)
    rest_paths = ("/api/v1/instrument/active",)
    replay_shape = "table"
    recorded_urls = (re.compile(r"//(ws|www|testnet)\.bitmex\.com/realtime"),)
    default_listed = LISTED
    symbol_re = re.compile(r"[A-Z0-9]{3,20}(_[A-Z0-9]{2,10})?")

    def __init__(self, *a: Any, **kw: Any) -> None:
        self.st: dict[str, _State] = {}
        self.pings = 0  # text pings answered
        super().__init__(*a, **kw)

    def new_market(self, m: Market) -> None:
        self.st[m.symbol] = _State(m, self.sim.id_base)

    def rest(self, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path != "/api/v1/instrument/active":
            return None
        out = []
        for s in self.listed():
            m = self.markets.get(s)
            sp = m.spec if m is not None else None
            out.append({"symbol": s, "rootSymbol": s[:3], "state": "Open", "typ": "FFCCSX" if s[-3:-2] == "Z" else "FFWCSX",
                        "quoteCurrency": "USDT" if s.endswith("USDT") else "USD",
                        "tickSize": float(num(sp.px(sp.tick_step))) if sp else 0.5, "lotSize": 1,
                        "fundingInterval": "2000-01-01T08:00:00.000Z", "timestamp": iso(time.time_ns() // 1_000_000)})
        return 200, msgspec.json.encode(out)

    def on_open(self, conn: Conn) -> None:
        conn.send_control(WELCOME % iso(time.time_ns() // 1_000_000).encode())

    def level_id(self, m: Market, p: int) -> int:
        """XBTUSD counts its price in cents (its tick was 0.01 when the ids were laid out), the others in ticks."""
        st = self.st[m.symbol]
        step = 10 ** (2 - m.spec.px_dec) if m.symbol == "XBTUSD" else 0
        return 100_000_000 * st.index - (p * step if step else p // m.spec.tick_step)

    # -- requests ---------------------------------------------------------------------
    def _error(self, conn: Conn, text: str, req: Any) -> None:
        conn.send_control(msgspec.json.encode({"status": 400, "error": text, "meta": {}, "request": req}))

    def message(self, conn: Conn, msg: bytes) -> None:
        if msg == b"ping":
            self.pings += 1
            conn.send_control(b"pong")
            return
        try:
            req = msgspec.json.decode(msg)
        except msgspec.DecodeError:
            req = None
        if not isinstance(req, dict) or req.get("op") not in ("subscribe", "unsubscribe"):
            self._error(conn, "Unrecognized request. See the docs or send 'help' for more details.", req if isinstance(req, dict) else {})
            return
        op = req["op"]
        args = req.get("args")
        args = [args] if isinstance(args, str) else args
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            self._error(conn, "Invalid args.", req)
            return
        subs = conn.state.setdefault("subs", {})
        for a in args:
            table, _, sym = a.partition(":")
            if table not in TABLES:
                self._error(conn, f"Unknown table: {table}", req)
                continue
            if not self.valid_symbol(sym):
                self._error(conn, f"Unknown or expired symbol: {sym}", req)
                continue
            if op == "unsubscribe":
                self.unsubscribe(conn, table, sym)
                conn.send_control(msgspec.json.encode({"success": True, "unsubscribe": a, "request": req}))
                continue
            if (table, sym) in subs:
                self._error(conn, f"You are already subscribed to this topic: {a}", req)
                continue
            if self.sim.take_fault(self.exchange, "subscribe_error", conn.id):
                self._error(conn, f"Unknown or expired symbol: {sym}", req)
                continue
            conn.send_control(msgspec.json.encode({"success": True, "subscribe": a, "request": req}))
            self.subscribe(conn, table, sym, a)
            if self.replay is None:
                self._partial(conn, table, self.market(sym))

    def fault_applies(self, f: Fault, channel: str, ids: tuple[object, ...]) -> bool:
        """A book ``gap`` withholds a frame inserting a level at the touch (see the module doc)."""
        if f.kind == "gap" and channel == "orderBookL2":
            return ids[:2] == ("insert", True)
        return True

    # -- partials -------------------------------------------------------------------------
    def _partial(self, conn: Conn, table: str, m: Market) -> None:
        sb = m.symbol.encode()
        st = self.st[m.symbol]
        now = time.time_ns() // 1_000_000
        if table == "orderBookL2":
            t = iso(now).encode()
            asks = [self._level(m, "Sell", p, q, t) for p, q in sorted(m.asks.items(), reverse=True)]
            bids = [self._level(m, "Buy", p, q, t) for p, q in sorted(m.bids.items(), reverse=True)]
            data = _BOOK_PARTIAL % (sb, b",".join(asks + bids))
        elif table == "trade":
            data = _TRADE_PARTIAL % (sb, st.last_trade)
        elif table == "quote":
            data = _QUOTE_PARTIAL % (sb, self._quote(m, now))
        elif table == "instrument":
            if st.instrument is None:
                st.instrument = self._instrument(m, now)
                st.next_instrument = time.monotonic() + INSTRUMENT_INTERVAL_S
            data = _INSTRUMENT_PARTIAL % (sb, msgspec.json.encode(st.instrument))
        else:
            data = _LIQ_PARTIAL % sb
        conn.send(table, m.symbol, data, ("partial",), m.n - 1)

    def _level(self, m: Market, side: str, p: int, q: int, t: bytes) -> bytes:
        size = b',"size":%s' % num(m.spec.qty(q)).encode() if q else b""
        return b'{"symbol":"%s","id":%d,"side":"%s"%s,"price":%s,"timestamp":"%s"}' % (
            m.symbol.encode(), self.level_id(m, p), side.encode(), size, num(m.spec.px(p)).encode(), t)

    def _quote(self, m: Market, now: int) -> bytes:
        bb, ba = m.best()
        sp = m.spec
        return b'{"timestamp":"%s","symbol":"%s","bidSize":%s,"bidPrice":%s,"askPrice":%s,"askSize":%s}' % (
            iso(now).encode(), m.symbol.encode(), num(sp.qty(m.bids.get(bb, 0))).encode(), num(sp.px(bb)).encode(),
            num(sp.px(ba)).encode(), num(sp.qty(m.asks.get(ba, 0))).encode())

    def _instrument(self, m: Market, now: int) -> dict[str, Any]:
        d = self.deriv(m)
        sp = m.spec
        bb, ba = m.best()
        last = self.st[m.symbol].last_px or bb
        dec = sp.px_dec
        return {
            "symbol": m.symbol, "state": "Open", "typ": "FFWCSX", "lastPrice": float(num(sp.px(last))),
            "bidPrice": float(num(sp.px(bb))), "askPrice": float(num(sp.px(ba))),
            "markPrice": round(d.mark(), dec), "indicativeSettlePrice": round(d.index(), dec),
            "fundingRate": round(d.funding(), 6), "indicativeFundingRate": round(d.funding() * 0.9, 6),
            "fundingTimestamp": iso(d.next_funding_ms(now)), "openInterest": d.oi_lots, "timestamp": iso(now),
        }

    # -- market events ----------------------------------------------------------------------
    def publish(self, m: Market, ev: Trade | BookEvent) -> None:
        sym = m.symbol
        sb = sym.encode()
        st = self.st[sym]
        now = time.time_ns() // 1_000_000
        t = iso(now).encode()
        sp = m.spec
        if isinstance(ev, Trade):
            px = num(sp.px(ev.px)).encode()
            st.tick_dir = "PlusTick" if ev.px > st.last_px else "MinusTick" if ev.px < st.last_px else "ZeroPlusTick"
            st.last_px = ev.px
            items, ids = [], []
            for q in ev.fills:
                i = str(uuid.UUID(int=st.rng.getrandbits(128) ^ st.salt, version=4))
                ids.append(i)
                items.append(b'{"timestamp":"%s","symbol":"%s","side":"%s","size":%s,"price":%s,"tickDirection":"%s",'
                             b'"trdMatchID":"%s","grossValue":%d,"homeNotional":%s,"foreignNotional":%s}' % (
                                 t, sb, b"Buy" if ev.buy else b"Sell", num(sp.qty(q)).encode(), px, st.tick_dir.encode(),
                                 i.encode(), q * 1000, num(sp.qty(q)).encode(), num(sp.qty(q)).encode()))
            st.last_trade = items[-1]
            subs = self.subscribers("trade", sym)
            if subs:
                data = b'{"table":"trade","action":"insert","data":[%s]}' % b",".join(items)
                for conn in list(subs):
                    conn.send("trade", sym, data, tuple(ids), ev.n)
            return
        d = self.deriv(m)
        liq = d.on_book()
        subs = self.subscribers("orderBookL2", sym)
        if subs:
            bb, ba = m.best()
            by: dict[str, list[bytes]] = {"delete": [], "insert": [], "update": []}
            lids: dict[str, list[int]] = {"delete": [], "insert": [], "update": []}
            touch = False
            for (side, p, q), prev in zip(ev.changes, m.last_prev, strict=True):
                action = "insert" if not prev and q else "update" if q else "delete" if prev else ""
                if not action:
                    continue
                if action == "insert" and p == (ba if side == ASK else bb):
                    touch = True
                by[action].append(self._level(m, "Sell" if side == ASK else "Buy", p, q, t))
                lids[action].append(self.level_id(m, p))
            for action in ("delete", "insert", "update"):  # a level leaves before another rests at its price
                if by[action]:
                    data = b'{"table":"orderBookL2","action":"%s","data":[%s]}' % (action.encode(), b",".join(by[action]))
                    lv: tuple[object, ...] = (action, touch and action == "insert", *lids[action])
                    for conn in list(subs):
                        conn.send("orderBookL2", sym, data, lv, ev.n)
        if d.top_changed():
            qs = self.subscribers("quote", sym)
            if qs:
                data = b'{"table":"quote","action":"insert","data":[%s]}' % self._quote(m, now)
                for conn in list(qs):
                    conn.send("quote", sym, data, (now,), ev.n)
        if liq is not None:
            ls = self.subscribers("liquidation", sym)
            if ls:
                oid = str(uuid.UUID(int=st.rng.getrandbits(128) ^ st.salt, version=4))
                data = b'{"table":"liquidation","action":"insert","data":[{"orderID":"%s","symbol":"%s","side":"%s","price":%s,"leavesQty":%s}]}' % (
                    oid.encode(), sb, b"Sell" if liq.sell else b"Buy", num(sp.px(liq.px)).encode(), num(sp.qty(liq.lots)).encode())
                for conn in list(ls):
                    conn.send("liquidation", sym, data, (oid,), ev.n)

    def pump(self, now: float) -> None:
        """Every ``INSTRUMENT_INTERVAL_S`` an ``instrument`` update of the fields that changed."""
        for sym, st in self.st.items():
            if st.instrument is None or now < st.next_instrument:
                continue
            st.next_instrument = max(st.next_instrument + INSTRUMENT_INTERVAL_S, now)
            subs = self.subscribers("instrument", sym)
            if not subs:
                st.instrument = None  # nobody listens: the next subscriber starts from a fresh partial
                continue
            m = self.markets[sym]
            self.deriv(m).step()
            ms = time.time_ns() // 1_000_000
            full = self._instrument(m, ms)
            delta = {k: v for k, v in full.items() if k != "timestamp" and st.instrument.get(k) != v}
            if not delta:
                continue
            st.instrument = full
            data = b'{"table":"instrument","action":"update","data":[%s]}' % msgspec.json.encode(
                {"symbol": sym, **delta, "timestamp": full["timestamp"]})
            for conn in list(subs):
                conn.send("instrument", sym, data, (ms,), m.n - 1)
