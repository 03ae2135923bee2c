"""binance (Binance spot): the Binance protocol family (``exchanges.binance_futures``)
with spot's dialect: ``/stream`` on stream.binance.com:9443, ``/api/v3/depth``,
diffs chained by ``U == previous u + 1`` (no ``pu``), depth speeds 100ms/1000ms."""

from __future__ import annotations

from functools import partial

from ticktape.exchanges import binance_futures as family
from ticktape.exchanges.binance_dialect import SPOT

SUPPORTED = SPOT.supported
validate = family.validate
data_types = family.data_types
raw_channels = family.raw_channels
#: (where, symbols) of ``GET /api/v3/exchangeInfo``
listed_symbols = partial(family.listed_symbols, dialect=SPOT)
#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = family.feed_for(SPOT, "BinanceSpot")
