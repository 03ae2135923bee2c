"""bitmex (``/realtime``): ``orderBookL2`` partial/insert/update/delete, ``trade``,
``quote`` (book_ticker), ``instrument`` (derivative_ticker), ``liquidation``.

Subscribe ``{"op":"subscribe","args":["orderBookL2:XBTUSD",...]}``, one message per
symbol (all its tables), so a refused symbol is charged to that symbol; at most
``TOPICS_PER_CONN`` topics per connection. Heartbeat as BitMEX asks: after 5 s without a
message the text ``ping`` (``IDLE_PINGS`` watchdog periods of ``Timing.ping_interval``),
answered by ``pong``; no pong within 5 more s is a stall (``stall_timeout`` 10 s).

The book is keyed by level id (``(id, side)``, as BitMEX keys it). BitMEX
carries no sequence number, so a missed message can only be seen when a later
message refers to the level it changed: an ``update``/``delete`` of an id the
book lacks, an ``insert`` of an id it holds, an ``insert`` at a price whose id the
other side still holds (a locked book: that side's delete was missed), or an
``update`` whose price differs from the id's. Each is a ``gap`` event and a resync (unsubscribe + subscribe:
BitMEX answers with a new ``partial``). A missed ``update`` of a level that is
later updated again, or a missed pair that cancels out, is not detectable; the
README says so. Prices come from the message when it carries one (BitMEX sends
it on every message today), else from the id's price remembered since its
insert/partial (2021 recordings send update/delete without price).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import msgspec

from ticktape.exchanges import bitmex_tickers, common, instruments
from ticktape.exchanges.bitmex_tickers import iso_ns
from ticktape.exchanges.book import Dedup, DeltaSeq
from ticktape.exchanges.connection import Listener, Plan, Timing
from ticktape.exchanges.feed import Resubscribing
from ticktape.ipc.schemas import BOOK_ASK, BOOK_BID, SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

log = logging.getLogger("ticktape.exchanges")

EXCHANGE = "bitmex"
WS_URL = "wss://ws.bitmex.com"
PATH = "/realtime"
REST_URL = "https://www.bitmex.com"
INSTRUMENTS_PATH = "/api/v1/instrument/active"
SUPPORTED = ("trades", "book_change", "book_ticker", "derivative_ticker", "liquidations")
TOPICS_PER_CONN = 100
RESYNC_TIMEOUT = 10.0
#: a connection idle for this many ping periods (1 s each by default) gets a ``ping``
IDLE_PINGS = 5
# XBTUSD, ETHUSDT, dated XBTZ26, spot XBT_USDT
SYMBOL_RE = re.compile(r"[A-Z0-9]{3,20}(_[A-Z0-9]{2,10})?")
NAN = math.nan

#: normalized channel -> BitMEX table (the raw channel name, as Tardis records it)
TABLES = {"trades": "trade", "book_change": "orderBookL2", "book_ticker": "quote",
          "derivative_ticker": "instrument", "liquidations": "liquidation"}
_TYPE_OF = {t: c for c, t in TABLES.items()}
_BOOK_HEAD = b'{"table":"orderBookL2",'
_TRADE_HEAD = b'{"table":"trade",'
_TABLE_RE = re.compile(rb'\{\s*"table"\s*:\s*"([A-Za-z0-9_]{1,40})"')
_SYMBOL_RE = re.compile(rb'"symbol"\s*:\s*"([A-Za-z0-9_]{1,40})"')


class Filter(msgspec.Struct, gc=False):
    symbol: str = ""


class Level(msgspec.Struct, gc=False):
    symbol: str
    id: int
    side: str
    size: float = -1.0  # absent on delete
    price: float = NAN  # absent on update/delete before 2022
    timestamp: str = ""


class BookFrame(msgspec.Struct, gc=False):
    table: str
    action: str
    data: list[Level]
    filter: Filter | None = None


class Trade(msgspec.Struct, gc=False):
    timestamp: str
    symbol: str
    side: str
    size: float
    price: float
    trdMatchID: str


class TradeFrame(msgspec.Struct, gc=False):
    table: str
    action: str
    data: list[Trade]
    filter: Filter | None = None


class Envelope(msgspec.Struct):
    table: str = ""
    action: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")
    filter: Filter | None = None
    success: bool | None = None
    subscribe: str = ""
    unsubscribe: str = ""
    error: str = ""
    status: int = 0
    request: msgspec.Raw = msgspec.Raw(b"")
    info: str = ""


class Request(msgspec.Struct):
    op: str = ""
    args: list[str] | str = ""


class SymbolName(msgspec.Struct):
    symbol: str = ""


def validate(name: str, cfg: ExchangeConfig) -> None:
    common.check_symbols(name, cfg.symbols, SYMBOL_RE, "XBTUSD", " (BitMEX names: XBTUSD, ETHUSDT, XBTZ26)")
    common.check_channels(name, cfg.channels, SUPPORTED)
    if "book_change" in cfg.channels and cfg.depth != 20:
        raise ValueError(f"depth {cfg.depth}: {name} orderBookL2 is the whole book (leave depth out)")
    common.check_no_trade_stream(name, cfg)
    common.check_url(cfg.url, ("ws", "wss"), "url")
    common.check_url(cfg.rest_url, ("http", "https"), "rest_url")


def listed_symbols(cfg: ExchangeConfig, timeout: float) -> tuple[str, set[str]]:
    """(where, symbols) of ``GET /api/v1/instrument/active`` (every open instrument)."""
    base = cfg.rest_url or (common.http_base_of(cfg.url) if cfg.url else REST_URL)
    url = common.join_url(base, INSTRUMENTS_PATH)
    ans = instruments.fetch_json(url, timeout=timeout)
    if not isinstance(ans, list):
        raise instruments.Unreachable(f"{url}: not an instrument list ({str(ans)[:80]})")
    return url, {x["symbol"] for x in ans if isinstance(x, dict) and "symbol" in x}


def data_types(name: str, cfg: ExchangeConfig, raw: bool) -> list[str]:
    return [*cfg.channels, "raw"] if raw else list(cfg.channels)


def raw_channels(name: str, cfg: ExchangeConfig) -> tuple[str, ...]:
    """Tardis names: the BitMEX table (``orderBookL2``, ``trade``, ...)."""
    return tuple(TABLES[c] for c in SUPPORTED if c in cfg.channels)


class BookState:
    """One symbol's orderBookL2: (id, side) key -> (price, size)."""

    __slots__ = ("levels", "seq")

    def __init__(self) -> None:
        self.levels: dict[int, tuple[float, float]] = {}
        self.seq = DeltaSeq()  # synced / synced_once / resync_deadline (no ``u`` at BitMEX)


