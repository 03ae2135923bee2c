"""Replay options: parsed and validated before any file is touched.

Every name that later reaches a path goes through ``archive.layout``'s
validators, and exchanges/channels/symbols/data types must exist in the
archive, so no option can point outside it. Errors are ``OptionsError`` with
a reason the server returns as HTTP 400 JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ticktape.archive.layout import LayoutError, check_exchange, check_symbol, parse_time
from ticktape.replay.inventory import Inventory

DEFAULT_MAX_RANGE_HOURS = 24 * 31
NORMALIZED_FIXED = ("trade", "book_change", "disconnect", "book_ticker", "derivative_ticker", "liquidation")
#: normalized type -> the table it is built from (one module each: replay.book_ticker, ...)
TICKER_TABLES = {"book_ticker": "book_ticker", "derivative_ticker": "derivative_ticker", "liquidation": "liquidations"}
_SNAP_RE = re.compile(r"^book_snapshot_(\d{1,4})_(?:grouped(\d{1,9}(?:\.\d{1,9})?)_)?(\d{1,9})(ms|s|m)$")
_QUOTE_RE = re.compile(r"^quote_(\d{1,9})(ms|s|m)$")
_BAR_RE = re.compile(r"^trade_bar_(\d{1,9})(ticks|ms|s|m|vol)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000}
#: ``bookGaps``: a Binance book after a sequence gap as tardis-dev has it (diffs applied across the hole,
#: the resync snapshot ignored: the default) or as ticktape resynced it from a new REST snapshot
BOOK_GAPS = ("tardis", "resync")
#: ``openInterestTime``: the ``timestamp`` of a Binance derivative_ticker as tardis-dev has it (the last
#: markPrice ``E``, also on a message made by the open-interest poll: the default) or each row's own
#: (a poll's message carries the REST answer's ``time``)
OPEN_INTEREST_TIME = ("tardis", "poll")


class OptionsError(ValueError):
    """A request the server refuses with 400 and this reason."""


@dataclass(frozen=True, slots=True)
class Range:
    start_ns: int
    end_ns: int  # exclusive

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ns / 1e9, tz=UTC)


@dataclass(frozen=True, slots=True)
class RawRequest:
    exchange: str
    channels: dict[str, list[str]]  # channel -> symbols (every symbol present when the filter named none)
    range: Range
    with_disconnects: bool
    batch_rows: int = 0  # rows per read batch for this stream (0 = the server's default), set by admission


@dataclass(frozen=True, slots=True)
class Snapshot:
    name: str
    depth: int
    interval_ms: int
    grouping: float | None = None  # price step levels are summed into (book_snapshot_N_groupedG_I)


@dataclass(frozen=True, slots=True)
class Bar:
    name: str
    kind: str  # time | tick | volume
    interval: float  # ms for time bars, count for ticks, amount for volume


@dataclass(slots=True)
class NormalizedRequest:
    exchange: str
    symbols: list[str]
    range: Range
    trade: bool = False
    book_change: bool = False
    disconnect: bool = False
    book_ticker: bool = False
    derivative_ticker: bool = False
    liquidation: bool = False
    snapshots: list[Snapshot] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    book_gaps: str = BOOK_GAPS[0]
    open_interest_time: str = OPEN_INTEREST_TIME[0]
    batch_rows: int = 0  # rows per read batch for this stream (0 = the server's default), set by admission

    @property
    def needs_trades(self) -> bool:
        return self.trade or bool(self.bars)

    @property
    def needs_book(self) -> bool:
        return self.book_change or bool(self.snapshots)


def decode_options(text: str | None) -> Any:
    if not text:
        raise OptionsError("missing 'options' query parameter (url-encoded JSON)")
    if len(text) > 100_000:
        raise OptionsError("options too long")
    try:
        return json.loads(text)
    except RecursionError:
        raise OptionsError("options nest too deeply") from None
    except ValueError as e:
        raise OptionsError(f"options is not valid JSON: {e}") from None


def _obj(o: Any, what: str) -> dict[str, Any]:
    if not isinstance(o, dict):
        raise OptionsError(f"{what} must be a JSON object")
    return o


def _str(o: dict[str, Any], key: str) -> str:
    v = o.get(key)
    if not isinstance(v, str) or not v:
        raise OptionsError(f"'{key}' is required and must be a string")
    return v


def _bool(o: dict[str, Any], key: str) -> bool:
    v = o.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise OptionsError(f"'{key}' must be true or false")
    return v


def _choice(o: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    """An optional string option from a fixed set (the first is the default)."""
    v = o.get(key, allowed[0])
    if v not in allowed:
        raise OptionsError(f"'{key}' must be one of {', '.join(map(json.dumps, allowed))} (got {json.dumps(v)[:40]})")
    return str(v)


def parse_range(frm: Any, to: Any, max_hours: float) -> Range:
    if not isinstance(frm, str) or not isinstance(to, str):
        raise OptionsError("'from' and 'to' are required ISO 8601 dates (e.g. 2025-01-06 or 2025-01-06T18:00:00Z)")
    try:
        s = parse_time(frm)
        e = parse_time(to, end=True)
    except ValueError as err:
        raise OptionsError(str(err)) from None
    if s >= e:
        raise OptionsError(f"'from' ({frm}) must be before 'to' ({to})")
    hours = (e - s).total_seconds() / 3600
    if hours > max_hours:
        raise OptionsError(f"range of {hours:.1f} h exceeds the server's maximum of {max_hours:g} h")
    return Range(_ns(s), _ns(e))


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def check_exchange_known(exchange: str, inv: Inventory) -> str:
    try:
        check_exchange(exchange)
    except LayoutError as e:
        raise OptionsError(str(e)) from None
    if exchange not in inv.exchanges():
        known = ", ".join(inv.exchanges()) or "none"
        raise OptionsError(f"unknown exchange {exchange!r} (archive has: {known})")
    return exchange


def _symbols(v: Any, exchange: str, present: list[str], what: str) -> list[str]:
    """Requested symbols matched case-insensitively to the archive's; [] or missing = every symbol."""
    if v is None:
        return list(present)
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise OptionsError(f"{what} must be an array of strings")
    if not v:
        return list(present)
    by_upper = {p.upper(): p for p in present}
    out: list[str] = []
    for s in v:
        try:
            check_symbol(s)
        except LayoutError as e:
            raise OptionsError(str(e)) from None
        real = by_upper.get(s.upper())
        if real is None:
            raise OptionsError(f"unknown symbol {s!r} for {exchange} (archive has: {', '.join(present) or 'none'})")
        if real not in out:
            out.append(real)
    return out


