"""binance (Binance spot): the Binance protocol family (``exchanges.binance_futures``)
with spot's dialect: ``/stream`` on stream.binance.com:9443, ``/api/v3/depth``,
diffs chained by ``U == previous u + 1`` (no ``pu``), depth speeds 100ms/1000ms."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ticktape.exchanges import binance_futures as family
from ticktape.exchanges.binance_dialect import SPOT

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

SUPPORTED = SPOT.supported
validate = family.validate
data_types = family.data_types
raw_channels = family.raw_channels


def listed_symbols(cfg: ExchangeConfig, timeout: float) -> tuple[str, set[str]]:
    """(where, symbols) of ``GET /api/v3/exchangeInfo``."""
    return family.listed_symbols(cfg, timeout, SPOT)


class BinanceSpot(family.BinanceFutures):
    exchange = SPOT.exchange
    dialect = SPOT


#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = BinanceSpot
