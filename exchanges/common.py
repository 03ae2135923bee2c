"""Validation helpers and small parsing utilities shared by the connectors."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

#: normalized channel names a config may ask for
NORMALIZED = ("trades", "book_change", "book_snapshot", "book_ticker", "derivative_ticker", "liquidations")
NAN = math.nan
_P, _A = itemgetter(0), itemgetter(1)


def check_symbols(name: str, symbols: Iterable[str], pattern: re.Pattern[str], example: str, hint: str = "") -> None:
    for s in symbols:
        if not pattern.fullmatch(s):
            raise ValueError(f"symbol {s!r} is not a {name} symbol (expected e.g. {example}{hint})")


def check_channels(name: str, channels: Sequence[str], supported: Sequence[str]) -> None:
    if not channels:
        raise ValueError(f"no channels (supported by {name}: {', '.join(supported)})")
    for c in channels:
        if c not in NORMALIZED:
            raise ValueError(f"unknown channel {c!r} (channels are: {', '.join(NORMALIZED)})")
        if c not in supported:
            raise ValueError(f"channel {c!r} is not supported by {name} (supported: {', '.join(supported)})")
    if len(set(channels)) != len(channels):
        raise ValueError("duplicate channels")


def check_url(url: str | None, schemes: tuple[str, ...], key: str) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(f"{key} {url!r}: scheme must be {' or '.join(schemes)}")
    if not parts.hostname:
        raise ValueError(f"{key} {url!r}: no host")
    if parts.query or parts.fragment:
        raise ValueError(f"{key} {url!r}: give a base URL without query or fragment")


def check_no_trade_stream(name: str, cfg: ExchangeConfig) -> None:
    if cfg.trade_stream is not None:
        raise ValueError(f"trade_stream is a binance-futures option; {name} has one trade stream")
    check_no_binance_options(name, cfg)


def check_no_binance_options(name: str, cfg: ExchangeConfig) -> None:
    if cfg.depth_speed is not None:
        raise ValueError(f"depth_speed is a binance-futures option; {name} has no diff depth speeds")
    if cfg.open_interest_interval is not None:
        raise ValueError(f"open_interest_interval is a binance-futures option ({name} streams its open interest)")
    if cfg.silent_after is not None:
        raise ValueError(f"silent_after is a binance family option ({name} refuses an unknown subscribe with an error)")


def join_url(base: str, path: str) -> str:
    """``base`` (scheme://host[:port][/prefix]) + the exchange's ``path``."""
    p = urlsplit(base)
    return urlunsplit((p.scheme, p.netloc, p.path.rstrip("/") + path, "", ""))


def http_base_of(ws_url: str) -> str:
    """ws://h:p -> http://h:p, wss -> https (the simulator serves REST on the same port)."""
    p = urlsplit(ws_url)
    return urlunsplit(("https" if p.scheme == "wss" else "http", p.netloc, "", "", ""))


def snapshot_values(
    bids: Sequence[tuple[float, float]], asks: Sequence[tuple[float, float]], n: int
) -> tuple[float, ...]:
    """(price, amount) levels -> bid prices, bid amounts, ask prices, ask amounts, N each, NaN padded."""
    if len(bids) == n and len(asks) == n:  # the usual full partial-depth frame: C-level maps
        return (*map(_P, bids), *map(_A, bids), *map(_P, asks), *map(_A, asks))
    bp, ba = zip(*bids[:n], strict=True) if bids else ((), ())
    ap, aa = zip(*asks[:n], strict=True) if asks else ((), ())
    if len(bp) == n and len(ap) == n:
        return (*bp, *ba, *ap, *aa)
    pb = (NAN,) * (n - len(bp))
    pa = (NAN,) * (n - len(ap))
    return (*bp, *pb, *ba, *pb, *ap, *pa, *aa, *pa)


def ms_to_ns(ms: int) -> int:
    return ms * 1_000_000


def num(d: dict[str, Any], key: str) -> float:
    """A venue's numeric string field as a float; NaN when absent or "" (the venue gives none)."""
    v = d.get(key)
    if v is None or v == "":
        return NAN
    return float(v)
