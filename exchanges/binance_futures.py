"""The Binance protocol family: binance-futures (USD-M), and with their
``exchanges.binance_dialect.Dialect`` binance (spot, ``exchanges.binance_spot``)
and binance-delivery (COIN-M, ``exchanges.binance_delivery``). Combined
streams, REST depth snapshots.

Streams are named in the URL (``/public/stream?streams=a/b`` for depth and
``@trade``, ``/market/stream?streams=`` for aggTrade), so no SUBSCRIBE message
is needed and no subscribe rate limit applies; at most ``STREAMS_PER_CONN``
streams per connection. The diff book (``<s>@depth@<depth_speed>``: 0ms, 100ms
or 500ms) is bridged from ``GET /fapi/v1/depth?limit=1000`` with U/u/pu; every ``pu`` must equal the
previous ``u``, else: gap event, resync. Connections roll over before the
24 h limit with an overlap; sequence ids dedupe the overlap. ``bookTicker``,
``markPrice@1s``, ``forceOrder`` and the open-interest poll: ``binance_tickers``.
Spot has no ``pu``: its chain is ``U == previous u + 1`` (``Dialect.has_pu``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ticktape.exchanges import binance_tickers, common, instruments, silence
from ticktape.exchanges.binance_dialect import BY_ID, FUTURES, Dialect
from ticktape.exchanges.book import MAX_BUFFER, Bridge, DiffSync, SyncState, bridge
from ticktape.exchanges.connection import Link, Listener, Plan, Timing
from ticktape.exchanges.feed import Feed
from ticktape.ipc.fastpack import LevelTextError, check_level_text
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.schemas import BOOK_ASK, BOOK_BID, SIDE_BUY, SIDE_SELL

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

log = logging.getLogger("ticktape.exchanges")

EXCHANGE = FUTURES.exchange
SUPPORTED = FUTURES.supported
DEPTHS = (5, 10, 20)
TRADE_STREAMS = ("aggTrade", "trade")
SNAPSHOT_LIMIT = 1000

AGG, TRADE, DIFF, PARTIAL, BOOKT, MARK, FORCE = 0, 1, 2, 3, 4, 5, 6
_KIND_TYPE = {AGG: "trades", TRADE: "trades", DIFF: "book_change", BOOKT: "book_ticker", MARK: "derivative_ticker",
              FORCE: "liquidations"}
_SIDE = (SIDE_BUY, SIDE_SELL)  # indexed by aggTrade/trade ``m`` (buyer is maker: a sell)
_STREAM_RE = re.compile(rb'\{\s*"stream"\s*:\s*"([^"]{1,80})"')


# --- messages (decimal strings become floats in C: strict=False) --------------
class Envelope(msgspec.Struct, gc=False):
    stream: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")


class AggTrade(msgspec.Struct, gc=False):
    a: int
    p: float
    q: float
    T: int
    m: bool


class Trade(msgspec.Struct, gc=False):
    t: int
    p: float
    q: float
    T: int
    m: bool
    X: str = "MARKET"  # INSURANCE_FUND / ADL / NA are not market trades: kept in raw only, as Tardis does


class Depth(msgspec.Struct, gc=False):
    E: int
    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]
    pu: int = -1  # spot has none (its chain is U == previous u + 1)


class DiffText(msgspec.Struct, gc=False):
    """A diff with its level arrays left as JSON text: ``Outbox.book_level_text`` parses them
    straight into ring records (no per-level Python objects). The text points into the
    frame's buffer: ``held`` checks it and copies it out before the diff outlives the frame."""

    E: int
    U: int
    u: int
    b: msgspec.Raw
    a: msgspec.Raw
    pu: int = -1

    def held(self) -> DiffText:
        """This diff with its level texts checked (LevelTextError if they are not levels) and
        copied out of the frame's buffer: a buffered diff is parsed in C when it is applied."""
        check_level_text(self.b, self.a)
        return DiffText(self.E, self.U, self.u, msgspec.Raw(bytes(self.b)), msgspec.Raw(bytes(self.a)), self.pu)


class SpotPartial(msgspec.Struct, gc=False):
    """Spot's partial depth: the whole top N, no event time."""

    lastUpdateId: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


class AggFrame(msgspec.Struct, gc=False):
    """Envelope and body in one pass: the fast path of a connection whose frames are mostly aggTrade."""

    stream: str
    data: AggTrade


class TradeFrame(msgspec.Struct, gc=False):
    stream: str
    data: Trade


class DepthFrame(msgspec.Struct, gc=False):
    stream: str
    data: Depth


class DiffTextFrame(msgspec.Struct, gc=False):
    stream: str
    data: DiffText


class SpotPartialFrame(msgspec.Struct, gc=False):
    stream: str
    data: SpotPartial


class Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    E: int = 0
    T: int = 0


class Control(msgspec.Struct):
    id: Any = None
    result: Any = None
    error: Any = None
    code: Any = None
    msg: str = ""


# --- config contract -------------------------------------------------------------
def validate(name: str, cfg: ExchangeConfig) -> None:
    d = BY_ID[name]
    common.check_symbols(name, cfg.symbols, d.symbol_re, d.symbol_example, " in upper case")
    common.check_channels(name, cfg.channels, d.supported)
    if "book_snapshot" in cfg.channels and cfg.depth not in DEPTHS:
        raise ValueError(
            f"depth {cfg.depth} is not a {name} partial depth (book_snapshot uses depth{{5,10,20}}: one of 5, 10, 20)"
        )
    if cfg.trade_stream is not None and cfg.trade_stream not in TRADE_STREAMS:
        raise ValueError(f"trade_stream {cfg.trade_stream!r}: must be one of {', '.join(TRADE_STREAMS)}")
    if cfg.depth_speed is not None and cfg.depth_speed not in d.depth_speeds:
        raise ValueError(f"depth_speed {cfg.depth_speed!r}: must be one of {', '.join(d.depth_speeds)}")
    binance_tickers.validate(cfg)
    common.check_url(cfg.url, ("ws", "wss"), "url")
    common.check_url(cfg.rest_url, ("http", "https"), "rest_url")


