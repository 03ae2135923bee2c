"""hyperliquid: ``l2Book`` (always a full 20-level snapshot) and ``trades``.

``book_snapshot_20`` takes each l2Book as is; ``book_change`` (as Tardis does)
writes each l2Book as one group of ``is_snapshot`` rows (a full replacement).

One subscription per coin and type, sent one message at a time
(``Timing.subscribe_interval`` keeps well under 2000 messages/min); at most
``SUBS_PER_CONN`` subscriptions per connection (limit 1000 per IP). Heartbeat
``{"method":"ping"}`` every 30 s (idle connections close after ~60 s).
Trades carry no sequence: duplicates (the recent-trades snapshot sent on every
(re)subscribe) are dropped by ``tid``, remembered across captures (seeded from
the archive at start).
"""

from __future__ import annotations

import logging
import re
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec

from ticktape.exchanges import common, hyperliquid_tickers, instruments
from ticktape.exchanges.book import Dedup
from ticktape.exchanges.connection import Listener, Plan, Timing
from ticktape.exchanges.feed import Feed
from ticktape.ipc.ring import RecordRing
from ticktape.ipc.schemas import BOOK_ASK, BOOK_BID, SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

log = logging.getLogger("ticktape.exchanges")

EXCHANGE = "hyperliquid"
WS_URL = "wss://api.hyperliquid.xyz"
PATH = "/ws"
SUPPORTED = ("trades", "book_change", "book_snapshot", "book_ticker", "derivative_ticker")
DEPTHS = (20,)
SUBS_PER_CONN = 500
# perps: BTC, kPEPE; spot: @107 or PURR/USDC; builder-deployed perps: xyz:TSLA
SYMBOL_RE = re.compile(r"[A-Za-z0-9]{1,20}|@[0-9]{1,6}|[A-Z0-9]{1,20}/[A-Z0-9]{1,20}|[a-z0-9]{1,10}:[A-Za-z0-9]{1,20}")
NAN = float("nan")
_PX, _SZ = attrgetter("px"), attrgetter("sz")

BOOK, TRADES, BBO, CTX = 0, 1, 2, 3
_KIND_TYPE = {TRADES: "trades", BBO: "book_ticker", CTX: "derivative_ticker"}
_CHANNEL_RE = re.compile(rb'\{\s*"channel"\s*:\s*"([^"]{1,40})"')
_COIN_RE = re.compile(rb'"coin"\s*:\s*"([^"]{1,40})"')


class Envelope(msgspec.Struct):
    channel: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")


class Level(msgspec.Struct, gc=False):
    px: float
    sz: float  # ``n`` (order count) is not decoded: not in the records, and it costs


class L2Book(msgspec.Struct, gc=False):
    coin: str
    time: int
    levels: tuple[list[Level], list[Level]]


class Trade(msgspec.Struct, gc=False):
    coin: str
    side: str
    px: float
    sz: float
    time: int
    tid: int


class L2BookFrame(msgspec.Struct, gc=False):
    """Envelope and body in one pass (fast path, chosen by the frame's first bytes)."""

    channel: str
    data: L2Book


class TradesFrame(msgspec.Struct, gc=False):
    channel: str
    data: list[Trade]


_FIELDS = ("px", "sz")  # Level's price and amount attributes
_BOOK_HEAD = b'{"channel":"l2Book",'
_TRADES_HEAD = b'{"channel":"trades",'


def validate(name: str, cfg: ExchangeConfig) -> None:
    for s in cfg.symbols:
        if s.upper().endswith(("USDT", "-PERP", "PERP")) and "/" not in s:
            raise ValueError(f"symbol {s!r} is not a {name} coin (Hyperliquid names perps by coin: BTC, ETH, SOL)")
    common.check_symbols(name, cfg.symbols, SYMBOL_RE, "BTC", " (perps by coin, spot as @N)")
    if "liquidations" in cfg.channels:
        raise ValueError(f"channel 'liquidations': {hyperliquid_tickers.NO_LIQUIDATIONS}")
    common.check_channels(name, cfg.channels, SUPPORTED)
    if ("book_snapshot" in cfg.channels or "book_change" in cfg.channels) and cfg.depth not in DEPTHS:
        raise ValueError(f"depth {cfg.depth}: {name} l2Book always sends 20 levels a side (set depth = 20)")
    common.check_no_trade_stream(name, cfg)
    common.check_url(cfg.url, ("ws", "wss"), "url")
    common.check_url(cfg.rest_url, ("http", "https"), "rest_url")


REST_URL = "https://api.hyperliquid.xyz"


