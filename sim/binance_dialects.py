"""Binance spot (``binance``) and COIN-M (``binance-delivery``): the USD-M venue
(``sim.binance.Binance``) with their own paths, limits and frame shapes.

Shapes follow the real services: COIN-M from the recording in
``../shared/samples/binance_delivery`` (``"ps"`` pair after the symbol, bookTicker
starting with ``u``, snapshots naming ``symbol`` and ``pair``), spot from Binance's
spot API docs (diffs without ``T`` and ``pu``, partial depth
``{"lastUpdateId","bids","asks"}``, trades with ``M``, bookTicker with no times).

On the simulator's one port both serve under a prefix named after the exchange
(``ws://host:port/binance/stream``, ``/binance-delivery/stream``), since their
real paths (``/stream``, ``/ws``) are the same on different hosts; REST paths
differ (``/api/v3``, ``/dapi/v1``) and stay at the root.
"""

from __future__ import annotations

import re

import msgspec

from ticktape.sim import instruments
from ticktape.sim.binance import PARTIAL, Binance

#: the COIN-M universe the simulator lists when given no symbols: perpetuals and one quarter each
DELIVERY_LISTED = (*(f"{c}USD_PERP" for c in ("BTC", "ETH", "BNB", "SOL", "XRP", "LINK", "ADA", "DOT", "LTC", "BCH")),
                   "BTCUSD_260327", "ETHUSD_260327")


class BinanceSpot(Binance):
    exchange = "binance"
    recorded_urls = (re.compile(r"//(stream|data-stream)\.binance\.(com|vision)(:\d+)?/"),)
    ws_prefix = "/binance"
    ws_paths = ("/binance/ws", "/binance/stream")
    split_paths = False
    has_pu = False
    depth_path = "/api/v3/depth"
    info_path = "/api/v3/exchangeInfo"
    oi_path = ""
    rest_paths = (depth_path,)
    channels = frozenset({"aggTrade", "trade", "bookTicker", "depth", *PARTIAL})
    depth_speed_s = {"": 1.0, "@100ms": 0.1}
    max_msgs_per_s = 5
    weight_limit = 6000
    depth_weight = {5: 5, 10: 5, 20: 5, 50: 5, 100: 5, 500: 25, 1000: 50, 5000: 250}
    server_pings = True  # every 20 s on the real service (the simulator's ping_interval applies)
    default_listed = tuple(s for s in instruments.LINEAR if "_" not in s)

    def depth_data(self, e_ms: int, t_ms: int, sb: bytes, big_u: int, uid: int, pu: int, b: bytes, a: bytes) -> bytes:
        return b'{"e":"depthUpdate","E":%d,"s":"%s","U":%d,"u":%d,"b":[%s],"a":[%s]}' % (e_ms, sb, big_u, uid, b, a)

    def partial_data(self, e_ms: int, t_ms: int, sb: bytes, big_u: int, uid: int, pu: int, b: bytes,
                     a: bytes) -> bytes:
        return b'{"lastUpdateId":%d,"bids":[%s],"asks":[%s]}' % (uid, b, a)

    def trade_data(self, e_ms: int, t_ms: int, sb: bytes, tid: int, p: bytes, q: bytes, m_flag: bytes) -> bytes:
        return b'{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}' % (
            e_ms, sb, tid, p, q, t_ms, m_flag)

    def agg_data(self, e_ms: int, agg: int, sb: bytes, p: bytes, q: bytes, first: int, last: int, t_ms: int,
                 m_flag: bytes) -> bytes:
        return b'{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s,"M":true}' % (
            e_ms, sb, agg, p, q, first, last, t_ms, m_flag)

    def book_ticker_data(self, uid: int, sb: bytes, b: bytes, bq: bytes, a: bytes, aq: bytes, t_ms: int,
                         e_ms: int) -> bytes:
        return b'{"u":%d,"s":"%s","b":"%s","B":"%s","a":"%s","A":"%s"}' % (uid, sb, b, bq, a, aq)

    def snapshot_body(self, last_id: int, now_ms: int, sb: bytes, bids: bytes, asks: bytes) -> bytes:
        return b'{"lastUpdateId":%d,"bids":[%s],"asks":[%s]}' % (last_id, bids, asks)

    def too_many(self) -> bytes:
        return b'{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE."}'

    def exchange_info(self, symbols: list[str], now_ms: int) -> bytes:
        return msgspec.json.encode({
            "timezone": "UTC", "serverTime": now_ms,
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}],
            "exchangeFilters": [],
            "symbols": [{"symbol": s, "status": "TRADING", "baseAsset": s.removesuffix("USDT"), "quoteAsset": "USDT",
                         "isSpotTradingAllowed": True, "permissions": [], "permissionSets": [["SPOT"]]}
                        for s in symbols],
        })


