"""Which module speaks for an exchange id.

``synthetic`` is the engine's own deterministic producer (``engine.synthetic``);
every other id belongs to the connectors package (``exchanges.registry``). Both
expose the same four functions, so the supervisor and the config loader do not
care which one they got.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from ticktape.engine.settings import ExchangeConfig, LogConfig
from ticktape.ipc.ringset import RingSetSpec

SYNTHETIC = "synthetic"


class Connector(Protocol):
    def validate(self, name: str, ex_cfg: ExchangeConfig) -> None: ...

    def data_types(self, name: str, ex_cfg: ExchangeConfig, raw: bool) -> list[str]: ...

    def raw_channels(self, name: str, ex_cfg: ExchangeConfig) -> tuple[str, ...]: ...

    def ingest_main(
        self, spec: RingSetSpec, ex_cfg: ExchangeConfig, stats_name: str, stop: Any, log_cfg: LogConfig
    ) -> None: ...


def connector_module(name: str) -> str:
    """Dotted module name whose ``ingest_main`` runs ``name``'s ingest process."""
    return "ticktape.engine.synthetic" if name == SYNTHETIC else "ticktape.exchanges.registry"


def connector(name: str) -> Connector:
    """The module for exchange ``name``; ValueError (for the config message) if there is none."""
    mod_name = connector_module(name)
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name not in ("ticktape.exchanges", "ticktape.exchanges.registry"):
            raise
        raise ValueError(
            f"unknown exchange {name!r}: only {SYNTHETIC!r} is available (connectors package not installed)"
        ) from None
    return mod  # type: ignore[return-value]
