"""Base of the per-exchange protocol modules: markets, subscriptions, records.

A venue turns market events into the exchange's exact frames, once per event
and channel, and hands the bytes to every subscribed connection.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ticktape.sim.conn import Conn
from ticktape.sim.derivs import Derivs
from ticktape.sim.faults import Fault
from ticktape.sim.host import SimHost
from ticktape.sim.market import BookEvent, Market, Trade
from ticktape.sim.record import Sent

log = logging.getLogger("ticktape.sim")


class Venue:
    exchange = ""
    ws_paths: tuple[str, ...] = ()
    #: where this venue's websockets live on the simulator's one port (``Simulator.ws_url`` adds it):
    #: "" for venues whose real paths are unique, else a prefix (Binance spot and COIN-M both use /stream)
    ws_prefix = ""
    #: REST paths ``capture sim`` lists
    rest_paths: tuple[str, ...] = ()
    #: the server pings every connection and drops one that does not answer (Binance)
    server_pings = False
    #: the real service's connection lifetime, seconds (None = unlimited)
    conn_age: float | None = None
    #: replay: the frame shape this venue's recordings have (``sim.replay.SHAPES``) and the
    #: patterns of the real URLs its connections are opened on (a recording's connection
    #: URL picks the venue its frames go to)
    replay_shape = ""
    recorded_urls: tuple[re.Pattern[str], ...] = ()
    symbol_re = re.compile(r"[A-Z0-9]{2,30}")

    def __init__(self, sim: SimHost, symbols: list[str] | None) -> None:
        self.sim = sim
        self.allowed = set(symbols) if symbols is not None else None
        self.markets: dict[str, Market] = {}
        self.subs: dict[tuple[str, str], dict[Conn, str]] = {}
        self.conns: dict[int, Conn] = {}
        self.sent: list[Sent] = []
        self.frames = 0  # data frames sent (fault scripts count these)
        self.rate_factor = 1.0
        self.replay: Any = None
        self.derivs: dict[str, Derivs] = {}  # sim.replay.Replayer when replaying a recording
        #: symbols delisted mid-run (the ``delist`` fault): unlisted, unknown to a new subscribe
        self.delisted: set[str] = set()
        for s in symbols or ():
            self.market(s)

    # -- markets ----------------------------------------------------------------------
    def valid_symbol(self, symbol: str) -> bool:
        if symbol in self.delisted:
            return False
        if self.allowed is not None:
            return symbol in self.allowed
        return bool(self.symbol_re.fullmatch(symbol))

    def market(self, symbol: str) -> Market:
        m = self.markets.get(symbol)
        if m is None:
            m = Market(self.exchange, symbol, self.sim.seed, trade_share=self.sim.trade_share,
                       history_limit=self.sim.history_limit)
            self.markets[symbol] = m
            self.new_market(m)
        return m

    def new_market(self, m: Market) -> None:
        """Venue-specific per-market state (ids, ...)."""

    # -- subscriptions ----------------------------------------------------------------
    def subscribe(self, conn: Conn, channel: str, symbol: str, name: str) -> None:
        self.subs.setdefault((channel, symbol), {})[conn] = name
        conn.state.setdefault("subs", {})[(channel, symbol)] = name
        conn.state["subs_ver"] = conn.state.get("subs_ver", 0) + 1
        if self.replay is not None:
            self.replay.poke()

    def unsubscribe(self, conn: Conn, channel: str, symbol: str) -> None:
        d = self.subs.get((channel, symbol))
        if d is not None:
            d.pop(conn, None)
        conn.state.get("subs", {}).pop((channel, symbol), None)
        conn.state["subs_ver"] = conn.state.get("subs_ver", 0) + 1

    def subscribers(self, channel: str, symbol: str) -> dict[Conn, str] | None:
        return self.subs.get((channel, symbol)) or None

    # -- connection life --------------------------------------------------------------
    def opened(self, conn: Conn) -> None:
        self.conns[conn.id] = conn
        self.on_open(conn)

    def closed(self, conn: Conn) -> None:
        self.conns.pop(conn.id, None)
        for key in list(conn.state.get("subs", {})):
            self.unsubscribe(conn, *key)

    def on_open(self, conn: Conn) -> None:
        pass

    def message(self, conn: Conn, msg: bytes) -> None:
        raise NotImplementedError

    def incoming(self, conn: Conn) -> bool:
        """Count an incoming frame against the exchange's message limit; False if it dropped the connection."""
        return True

    def record(self, s: Sent) -> None:
        self.frames += 1
        if self.sim.recording:
            self.sent.append(s)

    # -- market events ----------------------------------------------------------------
    def publish(self, m: Market, ev: Trade | BookEvent) -> None:
        raise NotImplementedError

    def delist(self, symbol: str) -> None:
        """``symbol`` leaves the venue: off the instrument list, its subscriptions end without a
        word (as a real delisting: the streams just stop), and a new subscribe of it is one of an
        unknown symbol."""
        self.delisted.add(symbol)
        for (channel, sym), subs in list(self.subs.items()):
            if sym == symbol:
                for conn in list(subs):
                    self.unsubscribe(conn, channel, sym)

    def restart(self, symbol: str | None) -> None:
        """The exchange's service restart (a fault); only Bybit signals one (``u`` = 1)."""
        raise ValueError(f"{self.exchange} has no restart signal (bybit only)")

    def update_id(self, ids: tuple[object, ...]) -> object:
        """The sequence id of a book frame among its ``Sent.ids`` (``Simulator.event_at``)."""
        return ids[0] if ids else None

    def deriv(self, m: Market) -> Derivs:
        """The market's perpetual-futures state (mark, funding, open interest, liquidations)."""
        d = self.derivs.get(m.symbol)
        if d is None:
            d = self.derivs[m.symbol] = Derivs(self.exchange, m, self.sim.seed)
        return d

    def pump(self, now: float) -> None:
        """Called by the market pump every tick: timed streams (mark price, tickers, contexts)."""

    def pending(self) -> bool:
        """Frames already due on a timer but not sent yet (a diff window still open): a test that
        stops the market waits for these before it asks whether the client read everything."""
        return False

    def tick(self, now: float) -> None:
        """Watchdog hook for timed frames (Bybit's depth-1 re-sent snapshot)."""

    def rest(self, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        """A REST answer (status, JSON body) or None if the path is not this venue's."""
        return None

    default_listed: tuple[str, ...] = ()

    def listed(self) -> list[str]:
        """The symbols the venue's instrument list names: the ones it was given, else its
        default universe plus, when replaying, every symbol of the recording."""
        if self.allowed is not None:
            return sorted(self.allowed - self.delisted)
        out = set(self.default_listed)
        if self.replay is not None:
            out |= self.replay.symbols(self.exchange)
        return sorted(out - self.delisted)

    # -- replay of recordings (sim.replay) ---------------------------------------------
    @classmethod
    def recorded_at(cls, url: str) -> bool:
        """Whether a recording's connection opened on ``url`` was this venue's."""
        return any(p.search(url) for p in cls.recorded_urls)

    def replay_names(self, conn: Conn) -> list[str]:
        """``conn``'s subscriptions named as the recording keys its frames (stream / topic)."""
        return list(conn.state.get("subs", {}).values())

    def replay_source(self, name: str, recorded: set[str]) -> str | None:
        """The recorded key that feeds a subscription ``name`` (itself, or an alias), or None."""
        return name if name in recorded else None

    def replay_frame(self, conn: Conn, frame: bytes, key: str, name: str) -> bytes:
        """The recorded ``frame`` (of ``key``) as sent to ``conn``'s subscription ``name``."""
        return frame

    def post(self, path: str, body: bytes) -> tuple[int, bytes] | None:
        """A POST answer (status, JSON body) or None if the path is not this venue's."""
        return None

    def fault_applies(self, f: Fault, channel: str, ids: tuple[object, ...]) -> bool:
        """Whether a pending frame fault takes this frame (its channel and symbol already match);
        a venue narrows it (BitMEX: a book gap takes only a frame whose loss is detectable)."""
        return True

    def snapshot_subscribe(self, conn: Conn, channel: str, symbol: str) -> None:
        """Frames a new subscription gets at once (Bybit book snapshot, Hyperliquid l2Book)."""

    def accept(self, path: str, query: dict[str, str]) -> tuple[int, bytes] | None:
        """Refuse an upgrade: (status, body), or None to accept."""
        return None
