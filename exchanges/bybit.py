"""bybit family (v5 public): ``bybit`` (linear, ``/v5/public/linear``) and ``bybit-spot``
(spot, ``/v5/public/spot``), each on its own connections as Tardis separates them;
one connector parametrized by ``Category`` (path, instrument category, channels).
Topics: ``orderbook.{depth}.<sym>`` snapshot/delta and ``publicTrade.<sym>``.

One websocket per ``TOPICS_PER_CONN`` topics; subscribe messages carry at
most ``TOPICS_PER_MSG`` topics (spot's limit per request; args stay far below 21,000 characters) and
are paced by ``Timing.subscribe_interval``. Heartbeat: ``{"op":"ping"}``
every 20 s. Book: a snapshot resets it; each delta's ``u`` must be the
previous ``u`` + 1 (``u == 1`` = service restart: the delta overwrites the
book, written as snapshot rows); a jump is a gap, ``u <=`` previous is a
duplicate. Resync = unsubscribe + subscribe the topic (Bybit answers with a
fresh snapshot); if none arrives in ``RESYNC_TIMEOUT`` s the connection is
dropped and rebuilt. ``orderbook.1`` (book_ticker), ``tickers`` (derivative_ticker)
and ``allLiquidation`` (liquidations): ``bybit_tickers``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ticktape.exchanges import bybit_tickers, common, instruments
from ticktape.exchanges.book import Dedup, DeltaSeq
from ticktape.exchanges.connection import Listener, Plan, Timing
from ticktape.exchanges.feed import Resubscribing
from ticktape.ipc.fastpack import LevelTextError, decode_levels
from ticktape.ipc.schemas import BOOK_ASK, BOOK_BID, SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

log = logging.getLogger("ticktape.exchanges")

EXCHANGE = "bybit"
WS_URL = "wss://stream.bybit.com"
PATH = "/v5/public/linear"
SUPPORTED = ("trades", "book_change", "book_ticker", "derivative_ticker", "liquidations")


@dataclass(frozen=True)
class Category:
    """One member of the family: its Tardis id, v5 ``category``, websocket path and channels."""

    exchange: str
    name: str
    path: str
    supported: tuple[str, ...]


LINEAR = Category(EXCHANGE, "linear", PATH, SUPPORTED)
#: spot has no funding/mark tickers or liquidations (its ``tickers`` carry none of those fields)
SPOT = Category("bybit-spot", "spot", "/v5/public/spot", ("trades", "book_change", "book_ticker"))
CATEGORIES = {c.exchange: c for c in (LINEAR, SPOT)}
DEPTHS = (1, 50, 200, 1000)
TOPICS_PER_CONN = 200
TOPICS_PER_MSG = 10
RESYNC_TIMEOUT = 10.0
SYMBOL_RE = re.compile(r"[A-Z0-9]{2,30}(-[0-9]{2}[A-Z]{3}[0-9]{2})?")

BOOK, TRADES, BBO, TICK, LIQ = 0, 1, 2, 3, 4
_KIND_TYPE = {BOOK: "book_change", TRADES: "trades", BBO: "book_ticker", TICK: "derivative_ticker", LIQ: "liquidations"}
_TOPIC_RE = re.compile(rb'\{\s*"topic"\s*:\s*"([^"]{1,80})"')


class Envelope(msgspec.Struct):
    topic: str = ""
    type: str = ""
    ts: int = 0
    data: msgspec.Raw = msgspec.Raw(b"")
    op: str = ""
    success: bool | None = None
    ret_msg: str = ""
    req_id: str = ""


class Book(msgspec.Struct, gc=False):
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]
    u: int
    seq: int = 0


class BookText(msgspec.Struct, gc=False):
    """A book body with its level arrays left as JSON text: ``Outbox.book_level_text`` parses
    them straight into ring records (no per-level Python objects). The text points into the
    frame's buffer: ``held`` decodes it into a ``Book`` where levels are needed as objects."""

    b: msgspec.Raw
    a: msgspec.Raw
    u: int
    seq: int = 0

    def held(self) -> Book:
        """This body with its levels decoded (raises LevelTextError if they are not levels)."""
        return Book(decode_levels(self.b), decode_levels(self.a), self.u, self.seq)