def rest_base(cfg: ExchangeConfig, dialect: Dialect = FUTURES) -> str:
    return cfg.rest_url or (common.http_base_of(cfg.url) if cfg.url else dialect.rest_url)


def listed_symbols(cfg: ExchangeConfig, timeout: float, dialect: Dialect = FUTURES) -> tuple[str, set[str]]:
    """(where, symbols) of ``GET /fapi/v1/exchangeInfo`` (the dialect's ``info_path``; every
    status: a settling or pre-trading symbol is listed, only an unknown one is an error)."""
    url, status = symbol_status(cfg, timeout, dialect)
    return url, set(status)


def symbol_status(cfg: ExchangeConfig, timeout: float, dialect: Dialect = FUTURES) -> tuple[str, dict[str, str]]:
    """(where, symbol -> status) of the venue's ``exchangeInfo``: the start-up check, and the
    re-check of a stream silent after its subscribe (run in a thread: it blocks)."""
    url = common.join_url(rest_base(cfg, dialect), dialect.info_path)
    info = instruments.fetch_json(url, timeout=timeout)
    try:
        return url, silence.statuses(info)
    except (KeyError, TypeError):
        raise instruments.Unreachable(f"{url}: no symbols list in the answer") from None


def data_types(name: str, cfg: ExchangeConfig, raw: bool) -> list[str]:
    out = [c if c != "book_snapshot" else f"book_snapshot_{cfg.depth}" for c in cfg.channels]
    return [*out, "raw"] if raw else out


def trade_stream(cfg: ExchangeConfig) -> str:
    """``trade`` by default: the stream Tardis records and builds normalized trades from (aggTrade on request)."""
    return cfg.trade_stream or "trade"


def raw_channels(name: str, cfg: ExchangeConfig) -> tuple[str, ...]:
    """Tardis names: ``aggTrade``/``trade``, ``depth`` + ``depthSnapshot`` (REST),
    and ``depth{N}`` for the partial-depth stream (its stream name's middle part)."""
    out: list[str] = []
    if "trades" in cfg.channels:
        out.append(trade_stream(cfg))
    if "book_change" in cfg.channels:
        out += ["depth", "depthSnapshot"]
    if "book_snapshot" in cfg.channels:
        out.append(f"depth{cfg.depth}")
    if "book_ticker" in cfg.channels:
        out.append("bookTicker")
    if "derivative_ticker" in cfg.channels:
        out += ["markPrice", "openInterest"]
    if "liquidations" in cfg.channels:
        out.append("forceOrder")
    return tuple(out)


