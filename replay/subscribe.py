"""Exchange-native subscribe messages -> (channel, symbol) pairs, for /ws-replay.

Channel names are the archive's raw channel names (Tardis's): binance
``btcusdt@depth@100ms`` -> (depth, BTCUSDT), and a ``depth`` subscription
also brings the ``depthSnapshot`` frames the book starts from; bybit
``orderbook.50.BTCUSDT`` -> (orderbook.50, BTCUSDT); hyperliquid
``{"type": "l2Book", "coin": "BTC"}`` -> (l2Book, BTC); deribit JSON-RPC
``public/subscribe`` of ``book.BTC-PERPETUAL.100ms`` -> (book, BTC-PERPETUAL)
(any interval: the archive holds what was recorded); OKX
``{"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]}`` ->
(books, BTC-USDT), and an arg by ``instType`` (``liquidation-orders``) ->
(channel, ``*``): every archived symbol of that channel (``ALL``); bitmex
``{"op":"subscribe","args":["orderBookL2:XBTUSD"]}`` -> (orderBookL2, XBTUSD).
"""

from __future__ import annotations

import json
from typing import Any


class SubscribeError(ValueError):
    pass


#: the symbol of a pair that stands for every archived symbol (OKX subscribes some channels by instType)
ALL = "*"


def parse(text: str | bytes) -> list[tuple[str, str]]:
    try:
        msg: Any = json.loads(text)
    except ValueError:
        raise SubscribeError("subscribe message is not JSON") from None
    if not isinstance(msg, dict):
        raise SubscribeError("subscribe message must be a JSON object")
    method = str(msg.get("method", "")).upper()
    if method in ("PUBLIC/SUBSCRIBE", "PRIVATE/SUBSCRIBE"):
        return _deribit(msg.get("params"))
    if method == "SUBSCRIBE" and isinstance(msg.get("params"), list):
        return _binance(msg["params"])
    if str(msg.get("op", "")).lower() == "subscribe" and isinstance(msg.get("args"), (list, str)):
        args = msg["args"] if isinstance(msg["args"], list) else [msg["args"]]
        if args and all(isinstance(a, dict) for a in args):
            return _okx(args)
        if args and all(isinstance(a, str) and ":" in a for a in args):
            return _bitmex(args)
        return _bybit(args)
    if method == "SUBSCRIBE" and isinstance(msg.get("subscription"), dict):
        return _hyperliquid(msg["subscription"])
    raise SubscribeError("not a subscribe message this server understands (binance, bybit, hyperliquid, deribit, okx, "
                         "bitmex)")


def _binance(params: list[Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for p in params:
        if not isinstance(p, str) or "@" not in p:
            raise SubscribeError(f"bad binance stream name {p!r}")
        sym, rest = p.split("@", 1)
        channel = rest.split("@", 1)[0]
        out.append((channel, sym.upper()))
        if channel == "depth":
            out.append(("depthSnapshot", sym.upper()))
    return out


def _bybit(args: list[Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for a in args:
        if not isinstance(a, str) or "." not in a:
            raise SubscribeError(f"bad bybit topic {a!r}")
        channel, sym = a.rsplit(".", 1)
        out.append((channel, sym))
    return out


def _hyperliquid(sub: dict[str, Any]) -> list[tuple[str, str]]:
    t, coin = sub.get("type"), sub.get("coin")
    if not isinstance(t, str) or not isinstance(coin, str):
        raise SubscribeError("hyperliquid subscription needs 'type' and 'coin'")
    return [(t, coin)]


def _deribit(params: Any) -> list[tuple[str, str]]:
    chans = params.get("channels") if isinstance(params, dict) else None
    if not isinstance(chans, list):
        raise SubscribeError("deribit public/subscribe needs params.channels (a list)")
    out: list[tuple[str, str]] = []
    for c in chans:
        parts = c.split(".") if isinstance(c, str) else []
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise SubscribeError(f"bad deribit channel {c!r} (e.g. book.BTC-PERPETUAL.100ms)")
        out.append((parts[0], parts[1]))
    return out


def _okx(args: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for a in args:
        ch, inst, typ = a.get("channel"), a.get("instId"), a.get("instType")
        if not isinstance(ch, str) or not ch:
            raise SubscribeError(f"bad okx arg {a!r} (e.g. {{'channel': 'books', 'instId': 'BTC-USDT'}})")
        if isinstance(inst, str) and inst and ch == "index-tickers":
            out.append((ch, f"{inst}-SWAP"))  # okex-swap archives an index under the swap it was recorded for
        elif isinstance(inst, str) and inst:
            out.append((ch, inst))
        elif isinstance(typ, str) and typ:
            out.append((ch, ALL))
        else:
            raise SubscribeError(f"okx arg {a!r} needs instId (or instType)")
    return out


def _bitmex(args: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for a in args:
        table, _, sym = a.partition(":")
        if not table or not sym:
            raise SubscribeError(f"bad bitmex topic {a!r} (e.g. orderBookL2:XBTUSD)")
        out.append((table, sym))
    return out