def listed_symbols(cfg: ExchangeConfig, timeout: float) -> tuple[str, set[str]]:
    """(where, names) from ``POST /info``: ``meta`` (perps), ``spotMeta`` when a spot pair
    (``@N``, ``PURR/USDC``) is asked for, ``meta`` of a builder dex for ``dex:COIN``."""
    base = cfg.rest_url or (common.http_base_of(cfg.url) if cfg.url else REST_URL)
    url = common.join_url(base, "/info")
    out: set[str] = set()
    try:
        dexes = {s.split(":")[0] for s in cfg.symbols if ":" in s}
        for dex in ("", *sorted(dexes)):
            meta = instruments.fetch_json(url, {"type": "meta", **({"dex": dex} if dex else {})}, timeout)
            out |= {u["name"] for u in meta["universe"] if not u.get("isDelisted")}
        if any(s.startswith("@") or "/" in s for s in cfg.symbols):
            spot = instruments.fetch_json(url, {"type": "spotMeta"}, timeout)
            out |= {u["name"] for u in spot["universe"]}
    except (KeyError, TypeError):
        raise instruments.Unreachable(f"{url}: no universe in the answer") from None
    return url, out


def data_types(name: str, cfg: ExchangeConfig, raw: bool) -> list[str]:
    out = [c if c != "book_snapshot" else f"book_snapshot_{cfg.depth}" for c in cfg.channels]
    return [*out, "raw"] if raw else out


def raw_channels(name: str, cfg: ExchangeConfig) -> tuple[str, ...]:
    out: list[str] = []
    if "trades" in cfg.channels:
        out.append("trades")
    if "book_snapshot" in cfg.channels or "book_change" in cfg.channels:
        out.append("l2Book")
    if "book_ticker" in cfg.channels:
        out.append("bbo")
    if "derivative_ticker" in cfg.channels:
        out.append("activeAssetCtx")
    return tuple(out)


