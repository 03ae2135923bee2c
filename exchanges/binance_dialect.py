"""What differs between the three Binance market-data APIs, as data: one ``Dialect``
per Tardis exchange id. The protocol (combined streams, REST-bridged diff book,
trade ids, bookTicker ``u``) is one family, run by ``exchanges.binance_futures``.

- ``binance-futures`` (USD-M): ``fstream`` ``/public`` + ``/market`` paths,
  ``/fapi/v1``, diffs chained by ``pu``.
- ``binance`` (spot): ``stream.binance.com:9443/stream``, ``/api/v3``, no
  ``pu``: a diff continues the book when ``U == previous u + 1``, and the first
  diff after a snapshot has ``U <= lastUpdateId + 1 <= u`` (diffs with
  ``u <= lastUpdateId`` are dropped); partial depth frames are
  ``{"lastUpdateId","bids","asks"}`` (no event time).
- ``binance-delivery`` (COIN-M): ``dstream.binance.com/stream``, ``/dapi/v1``,
  ``pu`` chain as USD-M; contracts ``BTCUSD_PERP`` and dated ``BTCUSD_250627``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ALL = ("trades", "book_change", "book_snapshot", "book_ticker", "derivative_ticker", "liquidations")


@dataclass(frozen=True)
class Dialect:
    exchange: str
    ws_url: str
    rest_url: str
    #: combined-stream paths: depth, depth<N>, @trade, bookTicker / aggTrade, markPrice, forceOrder
    public_path: str
    market_path: str
    depth_path: str  # REST order book snapshot
    info_path: str  # REST instrument list (exchangeInfo)
    oi_path: str  # REST open interest ("" = none)
    supported: tuple[str, ...]
    #: depth_speed -> diff stream suffix after ``@depth``
    depth_speeds: dict[str, str]
    symbol_re: re.Pattern[str]
    symbol_example: str
    #: diffs carry ``pu`` (the previous diff's ``u``); without it the chain is ``U == previous u + 1``
    has_pu: bool
    #: partial depth frames are spot's ``{"lastUpdateId","bids","asks"}`` instead of a depthUpdate
    spot_partial: bool = False
    streams_per_conn: int = 200
    #: seconds between REST snapshot requests (weight budget: see exchanges/README.md)
    rest_interval: float = 0.25
    default_speed: str = "100ms"

    @property
    def bridge_offset(self) -> int:
        """Spot's first diff must contain ``lastUpdateId + 1``; futures' contains ``lastUpdateId``."""
        return 0 if self.has_pu else 1


FUTURES = Dialect(
    exchange="binance-futures",
    ws_url="wss://fstream.binance.com",
    rest_url="https://fapi.binance.com",
    public_path="/public/stream",
    market_path="/market/stream",
    depth_path="/fapi/v1/depth",
    info_path="/fapi/v1/exchangeInfo",
    oi_path="/fapi/v1/openInterest",
    supported=_ALL,
    depth_speeds={"0ms": "@0ms", "100ms": "@100ms", "500ms": "@500ms"},
    symbol_re=re.compile(r"[A-Z0-9]{2,30}(_[0-9]{6})?"),
    symbol_example="BTCUSDT",
    has_pu=True,
)

SPOT = Dialect(
    exchange="binance",
    ws_url="wss://stream.binance.com:9443",
    rest_url="https://api.binance.com",
    public_path="/stream",
    market_path="/stream",
    depth_path="/api/v3/depth",
    info_path="/api/v3/exchangeInfo",
    oi_path="",
    supported=("trades", "book_change", "book_snapshot", "book_ticker"),
    depth_speeds={"100ms": "@100ms", "1000ms": ""},
    symbol_re=re.compile(r"[A-Z0-9]{2,30}"),
    symbol_example="BTCUSDT",
    has_pu=False,
    spot_partial=True,
    # depth limit 1000 weighs 50 of spot's 6000/min: one a second stays at half the budget
    rest_interval=1.0,
)

DELIVERY = Dialect(
    exchange="binance-delivery",
    ws_url="wss://dstream.binance.com",
    rest_url="https://dapi.binance.com",
    public_path="/stream",
    market_path="/stream",
    depth_path="/dapi/v1/depth",
    info_path="/dapi/v1/exchangeInfo",
    oi_path="/dapi/v1/openInterest",
    supported=_ALL,
    depth_speeds={"100ms": "@100ms", "250ms": "", "500ms": "@500ms"},
    symbol_re=re.compile(r"[A-Z0-9]{2,20}USD_(PERP|[0-9]{6})"),
    symbol_example="BTCUSD_PERP or BTCUSD_250627",
    has_pu=True,
)

BY_ID: dict[str, Dialect] = {d.exchange: d for d in (FUTURES, SPOT, DELIVERY)}
