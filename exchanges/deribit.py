"""deribit (JSON-RPC websocket API v2): ``book.<inst>.100ms``, ``trades.<inst>.100ms``,
``ticker.<inst>.100ms`` over ``public/subscribe``; perpetuals, futures and options.

Book: the first notification of a subscription is ``type: snapshot``; each
``change`` carries ``prev_change_id``, which must equal the previous frame's
``change_id`` (ids jump by more than 1: the chain is by the link, never by +1).
A broken link is a ``gap`` event; resync = ``public/unsubscribe`` +
``public/subscribe`` of that channel, which brings a fresh snapshot (changes
still in flight before it are counted, never applied). A ``change_id`` at or
below the last applied one is a duplicate. Level actions ``new``/``change``/
``delete`` become (price, amount) rows, ``delete`` amount 0 (as Tardis maps them).

Heartbeat: ``public/set_heartbeat`` (interval ``HEARTBEAT_S``, Deribit's minimum
is 10 s) is the first message of every connection; each
``{"method":"heartbeat","params":{"type":"test_request"}}`` is answered with
``public/test`` at once (Deribit closes a connection that does not answer).
``ping`` sends ``public/test`` too. ``ticker`` gives book_ticker (best bid/ask)
and, for non-option instruments, derivative_ticker (Tardis maps option tickers
to option_summary, a type ticktape does not have: they stay raw + book_ticker).
Liquidations are trades with a ``liquidation`` field (``T``: the taker side was
liquidated, side = direction; ``M``/``MT``: the maker side, side = opposite).
Raw channels are Tardis's: ``book``, ``trades``, ``ticker``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from ticktape.exchanges import common, instruments
from ticktape.exchanges.book import Dedup, DeltaSeq
from ticktape.exchanges.connection import Listener, Plan, Timing
from ticktape.exchanges.feed import Resubscribing
from ticktape.ipc.schemas import BOOK_ASK, BOOK_BID, SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

log = logging.getLogger("ticktape.exchanges")

EXCHANGE = "deribit"
WS_URL = "wss://www.deribit.com"
PATH = "/ws/api/v2"
REST_URL = "https://www.deribit.com"
INSTRUMENTS_PATH = "/api/v2/public/get_instruments"
SUPPORTED = ("trades", "book_change", "book_ticker", "derivative_ticker", "liquidations")
INTERVAL = "100ms"  # ``raw`` needs an authenticated connection
CHANNELS_PER_MSG = 100
CHANNELS_PER_CONN = 500
HEARTBEAT_S = 10
RESYNC_TIMEOUT = 10.0
# BTC-PERPETUAL, SOL_USDC-PERPETUAL, BTC-27JUN25, BTC-27JUN25-60000-C, MATIC_USDC-9MAR24-1d02-C, BTC-FS-30SEP22_PERP
SYMBOL_RE = re.compile(r"[A-Z0-9]{2,12}(_[A-Z]{3,5})?(-[A-Za-z0-9_]{1,16}){1,3}")
NAN = float("nan")

BOOK, TRADES, TICKER = 0, 1, 2
_KINDS = {"book": BOOK, "trades": TRADES, "ticker": TICKER}
_KIND_TYPE = {BOOK: "book_change", TRADES: "trades", TICKER: "book_ticker/derivative_ticker"}
_CHANNEL_RE = re.compile(rb'"channel"\s*:\s*"([a-z_]{1,20})\.([^".]{1,60})')


class Params(msgspec.Struct):
    channel: str = ""
    type: str = ""  # heartbeat: "heartbeat" | "test_request"
    data: msgspec.Raw = msgspec.Raw(b"")


class Envelope(msgspec.Struct):
    """A notification (``method`` + ``params``) or an answer to our request (``id`` + ``result``/``error``)."""

    method: str = ""
    params: Params | None = None
    id: int | str | None = None
    result: msgspec.Raw = msgspec.Raw(b"")
    error: dict[str, Any] | None = None


class Book(msgspec.Struct, gc=False):
    change_id: int
    timestamp: int = 0
    type: str = ""
    prev_change_id: int | None = None
    bids: list[tuple[str, float, float]] = []
    asks: list[tuple[str, float, float]] = []


class Trade(msgspec.Struct, gc=False):
    trade_id: str
    timestamp: int
    price: float
    amount: float
    direction: str
    liquidation: str = ""


class Ticker(msgspec.Struct, gc=False):
    timestamp: int = 0
    last_price: float | None = None
    mark_price: float | None = None
    index_price: float | None = None
    current_funding: float | None = None
    open_interest: float | None = None
    best_bid_price: float | None = None
    best_bid_amount: float | None = None
    best_ask_price: float | None = None
    best_ask_amount: float | None = None
    greeks: msgspec.Raw = msgspec.Raw(b"")  # present (non-empty) on options only


class BookParams(msgspec.Struct, gc=False):
    channel: str
    data: Book


class BookFrame(msgspec.Struct, gc=False):
    """Envelope and body in one pass (fast path, chosen by the frame's first bytes)."""

    params: BookParams


class TradesParams(msgspec.Struct, gc=False):
    channel: str
    data: list[Trade]


class TradesFrame(msgspec.Struct, gc=False):
    params: TradesParams


_HEAD = b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"'
_BOOK_HEAD = _HEAD + b"book."
_TRADES_HEAD = _HEAD + b"trades."


def _f(x: float | None) -> float:
    return NAN if x is None else x


def levels(side: list[tuple[str, float, float]]) -> list[tuple[float, float]]:
    """A side's ``[action, price, amount]`` levels as (price, amount) rows (``delete``: amount 0)."""
    return [(p, 0.0 if act == "delete" else q) for act, p, q in side]


def is_snapshot(b: Book) -> bool:
    """Older recordings (and Tardis's mapper) know a snapshot only by the missing ``prev_change_id``."""
    return b.type == "snapshot" or (not b.type and b.prev_change_id is None)


def validate(name: str, cfg: ExchangeConfig) -> None:
    common.check_symbols(name, cfg.symbols, SYMBOL_RE, "BTC-PERPETUAL, BTC-27JUN25 or BTC-27JUN25-60000-C",
                         " (Deribit instrument names)")
    common.check_channels(name, cfg.channels, SUPPORTED)
    common.check_no_trade_stream(name, cfg)
    common.check_url(cfg.url, ("ws", "wss"), "url")
    common.check_url(cfg.rest_url, ("http", "https"), "rest_url")


def rest_base(cfg: ExchangeConfig) -> str:
    """``rest_url``, else the http(s) base of ``url`` (the simulator serves both on one port)."""
    if cfg.rest_url:
        return cfg.rest_url
    return common.http_base_of(cfg.url) if cfg.url else REST_URL


def listed_symbols(cfg: ExchangeConfig, timeout: float) -> tuple[str, set[str]]:
    """(where, names) of ``GET /api/v2/public/get_instruments?currency=any&expired=false``."""
    url = common.join_url(rest_base(cfg), INSTRUMENTS_PATH) + "?currency=any&expired=false"
    ans = instruments.fetch_json(url, timeout=timeout)
    if not isinstance(ans, dict) or not isinstance(ans.get("result"), list):
        err = ans.get("error") if isinstance(ans, dict) else ans
        raise instruments.Unreachable(f"{url}: {err!r}")
    return url, {x["instrument_name"] for x in ans["result"] if isinstance(x, dict) and "instrument_name" in x}


def data_types(name: str, cfg: ExchangeConfig, raw: bool) -> list[str]:
    return [*cfg.channels, "raw"] if raw else list(cfg.channels)


def raw_channels(name: str, cfg: ExchangeConfig) -> tuple[str, ...]:
    """Tardis names: the channel's first part (``book``, ``trades``, ``ticker``)."""
    ch = cfg.channels
    out: list[str] = []
    if "trades" in ch or "liquidations" in ch:
        out.append("trades")
    if "book_change" in ch:
        out.append("book")
    if "book_ticker" in ch or "derivative_ticker" in ch:
        out.append("ticker")
    return tuple(out)


class Deribit(Resubscribing):
    exchange = EXCHANGE
    timing = Timing(stall_timeout=30.0, ping_interval=15.0, subscribe_interval=0.35)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ws_url = common.join_url(self.cfg.url or WS_URL, PATH)
        self._env = msgspec.json.Decoder(Envelope)
        self._book = msgspec.json.Decoder(Book, strict=False)
        self._trades = msgspec.json.Decoder(list[Trade], strict=False)
        self._ticker = msgspec.json.Decoder(Ticker, strict=False)
        self._book_frame = msgspec.json.Decoder(BookFrame, strict=False)
        self._trades_frame = msgspec.json.Decoder(TradesFrame, strict=False)
        chans = self.cfg.channels
        self.want_trades = "trades" in chans
        self.want_liqs = "liquidations" in chans
        self.want_bbo = "book_ticker" in chans
        self.want_deriv = "derivative_ticker" in chans
        #: (kind, instrument) -> (kind, symbol id, channel id); the interval suffix is not part of
        #: the key, so a recording of ``.raw`` frames reaches a ``.100ms`` subscription
        self.routes: dict[tuple[str, str], tuple[int, int, int]] = {}
        self.channels: list[tuple[str, int, int, int]] = []  # (subscribe name, kind, sym, chan)
        for s in self.cfg.symbols:
            sym = self.sym_id[s]
            for kind in raw_channels(EXCHANGE, self.cfg):
                k = _KINDS[kind]
                self.channels.append((f"{kind}.{s}.{INTERVAL}", k, sym, self.chan_id[kind]))
                self.routes[(kind, s)] = (k, sym, self.chan_id[kind])
        self.by_channel: dict[str, tuple[int, int, int]] = {}  # notification channel -> route (cache)
        self.seq: dict[str, DeltaSeq] = {c[0]: DeltaSeq() for c in self.channels if c[1] == BOOK}
        self.book_name = {c[2]: c[0] for c in self.channels if c[1] == BOOK}  # symbol id -> book channel
        self.seen_trades = [Dedup[str](50_000) for _ in self.spec.symbols]
        self.chan_link: dict[str, int] = {}
        #: request id -> the channels it subscribes (an answer names the ones it accepted)
        self.requests: dict[int, list[str]] = {}
        self._req = 0
        self.heartbeat_reqs: set[int] = set()  # ids of our public/set_heartbeat requests
        #: ids of the connections' own messages: every (re)connect sends them again, so their
        #: answers are checked each time (the ids of one-off resubscribes are forgotten once answered)
        self.plan_ids: set[int] = set()

    # -- connections ------------------------------------------------------------------
    def plans(self) -> list[Plan]:
        out: list[Plan] = []
        for i in range(0, len(self.channels), CHANNELS_PER_CONN):
            chunk = self.channels[i : i + CHANNELS_PER_CONN]
            label = f"ws#{i // CHANNELS_PER_CONN}"
            msgs = [self.rpc("public/set_heartbeat", {"interval": HEARTBEAT_S})]
            for j in range(0, len(chunk), CHANNELS_PER_MSG):
                msgs.append(self.rpc("public/subscribe", {"channels": [c[0] for c in chunk[j : j + CHANNELS_PER_MSG]]}))
            self.plan_ids.update(range(self._req - len(msgs) + 1, self._req + 1))
            for name, kind, sym, _ in chunk:
                self.chan_link[name] = len(out)
                log.info("subscribe %s (%s) on %s", self.feed_id(_KIND_TYPE[kind], sym), name, label)
            out.append(Plan(url=self.ws_url, subscribe=msgs, streams=[(c, s) for _, _, s, c in chunk], label=label))
        return out

    def rpc(self, method: str, params: dict[str, Any]) -> bytes:
        self._req += 1
        if method == "public/subscribe":
            self.requests[self._req] = list(params["channels"])
        elif method == "public/set_heartbeat":
            self.heartbeat_reqs.add(self._req)
        return msgspec.json.encode({"jsonrpc": "2.0", "id": self._req, "method": method, "params": params})

    def ping(self, lst: Listener) -> None:
        lst.send(b'{"jsonrpc":"2.0","id":"ping","method":"public/test","params":{}}')

    # -- frames -------------------------------------------------------------------------
    def route(self, channel: str) -> tuple[int, int, int] | None:
        """(kind, symbol id, channel id) of a notification's channel, whatever its interval."""
        r = self.by_channel.get(channel)
        if r is None:
            parts = channel.split(".")
            r = self.routes.get((parts[0], parts[1])) if len(parts) >= 2 else None
            if r is not None and len(self.by_channel) < 10_000:
                self.by_channel[channel] = r
        return r

    def on_frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        head = payload[:70].tobytes()
        fast: BookFrame | TradesFrame | None = None
        try:
            if head.startswith(_BOOK_HEAD):
                fast = self._book_frame.decode(payload)
            elif head.startswith(_TRADES_HEAD):
                fast = self._trades_frame.decode(payload)
        except msgspec.DecodeError:
            fast = None  # the full path below decides what is wrong with it
        if fast is not None:
            route = self.route(fast.params.channel)
            if route is not None:
                kind, sym, chan = route
                self.count(sym, ts, len(payload), chan)
                if self.raw_on:
                    self.out.raw_fast(ts, payload, lst.conn_id, sym, chan)
                if type(fast) is BookFrame and kind == BOOK:
                    self.on_book(lst, ts, sym, chan, fast.params.data)
                elif type(fast) is TradesFrame and kind == TRADES:
                    self.on_trades(lst, ts, sym, chan, fast.params.data)
                if self._pending_resync:
                    self._do_pending(ts)
                return
        self.on_frame_slow(lst, ts, payload)

    def on_frame_slow(self, lst: Listener, ts: int, payload: memoryview) -> None:
        try:
            env = self._env.decode(payload)
        except msgspec.DecodeError as e:
            m = _CHANNEL_RE.search(payload.tobytes()[:160])
            route = self.routes.get((m[1].decode(), m[2].decode())) if m else None
            kind, sym, chan = route if route is not None else (-1, 0, 0)
            self.malformed(lst.conn_id, ts, payload, f"envelope: {e}", sym, chan)
            if kind == BOOK and self.seq[self.book_name[sym]].synced:
                self.resync(self.book_name[sym], ts, "malformed book frame")
            return
        p = env.params
        if env.method != "subscription" or p is None:
            self.control(lst, ts, payload, env)
            return
        route = self.route(p.channel)
        if route is None:
            self.control(lst, ts, payload, env)
            return
        kind, sym, chan = route
        self.count(sym, ts, len(payload), chan)
        if self.raw_on:
            self.out.raw_fast(ts, payload, lst.conn_id, sym, chan)
        try:
            if kind == BOOK:
                self.on_book(lst, ts, sym, chan, self._book.decode(p.data))
            elif kind == TRADES:
                self.on_trades(lst, ts, sym, chan, self._trades.decode(p.data))
            else:
                self.on_ticker(ts, sym, self._ticker.decode(p.data))
        except msgspec.DecodeError as e:
            self.malformed(lst.conn_id, ts, payload, f"{p.channel}: {e}"[:96], sym, chan, keep_raw=False)
            if kind == BOOK and self.seq[self.book_name[sym]].synced:
                self.resync(self.book_name[sym], ts, "malformed book frame")
        if self._pending_resync:
            self._do_pending(ts)

    def on_book(self, lst: Listener, ts: int, sym: int, chan: int, b: Book) -> None:
        name = self.book_name[sym]
        st = self.seq[name]
        snapshot = is_snapshot(b)
        ets = b.timestamp * 1_000_000
        if not snapshot:
            if not st.synced:
                self.bump("duplicates", sym)  # a change before its snapshot (e.g. while resyncing): unusable
                return
            if b.change_id <= st.last_u:
                self.duplicate(ts, sym, chan, lst.conn_id, b.change_id, what="book changes")
                return
            if b.prev_change_id != st.last_u:
                self.gap(ts, sym, chan, lst.conn_id, f"prev_change_id {b.prev_change_id} != last change_id {st.last_u}",
                         ets)
                self.resync(name, ts, "gap")
                return
        elif st.synced_once and not st.synced:  # a completed resync
            self.bump("resyncs", sym)
            self.out.event(ts, "resync", symbol=sym, channel=chan, conn_id=lst.conn_id,
                           detail=f"snapshot at change_id={b.change_id}")
        push = self.out.book_levels
        push(ts, ets, sym, snapshot, BOOK_BID, levels(b.bids))
        push(ts, ets, sym, snapshot, BOOK_ASK, levels(b.asks))
        st.last_u = b.change_id
        st.synced = st.synced_once = True
        st.resync_deadline = 0.0

    def on_trades(self, lst: Listener, ts: int, sym: int, chan: int, trades: list[Trade]) -> None:
        """Trade ids are remembered per instrument: a trade sent again (a resubscribe) is dropped."""
        seen = self.seen_trades[sym]
        for t in trades:
            if not seen.add(t.trade_id):
                self.duplicate(ts, sym, chan, lst.conn_id, t.trade_id, what="trades")
                continue
            side = SIDE_BUY if t.direction == "buy" else SIDE_SELL if t.direction == "sell" else SIDE_UNKNOWN
            ets = t.timestamp * 1_000_000
            if self.want_trades:
                self.out.trade_fast(ts, ets, sym, t.trade_id.encode(), t.price, t.amount, side)
            if self.want_liqs and t.liquidation:
                liq = side if t.liquidation == "T" else SIDE_SELL if side == SIDE_BUY else SIDE_BUY
                self.out.liquidation(ts, ets, sym, t.trade_id.encode(), t.price, t.amount, liq)

    def on_ticker(self, ts: int, sym: int, t: Ticker) -> None:
        ets = t.timestamp * 1_000_000
        if self.want_bbo:
            self.out.book_ticker(ts, ets, sym, _f(t.best_bid_price), _f(t.best_bid_amount), _f(t.best_ask_price),
                                 _f(t.best_ask_amount))
        if self.want_deriv and not len(t.greeks):
            self.out.derivative_ticker(ts, ets, sym, _f(t.last_price), _f(t.mark_price), _f(t.index_price),
                                       _f(t.current_funding), 0, NAN, _f(t.open_interest))

    # -- control frames -----------------------------------------------------------------
    def control(self, lst: Listener, ts: int, payload: memoryview, env: Envelope) -> None:
        self.control_frame(lst, ts, payload)
        if env.method == "heartbeat":
            if env.params is not None and env.params.type == "test_request":
                lst.send(b'{"jsonrpc":"2.0","id":"hb","method":"public/test","params":{}}')
            return
        if env.method == "subscription":
            log.debug("%s: notification of a channel not subscribed: %s", self.exchange,
                      env.params.channel if env.params else "")
            return
        rid = env.id if isinstance(env.id, int) else -1
        asked = self.requests.get(rid) if rid in self.plan_ids else self.requests.pop(rid, None)
        if rid in self.heartbeat_reqs:
            if env.error is not None:  # no heartbeats: the stall timeout still guards the connection
                detail = f"set_heartbeat refused: {env.error.get('message', env.error)}"[:96]
                self.out.event(ts, "info", conn_id=lst.conn_id, detail=detail)
                log.warning("%s conn %d: %s", self.exchange, lst.conn_id, detail)
            return
        if env.error is not None:
            msg = str(env.error.get("message", env.error))
            if asked and len(asked) > 1:  # one bad channel may sink the request
                self.retry_one_by_one(lst, ts, asked, "channels", msg,
                                      lambda c: self.rpc("public/subscribe", {"channels": [c]}))
                return
            self.subscribe_error(lst, ts, asked[0] if asked else "", f"error {env.error.get('code', '')}: {msg}")
            return
        if asked:
            try:
                accepted = set(msgspec.json.decode(env.result)) if env.result else set()
            except (msgspec.DecodeError, TypeError):
                accepted = set()
            for c in asked:
                if c not in accepted:  # Deribit leaves a channel it cannot serve out of the answer
                    self.subscribe_error(lst, ts, c, f"not subscribed: {c}")

    def subscribe_error(self, lst: Listener, ts: int, channel: str, detail: str) -> None:
        parts = channel.split(".")
        _, sym, chan = self.routes.get((parts[0], parts[1]), (0, 0, 0)) if len(parts) >= 2 else (0, 0, 0)
        self.bump("subscribe_errors", sym)
        self.out.event(ts, "subscribe_error", symbol=sym, channel=chan, conn_id=lst.conn_id, detail=detail[:96])
        log.error("%s conn %d: %s", self.exchange, lst.conn_id, detail)

    # -- resync -------------------------------------------------------------------------
    def resync(self, name: str, ts: int, why: str, when_room: bool = False) -> None:
        """Unsubscribe + subscribe the book channel: Deribit answers with a fresh snapshot.
        ``when_room``: only once the book ring has room for it (after a ring-full drop, a
        full-depth snapshot pushed into a still full ring would be dropped too, forever)."""
        st = self.seq[name]
        st.reset()
        _kind, sym, chan = self.routes[("book", name.split(".")[1])]
        self.out.event(ts, "resync", symbol=sym, channel=chan, detail=f"{why}: resubscribing {name}"[:96])
        self.resubscribe(name, name, when_room)  # room: half the ring (a full-depth snapshot and what follows)

    def _resubscribe(self, name: str) -> None:
        self.seq[name].resync_deadline = time.monotonic() + RESYNC_TIMEOUT
        link = self.links[self.chan_link[name]] if self.links else None
        if link is not None and link.current is not None:
            link.current.send(self.rpc("public/unsubscribe", {"channels": [name]}))
            link.current.send(self.rpc("public/subscribe", {"channels": [name]}))

    def book_dropped(self, sym: int, ts: int) -> None:
        name = self.book_name.get(sym)
        if name is not None and self.seq[name].synced:
            _, _, chan = self.routes[("book", name.split(".")[1])]
            self.gap(ts, sym, chan, 0, f"book records dropped (ring full) after change_id {self.seq[name].last_u}")
            self.resync(name, ts, "book records dropped (ring full)", when_room=True)

    def resync_waits(self) -> Iterable[tuple[str, DeltaSeq]]:
        return self.seq.items()

    def no_snapshot(self, name: str) -> None:
        self.links[self.chan_link[name]].reconnect(f"no snapshot for {name} after resubscribe")

    def on_lost(self, lst: Listener) -> None:
        for name, st in self.seq.items():
            _, sym, chan = self.routes[("book", name.split(".")[1])]
            if (chan, sym) in lst.plan.streams:
                st.reset()
                st.resync_deadline = 0.0
                self._await_room.discard(name)  # the reconnect subscribes it again


#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = Deribit