# --- connector -------------------------------------------------------------------
class BinanceFutures(Feed):
    exchange = EXCHANGE
    dialect = FUTURES
    # server pings every 3 min; we also ping every 30 s so a quiet stream still shows liveness
    timing = Timing(stall_timeout=60.0, ping_interval=30.0, max_lifetime=23.5 * 3600, overlap=3.0)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        cfg = self.cfg
        self.depth = cfg.depth
        dia = self.dialect
        self.has_pu = dia.has_pu
        self.bridge_offset = dia.bridge_offset
        self.ws_base = cfg.url or dia.ws_url
        self.rest_base = rest_base(cfg, dia)
        self.oi_path = dia.oi_path
        self.snapshot_limit = int(self.options.get("snapshot_limit", SNAPSHOT_LIMIT))
        self.rest_interval = float(self.options.get("rest_interval", dia.rest_interval))  # futures: weight 20, <= 4/s
        self.rest_timeout = float(self.options.get("rest_timeout", 30.0))  # one REST request, seconds
        self.manual_snapshots = bool(self.options.get("manual_snapshots", False))
        self._env = msgspec.json.Decoder(Envelope)
        self._agg = msgspec.json.Decoder(AggTrade, strict=False)
        self._trade = msgspec.json.Decoder(Trade, strict=False)
        self._depth = msgspec.json.Decoder(Depth, strict=False)
        self._snap = msgspec.json.Decoder(Snapshot, strict=False)
        self._spot_partial = msgspec.json.Decoder(SpotPartial, strict=False)
        self._ctl = msgspec.json.Decoder(Control)
        # one-pass decoders keyed by a connection's main message type (Plan.tag)
        self._fast: dict[int, msgspec.json.Decoder[Any]] = {
            AGG: msgspec.json.Decoder(AggFrame, strict=False),
            TRADE: msgspec.json.Decoder(TradeFrame, strict=False),
            DIFF: msgspec.json.Decoder(DiffTextFrame, strict=False),
            PARTIAL: msgspec.json.Decoder(SpotPartialFrame if dia.spot_partial else DepthFrame, strict=False),
            BOOKT: msgspec.json.Decoder(binance_tickers.BookTickerFrame, strict=False),
        }
        self.depth_speed = cfg.depth_speed or dia.default_speed
        self.tickers = binance_tickers.Tickers(self)
        self.last_mark = [-1] * len(self.spec.symbols)
        self.last_force = [-1] * len(self.spec.symbols)
        n = len(self.spec.symbols)
        self.last_trade = [-1] * n
        self.overlap_base = [-1] * n
        self.overlap_ids: list[set[int]] = [set() for _ in range(n)]
        self.last_partial = [-1] * n
        self.sync: list[DiffSync[Depth | DiffText]] = [DiffSync() for _ in range(n)]
        self.routes: dict[str, tuple[int, int, int]] = {}
        self.ch_depth = self.chan_id.get("depth", 0)
        self.ch_snap = self.chan_id.get("depthSnapshot", 0)
        self.ch_trade = self.chan_id.get(trade_stream(self.cfg), 0)
        self.levels = self.out.snapshot_levels
        self._snap_struct_n = self.depth
        self._session: Any = None
        self._rest_next = 0.0
        self._pending_resync: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: a stream silent this long after its subscribe makes the instrument list be asked why
        self.silent_after = cfg.silent_after if cfg.silent_after is not None else silence.SILENT_AFTER
        self.silence = silence.SilenceWatch(self.silent_after, self.nchan)
        for entries in self.streams():
            for name, kind, sym, chan in entries:
                self.routes[name] = (kind, sym, chan)
                if kind == MARK:  # the 3 s variant has the same shape (recordings hold either)
                    self.routes[name.removesuffix("@1s")] = (kind, sym, chan)

    # -- plans -------------------------------------------------------------------
    def streams(self) -> tuple[list[tuple[str, int, int, int]], list[tuple[str, int, int, int]]]:
        """(public, market) lists of (stream name, kind, symbol id, channel id)."""
        public: list[tuple[str, int, int, int]] = []
        market: list[tuple[str, int, int, int]] = []
        chans = self.cfg.channels
        ts_name = trade_stream(self.cfg)
        for s in self.cfg.symbols:
            sym = self.sym_id[s]
            low = s.lower()
            if "trades" in chans:
                entry = (f"{low}@{ts_name}", AGG if ts_name == "aggTrade" else TRADE, sym, self.chan_id[ts_name])
                (market if ts_name == "aggTrade" else public).append(entry)
            if "book_change" in chans:
                suffix = self.dialect.depth_speeds[self.depth_speed]
                public.append((f"{low}@depth{suffix}", DIFF, sym, self.chan_id["depth"]))
            if "book_snapshot" in chans:
                public.append((f"{low}@depth{self.depth}@100ms", PARTIAL, sym, self.chan_id[f"depth{self.depth}"]))
            if "book_ticker" in chans:
                public.append((f"{low}@bookTicker", BOOKT, sym, self.chan_id["bookTicker"]))
            if "derivative_ticker" in chans:
                market.append((f"{low}@markPrice@1s", MARK, sym, self.chan_id["markPrice"]))
            if "liquidations" in chans:
                market.append((f"{low}@forceOrder", FORCE, sym, self.chan_id["forceOrder"]))
        return public, market

    def plans(self) -> list[Plan]:
        out: list[Plan] = []
        dia = self.dialect
        public, market = self.streams()
        groups = [(dia.public_path, public), (dia.market_path, market)]
        if dia.public_path == dia.market_path:  # spot, COIN-M: every stream on one path
            groups = [(dia.public_path, public + market)]
        per_conn = dia.streams_per_conn
        for path, entries in groups:
            for i in range(0, len(entries), per_conn):
                chunk = entries[i : i + per_conn]
                url = common.join_url(self.ws_base, path) + "?streams=" + "/".join(e[0] for e in chunk)
                streams = [(chan, sym) for _, _, sym, chan in chunk]
                if any(k == DIFF for _, k, _, _ in chunk):
                    streams += [(self.ch_snap, sym) for _, k, sym, _ in chunk if k == DIFF]
                label = f"{path.strip('/').split('/')[0]}#{i // per_conn}"
                kinds = [k for _, k, _, _ in chunk]
                tag = max(set(kinds), key=kinds.count)
                out.append(Plan(url=url, streams=streams, label=label, tag=tag))
                for name, kind, sym, _ in chunk:
                    dt = _KIND_TYPE.get(kind, f"book_snapshot_{self.depth}")
                    log.info("subscribe %s (%s) on %s", self.feed_id(dt, sym), name, label)
        return out

    # -- frames (hot path) --------------------------------------------------------
    def frame_handler(self, plan: Plan) -> Callable[[Listener, int, memoryview], None]:
        """A connection of aggTrade or trade streams (the busiest: one small frame per trade)
        gets a closure with everything it touches bound once: one typed decode, one route
        lookup, one push for the trade row and the raw frame, the counters. Anything else on
        it (a duplicate, a planned reconnect's overlap, a trade that is no market trade,
        another stream, a malformed or control frame) goes to ``on_frame``, which handles
        every case."""
        tag = plan.tag
        if tag == DIFF:
            return self._diff_frame_handler()
        if tag != AGG and tag != TRADE:
            return self.on_frame
        agg = tag == AGG  # aggTrade: id ``a``; trade: id ``t``, and only ``X`` MARKET is a trade row
        decode = self._fast[tag].decode
        nchan = self.nchan
        # stream name -> (symbol, channel, per-(symbol, channel) counter index)
        get = {name: (sym, chan, sym * nchan + chan)
               for name, (kind, sym, chan) in self.routes.items() if kind == tag}.get
        last = self.last_trade
        n_msgs, n_bytes, last_ns, ch_msgs, ch_bytes = self.n_msgs, self.n_bytes, self.last_ns, self.ch_msgs, self.ch_bytes
        push = self.out.trade_frame_pusher()
        pending = self._pending_resync
        on_frame, on_frame_slow, do_pending = self.on_frame, self.on_frame_slow, self._do_pending
        side = _SIDE

        def on_trade_frame(lst: Listener, ts: int, payload: memoryview) -> None:
            try:
                msg = decode(payload)
            except msgspec.DecodeError:
                on_frame_slow(lst, ts, payload)
                return
            route = get(msg.stream)
            if route is None or lst.link.rolling:
                on_frame(lst, ts, payload)
                return
            sym, chan, k = route
            data = msg.data
            tid = data.a if agg else data.t
            if tid <= last[sym] or (not agg and data.X != "MARKET"):
                on_frame(lst, ts, payload)  # a duplicate (counted, an event, kept raw) or kept raw only
                return
            last[sym] = tid
            push(ts, data.T * 1_000_000, sym, tid, data.p, data.q, side[data.m], payload, lst.conn_id, chan)
            n = len(payload)
            n_msgs[sym] += 1
            n_bytes[sym] += n
            last_ns[sym] = ts
            ch_msgs[k] += 1
            ch_bytes[k] += n
            if pending:
                do_pending(ts)

        return on_trade_frame

    def _diff_frame_handler(self) -> Callable[[Listener, int, memoryview], None]:
        """A connection of depth diff streams gets a closure with everything it touches bound
        once: one typed decode, one route lookup, and for a synced book's next diff its level
        text parsed straight into ring records, the counters and the raw frame. A diff that does
        not continue the chain (a gap, a duplicate, a book still syncing, a planned reconnect's
        overlap) goes through ``on_diff``; another stream, a malformed or control frame, and
        level text the compiled parser refuses go to ``on_frame`` / ``on_frame_slow``, which
        handle every case."""
        decode = self._fast[DIFF].decode
        nchan = self.nchan
        get = {name: (sym, chan, sym * nchan + chan)
               for name, (kind, sym, chan) in self.routes.items() if kind == DIFF}.get
        sync, has_pu = self.sync, self.has_pu
        n_msgs, n_bytes, last_ns, ch_msgs, ch_bytes = self.n_msgs, self.n_bytes, self.last_ns, self.ch_msgs, self.ch_bytes
        push_text, raw_fast = self.out.book_level_text, self.out.raw_fast
        raw_on = self.raw_on
        pending = self._pending_resync
        on_frame, on_frame_slow, on_diff, do_pending = self.on_frame, self.on_frame_slow, self.on_diff, self._do_pending
        synced = SyncState.SYNCED

        def on_diff_frame(lst: Listener, ts: int, payload: memoryview) -> None:
            try:
                msg = decode(payload)
            except msgspec.DecodeError:
                on_frame_slow(lst, ts, payload)
                return
            route = get(msg.stream)
            if route is None:
                on_frame(lst, ts, payload)
                return
            sym, chan, k = route
            d = msg.data
            st = sync[sym]
            rolling = lst.link.rolling
            try:
                if (st.state is synced and not rolling and d.u > st.last_u and not st.ahead
                        and (d.pu if has_pu else d.U - 1) == st.last_u):  # on_diff's common case, inlined
                    push_text(ts, d.E * 1_000_000, sym, False, d.b, d.a)
                    st.last_u = d.u
                    keep = True
                else:
                    keep = on_diff(lst, ts, sym, d)
            except LevelTextError:  # nothing written: the slow path counts it malformed and keeps it raw
                on_frame_slow(lst, ts, payload)
                return
            n = len(payload)
            n_msgs[sym] += 1
            n_bytes[sym] += n
            last_ns[sym] = ts
            ch_msgs[k] += 1
            ch_bytes[k] += n
            if raw_on and (keep or not rolling):
                raw_fast(ts, payload, lst.conn_id, sym, chan)
            if pending:
                do_pending(ts)

        return on_diff_frame

    def on_frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        """Fast path: one typed pass over envelope + body for the connection's main
        message type; anything else (other types, control frames, malformed) takes
        the envelope-first path."""
        try:
            msg = self._fast[lst.plan.tag].decode(payload)
        except (msgspec.DecodeError, KeyError):
            self.on_frame_slow(lst, ts, payload)
            return
        route = self.routes.get(msg.stream)
        if route is None:
            self.on_frame_slow(lst, ts, payload)
            return
        kind, sym, chan = route
        data = msg.data
        if kind == AGG and type(data) is AggTrade:  # the common case has its own handler (frame_handler)
            tid = data.a
            if lst.link.rolling:
                keep = self.on_trade(ts, sym, tid, data, True)
            elif tid > self.last_trade[sym]:
                keep = self.on_trade(ts, sym, tid, data)
            else:
                self.duplicate(ts, sym, chan, lst.conn_id, tid, what="trades")
                keep = False
        elif kind == PARTIAL and type(data) is Depth:  # on_partial, inlined
            if data.u > (lp := self.last_partial)[sym]:
                lp[sym] = data.u
                out = self.out
                if not out.book_snapshot_levels(ts, data.E * 1_000_000, sym, data.b, data.a):
                    out.book_snapshot(ts, data.E * 1_000_000, sym, common.snapshot_values(data.b, data.a, self.levels))
                n = len(payload)
                self.n_msgs[sym] += 1
                self.n_bytes[sym] += n
                self.last_ns[sym] = ts
                k = sym * self.nchan + chan
                self.ch_msgs[k] += 1
                self.ch_bytes[k] += n
                if self.raw_on:
                    out.raw_fast(ts, payload, lst.conn_id, sym, chan)
                if self._pending_resync:
                    self._do_pending(ts)
                return
            keep = self.on_partial(ts, sym, data)  # a duplicate: counted there
        elif kind == PARTIAL and type(data) is SpotPartial:
            keep = self.on_partial(ts, sym, self.spot_depth(data))
        elif kind == DIFF and type(data) is DiffText:
            try:
                keep = self.on_diff(lst, ts, sym, data)
            except LevelTextError:  # nothing written: the slow path counts it malformed and keeps it raw
                self.on_frame_slow(lst, ts, payload)
                return
        elif kind == BOOKT and type(data) is binance_tickers.BookTicker:
            keep = self.tickers.on_book_ticker(ts, sym, data)
        elif kind == TRADE and type(data) is Trade:
            keep = self.on_trade(ts, sym, data.t, data, lst.link.rolling) if data.X == "MARKET" else True
        else:
            self.on_frame_slow(lst, ts, payload)
            return
        n = len(payload)
        self.n_msgs[sym] += 1
        self.n_bytes[sym] += n
        self.last_ns[sym] = ts
        k = sym * self.nchan + chan
        self.ch_msgs[k] += 1
        self.ch_bytes[k] += n
        if self.raw_on and (keep or not lst.link.rolling):
            self.out.raw_fast(ts, payload, lst.conn_id, sym, chan)
        if self._pending_resync:
            self._do_pending(ts)

    def on_frame_slow(self, lst: Listener, ts: int, payload: memoryview) -> None:
        try:
            env = self._env.decode(payload)
        except msgspec.DecodeError as e:
            # a broken frame still names its stream up front: charge it to that stream
            m = _STREAM_RE.match(payload.tobytes()[:96])
            route = self.routes.get(m[1].decode()) if m else None
            kind, sym, chan = route if route else (-1, 0, 0)
            self.malformed(lst.conn_id, ts, payload, f"envelope: {e}", sym, chan)
            if kind == DIFF and self.sync[sym].state == SyncState.SYNCED:
                self.resync(sym, ts, "malformed diff")
            return
        route = self.routes.get(env.stream)
        if route is None:
            self.control(lst, ts, payload, env.stream)
            return
        kind, sym, chan = route
        self.count(sym, ts, len(payload), chan)
        try:
            if kind == AGG:
                t = self._agg.decode(env.data)
                keep = self.on_trade(ts, sym, t.a, t, lst.link.rolling)
            elif kind == DIFF:
                keep = self.on_diff(lst, ts, sym, self._depth.decode(env.data))
            elif kind == PARTIAL:
                if self.dialect.spot_partial:
                    keep = self.on_partial(ts, sym, self.spot_depth(self._spot_partial.decode(env.data)))
                else:
                    keep = self.on_partial(ts, sym, self._depth.decode(env.data))
            elif kind >= BOOKT:
                keep = self.on_ticker_stream(kind, ts, sym, env.data, lst.link.rolling)
            else:
                tr = self._trade.decode(env.data)
                keep = self.on_trade(ts, sym, tr.t, tr, lst.link.rolling) if tr.X == "MARKET" else True
        except msgspec.DecodeError as e:
            self.malformed(lst.conn_id, ts, payload, f"{env.stream}: {e}", sym, chan)
            if kind == DIFF and self.sync[sym].state == SyncState.SYNCED:
                self.resync(sym, ts, "malformed diff")
            return
        if self.raw_on and (keep or not lst.link.rolling):
            self.out.raw(ts, payload, lst.conn_id, sym, chan)
        if self._pending_resync:
            self._do_pending(ts)

    def on_trade(self, ts: int, sym: int, tid: int, t: AggTrade | Trade, rolling: bool = False) -> bool:
        """Ids rise; while two connections overlap, a trade may come first on either, so
        ids are remembered (``overlap_ids``) instead of compared with the last one (the
        overlap's expected duplicates are counted, not reported as events)."""
        if rolling:
            seen = self.overlap_ids[sym]
            if tid <= self.overlap_base[sym] or tid in seen:
                self.bump("duplicates", sym)
                return False
            seen.add(tid)
            self.last_trade[sym] = max(self.last_trade[sym], tid)
        elif tid <= self.last_trade[sym]:
            self.duplicate(ts, sym, self.ch_trade, 0, tid, what="trades")
            return False
        else:
            self.last_trade[sym] = tid
        self.out.trade_fast(ts, t.T * 1_000_000, sym, b"%d" % tid, t.p, t.q, SIDE_SELL if t.m else SIDE_BUY)
        return True

    def on_ticker_stream(self, kind: int, ts: int, sym: int, data: msgspec.Raw, rolling: bool) -> bool:
        tk = self.tickers
        if kind == BOOKT:
            return tk.on_book_ticker(ts, sym, tk.book_ticker.decode(data))
        if kind == MARK:
            mp = tk.mark.decode(data)
            if self.last_mark[sym] >= mp.E:  # pushed once a second: an equal or older time is a repeat
                self.bump("duplicates", sym)
                return False
            self.last_mark[sym] = mp.E
            return tk.on_mark(ts, sym, mp)
        fo = tk.force.decode(data)
        if rolling and self.last_force[sym] >= fo.o.T:  # the overlap of a planned reconnect
            self.bump("duplicates", sym)
            return False
        self.last_force[sym] = max(self.last_force[sym], fo.o.T)
        return tk.on_force(ts, sym, fo)

    def overlap_started(self, link: Link) -> None:
        for chan, sym in link.plan.streams:
            if chan == self.ch_trade:
                self.overlap_base[sym] = self.last_trade[sym]
                self.overlap_ids[sym].clear()

    def overlap_done(self, link: Link, ts: int) -> None:
        for chan, sym in link.plan.streams:
            if chan == self.ch_trade:
                self.overlap_ids[sym].clear()
                self.overlap_base[sym] = self.last_trade[sym]
            st = self.sync[sym]
            if chan != self.ch_depth or not chan or not st.ahead:
                continue
            pending = [v for v in st.ahead.values() if v[1].u > st.last_u]
            st.ahead.clear()
            if pending and st.state == SyncState.SYNCED:  # a diff neither connection delivered
                first = min(pending, key=lambda v: v[1].u)
                self.gap(ts, sym, self.ch_depth, 0, f"after planned reconnect: {self.chain_break(first[1], st.last_u)}",
                         first[1].E * 1_000_000)
                self.resync(sym, ts, "gap", first=first)

    @staticmethod
    def spot_depth(p: SpotPartial) -> Depth:
        """Spot's partial depth as a Depth (no event time: ``E`` 0, null on disk)."""
        return Depth(0, p.lastUpdateId, p.lastUpdateId, p.bids, p.asks)

    def prev_u(self, d: Depth | DiffText) -> int:
        """The ``u`` the diff before ``d`` must have ended at: ``pu``, or spot's ``U - 1``."""
        return d.pu if self.has_pu else d.U - 1

    def chain_break(self, d: Depth | DiffText, last: int, buffered: str = "") -> str:
        if self.has_pu:
            return f"pu {d.pu} != previous u {last}{buffered}"
        return f"U {d.U} != previous u {last} + 1{buffered}"

    def on_partial(self, ts: int, sym: int, d: Depth) -> bool:
        if d.u <= self.last_partial[sym]:
            self.duplicate(ts, sym, self.chan_id.get(f"depth{self.depth}", 0), 0, d.u, what=f"depth{self.depth} frames")
            return False
        self.last_partial[sym] = d.u
        out = self.out
        if not out.book_snapshot_levels(ts, d.E * 1_000_000, sym, d.b, d.a):
            out.book_snapshot(ts, d.E * 1_000_000, sym, common.snapshot_values(d.b, d.a, self.levels))
        return True

    def on_diff(self, lst: Listener, ts: int, sym: int, d: Depth | DiffText) -> bool:
        """Raises LevelTextError (before any change) when a level text is not levels."""
        st = self.sync[sym]
        if st.state == SyncState.SYNCED:
            if d.u <= st.last_u:
                if lst.link.rolling:
                    self.bump("duplicates", sym)
                else:
                    self.duplicate(ts, sym, self.ch_depth, lst.conn_id, d.u, what="diffs")
                return False
            if (d.pu if self.has_pu else d.U - 1) != st.last_u:
                held = d.held() if isinstance(d, DiffText) else d
                if lst.link.rolling:  # two connections race during a planned reconnect: hold it
                    st.ahead[self.prev_u(d)] = (ts, held)
                    return True
                self.gap(ts, sym, self.ch_depth, lst.conn_id, self.chain_break(d, st.last_u), d.E * 1_000_000)
                self.resync(sym, ts, "gap", first=(ts, held))
                return True
            self.emit_diff(ts, sym, d)
            st.last_u = d.u
            while st.ahead:
                nxt = st.ahead.pop(st.last_u, None)
                if nxt is None:
                    break
                self.emit_diff(nxt[0], sym, nxt[1])
                st.last_u = nxt[1].u
            return True
        if not st.push(ts, d.held() if isinstance(d, DiffText) else d):  # once per overflow: the gap event says how many
            log.warning("%s diff buffer full (%d) while waiting for the snapshot: dropping the oldest diffs",
                        self.feed_id("book_change", sym), MAX_BUFFER)
        if st.snapshot is not None and self.try_bridge(sym) != Bridge.STALE:
            return True
        if not st.fetching:
            self.fetch_snapshot(sym)
        return True

    def emit_diff(self, ts: int, sym: int, d: Depth | DiffText) -> None:
        ets = d.E * 1_000_000
        if type(d) is DiffText:
            self.out.book_level_text(ts, ets, sym, False, d.b, d.a)
            return
        push = self.out.book_levels
        push(ts, ets, sym, False, BOOK_BID, d.b)
        push(ts, ets, sym, False, BOOK_ASK, d.a)

    # -- book sync -------------------------------------------------------------------
    def report_lost(self, sym: int, ts: int) -> None:
        """Diffs a full buffer dropped while the snapshot was awaited: a ``gap`` with the range."""
        lost = self.sync[sym].take_lost()
        if lost is not None:
            n, first, last, ets = lost
            self.gap(ts, sym, self.ch_depth, 0,
                     f"diff buffer full ({MAX_BUFFER}) awaiting the snapshot: {n} diffs dropped, U {first}..u {last}",
                     ets * 1_000_000)

    def resync(self, sym: int, ts: int, why: str, first: tuple[int, Depth | DiffText] | None = None) -> None:
        st = self.sync[sym]
        self.report_lost(sym, ts)
        st.reset()
        self.out.event(ts, "resync", symbol=sym, channel=self.ch_depth, detail=f"{why}: fetching a new snapshot")
        if first is not None:
            st.push(*first)
            self.fetch_snapshot(sym)

    def on_book_drop(self, symbol: int) -> None:
        self._pending_resync.add(symbol)

    def _do_pending(self, ts: int) -> None:
        for sym in list(self._pending_resync):
            st = self.sync[sym]
            if st.state == SyncState.SYNCED:
                self.gap(ts, sym, self.ch_depth, 0, f"book records dropped (ring full) after u {st.last_u}")
                self.resync(sym, ts, "book records dropped (ring full)")
        self._pending_resync.clear()

    def tick(self, now: float) -> None:
        if self._pending_resync:
            self._do_pending(time.time_ns())
        if self.silence.since and (due := self.silence.due(now, self.ch_msgs)):
            task = asyncio.get_running_loop().create_task(self._check_silent(due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for sym, st in enumerate(self.sync):  # snapshots held back until the book ring had room
            if st.waiting_room and st.snapshot is not None and self.book_room(sym):
                self.try_bridge(sym)

    def book_room(self, sym: int) -> bool:
        """Room in the book ring for the snapshot and the buffered diffs (a resync into a full
        ring would only drop its own snapshot and start over, for as long as the ring stays full)."""
        ring = self.out.rings.get("book_change")
        if not isinstance(ring, RecordRing):
            return True
        st = self.sync[sym]
        snap = st.snapshot[1] if st.snapshot is not None else None
        need = (len(snap.bids) + len(snap.asks) if snap is not None else 2 * self.snapshot_limit) + 8 * len(st.buffer)
        free = ring.capacity - (ring.write_seq - ring.read_seq)  # the writer's cursor now, not a cached one
        return free >= min(need, ring.capacity // 2)

    def fetch_snapshot(self, sym: int) -> None:
        st = self.sync[sym]
        st.fetching = True
        if self.manual_snapshots:  # tests and the benchmark feed snapshots through on_snapshot
            return
        task = asyncio.get_running_loop().create_task(self._fetch(sym, st.generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, sym: int, generation: int) -> None:
        st = self.sync[sym]
        symbol = self.spec.symbols[sym]
        url = f"{self.rest_base}{self.dialect.depth_path}?symbol={symbol}&limit={self.snapshot_limit}"
        delay = 0.5
        try:
            while st.generation == generation and not self._closing():
                wait = self._rest_next - time.monotonic()
                self._rest_next = max(self._rest_next, time.monotonic()) + self.rest_interval
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    status, body, ts = await self._get(url)
                except Exception as e:  # timeout, refused, reset: counted, an event, retried with backoff
                    why = f"snapshot request failed: {type(e).__name__}: {e}"
                    log.warning("%s %s", self.feed_id("book_change", sym), why)
                    self.bump("rest_errors", sym)
                    self.out.event(time.time_ns(), "info", symbol=sym, channel=self.ch_snap, detail=why[:96])
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                if status != 200:
                    log.warning("%s snapshot HTTP %d: %.200r", self.feed_id("book_change", sym), status, body)
                    self.bump("rest_errors", sym)
                    self.out.event(ts, "info", symbol=sym, channel=self.ch_snap, detail=f"snapshot HTTP {status}")
                    await asyncio.sleep(delay if status not in (418, 429) else max(delay, 10.0))
                    delay = min(delay * 2, 60.0)
                    continue
                verdict = self.on_snapshot(sym, ts, body, generation)
                if verdict is None:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                if verdict != Bridge.STALE:
                    return
                # a snapshot that does not bridge: fetched again, backing off (a late REST path stays late)
                await asyncio.sleep(min(self.rest_interval * 2 ** self.sync[sym].stale, 10.0))
        finally:
            if st.generation == generation:
                st.fetching = False

    async def start(self) -> None:
        """The REST client is imported and set up here, before any connection opens:
        importing aiohttp costs 0.2-0.5 s, which inside the running loop would hold every
        frame of that time back and stamp them all with one late ``local_ts``."""
        rest = "book_change" in self.cfg.channels or "derivative_ticker" in self.cfg.channels
        if rest and not self.manual_snapshots and self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.rest_timeout))
        self.tickers.start()

    async def _get(self, url: str) -> tuple[int, bytes, int]:
        status, body, ts, _ = await self.rest_get(url)
        return status, body, ts

    async def rest_get(self, url: str) -> tuple[int, bytes, int, float]:
        """(status, body, receive time ns, Retry-After seconds or 0)."""
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.rest_timeout))
        async with self._session.get(url) as resp:
            body = await resp.read()
            try:
                retry = float(resp.headers.get("Retry-After", 0))
            except ValueError:
                retry = 0.0
            return resp.status, body, time.time_ns(), retry

    def _closing(self) -> bool:
        return bool(self.links) and all(link.closing for link in self.links)

    def on_snapshot(self, sym: int, ts: int, body: bytes, generation: int | None = None) -> Bridge | None:
        """A REST depth body arrived at ``ts``: keep it in raw (Tardis's ``depthSnapshot``
        frame), then bridge the buffered diffs. None if the body is malformed."""
        st = self.sync[sym]
        symbol = self.spec.symbols[sym]
        raw = b'{"stream":"%s@depthSnapshot","generated":true,"data":%s}' % (symbol.lower().encode(), body)
        try:
            snap = self._snap.decode(body)
        except msgspec.DecodeError as e:
            self.malformed(0, ts, raw, f"depthSnapshot: {e}", sym, self.ch_snap)
            return None
        if self.raw_on:
            self.out.raw(ts, raw, 0, sym, self.ch_snap)
        self.count(sym, ts, len(body), self.ch_snap)
        if generation is not None and st.generation != generation:
            return Bridge.WAIT  # a reset happened meanwhile: a newer fetch is under way
        st.snapshot = (ts, snap)
        return self.try_bridge(sym)

    def try_bridge(self, sym: int) -> Bridge:
        st = self.sync[sym]
        if st.snapshot is None:
            return Bridge.WAIT
        snap_ts, snap = st.snapshot
        verdict, start = bridge(snap.lastUpdateId + self.bridge_offset, st.buffer)
        if verdict == Bridge.WAIT:
            del st.buffer[:start]  # all older than the snapshot
            return verdict
        if verdict == Bridge.STALE:
            self.report_lost(sym, snap_ts)
            st.stale += 1
            first_u = st.buffer[start][1].U if start < len(st.buffer) else -1
            detail = (f"snapshot lastUpdateId {snap.lastUpdateId} older than the buffered diffs (U {first_u}): "
                      f"fetching again (attempt {st.stale + 1})")
            self.bump("snapshot_retries", sym)
            self.out.event(snap_ts, "resync", symbol=sym, channel=self.ch_depth, detail=detail[:96])
            log.warning("%s %s", self.feed_id("book_change", sym), detail)
            st.snapshot = None
            del st.buffer[:start]
            return verdict
        if not self.book_room(sym):
            del st.buffer[:start]  # older than the snapshot: never needed
            if not st.waiting_room:
                st.waiting_room = True
                log.warning("%s book ring full: the snapshot waits for room", self.feed_id("book_change", sym))
            return Bridge.WAIT
        self.report_lost(sym, snap_ts)
        st.waiting_room = False
        st.stale = 0
        ets = (snap.T or snap.E) * 1_000_000  # the snapshot's transaction time, as Tardis stamps it
        push = self.out.book_levels
        push(snap_ts, ets, sym, True, BOOK_BID, snap.bids)
        push(snap_ts, ets, sym, True, BOOK_ASK, snap.asks)
        last = -1
        pending = st.buffer[start:]
        st.buffer.clear()
        st.snapshot = None
        st.fetching = False
        for i, (ts, d) in enumerate(pending):
            if i and d.u <= last:
                self.duplicate(ts, sym, self.ch_depth, 0, d.u, what="diffs")
                continue
            if i and self.prev_u(d) != last:
                self.gap(ts, sym, self.ch_depth, 0, self.chain_break(d, last, " (buffered)"), d.E * 1_000_000)
                self.resync(sym, ts, "gap", first=(ts, d))
                return Bridge.OK
            self.emit_diff(max(ts, snap_ts), sym, d)
            last = d.u
        st.state = SyncState.SYNCED
        st.last_u = last
        if st.synced_once:  # a completed resync (after a gap, a bad frame, a drop or a reconnect)
            self.bump("resyncs", sym)
            self.out.event(snap_ts, "resync", symbol=sym, channel=self.ch_depth, detail=f"synced at u={last}")
        st.synced_once = True
        log.info("%s synced (lastUpdateId %d, u %d)", self.feed_id("book_change", sym), snap.lastUpdateId, last)
        return Bridge.OK

    # -- control frames & connection state -----------------------------------------
    def control(self, lst: Listener, ts: int, payload: memoryview, stream: str) -> None:
        self.count(0, ts, len(payload))
        if self.raw_on:
            self.out.raw(ts, payload, lst.conn_id, 0, 0)
        try:
            c = self._ctl.decode(payload)
        except msgspec.DecodeError:
            c = None
        if stream:
            log.debug("%s: frame of unexpected stream %s", self.exchange, stream)
        elif c is not None and (c.error is not None or c.code is not None):
            self.bump("subscribe_errors")
            detail = f"error {c.error or c.code} {c.msg}"[:96]
            self.out.event(ts, "subscribe_error", conn_id=lst.conn_id, detail=detail)
            log.error("%s conn %d: %s", self.exchange, lst.conn_id, detail)

    # -- streams silent after their subscribe (a symbol delisted mid-run) ------------------
    def on_open(self, lst: Listener) -> None:
        """The upgrade was accepted: the streams named in the URL are subscribed (Binance's
        acknowledgement; an unknown symbol's stream is accepted too, and then sends nothing)."""
        snap = self.ch_snap
        self.silence.acked([(c, s) for c, s in lst.plan.streams if c and c != snap], time.monotonic(), self.ch_msgs)

    async def _check_silent(self, due: list[tuple[int, int]]) -> None:
        """Streams silent ``silent_after`` s after their subscribe: ask ``exchangeInfo`` (in a
        thread: the event loop never waits on it) whether their symbols still trade."""
        status: dict[str, str] | None = None
        why = ""
        try:
            _, status = await asyncio.to_thread(symbol_status, self.cfg, instruments.TIMEOUT, self.dialect)
        except (instruments.Unreachable, instruments.NoList) as e:
            why = f"; instrument list not checked: {e}"
        ts = time.time_ns()
        for sym in sorted({s for s, _ in due}):
            if sym in self.silence.gone:
                continue
            symbol = self.spec.symbols[sym]
            reason = silence.verdict(symbol, status) if status is not None else None
            if reason is not None:
                self.delisted(ts, sym, reason)
                continue
            for s, chan in due:
                if s == sym:
                    detail = f"no frame {self.silent_after:g}s after subscribe; {symbol} listed{why}"
                    self.out.event(ts, "stream_silent", symbol=sym, channel=chan, detail=detail[:96])
                    self.bump("silent_streams", sym)
            log.warning("%s/%s: %s stream(s) silent for %gs after subscribe; %s still listed%s: a quiet "
                        "market, not an error", self.exchange, symbol,
                        ", ".join(self.spec.channels[c] for s, c in due if s == sym), self.silent_after, symbol, why)

    def delisted(self, ts: int, sym: int, reason: str) -> None:
        """``sym`` is gone from the venue (or not trading): a ``subscribe_error`` per stream,
        counted once, one log line, and its streams taken out of every connection's URL so a
        reconnect never subscribes it again."""
        symbol = self.spec.symbols[sym]
        self.silence.gone.add(sym)
        self.bump("subscribe_errors")
        chans = [c for link in self.links for c, s in link.plan.streams if s == sym and c != self.ch_snap]
        detail = f"{symbol} {reason} (stream silent {self.silent_after:g}s after subscribe)"[:96]
        for chan in chans or [0]:
            self.out.event(ts, "subscribe_error", symbol=sym, channel=chan, detail=detail)
        log.error("%s/%s: subscribe accepted but the streams stay silent: %s; no longer subscribed",
                  self.exchange, symbol, reason)
        self.silence.forget([(c, sym) for c in chans])
        self.sync[sym].reset()  # a snapshot fetch under way ends (its REST path answers 400 now)
        names = {n for n, (_, s, _) in self.routes.items() if s == sym}
        for link in self.links:
            plan = link.plan
            if all(s != sym for _, s in plan.streams):
                continue
            base, _, query = plan.url.partition("?streams=")
            keep = [n for n in query.split("/") if n and n not in names]
            plan.streams = [(c, s) for c, s in plan.streams if s != sym]
            plan.url = f"{base}?streams={'/'.join(keep)}"
            if not keep:  # nothing left on this connection
                task = asyncio.get_running_loop().create_task(link.close())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def on_lost(self, lst: Listener) -> None:
        self.silence.forget(lst.plan.streams)
        for chan, sym in lst.plan.streams:
            if chan == self.ch_depth and chan:
                self.report_lost(sym, time.time_ns())
                self.sync[sym].reset()
                self.sync[sym].fetching = False

    async def stop(self) -> None:
        await self.tickers.stop()
        for t in list(self._tasks):
            t.cancel()
        if self._session is not None:
            await self._session.close()


def feed_for(dialect: Dialect, name: str) -> type[BinanceFutures]:
    """The Feed class of another id of the family (spot, COIN-M): this one with its dialect."""
    return type(name, (BinanceFutures,), {"exchange": dialect.exchange, "dialect": dialect})


#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = BinanceFutures
