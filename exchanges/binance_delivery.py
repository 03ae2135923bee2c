"""binance-delivery (Binance COIN-M): the Binance protocol family
(``exchanges.binance_futures``) with COIN-M's dialect: ``/stream`` on
dstream.binance.com, ``/dapi/v1/depth`` with the ``pu`` chain, contracts
``BTCUSD_PERP`` and dated ``BTCUSD_250627``, open interest from ``/dapi/v1/openInterest``."""

from __future__ import annotations

from functools import partial

from ticktape.exchanges import binance_futures as family
from ticktape.exchanges.binance_dialect import DELIVERY

SUPPORTED = DELIVERY.supported
validate = family.validate
data_types = family.data_types
raw_channels = family.raw_channels
#: (where, symbols) of ``GET /dapi/v1/exchangeInfo``
listed_symbols = partial(family.listed_symbols, dialect=DELIVERY)
#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = family.feed_for(DELIVERY, "BinanceDelivery")