def parse_raw(o: Any, inv: Inventory, max_hours: float = DEFAULT_MAX_RANGE_HOURS) -> RawRequest:
    o = _obj(o, "options")
    exchange = check_exchange_known(_str(o, "exchange"), inv)
    rng = parse_range(o.get("from"), o.get("to"), max_hours)
    filters = o.get("filters") or []
    if not isinstance(filters, list):
        raise OptionsError("'filters' must be an array of {channel, symbols?}")
    channels_present = inv.raw_channels(exchange)
    symbols_present = inv.symbols(exchange, "raw")
    chans: dict[str, list[str]] = {}
    if not filters:
        chans = {c: list(symbols_present) for c in channels_present}
    for f in filters:
        f = _obj(f, "each filter")
        ch = _str(f, "channel")
        if ch not in channels_present and ch not in inv.channels(exchange):  # /exchanges' list: no rows, no error
            raise OptionsError(
                f"unknown channel {ch!r} for {exchange} (archive has: {', '.join(channels_present) or 'none'})"
            )
        syms = _symbols(f.get("symbols"), exchange, symbols_present, "filter 'symbols'")
        have = chans.setdefault(ch, [])
        have += [s for s in syms if s not in have]
    return RawRequest(exchange, chans, rng, _bool(o, "withDisconnects"))