class Trade(msgspec.Struct, gc=False):
    T: int
    S: str
    v: float
    p: float
    i: str


class BookFrame(msgspec.Struct, gc=False):
    """Envelope and body in one pass (fast path, chosen by the frame's first bytes)."""

    topic: str
    type: str
    ts: int
    data: BookText


class TradesFrame(msgspec.Struct, gc=False):
    topic: str
    data: list[Trade]


_BOOK_HEAD = b'{"topic":"orderbook.'
_TRADES_HEAD = b'{"topic":"publicTrade.'


def validate(name: str, cfg: ExchangeConfig) -> None:
    common.check_symbols(name, cfg.symbols, SYMBOL_RE, "BTCUSDT", " in upper case")
    common.check_channels(name, cfg.channels, CATEGORIES[name].supported)
    if "book_change" in cfg.channels and cfg.depth not in DEPTHS:
        raise ValueError(f"depth {cfg.depth} is not a {name} orderbook depth (one of {', '.join(map(str, DEPTHS))})")
    common.check_no_trade_stream(name, cfg)
    common.check_url(cfg.url, ("ws", "wss"), "url")
    common.check_url(cfg.rest_url, ("http", "https"), "rest_url")


REST_URL = "https://api.bybit.com"


def rest_base(cfg: ExchangeConfig) -> str:
    """``rest_url``, else the REST host of ``url`` (stream.bybit.com -> api.bybit.com; the
    simulator serves both on one port), else api.bybit.com."""
    if cfg.rest_url:
        return cfg.rest_url
    if not cfg.url:
        return REST_URL
    base = common.http_base_of(cfg.url)
    return base.replace("://stream", "://api", 1)


def listed_symbols(cfg: ExchangeConfig, timeout: float, category: Category = LINEAR) -> tuple[str, set[str]]:
    """(where, symbols) of ``GET /v5/market/instruments-info?category=<linear|spot>`` (cursor pages)."""
    url = common.join_url(rest_base(cfg), "/v5/market/instruments-info") + f"?category={category.name}&limit=1000"
    out: set[str] = set()
    cursor = ""
    for _ in range(50):
        ans = instruments.fetch_json(url + (f"&cursor={cursor}" if cursor else ""), timeout=timeout)
        if not isinstance(ans, dict) or ans.get("retCode") != 0:
            raise instruments.Unreachable(f"{url}: {ans.get('retMsg') if isinstance(ans, dict) else ans!r}")
        res = ans.get("result") or {}
        out |= {x["symbol"] for x in res.get("list", [])}
        cursor = res.get("nextPageCursor") or ""
        if not cursor:
            break
    return url, out


def data_types(name: str, cfg: ExchangeConfig, raw: bool) -> list[str]:
    return [*cfg.channels, "raw"] if raw else list(cfg.channels)


def raw_channels(name: str, cfg: ExchangeConfig) -> tuple[str, ...]:
    """Tardis names: the topic without its symbol (``orderbook.50``, ``publicTrade``)."""
    out: list[str] = []
    if "trades" in cfg.channels:
        out.append("publicTrade")
    if "book_change" in cfg.channels:
        out.append(f"orderbook.{cfg.depth}")
    if "book_ticker" in cfg.channels and "orderbook.1" not in out:
        out.append("orderbook.1")
    if "derivative_ticker" in cfg.channels:
        out.append("tickers")
    if "liquidations" in cfg.channels:
        out.append("allLiquidation")
    return tuple(out)


