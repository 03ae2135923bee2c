"""The simulator: one picows server on 127.0.0.1 for all three exchanges
(websockets and the REST depth endpoint share the port; paths differ), a pump
that advances every market at the configured rate, heartbeats and lifetime
limits, scripted faults, and the record of every data frame sent.

    async with Simulator(["binance-futures", "bybit", "hyperliquid"], rate=200, seed=7) as sim:
        url = sim.ws_url("bybit")        # ws://127.0.0.1:PORT  (a connector's `url`)
        rest = sim.rest_url("binance-futures")   # http://127.0.0.1:PORT
        ...
        sim.fault(Fault("gap", "binance-futures"))
        frames = sim.sent("binance-futures")
        bids, asks = sim.book("binance-futures", "BTCUSDT", event=frames[-1].event)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from ticktape.sim.binance import Binance
from ticktape.sim.binance_dialects import BinanceDelivery, BinanceSpot
from ticktape.sim.bitmex import Bitmex
from ticktape.sim.bybit import Bybit, BybitSpot
from ticktape.sim.conn import Conn
from ticktape.sim.deribit import Deribit
from ticktape.sim.faults import FRAME_KINDS, Fault, ScriptEntry, parse_script
from ticktape.sim.http_front import Front, ws_protocol_factory
from ticktape.sim.hyperliquid import Hyperliquid
from ticktape.sim.late_rest import LateRest
from ticktape.sim.market import Market
from ticktape.sim.okx import Okx, OkxSwap
from ticktape.sim.record import Sent
from ticktape.sim.venue import Venue

log = logging.getLogger("ticktape.sim")

VENUES: dict[str, type[Venue]] = {"binance-futures": Binance, "bybit": Bybit, "bybit-spot": BybitSpot,
                                  "hyperliquid": Hyperliquid, "deribit": Deribit, "bitmex": Bitmex, "okex": Okx,
                                  "okex-swap": OkxSwap, "binance": BinanceSpot, "binance-delivery": BinanceDelivery}
EXCHANGES = tuple(VENUES)
#: the real services' limits (seconds); tests scale them down
MAX_CONN_AGE = {e: v.conn_age for e, v in VENUES.items() if v.conn_age is not None}
IDLE_TIMEOUT = {"bybit": 600.0, "bybit-spot": 600.0, "hyperliquid": 60.0}
MAX_QUERY = 16_384
_EPOCH_2020_US = 1_577_836_800_000_000


def clock_id_base() -> int:
    """Microseconds since 2020-01-01: ids of a later run start above an earlier run's
    unless that run issued more than a million ids a second per symbol."""
    return time.time_ns() // 1000 - _EPOCH_2020_US


class Simulator:
    """Protocol-faithful local exchange simulator (see sim/README.md).

    ``exchanges``: ids, or {id: symbols or None}; None accepts any well-formed
    symbol (markets start at their first subscription), a list makes other
    symbols unknown (real error shapes). ``rate``: market events per second per
    (exchange, symbol), or {exchange: rate} (100 for those not named); about
    ``trade_share`` of them are trades, the rest book updates, and each event is
    one frame on every stream of that kind.
    ``record=False`` keeps no ``Sent`` list (benchmarks). ``script``: faults as
    ``(at, Fault)`` entries (``sim.faults``). ``replay``: a recording file to
    serve instead of the synthetic market (``sim.replay``). ``id_base``: where
    trade ids and sequence numbers start (default: the wall clock, so runs never
    repeat ids; the market itself is deterministic by ``seed``).
    """

    def __init__(
        self,
        exchanges: Iterable[str] | Mapping[str, list[str] | None] = EXCHANGES,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 1,
        rate: float | Mapping[str, float] = 100.0,
        trade_share: float = 0.5,
        record: bool = True,
        history_limit: int = 1_000_000,
        script: list[ScriptEntry] | None = None,
        replay: str | Path | None = None,
        replay_speed: float = 0.0,
        max_conn_age: Mapping[str, float] | float | None = None,
        idle_timeout: Mapping[str, float] | None = None,
        ping_interval: float = 180.0,
        pong_timeout: float = 600.0,
        max_buffer: int = 16 << 20,
        tick: float = 0.005,
        id_base: int | None = None,
    ) -> None:
        ex = dict(exchanges) if isinstance(exchanges, Mapping) else {e: None for e in exchanges}
        for e in ex:
            if e not in VENUES:
                raise ValueError(f"unknown exchange {e!r} (simulated: {', '.join(VENUES)})")
        if isinstance(rate, Mapping):
            extra = set(rate) - set(ex)
            if extra:
                raise ValueError(f"rate: exchanges {sorted(extra)} are not simulated")
            rates = {e: float(rate.get(e, 100.0)) for e in ex}
        else:
            rates = {e: float(rate) for e in ex}
        if any(r < 0 for r in rates.values()) or not (0.0 <= trade_share <= 1.0) or tick <= 0:
            raise ValueError("rate >= 0, 0 <= trade_share <= 1 and tick > 0 required")
        self.host = host
        self.port = port
        self.seed = seed
        #: where trade ids and sequence numbers start: the wall clock (µs since 2020), so two
        #: runs never repeat an id (a market's prices and sizes still depend on ``seed`` only)
        self.id_base = id_base if id_base is not None else clock_id_base()
        self.rates = rates
        self.trade_share = trade_share
        self.recording = record
        self.history_limit = history_limit if record else 0
        self.max_buffer = max_buffer
        self.tick = tick
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        if isinstance(max_conn_age, (int, float)):
            self.max_conn_age = {e: float(max_conn_age) for e in ex if VENUES[e].conn_age is not None}
        else:
            self.max_conn_age = {**MAX_CONN_AGE, **(max_conn_age or {})}
        self.idle_timeout = {**IDLE_TIMEOUT, **(idle_timeout or {})}
        self.script = sorted(parse_script(script), key=lambda e: (isinstance(e[0], int), e[0]))
        self.fault_log: list[tuple[int, str, str, int, str]] = []
        self.errors = 0  # internal errors (logged); tests assert 0
        self.behind = 0  # events not generated because the pump could not keep up with `rate`
        self.slow_conns = 0  # times a connection's socket buffer filled up
        self._takes: dict[tuple[str, str], list[Fault]] = {}
        self._pending_frame_faults: dict[str, list[Fault]] = {}
        self.venues: dict[str, Venue] = {}
        self._dirty: list[Conn] = []
        self._ex = ex
        self._next_conn = 0
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.t0 = 0.0
        self.replay_path = Path(replay) if replay is not None else None
        self.replay_speed = replay_speed
        self.replayer: Any = None
        self.late = LateRest(host)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> Simulator:
        for e, syms in self._ex.items():
            self.venues[e] = VENUES[e](self, syms)
        if self.replay_path is not None:
            from ticktape.sim.replay import Replayer

            self.replayer = Replayer(self.venues, self.replay_path, self.replay_speed, known=VENUES)
        make_ws = ws_protocol_factory(self._route, max_frame_size=1 << 20, handshake_timeout=10,
                                      logger_name="ticktape.sim.ws")
        self._server = await asyncio.get_running_loop().create_server(
            lambda: Front(make_ws, self._post), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        await self.late.start()
        self.t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        if self.replayer is None:
            self._tasks.append(loop.create_task(self._pump()))
        self._tasks.append(loop.create_task(self._watchdog()))
        log.info("simulator on %s (exchanges: %s)", self.url, ", ".join(self.venues))
        return self

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        for v in self.venues.values():
            for c in list(v.conns.values()):
                c.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.late.stop()

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- URLs ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def ws_url(self, exchange: str | None = None) -> str:
        """The websocket base a connector's ``url`` takes (it appends the exchange's paths;
        Binance spot and COIN-M live under a prefix here: ``Venue.ws_prefix``)."""
        if exchange is not None:
            return self.url + self.venue(exchange).ws_prefix
        return self.url

    def rest_url(self, exchange: str | None = None) -> str:
        if exchange is not None:
            self.venue(exchange)
        return f"http://{self.host}:{self.port}"

    def endpoints(self) -> dict[str, Any]:
        """What ``capture sim`` prints: bases and each exchange's paths."""
        return {
            "url": self.url,
            "rest_url": self.rest_url(),
            "exchanges": {e: {"url": self.ws_url(e), "rest_url": self.rest_url(), "ws_paths": list(v.ws_paths),
                              "rest_paths": list(v.rest_paths)}
                          for e, v in self.venues.items()},
        }

    # -- queries for tests ----------------------------------------------------------------
    def venue(self, exchange: str) -> Venue:
        v = self.venues.get(exchange)
        if v is None:
            raise KeyError(f"exchange {exchange!r} is not simulated here (have: {', '.join(self.venues) or 'none'})")
        return v

    def sent(self, exchange: str, channel: str | None = None, symbol: str | None = None,
             conn: int | None = None) -> list[Sent]:
        """Data frames sent (and withheld: ``fault`` set) so far, in order."""
        out = self.venue(exchange).sent
        if channel is None and symbol is None and conn is None:
            return list(out)
        return [s for s in out if (channel is None or s.channel == channel) and (symbol is None or s.symbol == symbol)
                and (conn is None or s.conn == conn)]

    def event_at(self, exchange: str, channel: str, symbol: str, update_id: int | None = None,
                 ts_ns: int | None = None) -> int:
        """The market event behind a book frame: the one whose update id is ``update_id``
        (Binance depth ``u``, Bybit orderbook ``u``), or the last one sent at or before
        ``ts_ns``; for ``book(..., event=)``. Frames withheld by a fault are skipped."""
        best = None
        v = self.venue(exchange)
        for s in v.sent:
            if s.channel != channel or s.symbol != symbol or s.fault in ("gap", "stall"):
                continue
            if update_id is not None:
                uid = v.update_id(s.ids)
                if uid == update_id:
                    return s.event
            elif ts_ns is not None and s.ts_ns <= ts_ns:
                best = s.event
        if best is None:
            raise KeyError(f"no {exchange} {channel} {symbol} frame with update id {update_id} / at {ts_ns}")
        return best

    def market(self, exchange: str, symbol: str) -> Market:
        return self.venue(exchange).market(symbol)

    def book(self, exchange: str, symbol: str, event: int | None = None,
             depth: int | None = None) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """(bids best first, asks best first) as Decimals after market event ``event``
        (``Sent.event`` of the last frame a client applied; None = now), top ``depth``."""
        m = self.venue(exchange).markets.get(symbol)
        if m is None:
            raise KeyError(f"no market {exchange}/{symbol}")
        bids, asks = m.book_at(event)
        bp = sorted(bids, reverse=True)[:depth]
        ap = sorted(asks)[:depth]
        px, qty = m.spec.px, m.spec.qty
        return ([(Decimal(px(p)), Decimal(qty(bids[p]))) for p in bp], [(Decimal(px(p)), Decimal(qty(asks[p]))) for p in ap])

    def stats(self) -> dict[str, Any]:
        """Counters for logs and benchmarks."""
        return {
            "frames": {e: v.frames for e, v in self.venues.items()},
            "connections": {e: len(v.conns) for e, v in self.venues.items()},
            "events": {e: sum(m.n for m in v.markets.values()) for e, v in self.venues.items()},
            "behind": self.behind,
            "slow_conns": self.slow_conns,
            "errors": self.errors,
            "faults": len(self.fault_log),
        }

    def connections(self, exchange: str) -> list[Conn]:
        return list(self.venue(exchange).conns.values())

    # -- faults ---------------------------------------------------------------------------
    def log_fault(self, exchange: str, kind: str, conn: int, detail: str) -> None:
        self.fault_log.append((time.time_ns(), exchange, kind, conn, detail))
        log.info("sim fault %s %s conn %d: %s", exchange, kind, conn, detail)

    def fault(self, f: Fault) -> None:
        """Apply a fault now (see sim.faults for the kinds)."""
        exchanges = [f.exchange] if f.exchange is not None else list(self.venues)
        for e in exchanges:
            v = self.venue(e)
            conns = [c for c in v.conns.values() if f.conn is None or c.id == f.conn]
            self.log_fault(e, f.kind, f.conn or 0, f"{f}")
            if f.kind == "drop":
                for c in conns:
                    c.drop()
            elif f.kind == "stall":
                until = time.monotonic() + f.seconds
                for c in conns:
                    c.stalled_until = until
            elif f.kind in FRAME_KINDS:
                if conns:
                    for c in conns:
                        c.faults.append(replace(f, exchange=e))
                else:
                    self._pending_frame_faults.setdefault(e, []).append(replace(f, exchange=e))
            elif f.kind in ("subscribe_error", "rest_error", "rest_stale", "rest_delay"):
                self._takes.setdefault((e, f.kind), []).append(replace(f, exchange=e))
            elif f.kind == "delist":
                assert f.symbol is not None
                v.delist(f.symbol)
            elif f.kind == "restart":
                if f.exchange is not None or e == "bybit":
                    v.restart(f.symbol)
            elif f.kind == "slow":
                v.rate_factor = f.factor
                asyncio.get_running_loop().call_later(f.seconds, setattr, v, "rate_factor", 1.0)

    def take_fault(self, exchange: str, kind: str, conn: int | None = None) -> bool:
        """Consume one pending subscribe/REST error for ``exchange`` (True if one was due)."""
        return self.take(exchange, kind, conn) is not None

    def take(self, exchange: str, kind: str, conn: int | None = None) -> Fault | None:
        """Consume one pending subscribe/REST fault for ``exchange``: the fault, or None."""
        pending = self._takes.get((exchange, kind))
        if not pending:
            return None
        f = pending[0]
        if f.conn is not None and conn is not None and f.conn != conn:
            return None
        f.count -= 1
        if f.count <= 0:
            pending.pop(0)
        self.log_fault(exchange, kind, conn or 0, "refused" if kind != "rest_delay" else f"answered {f.seconds}s late")
        return f

    def hold_answer(self, exchange: str, status: int, body: bytes, seconds: float, frames: int = 0) -> str:
        """A REST answer sent ``seconds`` from now, and once ``exchange`` sent ``frames`` more
        data frames; the URL to redirect the request to."""
        v = self.venue(exchange)
        target = v.frames + frames
        return self.late.hold(status, body, seconds, (lambda: v.frames >= target) if frames else None)

    # -- output batching ----------------------------------------------------------------------
    def dirty(self, conn: Conn) -> None:
        """``conn`` has queued frames: write every queue once this loop turn ends."""
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self.flush)
        self._dirty.append(conn)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for c in dirty:
            c.flush()

    # -- routing ----------------------------------------------------------------------------
    def _route(self, req: WSUpgradeRequest) -> Any:
        try:
            target = req.path.decode("ascii")
        except UnicodeDecodeError:
            return _error(400, b'{"error":"bad path"}')
        if len(target) > MAX_QUERY:
            return _error(414, b'{"error":"request URI too long"}')
        parts = urlsplit(target)
        path = parts.path
        try:
            query = dict(parse_qsl(parts.query, keep_blank_values=True, max_num_fields=64))
        except ValueError:
            return _error(400, b'{"error":"bad query"}')
        is_ws = req.headers.get("Upgrade", "").lower() == "websocket"
        if is_ws:  # the venue with the most specific path: hyperliquid's /ws must not take /ws/v5/public
            v = self._ws_venue(path)
            return None if v is None else self._accept(v, path, query)
        for v in self.venues.values():
            ans = v.rest(path, query)
            if ans is not None:
                status, body = ans
                if status == 307:  # a late answer (``rest_delay``): the body is where it waits
                    resp = WSUpgradeResponse.create_redirect_response(307, body.decode())
                    return WSUpgradeResponseWithListener(resp, None)
                if status == 200:
                    resp = WSUpgradeResponse.create_ok_response(body, {"Content-Type": "application/json"})
                    return WSUpgradeResponseWithListener(resp, None)
                return _error(status, body)
        return None  # 404

    def _ws_venue(self, path: str) -> Venue | None:
        """The venue serving websocket ``path``: the longest of its ws paths that is ``path`` or a
        parent of it wins (several venues on one port: ``/ws`` is Hyperliquid's, ``/ws/v5/public``
        OKX's); on a tie the first venue configured (OKX spot and swaps share their path)."""
        best: tuple[int, Venue | None] = (-1, None)
        for v in self.venues.values():
            for p in v.ws_paths:
                if (path == p or path.startswith(p + "/")) and len(p) > best[0]:
                    best = (len(p), v)
        return best[1]

    def _accept(self, v: Venue, path: str, query: dict[str, str]) -> Any:
        refused = v.accept(path, query)
        if refused is not None:
            return _error(*refused)
        self._next_conn += 1
        conn = Conn(v, self._next_conn, path, query)
        pending = self._pending_frame_faults.pop(v.exchange, None)
        if pending:
            conn.faults.extend(pending)
        return conn

    def _post(self, path: str, body: bytes) -> tuple[int, bytes] | None:
        """A POST request (Hyperliquid ``/info``): the first venue that answers it."""
        for v in self.venues.values():
            ans = v.post(path, body)
            if ans is not None:
                return ans
        return None

    # -- market pump ----------------------------------------------------------------------
    async def _pump(self) -> None:
        last = time.monotonic()
        script = list(self.script)
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            dt = now - last
            last = now
            while script and self._due(script[0], now):
                self.fault(script.pop(0)[1])
            for v in self.venues.values():
                rate = self.rates[v.exchange] * v.rate_factor
                for m in list(v.markets.values()):
                    credit = m.credit + dt * rate
                    k = int(credit)
                    cap = max(1, int(rate * 0.05))  # at most 50 ms of events per tick: no catch-up storms
                    if k > cap:
                        self.behind += k - cap
                        k = cap
                    m.credit = credit - int(credit)
                    publish = v.publish
                    step = m.step
                    try:
                        for _ in range(k):
                            publish(m, step())
                    except Exception:  # a bug must not silently stop every market
                        self.errors += 1
                        log.exception("sim: %s/%s event failed", v.exchange, m.symbol)
                try:
                    v.pump(now)
                except Exception:
                    self.errors += 1
                    log.exception("sim: %s timed streams failed", v.exchange)

    def _due(self, entry: ScriptEntry, now: float) -> bool:
        at, f = entry
        if isinstance(at, int):
            frames = sum(v.frames for e, v in self.venues.items() if f.exchange in (None, e))
            return frames >= at
        return now - self.t0 >= at

    async def _watchdog(self) -> None:
        """Server pings (Binance), pong and idle timeouts, the connection lifetime limit."""
        step = max(0.02, min([0.5, self.ping_interval / 4, *self.max_conn_age.values(), *self.idle_timeout.values()]) / 4)
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            if self.replayer is not None:
                self.replayer.poke()
            for e, v in self.venues.items():
                if self.replayer is None:
                    v.tick(now)
                age = self.max_conn_age.get(e)
                idle = self.idle_timeout.get(e)
                for c in list(v.conns.values()):
                    if c.closed or c.transport is None:
                        continue
                    if age is not None and now - c.opened_at >= age:
                        self.log_fault(e, "lifetime", c.id, f"connection older than {age}s: closed")
                        c.close(1000, b"")
                        continue
                    if idle is not None and now - c.last_recv >= idle:
                        self.log_fault(e, "idle", c.id, f"no client message for {idle}s: closed")
                        c.drop()
                        continue
                    if v.server_pings:
                        if c.stalled():
                            continue
                        if c.await_pong_since is not None and now - c.await_pong_since >= self.pong_timeout:
                            self.log_fault(e, "pong_timeout", c.id, f"no pong for {self.pong_timeout}s: closed")
                            c.drop()
                        elif now - c.last_ping_sent >= self.ping_interval:
                            c.last_ping_sent = now
                            c.pings_sent += 1
                            if c.await_pong_since is None:
                                c.await_pong_since = now
                            c.transport.send_ping(b"")


def _error(status: int, body: bytes) -> WSUpgradeResponseWithListener:
    resp = WSUpgradeResponse.create_error_response(status, body, {"Content-Type": "application/json"})
    return WSUpgradeResponseWithListener(resp, None)