def parse_data_type(dt: Any, req: NormalizedRequest) -> None:
    if not isinstance(dt, str):
        raise OptionsError("'dataTypes' must be an array of strings")
    if dt == "quote":  # Tardis Machine: a depth-1 book_snapshot named quote, on every change
        req.snapshots.append(Snapshot(dt, 1, 0))
        return
    if dt in NORMALIZED_FIXED:
        setattr(req, dt, True)
        return
    m = _QUOTE_RE.match(dt)
    if m:
        req.snapshots.append(Snapshot(dt, 1, int(m[1]) * _UNIT_MS[m[2]]))
        return
    m = _SNAP_RE.match(dt)
    if m:
        depth, interval = int(m[1]), int(m[3]) * _UNIT_MS[m[4]]
        if not 1 <= depth <= 1000:
            raise OptionsError(f"{dt}: depth must be 1..1000")
        grouping = float(m[2]) if m[2] is not None else None
        if grouping is not None and grouping <= 0:
            raise OptionsError(f"{dt}: grouping must be positive")
        req.snapshots.append(Snapshot(dt, depth, interval, grouping))
        return
    m = _BAR_RE.match(dt)
    if m:
        n, unit = int(m[1]), m[2]
        if n <= 0:
            raise OptionsError(f"{dt}: interval must be positive")
        if unit == "ticks":
            req.bars.append(Bar(dt, "tick", n))
        elif unit == "vol":
            req.bars.append(Bar(dt, "volume", n))
        else:
            req.bars.append(Bar(dt, "time", n * _UNIT_MS[unit]))
        return
    raise OptionsError(
        f"unknown data type {dt!r} (trade, book_change, book_snapshot_{{levels}}_{{interval}}{{ms|s|m}}, "
        "book_snapshot_{levels}_grouped{step}_{interval}{ms|s|m}, quote, quote_{interval}{ms|s|m}, trade_bar_{n}{ticks|ms|s|m|vol}, book_ticker, derivative_ticker, "
        "liquidation, disconnect)"
    )


def parse_normalized(o: Any, inv: Inventory, max_hours: float = DEFAULT_MAX_RANGE_HOURS) -> list[NormalizedRequest]:
    items = o if isinstance(o, list) else [o]
    if not items:
        raise OptionsError("options array is empty")
    if len(items) > 32:
        raise OptionsError("at most 32 option objects per request")
    out: list[NormalizedRequest] = []
    for item in items:
        item = _obj(item, "options")
        exchange = check_exchange_known(_str(item, "exchange"), inv)
        rng = parse_range(item.get("from"), item.get("to"), max_hours)
        dts = item.get("dataTypes")
        if not isinstance(dts, list) or not dts:
            raise OptionsError("'dataTypes' is required: a non-empty array")
        types = [t for t in inv.data_types(exchange)
                 if t in ("trades", "book_change", *TICKER_TABLES.values()) or t.startswith("book_snapshot_")]
        present = sorted({s for t in types for s in inv.symbols(exchange, t)})
        req = NormalizedRequest(exchange, _symbols(item.get("symbols"), exchange, present, "'symbols'"), rng)
        for dt in dts:
            parse_data_type(dt, req)
        if _bool(item, "withDisconnectMessages"):
            req.disconnect = True
        gaps = item.get("bookGaps", BOOK_GAPS[0])
        if gaps not in BOOK_GAPS:
            raise OptionsError(f"'bookGaps' must be one of {', '.join(map(json.dumps, BOOK_GAPS))} (got {json.dumps(gaps)[:40]})")
        req.book_gaps = gaps
        req.open_interest_time = _choice(item, "openInterestTime", OPEN_INTEREST_TIME)
        out.append(req)
    return out