class Bybit(Resubscribing):
    category = LINEAR
    exchange = EXCHANGE
    timing = Timing(stall_timeout=60.0, ping_interval=20.0, subscribe_interval=0.05)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ws_url = common.join_url(self.cfg.url or WS_URL, self.category.path)
        self._env = msgspec.json.Decoder(Envelope)
        self._book = msgspec.json.Decoder(Book, strict=False)
        self._trades = msgspec.json.Decoder(list[Trade], strict=False)
        self._book_frame = msgspec.json.Decoder(BookFrame, strict=False)
        self._trades_frame = msgspec.json.Decoder(TradesFrame, strict=False)
        self.routes: dict[str, tuple[int, int, int]] = {}
        self.topics: list[tuple[str, int, int, int]] = []
        self.book_topics: set[str] = set()  # topics whose levels become book_change rows
        self.bbo_topics: set[str] = set()  # orderbook.1 topics that become book_ticker rows
        chans = self.cfg.channels
        for s in self.cfg.symbols:
            sym = self.sym_id[s]
            if "trades" in chans:
                self.topics.append((f"publicTrade.{s}", TRADES, sym, self.chan_id["publicTrade"]))
            if "book_change" in chans:
                ob = f"orderbook.{self.cfg.depth}"
                self.topics.append((f"{ob}.{s}", BOOK, sym, self.chan_id[ob]))
                self.book_topics.add(f"{ob}.{s}")
            if "book_ticker" in chans:
                self.bbo_topics.add(f"orderbook.1.{s}")
                if f"orderbook.1.{s}" not in self.book_topics:
                    self.topics.append((f"orderbook.1.{s}", BBO, sym, self.chan_id["orderbook.1"]))
            if "derivative_ticker" in chans:
                self.topics.append((f"tickers.{s}", TICK, sym, self.chan_id["tickers"]))
            if "liquidations" in chans:
                self.topics.append((f"allLiquidation.{s}", LIQ, sym, self.chan_id["allLiquidation"]))
        for name, kind, sym, chan in self.topics:
            self.routes[name] = (kind, sym, chan)
        self.seq: dict[str, DeltaSeq] = {t[0]: DeltaSeq() for t in self.topics if t[1] in (BOOK, BBO, TICK)}
        self.tickers = bybit_tickers.Tickers(self)
        self.seen_trades = [Dedup[str](50_000) for _ in self.spec.symbols]
        self.topic_link: dict[str, int] = {}
        #: subscribe req_id -> its topics (Bybit refuses a whole message for one bad topic)
        self.requests: dict[str, list[str]] = {}
        self._req = 0
        self.snapshot_records = 4 * self.cfg.depth + 256  # both sides at the subscribed depth, and a margin

    def plans(self) -> list[Plan]:
        out: list[Plan] = []
        for i in range(0, len(self.topics), TOPICS_PER_CONN):
            chunk = self.topics[i : i + TOPICS_PER_CONN]
            msgs = [self.op("subscribe", [t[0] for t in chunk[j : j + TOPICS_PER_MSG]]) for j in range(0, len(chunk), TOPICS_PER_MSG)]
            label = f"{self.category.name}#{i // TOPICS_PER_CONN}"
            for name, kind, sym, _ in chunk:
                self.topic_link[name] = len(out)
                log.info("subscribe %s (%s) on %s", self.feed_id(_KIND_TYPE[kind], sym), name, label)
            out.append(Plan(url=self.ws_url, subscribe=msgs, streams=[(c, s) for _, _, s, c in chunk], label=label))
        return out

    def op(self, op: str, args: list[str]) -> bytes:
        self._req += 1
        if op == "subscribe":
            self.requests[str(self._req)] = args
        return msgspec.json.encode({"req_id": str(self._req), "op": op, "args": args})

    def ping(self, lst: Listener) -> None:
        lst.send(b'{"req_id":"ping","op":"ping"}')

    # -- frames -----------------------------------------------------------------
    def on_frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        head = payload[:22].tobytes()
        fast: BookFrame | TradesFrame | None = None
        try:
            if head.startswith(_BOOK_HEAD):
                fast = self._book_frame.decode(payload)
            elif head == _TRADES_HEAD:
                fast = self._trades_frame.decode(payload)
        except msgspec.DecodeError:
            fast = None
        if fast is not None:
            route = self.routes.get(fast.topic)
            if route is not None:
                kind, sym, chan = route
                self.count(sym, ts, len(payload), chan)
                if self.raw_on:
                    self.out.raw_fast(ts, payload, lst.conn_id, sym, chan)
                if kind in (BOOK, BBO) and type(fast) is BookFrame:
                    try:
                        self.on_book(lst, ts, sym, chan, fast, fast.data)
                    except LevelTextError as e:  # as the slow path treats a body msgspec refuses
                        self.malformed(lst.conn_id, ts, payload, f"{fast.topic}: {e}", sym, chan, keep_raw=False)
                        self.resync(fast.topic, ts, "malformed book frame")
                elif kind == TRADES and type(fast) is TradesFrame:
                    self.on_trades(lst, ts, sym, chan, fast.data)
                if self._pending_resync:
                    self._do_pending(ts)
                return
        self.on_frame_slow(lst, ts, payload)

    def on_frame_slow(self, lst: Listener, ts: int, payload: memoryview) -> None:
        try:
            env = self._env.decode(payload)
        except msgspec.DecodeError as e:
            m = _TOPIC_RE.match(payload.tobytes()[:96])
            topic = m[1].decode() if m else ""
            kind, sym, chan = self.routes.get(topic, (-1, 0, 0))
            self.malformed(lst.conn_id, ts, payload, f"envelope: {e}", sym, chan)
            if kind in (BOOK, BBO) and self.seq[topic].synced:
                self.resync(topic, ts, "malformed book frame")
            return
        route = self.routes.get(env.topic)
        if route is None:
            self.control(lst, ts, payload, env)
            return
        kind, sym, chan = route
        self.count(sym, ts, len(payload), chan)
        if self.raw_on:
            self.out.raw(ts, payload, lst.conn_id, sym, chan)
        try:
            if kind == TRADES:
                self.on_trades(lst, ts, sym, chan, self._trades.decode(env.data))
            elif kind == TICK:
                self.tickers.on_ticker(ts, sym, chan, lst.conn_id, env.topic, env.type, env.ts * 1_000_000, env.data)
                if env.type == "snapshot":
                    self.on_ticker_snapshot(env.topic)
            elif kind == LIQ:
                self.tickers.on_liquidations(ts, sym, env.data)
            else:
                self.on_book(lst, ts, sym, chan, env, self._book.decode(env.data))
        except msgspec.DecodeError as e:
            self.malformed(lst.conn_id, ts, payload, f"{env.topic}: {e}", sym, chan, keep_raw=False)
            if kind != TRADES and kind != LIQ:
                self.resync(env.topic, ts, "malformed book frame")
        if self._pending_resync:
            self._do_pending(ts)

    def on_trades(self, lst: Listener, ts: int, sym: int, chan: int, trades: list[Trade]) -> None:
        """Trade ids (``i``) are remembered per symbol: a trade the venue sends again is dropped."""
        push = self.out.trade_fast
        seen = self.seen_trades[sym]
        for t in trades:
            if not seen.add(t.i):
                self.duplicate(ts, sym, chan, lst.conn_id, t.i, what="trades")
                continue
            side = SIDE_BUY if t.S == "Buy" else SIDE_SELL if t.S == "Sell" else SIDE_UNKNOWN
            push(ts, t.T * 1_000_000, sym, t.i.encode(), t.p, t.v, side)

    def on_book(
        self, lst: Listener, ts: int, sym: int, chan: int, env: Envelope | BookFrame, b: Book | BookText
    ) -> None:
        """Raises LevelTextError (before any change) when a level text is not levels."""
        st = self.seq[env.topic]
        topic = env.topic
        if isinstance(b, BookText) and topic in self.bbo_topics:
            b = b.held()  # orderbook.1 levels feed the book_ticker state as objects
        snapshot = env.type == "snapshot"
        restart = False
        if not snapshot:
            if not st.synced:
                self.bump("duplicates", sym)  # delta before its snapshot (e.g. while resyncing): unusable
                return
            if b.u == 1:
                snapshot = restart = True
            elif b.u <= st.last_u:
                self.duplicate(ts, sym, chan, lst.conn_id, b.u, what="orderbook updates")
                return
            elif b.u != st.last_u + 1:
                self.gap(ts, sym, chan, lst.conn_id, f"u {b.u} != previous u {st.last_u} + 1", env.ts * 1_000_000)
                self.resync(env.topic, ts, "gap")
                return
        ets = env.ts * 1_000_000
        if topic in self.book_topics:  # first: a level text that is not levels raises here, before any change
            if type(b) is BookText:
                self.out.book_level_text(ts, ets, sym, snapshot, b.b, b.a)
            else:
                push = self.out.book_levels
                push(ts, ets, sym, snapshot, BOOK_BID, b.b)
                push(ts, ets, sym, snapshot, BOOK_ASK, b.a)
        if restart:
            self.out.event(ts, "resync", symbol=sym, channel=chan, conn_id=lst.conn_id, detail="u == 1: service restart, book overwritten")
        elif snapshot and st.synced_once and not st.synced:  # a completed resync
            self.bump("resyncs", sym)
            self.out.event(ts, "resync", symbol=sym, channel=chan, conn_id=lst.conn_id, detail=f"snapshot at u={b.u}")
        if topic in self.bbo_topics and isinstance(b, Book):
            self.tickers.on_bbo(ts, ets, sym, snapshot, b)
        st.last_u = b.u
        st.synced = st.synced_once = True

    def on_ticker_snapshot(self, topic: str) -> None:
        st = self.seq[topic]
        st.synced = st.synced_once = True
        st.resync_deadline = 0.0

    # -- resync -----------------------------------------------------------------
    def resync(self, topic: str, ts: int, why: str, when_room: bool = False) -> None:
        """Unsubscribe + subscribe ``topic`` (Bybit answers with a snapshot). ``when_room``:
        only once the book ring has room for that snapshot (after a ring-full drop, a
        snapshot into a still-full ring would be dropped too, and the book never whole)."""
        st = self.seq[topic]
        st.reset()
        _kind, sym, chan = self.routes[topic]
        self.out.event(ts, "resync", symbol=sym, channel=chan, detail=f"{why}: resubscribing {topic}"[:96])
        self.resubscribe(topic, topic, when_room)

    def _resubscribe(self, topic: str) -> None:
        self.seq[topic].resync_deadline = time.monotonic() + RESYNC_TIMEOUT
        link = self.links[self.topic_link[topic]] if self.links else None
        if link is not None and link.current is not None:
            link.current.send(self.op("unsubscribe", [topic]))
            link.current.send(self.op("subscribe", [topic]))

    def book_dropped(self, sym: int, ts: int) -> None:
        for topic, (kind, s, chan) in self.routes.items():
            st = self.seq.get(topic)
            if kind == BOOK and s == sym and st is not None and st.synced:
                self.gap(ts, sym, chan, 0, f"book records dropped (ring full) after u {st.last_u}")
                self.resync(topic, ts, "book records dropped (ring full)", when_room=True)

    def resync_waits(self) -> Iterable[tuple[str, DeltaSeq]]:
        return self.seq.items()

    def no_snapshot(self, topic: str) -> None:
        self.links[self.topic_link[topic]].reconnect(f"no snapshot for {topic} after resubscribe")

    def control(self, lst: Listener, ts: int, payload: memoryview, env: Envelope) -> None:
        self.control_frame(lst, ts, payload)
        if env.success is False or (env.op == "" and env.topic == "" and env.ret_msg):
            args = self.requests.get(env.req_id, []) if env.op == "subscribe" else []
            if len(args) > 1:
                self.retry_one_by_one(lst, ts, args, "topics", env.ret_msg, lambda a: self.op("subscribe", [a]))
                return
            _, sym, chan = self.routes.get(args[0], (0, 0, 0)) if args else (0, 0, 0)
            self.bump("subscribe_errors", sym)
            detail = f"{env.op or 'error'}: {env.ret_msg}"[:96]
            self.out.event(ts, "subscribe_error", symbol=sym, channel=chan, conn_id=lst.conn_id, detail=detail)
            log.error("%s conn %d: %s", self.exchange, lst.conn_id, detail)
        elif env.topic:
            log.debug("%s: frame of unexpected topic %s", self.exchange, env.topic)

    def on_lost(self, lst: Listener) -> None:
        for topic, st in self.seq.items():
            if self.routes[topic][2] and (self.routes[topic][2], self.routes[topic][1]) in lst.plan.streams:
                st.reset()
                st.resync_deadline = 0.0
                self._await_room.discard(topic)  # the reconnect subscribes it again
                if self.routes[topic][0] == TICK:
                    self.tickers.forget(self.routes[topic][1])


class BybitSpot(Bybit):
    """``bybit-spot``: the same protocol on the spot path (``exchanges.bybit_spot`` binds it)."""

    category = SPOT
    exchange = SPOT.exchange


#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = Bybit
