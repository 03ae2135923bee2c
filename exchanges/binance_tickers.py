"""binance-futures ``bookTicker``, ``markPrice@1s``, ``forceOrder`` and the REST
open-interest poll: the records behind ``book_ticker``, ``derivative_ticker`` and
``liquidations``.

The websocket carries no open interest, so ``GET /fapi/v1/openInterest`` (COIN-M:
``/dapi/v1/openInterest``, same weight and shape plus ``pair``/``contractType``) is
polled, one symbol at a time, spread evenly over ``open_interest_interval``.
Budget: the endpoint weighs 1 against Binance's 2400 weight/min per IP; the
poll may use at most ``OI_BUDGET`` (240/min, 10 %) so depth snapshots (weight
20 each) keep their room; a config over budget is refused before anything
connects. HTTP 418/429 pause polling (``Retry-After``); any REST failure is an
``info`` event plus a ``rest_errors`` count, never a crash. Each answer is kept
in ``raw`` as Tardis's generated ``<sym>@openInterest`` frame.

``derivative_ticker`` rows carry the merged state after every update (mark,
index, funding from markPrice; open interest from the poll; NaN = never
given; Binance's markPrice has no last price).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Protocol

import msgspec

from ticktape.engine.settings import ExchangeConfig
from ticktape.ipc.outbox import Outbox
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import SIDE_BUY, SIDE_SELL


class BinanceFutures(Protocol):
    """What the tickers need from their feed (``exchanges.binance_futures.BinanceFutures``,
    which imports this module: a protocol keeps the dependency one way)."""

    out: Outbox
    cfg: ExchangeConfig
    spec: RingSetSpec
    chan_id: dict[str, int]
    sym_id: dict[str, int]
    raw_on: bool
    rest_base: str
    oi_path: str  # /fapi/v1/openInterest (USD-M), /dapi/v1/openInterest (COIN-M)
    manual_snapshots: bool

    def bump(self, field: str, symbol: int = 0, n: int = 1) -> None: ...

    def feed_id(self, data_type: str, symbol: int) -> str: ...

    def count(self, symbol: int, ts: int, nbytes: int, channel: int = 0) -> None: ...

    def malformed(
        self, conn_id: int, ts: int, payload: memoryview | bytes, why: str, symbol: int = 0, channel: int = 0,
        keep_raw: bool = True,
    ) -> None: ...

    async def rest_get(self, url: str) -> tuple[int, bytes, int, float]: ...

log = logging.getLogger("ticktape.exchanges")

NAN = math.nan
#: REST weight limit per IP per minute and the share the open-interest poll may use
WEIGHT_PER_MIN = 2400
OI_WEIGHT = 1
OI_BUDGET = WEIGHT_PER_MIN // 10
OI_INTERVAL = 10.0


class BookTicker(msgspec.Struct, gc=False):
    u: int
    b: float
    B: float
    a: float
    A: float
    E: int = 0
    T: int = 0


class BookTickerFrame(msgspec.Struct, gc=False):
    stream: str
    data: BookTicker


class MarkPrice(msgspec.Struct, gc=False):
    E: int
    p: float
    i: float = NAN
    r: str = ""
    T: int = 0


class ForceOrderBody(msgspec.Struct, gc=False):
    S: str
    p: float
    z: float
    X: str
    T: int


class ForceOrder(msgspec.Struct, gc=False):
    E: int
    o: ForceOrderBody


class OpenInterest(msgspec.Struct, gc=False):
    openInterest: float
    time: int = 0


def oi_weight_per_min(symbols: int, interval: float) -> float:
    return symbols * OI_WEIGHT * 60.0 / interval


def validate(cfg: ExchangeConfig) -> None:
    iv = cfg.open_interest_interval
    if iv is None:
        return
    if not (iv > 0 and math.isfinite(iv)):
        raise ValueError(f"open_interest_interval {iv}: must be a positive number of seconds")
    if "derivative_ticker" not in cfg.channels:
        raise ValueError("open_interest_interval is set but derivative_ticker is not in channels")
    used = oi_weight_per_min(len(cfg.symbols), iv)
    if used > OI_BUDGET:
        least = len(cfg.symbols) * OI_WEIGHT * 60.0 / OI_BUDGET
        raise ValueError(
            f"open_interest_interval {iv:g} s for {len(cfg.symbols)} symbols uses {used:.0f} REST weight/min, over the "
            f"poll budget of {OI_BUDGET}/min (10% of Binance's {WEIGHT_PER_MIN}); use at least {least:g} s"
        )


class Tickers:
    """Per-symbol derivative state and the three streams' handlers of one BinanceFutures feed."""

    def __init__(self, feed: BinanceFutures) -> None:
        self.feed = feed
        self.out = feed.out
        n = len(feed.spec.symbols)
        # mark, index, funding rate, funding time (ns), open interest
        self.state: list[list[float]] = [[NAN, NAN, NAN, 0.0, NAN] for _ in range(n)]
        self.book_ticker = msgspec.json.Decoder(BookTicker, strict=False)
        self.book_ticker_frame = msgspec.json.Decoder(BookTickerFrame, strict=False)
        self.mark = msgspec.json.Decoder(MarkPrice, strict=False)
        self.force = msgspec.json.Decoder(ForceOrder, strict=False)
        self.oi = msgspec.json.Decoder(OpenInterest, strict=False)
        self.last_bt = [-1] * n
        self.interval = float(feed.cfg.open_interest_interval or OI_INTERVAL)
        self.ch_oi = feed.chan_id.get("openInterest", 0)
        self.ch_force = feed.chan_id.get("forceOrder", 0)
        self.rest_errors = 0
        self.polls = 0
        self._task: asyncio.Task[None] | None = None

    # -- websocket streams -------------------------------------------------------
    def on_book_ticker(self, ts: int, sym: int, d: BookTicker) -> bool:
        if d.u <= self.last_bt[sym]:  # an overlap repeat (planned reconnect) or an old frame
            self.feed.bump("duplicates", sym)
            return False
        self.last_bt[sym] = d.u
        self.out.book_ticker(ts, (d.E or d.T) * 1_000_000, sym, d.b, d.B, d.a, d.A)
        return True

    def on_mark(self, ts: int, sym: int, d: MarkPrice) -> bool:
        st = self.state[sym]
        st[0] = d.p
        st[1] = d.i
        if d.r != "" and d.T != 0:  # only perpetuals fund (delivery contracts send r "" / T 0)
            st[2] = float(d.r)
            st[3] = d.T * 1_000_000
        self.emit(ts, d.E * 1_000_000, sym)
        return True

    def on_force(self, ts: int, sym: int, d: ForceOrder) -> bool:
        o = d.o
        if o.X != "FILLED":  # Tardis keeps fills only; say so rather than drop silently
            self.out.event(ts, "info", symbol=sym, channel=self.ch_force, detail=f"forceOrder status {o.X}: no fill")
            return True
        self.out.liquidation(ts, o.T * 1_000_000, sym, b"", o.p, o.z, SIDE_SELL if o.S == "SELL" else SIDE_BUY)
        return True

    def emit(self, ts: int, exchange_ts: int, sym: int) -> None:
        mark, index, funding, funding_ts, oi = self.state[sym]
        self.out.derivative_ticker(ts, exchange_ts, sym, NAN, mark, index, funding, int(funding_ts), NAN, oi)

    # -- open interest poll ------------------------------------------------------------
    def start(self) -> None:
        if "derivative_ticker" in self.feed.cfg.channels and not self.feed.manual_snapshots:
            self._task = asyncio.get_running_loop().create_task(self.poll_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def poll_loop(self) -> None:
        """Symbols in turn, ``interval / n`` apart: each symbol every ``interval`` s, the
        weight spread evenly (never a burst of n requests)."""
        feed = self.feed
        syms = [feed.sym_id[s] for s in feed.cfg.symbols]
        step = self.interval / len(syms)
        while True:
            for sym in syms:
                # spaced from this request's start, not from a fixed schedule: a stalled loop
                # (a busy host) must not catch up with back-to-back requests
                started = time.monotonic()
                pause = await self.poll(sym)
                now = time.monotonic()
                await asyncio.sleep(max(0.0, started + step - now, pause))

    async def poll(self, sym: int) -> float:
        """One request; returns the pause the venue asked for (418/429), else 0."""
        feed = self.feed
        symbol = feed.spec.symbols[sym]
        url = f"{feed.rest_base}{feed.oi_path}?symbol={symbol}"
        self.polls += 1
        try:
            status, body, ts, retry = await feed.rest_get(url)
        except Exception as e:  # network down, timeout: an event, the loop goes on
            self.rest_error(time.time_ns(), sym, f"openInterest request failed: {type(e).__name__}")
            return 0.0
        if status != 200:
            self.rest_error(ts, sym, f"openInterest HTTP {status}: {body[:40].decode(errors='replace')}")
            return max(retry, 10.0) if status in (418, 429) else 0.0
        self.on_open_interest(ts, sym, body)
        return 0.0

    def rest_error(self, ts: int, sym: int, detail: str) -> None:
        self.rest_errors += 1
        self.feed.bump("rest_errors", sym)
        self.out.event(ts, "info", symbol=sym, channel=self.ch_oi, detail=detail)
        log.warning("%s %s", self.feed.feed_id("derivative_ticker", sym), detail)

    def on_open_interest(self, ts: int, sym: int, body: bytes) -> bool:
        """A REST body: kept in raw as Tardis's generated frame, then one derivative_ticker row."""
        feed = self.feed
        symbol = feed.spec.symbols[sym]
        raw = b'{"stream":"%s@openInterest","generated":true,"data":%s}' % (symbol.lower().encode(), body)
        try:
            d = self.oi.decode(body)
        except msgspec.DecodeError as e:
            feed.malformed(0, ts, raw, f"openInterest: {e}", sym, self.ch_oi)
            return False
        feed.count(sym, ts, len(body), self.ch_oi)
        if feed.raw_on:
            self.out.raw(ts, raw, 0, sym, self.ch_oi)
        self.state[sym][4] = d.openInterest
        self.emit(ts, d.time * 1_000_000, sym)
        return True