class BinanceDelivery(Binance):
    exchange = "binance-delivery"
    recorded_urls = (re.compile(r"//dstream[^/]*\.binance\.com(:\d+)?/"),)
    ws_prefix = "/binance-delivery"
    ws_paths = ("/binance-delivery/ws", "/binance-delivery/stream")
    split_paths = False
    symbol_re = re.compile(r"[A-Z0-9]{2,20}USD_(PERP|[0-9]{6})")
    depth_path = "/dapi/v1/depth"
    info_path = "/dapi/v1/exchangeInfo"
    oi_path = "/dapi/v1/openInterest"
    rest_paths = (depth_path,)
    depth_speed_s = {"": 0.25, "@100ms": 0.1, "@500ms": 0.5}
    max_streams = 200
    default_listed = DELIVERY_LISTED

    def pair_field(self, sb: bytes) -> bytes:
        return b',"ps":"%s"' % sb.split(b"_")[0]

    def book_ticker_data(self, uid: int, sb: bytes, b: bytes, bq: bytes, a: bytes, aq: bytes, t_ms: int,
                         e_ms: int) -> bytes:
        return b'{"u":%d,"e":"bookTicker","s":"%s"%s,"b":"%s","B":"%s","a":"%s","A":"%s","T":%d,"E":%d}' % (
            uid, sb, self.pair_field(sb), b, bq, a, aq, t_ms, e_ms)

    def mark_data(self, e_ms: int, sb: bytes, mark: float, index: float, funding: float, next_ms: int) -> bytes:
        if b"_PERP" not in sb:  # a dated contract has no funding: Binance sends "r":"" and "T":0
            return b'{"e":"markPriceUpdate","E":%d,"s":"%s","p":"%.8f","P":"%.8f","r":"","T":0}' % (e_ms, sb, mark, mark)
        return b'{"e":"markPriceUpdate","E":%d,"s":"%s","p":"%.8f","P":"%.8f","r":"%.8f","T":%d}' % (
            e_ms, sb, mark, mark, funding, next_ms)

    def oi_body(self, sb: bytes, oi: bytes, now_ms: int) -> bytes:
        kind = b"PERPETUAL" if b"_PERP" in sb else b"CURRENT_QUARTER"
        return b'{"symbol":"%s","pair":"%s","openInterest":"%s","contractType":"%s","time":%d}' % (
            sb, sb.split(b"_")[0], oi, kind, now_ms)

    def snapshot_body(self, last_id: int, now_ms: int, sb: bytes, bids: bytes, asks: bytes) -> bytes:
        return b'{"lastUpdateId":%d,"E":%d,"T":%d,"symbol":"%s","pair":"%s","bids":[%s],"asks":[%s]}' % (
            last_id, now_ms, now_ms - 3, sb, sb.split(b"_")[0], bids, asks)

    def exchange_info(self, symbols: list[str], now_ms: int) -> bytes:
        return instruments.binance_exchange_info(symbols, now_ms)
