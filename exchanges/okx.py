"""okex (OKX spot) and okex-swap (OKX perpetual swaps), v5 public websocket.

One module for both ids (the protocol is one; the instrument type differs):
``books`` (400 levels: a ``snapshot`` action, then ``update`` actions),
``trades`` (or with ``trade_stream = "trades-all"`` one row per fill from the
business path), ``tickers`` (``book_ticker``; a swap's last price), and for swaps
``funding-rate``, ``mark-price``, ``open-interest``, ``index-tickers``
(``derivative_ticker``, merged in ``okx_tickers``) and ``liquidation-orders``
(``liquidations``; one subscription per connection by ``instType``, frames of
other instruments kept in raw under symbol ``_``). Login-free channels only.

Book: every message's ``prevSeqId`` must equal the previous ``seqId``
(``okx_book.Chain``), and its CRC32 ``checksum`` must equal the one computed
over our book's top 25 levels (``okx_book.checksum``) whenever the venue sends
one (it sends 0 since 2026-06-23: then nothing to verify, counted once per
subscription as an ``info`` event). A jump is a ``gap``, a mismatch a
``checksum`` event; either way the update is not written, and the book is
resubscribed (OKX answers a subscribe with a fresh snapshot; none within
``RESYNC_TIMEOUT`` s rebuilds the connection). Heartbeat: the text ``ping``
once a connection has been silent for ``4 x ping_interval`` (20 s; OKX drops a
connection silent for 30 s), answered by the text ``pong``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from ticktape.exchanges import common, instruments, okx_tickers
from ticktape.exchanges.book import Dedup
from ticktape.exchanges.connection import Listener, Plan, Timing
from ticktape.exchanges.feed import Resubscribing
from ticktape.exchanges.okx_book import APPLY, DUPLICATE, Chain, Levels
from ticktape.ipc.schemas import BOOK_ASK, BOOK_BID, SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

log = logging.getLogger("ticktape.exchanges")

WS_URL = "wss://ws.okx.com:8443"
PATH = "/ws/v5/public"
BUSINESS_PATH = "/ws/v5/business"  # trades-all lives there (login-free)
#: ``trade_stream``: ``trades`` (default; one row per taker order, public path) or ``trades-all`` (one row per
#: fill, the business path; what Tardis records and tardis-dev normalizes for recent dates)
TRADE_STREAMS = ("trades", "trades-all")
REST_URL = "https://www.okx.com"
#: per id: instrument type, symbol pattern, example, supported channels
KINDS: dict[str, tuple[str, re.Pattern[str], str, tuple[str, ...]]] = {
    "okex": ("SPOT", re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{2,10}"), "BTC-USDT", ("trades", "book_change", "book_ticker")),
    "okex-swap": ("SWAP", re.compile(r"[A-Z0-9]{1,20}-[A-Z0-9]{2,10}-SWAP"), "BTC-USDT-SWAP",
                  ("trades", "book_change", "book_ticker", "derivative_ticker", "liquidations")),
}
#: subscriptions per connection (OKX documents no cap; resubscribes count against 480 requests/hour/connection)
ARGS_PER_CONN = 240
ARGS_PER_MSG = 20  # one subscribe message stays far below OKX's 64 KB
RESYNC_TIMEOUT = 10.0
IDLE_PINGS = 4  # ping after 4 x ping_interval of silence

BOOK, TRADES, FUND, MARK, OI, LIQ, TICK, IDX = 0, 1, 2, 3, 4, 5, 6, 7
_TICKER_CHANNELS = {"funding-rate": FUND, "mark-price": MARK, "open-interest": OI}
#: route kind -> what ``okx_tickers.Tickers.on_frame`` reads from the frame
_WHICH = {FUND: okx_tickers.FUNDING, MARK: okx_tickers.MARK, OI: okx_tickers.OPEN_INTEREST,
          TICK: okx_tickers.TICKER, IDX: okx_tickers.INDEX}
_KIND_TYPE = {BOOK: "book_change", TRADES: "trades", FUND: "derivative_ticker", MARK: "derivative_ticker",
              OI: "derivative_ticker", LIQ: "liquidations", TICK: "book_ticker", IDX: "derivative_ticker"}
_ARG_RE = re.compile(rb'"channel"\s*:\s*"([^"]{1,40})"\s*,\s*"instId"\s*:\s*"([^"]{1,60})"')


class Arg(msgspec.Struct):
    channel: str = ""
    instId: str = ""
    instType: str = ""


class Envelope(msgspec.Struct):
    arg: Arg | None = None
    action: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")
    event: str = ""
    code: str = ""
    msg: str = ""


class BookData(msgspec.Struct, gc=False):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: str = "0"
    checksum: int = 0
    prevSeqId: int | None = None
    seqId: int | None = None


class Trade(msgspec.Struct, gc=False):
    tradeId: str
    px: float
    sz: float
    side: str
    ts: int


class BookFrame(msgspec.Struct, gc=False):
    arg: Arg
    action: str
    data: list[BookData]


class TradesFrame(msgspec.Struct, gc=False):
    arg: Arg
    data: list[Trade]


_BOOK_HEAD = b'{"arg":{"channel":"books",'
_TRADES_HEAD = b'{"arg":{"channel":"trades'  # trades and trades-all


def kind_of(name: str) -> tuple[str, re.Pattern[str], str, tuple[str, ...]]:
    k = KINDS.get(name)
    if k is None:
        raise ValueError(f"{name!r} is not an OKX exchange id (okx ids: {', '.join(KINDS)})")
    return k


def validate(name: str, cfg: ExchangeConfig) -> None:
    _inst, pattern, example, supported = kind_of(name)
    common.check_symbols(name, cfg.symbols, pattern, example, " in upper case")
    common.check_channels(name, cfg.channels, supported)
    if cfg.trade_stream is not None and cfg.trade_stream not in TRADE_STREAMS:
        raise ValueError(f"trade_stream {cfg.trade_stream!r} is not an OKX trades channel (one of {', '.join(TRADE_STREAMS)})")
    common.check_no_binance_options(name, cfg)
    common.check_url(cfg.url, ("ws", "wss"), "url")
    common.check_url(cfg.rest_url, ("http", "https"), "rest_url")


def rest_base(cfg: ExchangeConfig) -> str:
    """``rest_url``, else www.okx.com for OKX's own ws host, else the host of ``url`` (the
    simulator serves REST on its websocket port)."""
    if cfg.rest_url:
        return cfg.rest_url
    if not cfg.url or "okx.com" in cfg.url:
        return REST_URL
    return common.http_base_of(cfg.url)


def listed_symbols(cfg: ExchangeConfig, timeout: float) -> tuple[str, set[str]]:
    """(where, instIds) of ``GET /api/v5/public/instruments?instType=SPOT|SWAP`` (the type
    follows from the symbols, which ``validate`` already held to one id's pattern)."""
    inst = "SWAP" if cfg.symbols and cfg.symbols[0].endswith("-SWAP") else "SPOT"
    url = common.join_url(rest_base(cfg), "/api/v5/public/instruments") + f"?instType={inst}"
    ans = instruments.fetch_json(url, timeout=timeout)
    if not isinstance(ans, dict) or str(ans.get("code")) != "0" or not isinstance(ans.get("data"), list):
        raise instruments.Unreachable(f"{url}: {ans.get('msg') if isinstance(ans, dict) else ans!r}")
    return url, {x["instId"] for x in ans["data"] if isinstance(x, dict) and "instId" in x}


def data_types(name: str, cfg: ExchangeConfig, raw: bool) -> list[str]:
    return [*cfg.channels, "raw"] if raw else list(cfg.channels)


def raw_channels(name: str, cfg: ExchangeConfig) -> tuple[str, ...]:
    """Tardis names: OKX's own channel names."""
    out: list[str] = []
    if "trades" in cfg.channels:
        out.append(cfg.trade_stream or "trades")
    if "book_change" in cfg.channels:
        out.append("books")
    if "book_ticker" in cfg.channels or "derivative_ticker" in cfg.channels:
        out.append("tickers")
    if "derivative_ticker" in cfg.channels:
        out += ["funding-rate", "mark-price", "open-interest", "index-tickers"]
    if "liquidations" in cfg.channels:
        out.append("liquidation-orders")
    return tuple(out)


class Okx(Resubscribing):
    exchange = "okex"
    #: subscribe/unsubscribe requests one connection may send per hour (OKX: 480; a margin kept)
    SUBSCRIBE_BUDGET = 460
    timing = Timing(stall_timeout=60.0, ping_interval=5.0, subscribe_interval=0.35)  # 3 requests/s

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.exchange = self.spec.exchange
        self.inst_type = kind_of(self.exchange)[0]
        self.ws_url = common.join_url(self.cfg.url or WS_URL, PATH)
        self._env = msgspec.json.Decoder(Envelope)
        self._book = msgspec.json.Decoder(list[BookData])
        self._trades = msgspec.json.Decoder(list[Trade], strict=False)
        self._book_frame = msgspec.json.Decoder(BookFrame)
        self._trades_frame = msgspec.json.Decoder(TradesFrame, strict=False)
        #: (channel, instId) -> (kind, symbol id, channel id)
        self.routes: dict[tuple[str, str], tuple[int, int, int]] = {}
        self.args: list[tuple[dict[str, str], int, int, int]] = []  # (arg, kind, symbol, channel)
        chans = self.cfg.channels
        for s in self.cfg.symbols:
            sym = self.sym_id[s]
            if "trades" in chans:
                tch = self.cfg.trade_stream or "trades"
                self.args.append(({"channel": tch, "instId": s}, TRADES, sym, self.chan_id[tch]))
            if "book_change" in chans:
                self.args.append(({"channel": "books", "instId": s}, BOOK, sym, self.chan_id["books"]))
            if "book_ticker" in chans or "derivative_ticker" in chans:  # bid/ask, and a swap's last price
                self.args.append(({"channel": "tickers", "instId": s}, TICK, sym, self.chan_id["tickers"]))
            if "derivative_ticker" in chans:
                for ch, kind in _TICKER_CHANNELS.items():
                    self.args.append(({"channel": ch, "instId": s}, kind, sym, self.chan_id[ch]))
                # the index of BTC-USDT-SWAP is BTC-USDT
                self.args.append(({"channel": "index-tickers", "instId": s.removesuffix("-SWAP")}, IDX, sym,
                                  self.chan_id["index-tickers"]))
        for arg, kind, sym, chan in self.args:
            self.routes[(arg["channel"], arg["instId"])] = (kind, sym, chan)
        self.liq_chan = self.chan_id.get("liquidation-orders", 0)
        self.books = [Levels() for _ in self.spec.symbols]
        self.chains = [Chain() for _ in self.spec.symbols]
        self.no_checksum = [False] * len(self.spec.symbols)  # a checksum-0 feed was reported for this book
        self.tickers = okx_tickers.Tickers(self.out, len(self.spec.symbols), bbo="book_ticker" in chans,
                                           deriv="derivative_ticker" in chans)
        self.seen_trades = [Dedup[str](50_000) for _ in self.spec.symbols]
        self.book_link: dict[int, int] = {}
        self.snapshot_records = 2 * 400 + 256  # a snapshot's 400 levels a side, and a margin
        self._ops: dict[int, list[float]] = {}  # conn id -> monotonic times of its subscribe/unsubscribe requests

    def plans(self) -> list[Plan]:
        """Public-path connections (their first one also takes ``liquidation-orders``), then business-path
        ones for ``trades-all``; at most ``ARGS_PER_CONN`` subscriptions each."""
        out: list[Plan] = []
        public = [a for a in self.args if a[0]["channel"] != "trades-all"]
        business = [a for a in self.args if a[0]["channel"] == "trades-all"]
        for group, path, name in ((public, PATH, "public"), (business, BUSINESS_PATH, "business")):
            url = common.join_url(self.cfg.url or WS_URL, path)
            liq = name == "public" and "liquidations" in self.cfg.channels
            if not group and not liq:
                continue
            for i in range(0, max(len(group), 1), ARGS_PER_CONN):
                chunk = group[i : i + ARGS_PER_CONN]
                args = [a for a, *_ in chunk]
                streams = [(c, s) for _, _, s, c in chunk]
                if liq and i == 0:
                    args.append({"channel": "liquidation-orders", "instType": self.inst_type})
                    streams += [(self.liq_chan, self.sym_id[s]) for s in self.cfg.symbols]
                msgs = [self.op("subscribe", args[j : j + ARGS_PER_MSG]) for j in range(0, len(args), ARGS_PER_MSG)]
                label = f"{name}#{i // ARGS_PER_CONN}"
                for arg, kind, sym, _ in chunk:
                    if kind == BOOK:
                        self.book_link[sym] = len(out)
                    log.info("subscribe %s (%s %s) on %s", self.feed_id(_KIND_TYPE[kind], sym), arg["channel"],
                             arg["instId"], label)
                out.append(Plan(url=url, subscribe=msgs, streams=streams, label=label))
        return out

    @staticmethod
    def op(op: str, args: list[dict[str, str]]) -> bytes:
        return msgspec.json.encode({"op": op, "args": args})

    def ping(self, lst: Listener) -> None:
        """OKX's rule: the text ``ping`` when nothing came for a while (< 30 s), not on a clock."""
        if time.monotonic() - lst.last_frame >= IDLE_PINGS * self.timing.ping_interval:
            lst.send(b"ping")

    # -- frames -----------------------------------------------------------------
    def on_frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        head = payload[:27].tobytes()
        try:
            if head.startswith(_BOOK_HEAD):
                bf = self._book_frame.decode(payload)
                route = self.routes.get(("books", bf.arg.instId))
                if route is not None and bf.data:
                    _kind, sym, chan = route
                    self.count(sym, ts, len(payload), chan)
                    if self.raw_on:
                        self.out.raw_fast(ts, payload, lst.conn_id, sym, chan)
                    self.on_book(lst, ts, sym, chan, bf.action, bf.data[0])
                    if self._pending_resync:
                        self._do_pending(ts)
                    return
            elif head.startswith(_TRADES_HEAD):
                tf = self._trades_frame.decode(payload)
                route = self.routes.get((tf.arg.channel, tf.arg.instId))
                if route is not None:
                    _kind, sym, chan = route
                    self.count(sym, ts, len(payload), chan)
                    if self.raw_on:
                        self.out.raw_fast(ts, payload, lst.conn_id, sym, chan)
                    self.on_trades(lst, ts, sym, chan, tf.data)
                    return
        except msgspec.DecodeError:
            pass
        self.on_frame_slow(lst, ts, payload)

    def on_frame_slow(self, lst: Listener, ts: int, payload: memoryview) -> None:
        if payload.nbytes == 4 and payload.tobytes() == b"pong":
            self.control(lst, ts, payload, None)
            return
        try:
            env = self._env.decode(payload)
        except msgspec.DecodeError as e:
            m = _ARG_RE.search(payload[:160].tobytes())
            key = (m[1].decode(), m[2].decode()) if m else ("", "")
            kind, sym, chan = self.routes.get(key, (-1, 0, 0))
            self.malformed(lst.conn_id, ts, payload, f"envelope: {e}", sym, chan)
            if kind == BOOK and self.chains[sym].synced:
                self.resync(sym, ts, "malformed book frame")
            return
        arg = env.arg
        if arg is None or env.event or not env.data:
            self.control(lst, ts, payload, env)
            return
        if arg.channel == "liquidation-orders":
            self.on_liquidations(lst, ts, payload, env.data)
            return
        route = self.routes.get((arg.channel, arg.instId))
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
            elif kind == BOOK:
                data = self._book.decode(env.data)
                if not data:
                    raise msgspec.DecodeError("books frame with no data")
                self.on_book(lst, ts, sym, chan, env.action, data[0])
            else:
                self.tickers.on_frame(ts, sym, _WHICH[kind], env.data)
        except (msgspec.DecodeError, ValueError, TypeError) as e:
            self.malformed(lst.conn_id, ts, payload, f"{arg.channel} {arg.instId}: {e}"[:96], sym, chan,
                           keep_raw=False)
            if kind == BOOK and self.chains[sym].synced:
                self.resync(sym, ts, "malformed book frame")
        if self._pending_resync:
            self._do_pending(ts)

    def on_trades(self, lst: Listener, ts: int, sym: int, chan: int, trades: list[Trade]) -> None:
        """Trade ids are remembered per symbol: a trade the venue sends again is dropped."""
        push = self.out.trade_fast
        seen = self.seen_trades[sym]
        for t in trades:
            if not seen.add(t.tradeId):
                self.duplicate(ts, sym, chan, lst.conn_id, t.tradeId, what="trades")
                continue
            side = SIDE_BUY if t.side == "buy" else SIDE_SELL if t.side == "sell" else SIDE_UNKNOWN
            push(ts, t.ts * 1_000_000, sym, t.tradeId.encode(), t.px, t.sz, side)

    def on_book(self, lst: Listener, ts: int, sym: int, chan: int, action: str, d: BookData) -> None:
        st = self.chains[sym]
        book = self.books[sym]
        ets = int(d.ts) * 1_000_000
        snapshot = action == "snapshot"
        if snapshot:
            if st.synced_once and not st.synced:  # a completed resync
                self.bump("resyncs", sym)
                self.out.event(ts, "resync", symbol=sym, channel=chan, conn_id=lst.conn_id,
                               detail=f"snapshot at seqId={d.seqId}")
            book.clear()
        else:
            if not st.synced:
                self.bump("duplicates", sym)  # an update before its snapshot (e.g. while resyncing): unusable
                return
            verdict = st.step(d.prevSeqId, d.seqId)
            if verdict == DUPLICATE:
                self.duplicate(ts, sym, chan, lst.conn_id, d.seqId, what="books updates")
                return
            if verdict != APPLY:
                self.gap(ts, sym, chan, lst.conn_id, f"prevSeqId {d.prevSeqId} != previous seqId {st.last}", ets)
                self.resync(sym, ts, "gap")
                return
        bids, asks = book.apply(d.bids, d.asks)
        if d.checksum:
            mine = book.checksum()
            if mine != d.checksum:
                self.bump("gaps", sym)
                detail = f"checksum {d.checksum} != {mine} at seqId {d.seqId}"
                self.out.event(ts, "checksum", symbol=sym, channel=chan, conn_id=lst.conn_id, detail=detail,
                               exchange_ts=ets)
                log.warning("%s/%s: book %s", self.exchange, self.spec.symbols[sym], detail)
                self.resync(sym, ts, "checksum mismatch")
                return
        elif not self.no_checksum[sym]:
            self.no_checksum[sym] = True
            self.out.event(ts, "info", symbol=sym, channel=chan, conn_id=lst.conn_id,
                           detail="books checksum 0 (not sent by OKX): continuity by seqId only")
        push = self.out.book_levels
        push(ts, ets, sym, snapshot, BOOK_BID, bids)
        push(ts, ets, sym, snapshot, BOOK_ASK, asks)
        st.last = d.seqId
        st.synced = st.synced_once = True
        st.resync_deadline = 0.0

    def on_liquidations(self, lst: Listener, ts: int, payload: memoryview, data: msgspec.Raw) -> None:
        """One subscription carries every instrument of the type: ours become rows, all stay in raw."""
        try:
            items = self.tickers.liquidations(data)
        except (msgspec.DecodeError, ValueError, TypeError) as e:
            self.malformed(lst.conn_id, ts, payload, f"liquidation-orders: {e}"[:96], 0, self.liq_chan)
            return
        sym = next((self.sym_id[i.instId] for i in items if i.instId in self.sym_id), 0)
        self.count(sym, ts, len(payload), self.liq_chan)
        if self.raw_on:
            self.out.raw(ts, payload, lst.conn_id, sym, self.liq_chan)
        for it in items:
            s = self.sym_id.get(it.instId)
            if s is not None:
                self.tickers.on_liquidation(ts, s, it)

    # -- resync -----------------------------------------------------------------
    def resync(self, sym: int, ts: int, why: str, when_room: bool = False) -> None:
        """Unsubscribe + subscribe the symbol's ``books`` (OKX answers with a snapshot). ``when_room``:
        only once the book ring has room for that snapshot."""
        self.chains[sym].reset()
        s = self.spec.symbols[sym]
        self.out.event(ts, "resync", symbol=sym, channel=self.chan_id["books"],
                       detail=f"{why}: resubscribing books {s}"[:96])
        self.resubscribe(sym, s, when_room)

    def _resubscribe(self, sym: int) -> None:
        """Unsubscribe + subscribe on the book's connection; when that would spend more of OKX's 480
        subscribe/unsubscribe requests per connection per hour than ``SUBSCRIBE_BUDGET``, rebuild the
        connection instead (a new one starts a new hour, and its subscribe brings every snapshot)."""
        now = time.monotonic()
        self.chains[sym].resync_deadline = now + RESYNC_TIMEOUT
        link = self.links[self.book_link[sym]] if self.links else None
        if link is None or link.current is None:
            return
        lst = link.current
        sent = self._ops.setdefault(lst.conn_id, [])
        while sent and now - sent[0] > 3600.0:
            sent.pop(0)
        if len(sent) + 2 > self.SUBSCRIBE_BUDGET:
            detail = f"{len(sent)} subscribe requests on this connection in the last hour: reconnecting"
            self.out.event(time.time_ns(), "info", conn_id=lst.conn_id, detail=detail[:96])
            link.reconnect(f"OKX subscribe budget ({self.SUBSCRIBE_BUDGET}/h) reached")
            return
        arg = [{"channel": "books", "instId": self.spec.symbols[sym]}]
        lst.send(self.op("unsubscribe", arg))
        lst.send(self.op("subscribe", arg))
        sent += (now, now)

    def on_open(self, lst: Listener) -> None:
        """The plan's subscribe messages count against the connection's hourly request budget."""
        self._ops[lst.conn_id] = [time.monotonic()] * len(lst.plan.subscribe)

    def book_dropped(self, sym: int, ts: int) -> None:
        st = self.chains[sym]
        if sym in self.book_link and st.synced:
            chan = self.chan_id["books"]
            self.gap(ts, sym, chan, 0, f"book records dropped (ring full) after seqId {st.last}")
            self.resync(sym, ts, "book records dropped (ring full)", when_room=True)

    def resync_waits(self) -> Iterable[tuple[int, Chain]]:
        return enumerate(self.chains)

    def no_snapshot(self, sym: int) -> None:
        self.links[self.book_link[sym]].reconnect(f"no books snapshot for {self.spec.symbols[sym]}")

    def control(self, lst: Listener, ts: int, payload: memoryview, env: Envelope | None) -> None:
        """Acks, pongs, errors: raw under channel "" and symbol ``_``; an error is a ``subscribe_error``."""
        self.control_frame(lst, ts, payload)
        if env is None or env.event != "error":
            return
        sym = 0
        for s, i in self.sym_id.items():  # OKX names the refused instId only inside its message text
            if s != "_" and re.search(rf"instId:{re.escape(s)}\b(?!-)", env.msg):
                sym = i
                break
        self.bump("subscribe_errors", sym)
        detail = f"error {env.code}: {env.msg}"[:96]
        self.out.event(ts, "subscribe_error", symbol=sym, conn_id=lst.conn_id, detail=detail)
        log.error("%s conn %d: %s", self.exchange, lst.conn_id, detail)

    def on_lost(self, lst: Listener) -> None:
        self._ops.pop(lst.conn_id, None)
        streams = set(lst.plan.streams)
        books = self.chan_id.get("books")
        for sym, st in enumerate(self.chains):
            if books is not None and (books, sym) in streams:
                st.reset()
                st.resync_deadline = 0.0
                self._await_room.discard(sym)  # the reconnect subscribes it again


#: the Feed class ``exchanges.registry.ingest_main`` runs for these exchanges
FEED = Okx
