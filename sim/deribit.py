"""deribit JSON-RPC v2 dialect: ``/ws/api/v2`` with ``public/subscribe`` /
``public/unsubscribe`` / ``public/set_heartbeat`` / ``public/test``, and REST
``GET /api/v2/public/get_instruments``.

Channels ``book.<inst>.100ms`` (a full-depth snapshot on subscribe, then one
``change`` per 100 ms window holding its net level changes, ``prev_change_id``
= the previous notification's ``change_id``; ids rise by a random step per
book event, so they jump between notifications as Deribit's do),
``trades.<inst>.100ms`` (a small share marked ``liquidation``) and
``ticker.<inst>.100ms`` (the full ticker every 100 ms; perpetuals carry
``current_funding``/``funding_8h``, options ``greeks``/IVs). ``.raw`` is refused
with Deribit's error for an unauthorized connection (replay serves any
interval). A channel for an unknown instrument is left out of the answer.
After ``public/set_heartbeat`` a ``test_request`` goes out every interval
(times ``heartbeat_factor``, which tests shrink); one not answered by
``public/test`` before the next is due closes the connection. Not modelled:
the 100 ms aggregation of book changes (one change per market event).
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

import msgspec

from ticktape.sim.conn import Conn
from ticktape.sim.market import ASK, BookEvent, Market, Trade
from ticktape.sim.venue import Venue

INTERVALS = ("100ms", "raw", "agg2")
KINDS = ("book", "trades", "ticker")
TICKER_INTERVAL_S = 0.1
BOOK_INTERVAL_S = 0.1  # book.<inst>.100ms: the net changes of each 100 ms window in one notification
MIN_HEARTBEAT = 10
LIQUIDATION_SHARE = 0.05
_OPTION = re.compile(r"-[0-9]{1,2}[A-Z]{3}[0-9]{2}-[0-9d_]+-[CP]$")
#: instruments listed when the simulator was given no symbols: perpetuals, futures, options
LISTED = (
    "BTC-PERPETUAL", "ETH-PERPETUAL", "SOL_USDC-PERPETUAL", "BTC-27JUN25", "ETH-27JUN25", "BTC-26DEC25",
    "BTC-27JUN25-60000-C", "BTC-27JUN25-60000-P", "ETH-27JUN25-3000-C", "BTC-26DEC25-100000-C",
)


class _State:
    __slots__ = ("change_id", "flush_at", "last_n", "next_ticker", "pending", "rng", "sent_id", "tid", "tseq")

    def __init__(self, m: Market, base: int) -> None:
        self.rng = random.Random(m.rng.getrandbits(64) ^ 0xDE7)
        self.change_id = 10 * base + self.rng.randrange(1_000_000_000)
        self.sent_id = self.change_id  # change_id of the last book notification (the next one's prev_change_id)
        #: the window's net level changes: (side, price) -> [lots now, lots before the window]
        self.pending: dict[tuple[int, int], list[int]] = {}
        self.flush_at = 0.0  # monotonic time the open window is sent (0 = none open)
        self.last_n = 0  # market event of the window's last change
        self.tseq = base // 1000 + self.rng.randrange(1_000_000)
        self.tid = base + self.rng.randrange(1_000_000_000)
        self.next_ticker = 0.0


def _now_us() -> int:
    return time.time_ns() // 1000


class Deribit(Venue):
    exchange = "deribit"
    ws_paths = ("/ws/api/v2",)
    rest_paths = ("/api/v2/public/get_instruments",)
    replay_shape = "rpc"
    recorded_urls = (re.compile(r"//(www|test)\.deribit\.com/ws"),)

    def replay_names(self, conn: Conn) -> list[str]:
        """Recorded frames are keyed ``<kind>.<instrument>`` (any interval: ``.raw`` serves ``.100ms``)."""
        return [f"{kind}.{inst}" for kind, inst in conn.state.get("subs", {})]
    symbol_re = re.compile(r"[A-Z0-9]{2,12}(_[A-Z]{3,5})?(-[A-Za-z0-9_]{1,16}){1,3}")
    default_listed = LISTED
    #: test_request period = the client's heartbeat interval times this (tests shrink it)
    heartbeat_factor = 1.0

    def __init__(self, *a: Any, **kw: Any) -> None:
        self.st: dict[str, _State] = {}
        self.test_requests = 0  # test_requests sent (tests check the client's answers kept the connection)
        super().__init__(*a, **kw)

    def new_market(self, m: Market) -> None:
        self.st[m.symbol] = _State(m, self.sim.id_base)

    # -- REST -----------------------------------------------------------------------------
    def rest(self, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        if path != "/api/v2/public/get_instruments":
            return None
        cur = query.get("currency", "")
        if not cur:
            return 400, _answer(None, error={"message": "Invalid params", "data": {"reason": "required",
                                                                                   "param": "currency"}, "code": -32602})
        items = []
        for name in self.listed():
            base = name.split("-")[0]
            if cur != "any" and base.split("_")[0] != cur and base != cur:
                continue
            kind = "option" if _OPTION.search(name) else "future"
            spec = self.market(name).spec if name in self.markets else None
            item: dict[str, Any] = {
                "instrument_name": name, "kind": kind, "is_active": True, "base_currency": base.split("_")[0],
                "quote_currency": "USD" if "_" not in base else base.split("_")[1],
                "settlement_period": "perpetual" if name.endswith("PERPETUAL") else "month",
                "tick_size": float(spec.px(spec.tick_step)) if spec else 0.5, "contract_size": 10.0,
                "min_trade_amount": 10.0, "expiration_timestamp": 32503708800000 if name.endswith("PERPETUAL")
                else 1751011200000, "creation_timestamp": 1534167754000,
            }
            if kind == "option":
                parts = name.split("-")
                item["strike"] = float(parts[2].replace("d", "."))
                item["option_type"] = "call" if parts[3] == "C" else "put"
            items.append(item)
        return 200, _answer(None, result=items)

    # -- websocket ------------------------------------------------------------------------
    def message(self, conn: Conn, msg: bytes) -> None:
        try:
            req = msgspec.json.decode(msg)
        except msgspec.DecodeError:
            req = None
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            conn.send_control(_answer(None, error={"message": "Invalid Request", "code": -32600}))
            return
        rid = req.get("id")
        method = req["method"]
        raw_params = req.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        if method == "public/test":
            conn.state["hb_answered"] = True
            conn.send_control(_answer(rid, result={"version": "1.2.26"}))
        elif method == "public/set_heartbeat":
            iv = params.get("interval")
            if not isinstance(iv, (int, float)) or iv < MIN_HEARTBEAT:
                conn.send_control(_answer(rid, error={"message": "Invalid params", "data": {
                    "reason": f"interval must be >= {MIN_HEARTBEAT}", "param": "interval"}, "code": -32602}))
                return
            conn.state["hb_interval"] = float(iv)
            conn.state["hb_next"] = time.monotonic() + float(iv) * self.heartbeat_factor
            conn.state["hb_answered"] = True
            conn.send_control(_answer(rid, result="ok"))
        elif method == "public/disable_heartbeat":
            conn.state.pop("hb_interval", None)
            conn.send_control(_answer(rid, result="ok"))
        elif method in ("public/subscribe", "public/unsubscribe"):
            self._subscribe(conn, rid, method == "public/subscribe", params.get("channels"))
        else:
            conn.send_control(_answer(rid, error={"message": "Method not found", "code": -32601}))

    def _parse(self, name: str) -> tuple[str, str] | None:
        parts = name.split(".")
        if len(parts) != 3 or parts[0] not in KINDS or parts[2] not in INTERVALS:
            return None
        return parts[0], parts[1]

    def _subscribe(self, conn: Conn, rid: Any, sub: bool, channels: Any) -> None:
        if not isinstance(channels, list) or not channels or not all(isinstance(c, str) for c in channels):
            conn.send_control(_answer(rid, error={"message": "Invalid params", "data": {
                "reason": "must be array of strings", "param": "channels"}, "code": -32602}))
            return
        if sub and self.sim.take_fault(self.exchange, "subscribe_error", conn.id):
            conn.send_control(_answer(rid, error={"message": "Invalid params", "data": {
                "reason": "invalid channel", "param": "channels"}, "code": -32602}))
            return
        if sub and self.replay is None and any(c.endswith(".raw") for c in channels):
            conn.send_control(_answer(rid, error={"message": "raw_subscriptions_not_available_for_unauthorized",
                                                  "code": 13778}))
            return
        ok: list[str] = []
        for c in channels:
            t = self._parse(c)
            if t is None or (sub and not self.valid_symbol(t[1])):
                continue
            ok.append(c)
            if not sub:
                self.unsubscribe(conn, *t)
                continue
            if t[0] == "book" and self.replay is None and t[1] in self.st:
                self._flush(self.markets[t[1]])  # the open window goes to the others: the snapshot starts after it
            self.subscribe(conn, t[0], t[1], c)
        conn.send_control(_answer(rid, result=ok))
        if sub and self.replay is None:
            for c in ok:
                kind, inst = self._parse(c) or ("", "")
                m = self.market(inst)
                if kind == "book":
                    self._snapshot(conn, m, c)
                elif kind == "ticker":
                    self.st[inst].next_ticker = min(self.st[inst].next_ticker or time.monotonic(), time.monotonic())

    # -- frames -----------------------------------------------------------------------------
    def _snapshot(self, conn: Conn, m: Market, name: str) -> None:
        st = self.st[m.symbol]
        px, qty = m.spec.px, m.spec.qty
        bids = ",".join(f'["new",{px(p)},{qty(q)}]' for p, q in sorted(m.bids.items(), reverse=True))
        asks = ",".join(f'["new",{px(p)},{qty(q)}]' for p, q in sorted(m.asks.items()))
        now = time.time_ns() // 1_000_000
        data = (f'{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"{name}","data":{{"type":"snapshot",'
                f'"timestamp":{now},"instrument_name":"{m.symbol}","change_id":{st.change_id},"bids":[{bids}],'
                f'"asks":[{asks}]}}}}}}').encode()
        conn.send("book", m.symbol, data, (st.change_id, None), m.n - 1)

    def publish(self, m: Market, ev: Trade | BookEvent) -> None:
        sym = m.symbol
        st = self.st[sym]
        now = time.time_ns() // 1_000_000
        px, qty = m.spec.px, m.spec.qty
        if isinstance(ev, Trade):
            subs = self.subscribers("trades", sym)
            items = []
            ids = []
            mark = self.deriv(m).mark()
            for q in ev.fills:
                st.tseq += 1
                st.tid += 1 + st.rng.randrange(3)
                liq = ""
                if st.rng.random() < LIQUIDATION_SHARE:
                    liq = f',"liquidation":"{st.rng.choice(("T", "M", "MT"))}"'
                ids.append(str(st.tid))
                items.append(
                    f'{{"trade_seq":{st.tseq},"trade_id":"{st.tid}","timestamp":{now - 1},"tick_direction":'
                    f'{0 if ev.buy else 2},"price":{px(ev.px)},"mark_price":{mark:.4f},"instrument_name":"{sym}",'
                    f'"index_price":{mark:.2f},"direction":"{"buy" if ev.buy else "sell"}","amount":{qty(q)}{liq}}}')
            if subs:
                for conn, name in list(subs.items()):
                    data = (f'{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"{name}","data":'
                            f'[{",".join(items)}]}}}}').encode()
                    conn.send("trades", sym, data, tuple(ids), ev.n)
            return
        st.change_id += 1 + st.rng.randrange(40)
        if not self.subscribers("book", sym):
            st.sent_id = st.change_id  # nobody listens: a new subscriber's snapshot starts the chain
            return
        pending = st.pending
        for (side, p, q), before in zip(ev.changes, m.last_prev, strict=True):
            e = pending.get((side, p))
            if e is None:
                pending[(side, p)] = [q, before]
            else:
                e[0] = q
        st.last_n = ev.n
        if not st.flush_at:
            st.flush_at = time.monotonic() + BOOK_INTERVAL_S

    def _flush(self, m: Market) -> None:
        """Send the window's net changes as one ``change`` (``prev_change_id`` = the last one sent)."""
        st = self.st[m.symbol]
        if not st.flush_at:
            return
        st.flush_at = 0.0
        sym = m.symbol
        px, qty = m.spec.px, m.spec.qty
        bids: list[str] = []
        asks: list[str] = []
        for (side, p), (q, before) in sorted(st.pending.items()):
            if q == before:
                continue  # back where the window started: no change to report
            act = "delete" if not q else "change" if before else "new"
            (asks if side == ASK else bids).append(f'["{act}",{px(p)},{qty(q) if q else 0.0}]')
        st.pending.clear()
        prev, st.sent_id = st.sent_id, st.change_id
        now = time.time_ns() // 1_000_000
        for conn, name in list((self.subscribers("book", sym) or {}).items()):
            data = (f'{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"{name}","data":{{"type":"change",'
                    f'"timestamp":{now},"prev_change_id":{prev},"instrument_name":"{sym}","change_id":{st.change_id},'
                    f'"bids":[{",".join(bids)}],"asks":[{",".join(asks)}]}}}}}}').encode()
            conn.send("book", sym, data, (st.change_id, prev), st.last_n)

    def _ticker(self, m: Market) -> dict[str, Any]:
        d = self.deriv(m)
        d.step()
        spec = m.spec
        bb, ba = m.best()
        mark = round(d.mark(), spec.px_dec)
        out: dict[str, Any] = {
            "timestamp": time.time_ns() // 1_000_000,
            "stats": {"volume": 1234.5, "price_change": 0.5, "low": float(spec.px(bb)), "high": float(spec.px(ba))},
            "state": "open", "settlement_price": mark, "open_interest": float(d.open_interest()),
            "min_price": round(mark * 0.97, spec.px_dec), "max_price": round(mark * 1.03, spec.px_dec),
            "mark_price": mark, "last_price": float(spec.px(bb)), "instrument_name": m.symbol,
            "index_price": round(d.index(), 2), "estimated_delivery_price": round(d.index(), 2),
            "best_bid_price": float(spec.px(bb)), "best_bid_amount": float(spec.qty(m.bids.get(bb, 0))),
            "best_ask_price": float(spec.px(ba)), "best_ask_amount": float(spec.qty(m.asks.get(ba, 0))),
        }
        if m.symbol.endswith("PERPETUAL"):
            out["current_funding"] = round(d.funding(), 8)
            out["funding_8h"] = round(d.funding() * 8, 8)
            out["interest_value"] = 0.0
        elif _OPTION.search(m.symbol):
            out.update({"underlying_price": round(d.index(), 2), "underlying_index": m.symbol.rsplit("-", 2)[0],
                        "mark_iv": 55.5, "bid_iv": 54.0, "ask_iv": 57.0, "interest_rate": 0.0,
                        "greeks": {"vega": 10.1, "theta": -20.2, "rho": 1.1, "gamma": 0.0001, "delta": 0.45}})
        return out

    def pending(self) -> bool:
        return any(st.flush_at for st in self.st.values())

    def pump(self, now: float) -> None:
        """Book windows whose 100 ms are over; every 100 ms a full ticker per subscribed instrument."""
        for sym, st in self.st.items():
            if st.flush_at and now >= st.flush_at:
                self._flush(self.markets[sym])
        for sym, st in self.st.items():
            if not st.next_ticker or now < st.next_ticker:
                continue
            subs = self.subscribers("ticker", sym)
            if not subs:
                st.next_ticker = 0.0
                continue
            st.next_ticker = max(st.next_ticker + TICKER_INTERVAL_S, now)
            m = self.markets[sym]
            body = msgspec.json.encode(self._ticker(m)).decode()
            for conn, name in list(subs.items()):
                data = (f'{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"{name}",'
                        f'"data":{body}}}}}').encode()
                conn.send("ticker", sym, data, (), m.n - 1)

    def tick(self, now: float) -> None:
        """Heartbeats: a test_request per interval; the previous one unanswered closes the connection."""
        for conn in list(self.conns.values()):
            iv = conn.state.get("hb_interval")
            if iv is None or now < conn.state["hb_next"] or conn.closed:
                continue
            if not conn.state.get("hb_answered"):
                self.sim.log_fault(self.exchange, "heartbeat", conn.id, "test_request not answered: closed")
                conn.close(1000, b"")
                continue
            conn.state["hb_answered"] = False
            conn.state["hb_next"] = now + iv * self.heartbeat_factor
            self.test_requests += 1
            conn.send_control(b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}')


def _answer(rid: Any, result: Any = None, error: dict[str, Any] | None = None) -> bytes:
    us = _now_us()
    body: dict[str, Any] = {"jsonrpc": "2.0"}
    if rid is not None:
        body["id"] = rid
    if error is not None:
        body["error"] = error
    else:
        body["result"] = result
    body.update({"usIn": us - 40, "usOut": us, "usDiff": 40, "testnet": False})
    return msgspec.json.encode(body)