class Hyperliquid(Feed):
    exchange = EXCHANGE
    timing = Timing(stall_timeout=60.0, ping_interval=30.0, subscribe_interval=0.05)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ws_url = common.join_url(self.cfg.url or WS_URL, PATH)
        self._env = msgspec.json.Decoder(Envelope)
        self._book = msgspec.json.Decoder(L2Book, strict=False)
        self._trades = msgspec.json.Decoder(list[Trade], strict=False)
        self._book_frame = msgspec.json.Decoder(L2BookFrame, strict=False)
        self._trades_frame = msgspec.json.Decoder(TradesFrame, strict=False)
        self.ch_trades = self.chan_id.get("trades", 0)
        self.ch_book = self.chan_id.get("l2Book", 0)
        self.ch_bbo = self.chan_id.get("bbo", 0)
        self.ch_ctx = self.chan_id.get("activeAssetCtx", 0)
        self.tickers = hyperliquid_tickers.Tickers(self)
        self.levels = self.out.snapshot_levels
        self.want_snapshot = "book_snapshot" in self.cfg.channels
        self.want_changes = "book_change" in self.cfg.channels
        self.dedup = [Dedup[int](50_000) for _ in self.spec.symbols]
        self.book_time = [-1] * len(self.spec.symbols)
        self.book_last = [b""] * len(self.spec.symbols)
        root = self.options.get("archive_root")
        if root and "trades" in self.cfg.channels:
            self.seed_from_archive(str(root))
        self.seed_dedup()
        self.subs: list[tuple[dict[str, str], int, int, int]] = []
        for s in self.cfg.symbols:
            sym = self.sym_id[s]
            if "trades" in self.cfg.channels:
                self.subs.append(({"type": "trades", "coin": s}, TRADES, sym, self.ch_trades))
            if "book_snapshot" in self.cfg.channels or "book_change" in self.cfg.channels:
                self.subs.append(({"type": "l2Book", "coin": s}, BOOK, sym, self.ch_book))
            if "book_ticker" in self.cfg.channels:
                self.subs.append(({"type": "bbo", "coin": s}, BBO, sym, self.ch_bbo))
            if "derivative_ticker" in self.cfg.channels:
                self.subs.append(({"type": "activeAssetCtx", "coin": s}, CTX, sym, self.ch_ctx))

    def seed_from_archive(self, root: str, hours: float = 2.0, limit: int = 50_000) -> None:
        """A new capture (after a graceful stop or a crash) is re-sent the recent trades on
        subscribe too: remember the tids of the last ``hours`` of trades archived for each
        coin, read through the public loaders (only finalized files), before the first frame."""
        from datetime import UTC, datetime, timedelta

        from ticktape.archive import loaders

        end = datetime.now(UTC) + timedelta(minutes=1)
        start = end - timedelta(hours=hours)
        n = 0
        for sym_name, sym in self.sym_id.items():
            if not sym:
                continue
            try:
                t = loaders.load(root, self.exchange, "trades", sym_name, start, end, columns=["id"])
            except Exception as e:  # an unreadable archive must not stop the capture: say so
                log.warning("%s/%s: recent trade ids not read from the archive (%s: %s); duplicates of the "
                            "first re-sent trades are possible", self.exchange, sym_name, type(e).__name__, e)
                continue
            for tid in t["id"].to_pylist()[-limit:]:
                if tid is not None and tid.isdigit():
                    self.dedup[sym].add(int(tid))
                    n += 1
        if n:
            log.info("%s: %d trade ids of the last %g h read from the archive for dedup", self.exchange, n, hours)

    def seed_dedup(self, limit: int = 50_000) -> None:
        """A restarted ingest process (after a crash) still finds its last trades in the
        trades ring, which outlives it: remember their tids, so the recent trades Hyperliquid
        re-sends on subscribe are not written twice."""
        ring = self.out.rings.get("trades")
        if not isinstance(ring, RecordRing):
            return
        end = ring.write_seq
        start = max(0, end - min(ring.capacity, limit))
        n = 0
        for view in ring.views(start, end):
            for sym, tid in zip(view["symbol"].tolist(), view["id"].tolist(), strict=True):
                if 0 < sym < len(self.dedup) and tid.isdigit():
                    self.dedup[sym].add(int(tid))
                    n += 1
        if n:
            log.info("%s: %d recent trade ids recovered from the ring for dedup", self.exchange, n)

    def plans(self) -> list[Plan]:
        out: list[Plan] = []
        for i in range(0, len(self.subs), SUBS_PER_CONN):
            chunk = self.subs[i : i + SUBS_PER_CONN]
            label = f"ws#{i // SUBS_PER_CONN}"
            msgs = [msgspec.json.encode({"method": "subscribe", "subscription": sub}) for sub, *_ in chunk]
            for sub, kind, sym, _ in chunk:
                dt = _KIND_TYPE.get(kind, f"book_snapshot_{self.cfg.depth}")
                log.info("subscribe %s (%s) on %s", self.feed_id(dt, sym), sub, label)
            out.append(Plan(url=self.ws_url, subscribe=msgs, streams=[(c, s) for _, _, s, c in chunk], label=label))
        return out

    def ping(self, lst: Listener) -> None:
        lst.send(b'{"method":"ping"}')

    def on_frame(self, lst: Listener, ts: int, payload: memoryview) -> None:
        head = payload[:20].tobytes()
        if head == _BOOK_HEAD:
            try:
                book = self._book_frame.decode(payload).data
            except msgspec.DecodeError:
                pass
            else:
                self.handle_book(lst, ts, payload, book)
                return
        elif head == _TRADES_HEAD:
            try:
                trades = self._trades_frame.decode(payload).data
            except msgspec.DecodeError:
                pass
            else:
                self.handle_trades(lst, ts, payload, trades)
                return
        self.on_frame_slow(lst, ts, payload)

    def on_frame_slow(self, lst: Listener, ts: int, payload: memoryview) -> None:
        try:
            env = self._env.decode(payload)
        except msgspec.DecodeError as e:
            head = payload.tobytes()[:160]
            m_ch = _CHANNEL_RE.match(head)
            m_coin = _COIN_RE.search(head)
            sym = self.sym_id.get(m_coin[1].decode(), 0) if m_coin else 0
            chan = {b"trades": self.ch_trades, b"l2Book": self.ch_book, b"bbo": self.ch_bbo,
                    b"activeAssetCtx": self.ch_ctx}.get(m_ch[1], 0) if m_ch else 0
            self.malformed(lst.conn_id, ts, payload, f"envelope: {e}", sym, chan)
            return
        ch = env.channel
        if ch == "l2Book":
            try:
                b = self._book.decode(env.data)
            except msgspec.DecodeError as e:
                self.malformed(lst.conn_id, ts, payload, f"l2Book: {e}", 0, self.ch_book)
                return
            self.handle_book(lst, ts, payload, b)
        elif ch == "trades":
            try:
                trades = self._trades.decode(env.data)
            except msgspec.DecodeError as e:
                self.malformed(lst.conn_id, ts, payload, f"trades: {e}", 0, self.ch_trades)
                return
            self.handle_trades(lst, ts, payload, trades)
        elif ch == "bbo" or ch == "activeAssetCtx":
            self.handle_ticker(lst, ts, payload, ch, env.data)
        else:
            self.control(lst, ts, payload, env)

    def handle_ticker(self, lst: Listener, ts: int, payload: memoryview, ch: str, data: msgspec.Raw) -> None:
        tk = self.tickers
        chan = self.ch_bbo if ch == "bbo" else self.ch_ctx
        try:
            d: hyperliquid_tickers.Bbo | hyperliquid_tickers.AssetCtx = (
                tk.bbo.decode(data) if ch == "bbo" else tk.ctx.decode(data)
            )
        except msgspec.DecodeError as e:
            m = _COIN_RE.search(payload.tobytes()[:200])
            self.malformed(lst.conn_id, ts, payload, f"{ch}: {e}", self.sym_id.get(m[1].decode(), 0) if m else 0, chan)
            return
        sym = self.sym_id.get(d.coin, 0)
        self.count(sym, ts, len(payload), chan)
        if self.raw_on:
            self.out.raw_fast(ts, payload, lst.conn_id, sym, chan)
        if not sym:
            return
        if type(d) is hyperliquid_tickers.Bbo:
            tk.on_bbo(ts, sym, d)
        elif type(d) is hyperliquid_tickers.AssetCtx:
            tk.on_ctx(ts, sym, d)

    def handle_book(self, lst: Listener, ts: int, payload: memoryview, b: L2Book) -> None:
        sym = self.sym_id.get(b.coin, 0)
        self.count(sym, ts, len(payload), self.ch_book)
        if self.raw_on:
            self.out.raw_fast(ts, payload, lst.conn_id, sym, self.ch_book)
        if sym:
            # l2Book has no sequence: an older ``time``, or the same time and the same bytes, is a repeat
            last = self.book_time[sym]
            if b.time < last or (b.time == last and payload == self.book_last[sym]):
                self.duplicate(ts, sym, self.ch_book, lst.conn_id, b.time, what="l2Book frames")
                return
            self.book_time[sym] = b.time
            self.book_last[sym] = bytes(payload)
            self.on_book(ts, sym, b)

    def handle_trades(self, lst: Listener, ts: int, payload: memoryview, trades: list[Trade]) -> None:
        sym = self.sym_id.get(trades[0].coin, 0) if trades else 0
        self.count(sym, ts, len(payload), self.ch_trades)
        if self.raw_on:
            self.out.raw_fast(ts, payload, lst.conn_id, sym, self.ch_trades)
        if sym:
            self.on_trades(lst, ts, sym, trades)

    def on_book(self, ts: int, sym: int, b: L2Book) -> None:
        bids, asks = b.levels
        if self.want_changes:  # every l2Book replaces the book: one group of is_snapshot rows
            ets = b.time * 1_000_000
            push = self.out.book_levels
            push(ts, ets, sym, True, BOOK_BID, bids, _FIELDS)
            push(ts, ets, sym, True, BOOK_ASK, asks, _FIELDS)
        if not self.want_snapshot:
            return
        if self.out.book_snapshot_levels(ts, b.time * 1_000_000, sym, bids, asks, _FIELDS):
            return  # the usual full l2Book
        n = self.levels
        if len(bids) == n and len(asks) == n:
            values: tuple[float, ...] = (*map(_PX, bids), *map(_SZ, bids), *map(_PX, asks), *map(_SZ, asks))
        else:
            bids, asks = bids[:n], asks[:n]
            pb = (NAN,) * (n - len(bids))
            pa = (NAN,) * (n - len(asks))
            values = (*map(_PX, bids), *pb, *map(_SZ, bids), *pb, *map(_PX, asks), *pa, *map(_SZ, asks), *pa)
        self.out.book_snapshot(ts, b.time * 1_000_000, sym, values)

    def on_trades(self, lst: Listener, ts: int, sym: int, trades: list[Trade]) -> None:
        seen = self.dedup[sym]
        push = self.out.trade_fast
        for t in trades:
            if not seen.add(t.tid):
                self.duplicate(ts, sym, self.ch_trades, lst.conn_id, t.tid, what="trades")
                continue
            side = SIDE_BUY if t.side == "B" else SIDE_SELL if t.side == "A" else SIDE_UNKNOWN
            push(ts, t.time * 1_000_000, sym, str(t.tid).encode(), t.px, t.sz, side)

    def control(self, lst: Listener, ts: int, payload: memoryview, env: Envelope) -> None:
        self.control_frame(lst, ts, payload)
        if env.channel == "error":
            text = bytes(env.data)
            m = re.search(rb'coin\W+([A-Za-z0-9@:/]{1,40})', text)
            sym = self.sym_id.get(m[1].decode(), 0) if m else 0
            chan = next((c for name, c in ((b"trades", self.ch_trades), (b"l2Book", self.ch_book), (b"bbo", self.ch_bbo),
                                           (b"activeAssetCtx", self.ch_ctx)) if name in text), 0)
            self.bump("subscribe_errors", sym)
            detail = text[:90].decode(errors="replace")
            self.out.event(ts, "subscribe_error", symbol=sym, channel=chan, conn_id=lst.conn_id, detail=detail)
            log.error("%s conn %d: error %s", self.exchange, lst.conn_id, detail)


#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = Hyperliquid
