"""binance-delivery (Binance COIN-M): the Binance protocol family
(``exchanges.binance_futures``) with COIN-M's dialect: ``/stream`` on
dstream.binance.com, ``/dapi/v1/depth`` with the ``pu`` chain, contracts
``BTCUSD_PERP`` and dated ``BTCUSD_250627``, open interest from ``/dapi/v1/openInterest``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ticktape.exchanges import binance_futures as family
from ticktape.exchanges.binance_dialect import DELIVERY

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

SUPPORTED = DELIVERY.supported
validate = family.validate
data_types = family.data_types
raw_channels = family.raw_channels


def listed_symbols(cfg: ExchangeConfig, timeout: float) -> tuple[str, set[str]]:
    """(where, symbols) of ``GET /dapi/v1/exchangeInfo``."""
    return family.listed_symbols(cfg, timeout, DELIVERY)


class BinanceDelivery(family.BinanceFutures):
    exchange = DELIVERY.exchange
    dialect = DELIVERY


#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = BinanceDelivery