class Bitmex(Resubscribing):
    exchange = EXCHANGE
    timing = Timing(stall_timeout=10.0, ping_interval=1.0, subscribe_interval=0.05)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ws_url = common.join_url(self.cfg.url or WS_URL, PATH)
        self._env = msgspec.json.Decoder(Envelope)
        self._book_frame = msgspec.json.Decoder(BookFrame, strict=False)
        self._trade_frame = msgspec.json.Decoder(TradeFrame, strict=False)
        self._levels = msgspec.json.Decoder(list[Level], strict=False)
        self._trades = msgspec.json.Decoder(list[Trade], strict=False)
        self._request = msgspec.json.Decoder(Request)
        self._first = msgspec.json.Decoder(list[SymbolName])
        self.chan = {t: self.chan_id.get(t, 0) for t in TABLES.values()}
        self.books = [BookState() for _ in self.spec.symbols]
        self.seen_trades = [Dedup[str](50_000) for _ in self.spec.symbols]
        self.tickers = bitmex_tickers.Tickers(self)
        tables = raw_channels(EXCHANGE, self.cfg)
        self.tables = set(tables)
        per_conn = max(1, TOPICS_PER_CONN // max(1, len(tables)))
        #: symbols per connection; topic -> link index
        self.groups = [self.cfg.symbols[i : i + per_conn] for i in range(0, len(self.cfg.symbols), per_conn)]
        self.topic_link: dict[str, int] = {}
        self._pinged: dict[int, float] = {}  # conn id -> monotonic time of our last ping

    def plans(self) -> list[Plan]:
        out: list[Plan] = []
        tables = raw_channels(EXCHANGE, self.cfg)
        for i, group in enumerate(self.groups):
            label = f"realtime#{i}"
            msgs, streams = [], []
            for s in group:
                sym = self.sym_id[s]
                args = [f"{t}:{s}" for t in tables]
                msgs.append(msgspec.json.encode({"op": "subscribe", "args": args}))
                for t, a in zip(tables, args, strict=True):
                    self.topic_link[a] = i
                    streams.append((self.chan[t], sym))
                    log.info("subscribe %s (%s) on %s", self.feed_id(_TYPE_OF[t], sym), a, label)
            out.append(Plan(url=self.ws_url, subscribe=msgs, streams=streams, label=label))
        return out

    def ping(self, lst: Listener) -> None:
        """Called every ``ping_interval``: a ``ping`` once the connection was idle for ``IDLE_PINGS``
        periods (and not again until as long after it). A busy connection is never pinged."""
        now = time.monotonic()
        idle = IDLE_PINGS * self.timing.ping_interval
        if now - lst.last_frame >= idle and now - self._pinged.get(lst.conn_id, 0.0) >= idle:
            self._pinged[lst.conn_id] = now
            lst.send(b"ping")

    # -- frames -----------------------------------------------------------------
    def on_frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        if payload[:23] == _BOOK_HEAD:
            try:
                f = self._book_frame.decode(payload)
            except msgspec.DecodeError:
                pass
            else:
                sym = self._symbol_of(f.data, f.filter)
                self.count(sym, ts, len(payload), self.chan["orderBookL2"])
                if self.raw_on:
                    self.out.raw_fast(ts, payload, lst.conn_id, sym, self.chan["orderBookL2"])
                if sym and "orderBookL2" in self.tables:
                    self.on_book(lst, ts, sym, f.action, f.data)
                if self._pending_resync:
                    self._do_pending(ts)
                return
        elif payload[:17] == _TRADE_HEAD:
            try:
                t = self._trade_frame.decode(payload)
            except msgspec.DecodeError:
                pass
            else:
                sym = self._symbol_of(t.data, t.filter)
                chan = self.chan["trade"]
                self.count(sym, ts, len(payload), chan)
                if self.raw_on:
                    self.out.raw_fast(ts, payload, lst.conn_id, sym, chan)
                if sym and t.action == "insert" and "trade" in self.tables:
                    self.on_trades(lst, ts, sym, chan, t.data)
                return
        self.on_frame_slow(lst, ts, payload)

    def _symbol_of(self, data: list[Any], flt: Filter | None) -> int:
        name = data[0].symbol if data else flt.symbol if flt is not None else ""
        return self.sym_id.get(name, 0)

    def on_frame_slow(self, lst: Listener, ts: int, payload: memoryview) -> None:
        if payload == b"pong":
            self.control(lst, ts, payload, None)
            return
        try:
            env = self._env.decode(payload)
        except msgspec.DecodeError as e:
            head = payload.tobytes()[:200]
            m_t, m_s = _TABLE_RE.match(head), _SYMBOL_RE.search(head)
            table = m_t[1].decode() if m_t else ""
            sym = self.sym_id.get(m_s[1].decode(), 0) if m_s else 0
            self.malformed(lst.conn_id, ts, payload, f"envelope: {e}", sym, self.chan.get(table, 0))
            if table in ("orderBookL2", ""):  # a book lost a message: that symbol's, or (cut before it) every one here
                book = self.chan["orderBookL2"]
                for s in [sym] if sym else [s for c, s in lst.plan.streams if c == book]:
                    if self.books[s].seq.synced:
                        self.resync(s, ts, "malformed book frame")
            return
        table = env.table
        if table not in self.tables:
            self.control(lst, ts, payload, env)
            return
        chan = self.chan[table]
        try:
            first = self._first.decode(env.data)
        except msgspec.DecodeError as e:
            self.malformed(lst.conn_id, ts, payload, f"{table}: {e}", 0, chan)
            return
        name = first[0].symbol if first else env.filter.symbol if env.filter is not None else ""
        sym = self.sym_id.get(name, 0)
        self.count(sym, ts, len(payload), chan)
        if self.raw_on:
            self.out.raw(ts, payload, lst.conn_id, sym, chan)
        if not sym:
            return
        try:
            if table == "trade":
                if env.action == "insert":  # a partial re-sends trades printed before the subscription
                    self.on_trades(lst, ts, sym, chan, self._trades.decode(env.data))
            elif table == "orderBookL2":
                self.on_book(lst, ts, sym, env.action, self._levels.decode(env.data))
            elif table == "instrument":
                self.tickers.on_instrument(ts, sym, chan, lst.conn_id, env.action, env.data)
            elif table == "quote":
                self.tickers.on_quote(ts, sym, env.action, env.data)
            else:
                self.tickers.on_liquidation(ts, sym, env.action, env.data)
        except (msgspec.DecodeError, ValueError) as e:
            self.malformed(lst.conn_id, ts, payload, f"{table}: {e}"[:96], sym, chan, keep_raw=False)
            if table == "orderBookL2" and self.books[sym].seq.synced:
                self.resync(sym, ts, "malformed book frame")
        if self._pending_resync:
            self._do_pending(ts)

    def on_trades(self, lst: Listener, ts: int, sym: int, chan: int, trades: list[Trade]) -> None:
        """Trade ids (``trdMatchID``) are remembered per symbol: a trade sent again is dropped."""
        push = self.out.trade_fast
        seen = self.seen_trades[sym]
        for t in trades:
            if self.sym_id.get(t.symbol, 0) != sym:
                sym = self.sym_id.get(t.symbol, 0)
                if not sym:
                    continue
                seen = self.seen_trades[sym]
            if not seen.add(t.trdMatchID):
                self.duplicate(ts, sym, chan, lst.conn_id, t.trdMatchID, what="trades")
                continue
            side = SIDE_BUY if t.side == "Buy" else SIDE_SELL if t.side == "Sell" else SIDE_UNKNOWN
            push(ts, iso_ns(t.timestamp), sym, t.trdMatchID.encode(), t.price, t.size, side)

    # -- the book ---------------------------------------------------------------------
    def on_book(self, lst: Listener, ts: int, sym: int, action: str, data: list[Level]) -> None:
        name = self.spec.symbols[sym]
        if len(data) > 1 and any(x.symbol != name for x in data):  # BitMEX parts frames by symbol; if not, split
            for s in dict.fromkeys(x.symbol for x in data):
                other = self.sym_id.get(s, 0)
                if other:  # (levels of a symbol not subscribed here stay in raw only)
                    self.on_book(lst, ts, other, action, [x for x in data if x.symbol == s])
            return
        bk = self.books[sym]
        st = bk.seq
        chan = self.chan["orderBookL2"]
        ets = iso_ns(data[-1].timestamp) if data and data[-1].timestamp else 0
        if action == "partial":
            if st.synced_once and not st.synced:  # a completed resync
                self.bump("resyncs", sym)
                self.out.event(ts, "resync", symbol=sym, channel=chan, conn_id=lst.conn_id,
                               detail=f"snapshot at partial ({len(data)} levels)")
            levels = bk.levels
            levels.clear()
            bids: list[tuple[float, float]] = []
            asks: list[tuple[float, float]] = []
            for x in data:
                buy = x.side == "Buy"
                levels[x.id * 2 + buy] = (x.price, x.size)
                (bids if buy else asks).append((x.price, x.size))
            push = self.out.book_levels
            push(ts, ets, sym, True, BOOK_BID, bids)
            push(ts, ets, sym, True, BOOK_ASK, asks)
            st.synced = st.synced_once = True
            st.resync_deadline = 0.0
            return
        if not st.synced:
            self.bump("duplicates", sym)  # before the partial (or while resyncing): unusable, kept in raw
            return
        levels = bk.levels
        bids, asks = [], []
        why = ""
        for x in data:
            buy = x.side == "Buy"
            key = x.id * 2 + buy
            have = levels.get(key)
            if action == "update":
                if have is None:
                    why = f"update of unknown level id {x.id} {x.side}"
                    break
                price = have[0]
                if x.price == x.price and x.price != price:  # a price given (not NaN) that is not the id's
                    why = f"update of level id {x.id} at {x.price}, known at {price}"
                    break
                levels[key] = (price, x.size)
                (bids if buy else asks).append((price, x.size))
            elif action == "insert":
                if have is not None:
                    why = f"insert of known level id {x.id} {x.side}"
                    break
                if key ^ 1 in levels:  # ids are per price: the other side still stands at this price
                    why = f"insert of {x.side} level id {x.id} where the other side stands (a missed delete)"
                    break
                levels[key] = (x.price, x.size)
                (bids if buy else asks).append((x.price, x.size))
            elif action == "delete":
                if have is None:
                    why = f"delete of unknown level id {x.id} {x.side}"
                    break
                del levels[key]
                (bids if buy else asks).append((have[0], 0.0))
            else:
                why = f"unknown action {action!r}"
                break
        if why:
            self.gap(ts, sym, chan, lst.conn_id, why[:96], ets)
            self.resync(sym, ts, "missed update")
            return
        push = self.out.book_levels
        if bids:
            push(ts, ets, sym, False, BOOK_BID, bids)
        if asks:
            push(ts, ets, sym, False, BOOK_ASK, asks)

    # -- resync -----------------------------------------------------------------
    def resync(self, sym: int, ts: int, why: str, when_room: bool = False, table: str = "orderBookL2") -> None:
        """Unsubscribe + subscribe the symbol's ``table`` (BitMEX answers with a new partial).
        ``when_room``: only once the book ring has room for that partial."""
        topic = f"{table}:{self.spec.symbols[sym]}"
        st = self.books[sym].seq if table == "orderBookL2" else self.tickers.seq[sym]
        st.reset()
        self.out.event(ts, "resync", symbol=sym, channel=self.chan[table], detail=f"{why}: resubscribing {topic}"[:96])
        self.resubscribe(topic, topic, when_room)  # room: half the ring

    def _resubscribe(self, topic: str, st: DeltaSeq | None = None) -> None:
        if st is None:
            table, name = topic.split(":", 1)
            sym = self.sym_id[name]
            st = self.books[sym].seq if table == "orderBookL2" else self.tickers.seq[sym]
        st.resync_deadline = time.monotonic() + RESYNC_TIMEOUT
        link = self.links[self.topic_link[topic]] if self.links else None
        if link is not None and link.current is not None:
            link.current.send(msgspec.json.encode({"op": "unsubscribe", "args": [topic]}))
            link.current.send(msgspec.json.encode({"op": "subscribe", "args": [topic]}))

    def book_dropped(self, sym: int, ts: int) -> None:
        if sym and self.books[sym].seq.synced:
            self.gap(ts, sym, self.chan["orderBookL2"], 0, "book records dropped (ring full)")
            self.resync(sym, ts, "book records dropped (ring full)", when_room=True)

    def resync_waits(self) -> Iterator[tuple[tuple[str, int], DeltaSeq]]:
        for sym, (book, ticker) in enumerate(zip(self.books, self.tickers.seq, strict=True)):
            yield ("orderBookL2", sym), book.seq
            yield ("instrument", sym), ticker

    def no_snapshot(self, key: tuple[str, int]) -> None:
        topic = f"{key[0]}:{self.spec.symbols[key[1]]}"
        if topic in self.topic_link:
            self.links[self.topic_link[topic]].reconnect(f"no partial for {topic} after resubscribe")

    # -- control frames -----------------------------------------------------------
    def control(self, lst: Listener, ts: int, payload: memoryview, env: Envelope | None) -> None:
        self.control_frame(lst, ts, payload)
        if env is None or not env.error:
            if env is not None and env.table:
                log.debug("%s: frame of unexpected table %s", self.exchange, env.table)
            return
        try:
            req = self._request.decode(env.request) if bytes(env.request) else Request()
        except msgspec.DecodeError:
            req = Request()
        args = [req.args] if isinstance(req.args, str) else req.args
        names = {a.split(":", 1)[1] for a in args if ":" in a}
        tables = {a.split(":", 1)[0] for a in args}
        sym = self.sym_id.get(next(iter(names)), 0) if len(names) == 1 else 0
        chan = self.chan.get(next(iter(tables)), 0) if len(tables) == 1 else 0
        detail = f"{req.op or 'error'}: {env.error}"[:96]
        if req.op == "unsubscribe":  # e.g. a resync's unsubscribe of a topic the server had dropped
            self.out.event(ts, "info", symbol=sym, channel=chan, conn_id=lst.conn_id, detail=detail)
            return
        self.bump("subscribe_errors", sym)
        self.out.event(ts, "subscribe_error", symbol=sym, channel=chan, conn_id=lst.conn_id, detail=detail)
        log.error("%s conn %d: %s (%s)", self.exchange, lst.conn_id, detail, ",".join(args)[:200])

    def on_lost(self, lst: Listener) -> None:
        self._pinged.pop(lst.conn_id, None)
        for chan, sym in lst.plan.streams:
            if chan == self.chan["orderBookL2"] and "orderBookL2" in self.tables:
                st = self.books[sym].seq
                st.reset()
                st.resync_deadline = 0.0
                self._await_room.discard(f"orderBookL2:{self.spec.symbols[sym]}")
            elif chan == self.chan["instrument"] and "instrument" in self.tables:
                self.tickers.forget(sym)


#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = Bitmex
