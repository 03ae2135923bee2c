"""The venues' instrument lists, in their real shapes: Binance
``GET /fapi/v1/exchangeInfo``, Bybit ``GET /v5/market/instruments-info``
(cursor pages), Hyperliquid ``POST /info`` ``{"type":"meta"}`` / ``spotMeta``.

A simulator that accepts any well-formed symbol still lists a fixed universe
(the symbols below, or the ones it was given, or a recording's), so a
connector can tell a listed symbol from a typo (``NOTACOIN``) before it
subscribes.
"""

from __future__ import annotations

import msgspec

from ticktape.sim.market import spec_for

COINS = (
    "BTC", "ETH", "SOL", "BNB", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "LTC", "BCH", "TRX", "DYDX", "ARB",
    "OP", "SUI", "APT", "NEAR", "ATOM", "WIF", "TON", "FIL", "ETC", "UNI", "AAVE", "INJ", "SEI", "TIA", "HYPE",
)
#: USD-M / linear perpetuals (and one dated Binance future)
LINEAR = (*(f"{c}USDT" for c in COINS), "1000PEPEUSDT", "BTCUSDT_260327")
#: Bybit spot pairs (USDT and a few USDC quotes)
SPOT = (*(f"{c}USDT" for c in COINS), "BTCUSDC", "ETHUSDC", "SOLUSDC")
#: Hyperliquid perps by coin; spot pairs by name (index 0) and ``@N``
HL_PERPS = (*COINS, "kPEPE")
HL_SPOT = ("PURR/USDC", *(f"@{i}" for i in range(1, 201)))


def binance_exchange_info(symbols: list[str], now_ms: int) -> bytes:
    out = []
    for s in symbols:
        sp = spec_for(s)
        base = s.removesuffix("USDT").split("_")[0]
        dated = "_" in s
        out.append({
            "symbol": s, "pair": s.split("_")[0], "contractType": "CURRENT_QUARTER" if dated else "PERPETUAL",
            "deliveryDate": 1774598400000 if dated else 4133404800000, "onboardDate": 1569398400000,
            "status": "TRADING", "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
            "baseAsset": base, "quoteAsset": "USDT", "marginAsset": "USDT", "pricePrecision": sp.px_dec,
            "quantityPrecision": sp.qty_dec, "baseAssetPrecision": 8, "quotePrecision": 8,
            "underlyingType": "COIN", "underlyingSubType": [], "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": sp.px(sp.tick_step), "maxPrice": "4529764",
                 "tickSize": sp.px(sp.tick_step)},
                {"filterType": "LOT_SIZE", "minQty": sp.qty(1), "maxQty": "1000", "stepSize": sp.qty(1)},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                           "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        })
    return msgspec.json.encode({
        "timezone": "UTC", "serverTime": now_ms, "futuresType": "U_MARGINED",
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}],
        "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": out,
    })


def bybit_instruments(symbols: list[str], query: dict[str, str], now_ms: int,
                      category: str = "linear") -> tuple[int, bytes]:
    """The listing of ``category`` (the venue's); another valid category lists nothing."""
    if query.get("category") not in ("linear", "inverse", "spot", "option"):
        return 200, msgspec.json.encode({"retCode": 10001, "retMsg": "params error: Category is invalid",
                                         "result": {}, "retExtInfo": {}, "time": now_ms})
    wanted = query.get("symbol")
    items = [s for s in symbols if wanted is None or s == wanted] if query["category"] == category else []
    try:
        limit = max(1, min(1000, int(query.get("limit", "500"))))
        start = int(query.get("cursor") or 0)
    except ValueError:
        return 200, msgspec.json.encode({"retCode": 10001, "retMsg": "params error", "result": {},
                                         "retExtInfo": {}, "time": now_ms})
    page = items[start : start + limit]
    nxt = str(start + limit) if start + limit < len(items) else ""
    out = []
    for s in page:
        sp = spec_for(s)
        if category == "spot":
            out.append(_bybit_spot_item(s))
            continue
        out.append({
            "symbol": s, "contractType": "LinearPerpetual", "status": "Trading",
            "baseCoin": s.removesuffix("USDT").split("-")[0], "quoteCoin": "USDT", "launchTime": "1585526400000",
            "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": str(sp.px_dec),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": sp.px(sp.tick_step), "maxPrice": "1999999.80", "tickSize": sp.px(sp.tick_step)},
            "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": sp.qty(1), "qtyStep": sp.qty(1),
                              "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "500.000", "minNotionalValue": "5"},
            "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": "USDT", "copyTrading": "both",
            "upperFundingRate": "0.005", "lowerFundingRate": "-0.005", "isPreListing": False,
            "preListingInfo": None, "displayName": "",
        })
    return 200, msgspec.json.encode({
        "retCode": 0, "retMsg": "OK",
        "result": {"category": query["category"], "list": out, "nextPageCursor": nxt},
        "retExtInfo": {}, "time": now_ms,
    })


