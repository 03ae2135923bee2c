"""bybit-spot: Bybit v5 spot (``/v5/public/spot``, instruments ``category=spot``), on its own
connections, separate from linear (``bybit``) as Tardis separates them. The connector is
the bybit family's (``exchanges.bybit``, category ``SPOT``); this module binds it to the id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ticktape.exchanges import bybit

if TYPE_CHECKING:
    from ticktape.engine.settings import ExchangeConfig

CATEGORY = bybit.SPOT
SUPPORTED = CATEGORY.supported
validate = bybit.validate
data_types = bybit.data_types
raw_channels = bybit.raw_channels


def listed_symbols(cfg: ExchangeConfig, timeout: float) -> tuple[str, set[str]]:
    """(where, symbols) of ``GET /v5/market/instruments-info?category=spot``."""
    return bybit.listed_symbols(cfg, timeout, CATEGORY)


#: the Feed class ``exchanges.registry.ingest_main`` runs for this exchange
FEED = bybit.BybitSpot
