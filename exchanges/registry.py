"""The single entry point the supervisor and the config use to reach a connector.

Every exchange module (and ``engine.synthetic``) exposes the same four
functions: ``validate``, ``data_types``, ``raw_channels`` and ``ingest_main``;
this module only dispatches on the exchange id, so adding an exchange is one
line in ``MODULES``.
"""

from __future__ import annotations

import importlib
from multiprocessing.synchronize import Event
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig, LogConfig
    from ticktape.ipc.ringset import RingSetSpec

#: exchange id (Tardis naming) -> module implementing it
MODULES: dict[str, str] = {
    "binance-futures": "ticktape.exchanges.binance_futures",
    "bybit": "ticktape.exchanges.bybit",
    "deribit": "ticktape.exchanges.deribit",
    "bybit-spot": "ticktape.exchanges.bybit_spot",
    "hyperliquid": "ticktape.exchanges.hyperliquid",
    "bitmex": "ticktape.exchanges.bitmex",
    "okex": "ticktape.exchanges.okx",
    "okex-swap": "ticktape.exchanges.okx",
    "binance": "ticktape.exchanges.binance_spot",
    "binance-delivery": "ticktape.exchanges.binance_delivery",
    "synthetic": "ticktape.engine.synthetic",
}
KNOWN: tuple[str, ...] = tuple(MODULES)
#: exchange id -> every raw channel name its connector can record, whatever the config (``raw_channels``
#: returns a subset; a test holds each module to this). Static, so listing it loads no connector.
CHANNELS: dict[str, tuple[str, ...]] = {
    "binance-futures": ("aggTrade", "trade", "depth", "depthSnapshot", "depth5", "depth10", "depth20", "bookTicker",
                        "markPrice", "openInterest", "forceOrder"),
    "bybit": ("publicTrade", "orderbook.1", "orderbook.50", "orderbook.200", "orderbook.1000", "tickers",
              "allLiquidation"),
    "deribit": ("book", "trades", "ticker"),
    "bybit-spot": ("publicTrade", "orderbook.1", "orderbook.50", "orderbook.200", "orderbook.1000"),
    "hyperliquid": ("trades", "l2Book", "bbo", "activeAssetCtx"),
    "bitmex": ("trade", "orderBookL2", "quote", "instrument", "liquidation"),
    "okex": ("trades", "trades-all", "books", "tickers"),
    "okex-swap": ("trades", "trades-all", "books", "tickers", "funding-rate", "mark-price", "open-interest", "index-tickers",
                  "liquidation-orders"),
    "binance": ("aggTrade", "trade", "depth", "depthSnapshot", "depth5", "depth10", "depth20", "bookTicker"),
    "binance-delivery": ("aggTrade", "trade", "depth", "depthSnapshot", "depth5", "depth10", "depth20", "bookTicker",
                         "markPrice", "openInterest", "forceOrder"),
    "synthetic": ("trade",),
}


def module(name: str) -> ModuleType:
    if name not in MODULES:
        raise ValueError(f"unknown exchange {name!r} (known: {', '.join(KNOWN)})")
    try:
        return importlib.import_module(MODULES[name])
    except ImportError as e:  # e.g. engine.synthetic not written yet
        raise ValueError(f"exchange {name!r} is not available: {e}") from None


def validate(name: str, cfg: ExchangeConfig) -> None:
    """Raise ValueError with a user-facing reason if ``cfg`` cannot run on ``name``."""
    module(name).validate(name, cfg)


def check_listed(name: str, cfg: ExchangeConfig, timeout: float = 5.0) -> str | None:
    """Raise ValueError naming every configured symbol the venue's instrument list lacks
    (``instruments.Unreachable`` if the list cannot be fetched). Returns a warning when
    the server has no list there (HTTP 404: a test feed), None when all are listed."""
    fn = getattr(module(name), "listed_symbols", None)
    if fn is None:
        return None
    from ticktape.exchanges import instruments

    try:
        where, listed = fn(cfg, timeout)
    except instruments.NoList as e:
        return f"{name}: no instrument list ({e}); symbols not checked"
    unknown = [s for s in cfg.symbols if s not in listed]
    if unknown:
        raise ValueError(f"symbol(s) {', '.join(unknown)} not listed by {name} ({where}, {len(listed)} instruments)")
    return None


def data_types(name: str, cfg: ExchangeConfig, raw: bool) -> list[str]:
    """On-disk data types this exchange's ingest process produces (``events`` is implied)."""
    return list(module(name).data_types(name, cfg, raw))


def raw_channels(name: str, cfg: ExchangeConfig) -> tuple[str, ...]:
    """Exchange-native channel names (Tardis naming) for raw and events rows."""
    return tuple(module(name).raw_channels(name, cfg))


def ingest_main(
    spec: RingSetSpec,
    cfg: ExchangeConfig,
    stats_name: str,
    stop: Event,
    log_cfg: LogConfig,
    options: dict[str, Any] | None = None,
) -> None:
    """Process target of one exchange's ingest process (returns once ``stop`` is set)."""
    mod = module(spec.exchange)
    feed = getattr(mod, "FEED", None)
    if feed is not None:  # a connector module: the shared ingest process runs its Feed class
        from ticktape.exchanges.ingest import ingest_main as run

        run(feed, spec, cfg, stats_name, stop, log_cfg, options)
    elif options:
        mod.ingest_main(spec, cfg, stats_name, stop, log_cfg, options=options)
    else:
        mod.ingest_main(spec, cfg, stats_name, stop, log_cfg)