def _bybit_spot_item(s: str) -> dict[str, object]:
    sp = spec_for(s)
    quote = "USDC" if s.endswith("USDC") else "USDT"
    return {
        "symbol": s, "baseCoin": s.removesuffix(quote), "quoteCoin": quote, "innovation": "0",
        "status": "Trading", "marginTrading": "utaOnly", "stTag": "0",
        "lotSizeFilter": {"basePrecision": sp.qty(1), "quotePrecision": "0.00000001", "minOrderQty": sp.qty(1),
                          "maxOrderQty": "1000", "minOrderAmt": "1", "maxOrderAmt": "2000000"},
        "priceFilter": {"tickSize": sp.px(sp.tick_step)},
        "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
    }


def hyperliquid_info(perps: list[str], spot: list[str], body: bytes) -> tuple[int, bytes]:
    try:
        req = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return 422, b"Failed to deserialize the JSON body into the target type"
    typ = req.get("type") if isinstance(req, dict) else None
    if typ == "meta":
        dex = req.get("dex") or ""
        names = [p for p in perps if (p.split(":")[0] if ":" in p else "") == dex]
        return 200, msgspec.json.encode({
            "universe": [{"szDecimals": spec_for(n).qty_dec, "name": n, "maxLeverage": 40 if n == "BTC" else 20,
                          "marginTableId": 56 if n == "BTC" else 20} for n in names],
            "marginTables": [[20, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": 20}]}],
                             [56, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": 40}]}]],
        })
    if typ == "spotMeta":
        universe = [{"tokens": [i + 1, 0], "name": n, "index": 0 if n == "PURR/USDC" else int(n[1:]),
                     "isCanonical": n == "PURR/USDC"} for i, n in enumerate(spot)]
        tokens = [{"name": "USDC", "szDecimals": 8, "weiDecimals": 8, "index": 0,
                   "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054", "isCanonical": True, "evmContract": None,
                   "fullName": None}]
        return 200, msgspec.json.encode({"universe": universe, "tokens": tokens})
    return 422, b"Failed to deserialize the JSON body into the target type"


def okx_instruments(symbols: list[str], inst_type: str) -> bytes:
    """``GET /api/v5/public/instruments?instType=SPOT|SWAP`` (the fields clients read; OKX's own order)."""
    out = []
    for s in symbols:
        sp = spec_for(s)
        parts = s.split("-")
        swap = inst_type == "SWAP"
        out.append({
            "alias": "", "baseCcy": "" if swap else parts[0], "category": "1", "ctMult": "1" if swap else "",
            "ctType": "linear" if swap else "", "ctVal": sp.qty(1) if swap else "", "ctValCcy": parts[0] if swap else "",
            "expTime": "", "instFamily": "-".join(parts[:2]) if swap else "", "instId": s, "instType": inst_type,
            "lever": "100" if swap else "10", "listTime": "1611916828000", "lotSz": "1" if swap else sp.qty(1),
            "maxLmtSz": "100000000", "maxMktSz": "100000000", "minSz": "1" if swap else sp.qty(1), "optType": "",
            "quoteCcy": "" if swap else parts[1], "settleCcy": parts[1] if swap else "", "state": "live", "stk": "",
            "tickSz": sp.px(sp.tick_step), "uly": "-".join(parts[:2]) if swap else "",
        })
    return msgspec.json.encode({"code": "0", "data": out, "msg": ""})
